// The encrypt and decrypt stages on bursts of 32 real mbufs, next to raw
// ipsec-mb AES-128-GCM over the same payload sizes in the same run: the
// ratio stage/raw is what to read (these machines are shared and noisy).
//
//   BM_RawGcm/F            ipsec-mb direct API, in place, on the bytes the stage encrypts
//   BM_RxCopy/F            the harness alone: allocate 32 mbufs, copy the frame in, free
//   BM_EncryptStage/F      RxCopy + parse + FIB + TTL + encapsulate + encrypt (node a, local port)
//   BM_EncryptDecrypt/F    EncryptStage + node b's uplink: classify, SA lookup, replay,
//                          decrypt + verify, decapsulate, route, neighbour; its counters
//                          enc_cyc_pkt / dec_cyc_pkt give each stage's TSC cycles per packet
// F is the pod's Ethernet frame size: 64, 512, 1400 bytes.
#include <benchmark/benchmark.h>
#include <rte_cycles.h>
#include <rte_mbuf.h>

#include <memory>
#include <vector>

#include "esp/sa.h"
#include "stage_harness.h"
#include "support/two_nodes.h"

namespace {

using meshwire::test::Bytes;
using meshwire::test::TestNode;
using meshwire::test::kLocal;
using meshwire::test::kUplink;
namespace dp = meshwire::dp;

using meshwire::bench::kBurst;
using meshwire::bench::pod_frame;
using meshwire::bench::rx_burst;

void free_tx(TestNode& n) { meshwire::bench::free_tx_buffers(n.tx); }

void account(benchmark::State& state) { meshwire::bench::account(state, state.range(0)); }

void BM_RawGcm(benchmark::State& state) {
  const size_t inner = static_cast<size_t>(state.range(0)) - 14;
  const size_t len = ((inner + 2 + 3) & ~size_t{3});  // inner + padding + trailer
  auto engine = dp::esp::GcmEngine::create();
  if (!engine.ok()) return state.SkipWithError("no ipsec-mb engine");
  const auto s = meshwire::test::sa(0x1001, 1);
  dp::esp::GcmKey key;
  if (!dp::esp::expand_gcm_key(**engine, s.key.data(), s.key.size(), s.salt.data(), &key).ok()) {
    return state.SkipWithError("key");
  }
  std::vector<std::vector<uint8_t>> bufs(kBurst, std::vector<uint8_t>(len + 16, 0x42));
  uint8_t nonce[12] = {}, aad[12] = {}, tag[16];
  gcm_context_data ctx;
  IMB_MGR* mgr = (*engine)->mgr();
  for (auto _ : state) {
    for (auto& b : bufs) IMB_AES128_GCM_ENC(mgr, &key.expanded, &ctx, b.data(), b.data(), len, nonce, aad, 12, tag, 16);
    benchmark::ClobberMemory();
  }
  account(state);
}

void BM_RxCopy(benchmark::State& state) {
  const Bytes frame = pod_frame(static_cast<size_t>(state.range(0)));
  rte_mbuf* pkts[kBurst];
  for (auto _ : state) {
    if (!rx_burst(frame, pkts)) return state.SkipWithError("mbuf pool empty");
    rte_pktmbuf_free_bulk(pkts, kBurst);
  }
  account(state);
}

void BM_EncryptStage(benchmark::State& state) {
  TestNode a("bench_a", false, 0);
  const Bytes frame = pod_frame(static_cast<size_t>(state.range(0)));
  rte_mbuf* pkts[kBurst];
  for (auto _ : state) {
    if (!rx_burst(frame, pkts)) return state.SkipWithError("mbuf pool empty");
    dp::process_local_burst(a.ctx, a.tx, kLocal, pkts, kBurst);
    free_tx(a);
  }
  if (a.counters.encrypted_packets != static_cast<uint64_t>(state.iterations()) * kBurst) state.SkipWithError("packets were dropped");
  account(state);
}

void BM_EncryptDecrypt(benchmark::State& state) {
  TestNode a("bench_a2", false, 0);
  TestNode b("bench_b2", false, 1);
  b.learn("10.12.0.2", "02:00:00:00:12:02");
  const Bytes frame = pod_frame(static_cast<size_t>(state.range(0)));
  rte_mbuf* pkts[kBurst];
  uint64_t enc_cycles = 0, dec_cycles = 0;
  for (auto _ : state) {
    if (!rx_burst(frame, pkts)) return state.SkipWithError("mbuf pool empty");
    const uint64_t t0 = rte_rdtsc();
    dp::process_local_burst(a.ctx, a.tx, kLocal, pkts, kBurst);
    const uint64_t t1 = rte_rdtsc();
    const uint16_t n = a.tx.count[kUplink];
    a.tx.count[kUplink] = 0;
    dp::process_uplink_burst(b.ctx, b.tx, a.tx.pkts[kUplink], n);
    const uint64_t t2 = rte_rdtsc();
    enc_cycles += t1 - t0;
    dec_cycles += t2 - t1;
    free_tx(b);
  }
  state.counters["enc_cyc_pkt"] = double(enc_cycles) / double(state.iterations() * kBurst);
  state.counters["dec_cyc_pkt"] = double(dec_cycles) / double(state.iterations() * kBurst);
  if (b.counters.decrypted_packets != static_cast<uint64_t>(state.iterations()) * kBurst) state.SkipWithError("packets were dropped");
  account(state);
}

void sizes(benchmark::internal::Benchmark* b) {
  for (int64_t f : {64, 512, 1400}) b->Arg(f);
}

BENCHMARK(BM_RawGcm)->Apply(sizes);
BENCHMARK(BM_RxCopy)->Apply(sizes);
BENCHMARK(BM_EncryptStage)->Apply(sizes);
BENCHMARK(BM_EncryptDecrypt)->Apply(sizes);
// A fixed number of bursts, for instruction counts under callgrind (make
// bench): Google Benchmark would stop after one slow iteration there.
BENCHMARK(BM_EncryptDecrypt)->Name("BM_EncryptDecryptFixed")->Arg(64)->Arg(1400)->Iterations(512);

}  // namespace
