// An idle capture's cost per packet: the filter run on every packet of a
// burst at its point, here the benchmark's own idle capture (`udp port 9`
// at pre-encrypt, raw IP) on 64-byte pod frames that never match, next to
// the same burst with no filter armed, and to the same expression run as
// libpcap's program (DPDK BPF) instead of natively. Read with callgrind for
// instructions per packet (toggle-collect on Filter::match_burst; perf/BASELINE.md), or as a ratio
// to BM_EncryptStage/64 in the same run. BM_EncryptStageIdleCapture is the
// whole encrypt stage with that capture armed, as a worker runs it.
#include <benchmark/benchmark.h>
#include <rte_mbuf.h>

#include <memory>

#include "capture/filter.h"
#include "capture/session.h"
#include "stage_harness.h"
#include "support/two_nodes.h"

namespace {

namespace capture = meshwire::dp::capture;
using meshwire::bench::kBurst;

void BM_CaptureFilterNoMatch(benchmark::State& state) {
  auto filter = capture::Filter::compile(state.range(0) ? "udp port 9" : "", capture::LinkType::kRawIp, 65535);
  if (!filter.ok()) {
    state.SkipWithError(filter.error().c_str());
    return;
  }
  if (state.range(0) == 2) (*filter)->disable_native();
  rte_mbuf* pkts[kBurst];
  if (!meshwire::bench::rx_burst(meshwire::bench::pod_frame(64), pkts)) {
    state.SkipWithError("mbuf pool empty");
    return;
  }
  for (rte_mbuf* m : pkts) rte_pktmbuf_adj(m, 14);  // pre-encrypt sees the pod's IP packet
  uint64_t match[kBurst];
  uint64_t matched = 0;
  for (auto _ : state) {
    (*filter)->match_burst(pkts, kBurst, match);
    for (uint64_t v : match) matched += v;
    benchmark::DoNotOptimize(matched);
  }
  rte_pktmbuf_free_bulk(pkts, kBurst);
  if (state.range(0) && matched != 0) state.SkipWithError("the filter matched a packet it must not");
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()) * kBurst);
  state.counters["jit"] = (*filter)->jitted() ? 1 : 0;
  state.counters["native"] = (*filter)->native() ? 1 : 0;
}
// Arg 0: no filter (every packet matches, no program); 1: `udp port 9`,
// natively; 2: the same as libpcap's program.
BENCHMARK(BM_CaptureFilterNoMatch)->Arg(0)->Arg(1)->Arg(2);
BENCHMARK(BM_CaptureFilterNoMatch)->Name("BM_CaptureFilterNoMatchFixed")->Arg(1)->Arg(2)->Iterations(512);

// The encrypt stage (node a's local port, 64-byte pod frames, as
// BM_EncryptStage/64) with an idle capture at pre-encrypt: Arg 0 none armed,
// 1 `udp port 9` matched natively, 2 the same as libpcap's program.
void BM_EncryptStageIdleCapture(benchmark::State& state) {
  namespace dp = meshwire::dp;
  meshwire::test::TestNode a("bench_cap", false, 0);
  capture::Spec spec;
  spec.point = capture::Point::kPreEncrypt;
  spec.port_mask = ~0u;
  spec.filter = "udp port 9";
  auto session = capture::Session::create(spec, 1, 0);
  auto libpcap_only = capture::Filter::compile(spec.filter, capture::LinkType::kRawIp, spec.snaplen);
  if (!session.ok() || !libpcap_only.ok()) return state.SkipWithError("capture");
  (*libpcap_only)->disable_native();
  capture::WorkerTap tap = (*session)->taps().workers[0];
  if (state.range(0) == 2) tap.filter = libpcap_only->get();
  a.ctx.capture = state.range(0) == 0 ? nullptr : &tap;
  const meshwire::test::Bytes frame = meshwire::bench::pod_frame(64);
  rte_mbuf* pkts[kBurst];
  for (auto _ : state) {
    if (!meshwire::bench::rx_burst(frame, pkts)) return state.SkipWithError("mbuf pool empty");
    dp::process_local_burst(a.ctx, a.tx, meshwire::test::kLocal, pkts, kBurst);
    meshwire::bench::free_tx_buffers(a.tx);
  }
  a.ctx.capture = nullptr;
  if (a.counters.encrypted_packets != static_cast<uint64_t>(state.iterations()) * kBurst) {
    state.SkipWithError("packets were dropped");
  }
  if (a.counters.capture_copies != 0) state.SkipWithError("the idle capture copied a packet");
  meshwire::bench::account(state, 64);
}
BENCHMARK(BM_EncryptStageIdleCapture)->Arg(0)->Arg(1)->Arg(2);
BENCHMARK(BM_EncryptStageIdleCapture)->Name("BM_EncryptStageIdleCaptureFixed")->Arg(0)->Arg(1)->Arg(2)->Iterations(512);

}  // namespace
