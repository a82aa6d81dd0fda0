// Services on the fast path at 64 B: what the frontend lookup, connection
// tracking and NAT add to a pod's packet, as a ratio to the same stage
// without services in the same run (these machines are shared and noisy:
// read ratios, and run with --benchmark_enable_random_interleaving=true).
//
//   BM_EncryptPlain/S/F                    node a's local stage on pod frames to a pod on node b,
//                                          no services: the baseline of the next three
//   BM_EncryptWithServicesNotMatching/S/F  the same frames with 1,000 UDP frontends applied, none
//                                          theirs (port 5000: no service's port)
//   BM_EncryptWithServicesOnTheirPort/S/F  the same to port 80, the frontends' port (but not to a
//                                          VIP): what the port bitmap lets through
//   BM_ServiceDnat/S/F/I                   frames to frontend I's VIP, whose 4 backends are pods on
//                                          node b: established flows (made before the timed
//                                          loop), one lookup each, DNAT, encrypt
//   BM_ServiceNewConnection/S/F/I          the first packet of each connection: miss, Maglev,
//                                          insert, DNAT, encrypt (fresh tuples; the table is
//                                          cleared, untimed, when they run out)
//   BM_ReverseDecryptPlain/S/F             node a's uplink stage on the backends' replies (node b
//                                          encrypts them, untimed), no services
//   BM_ServiceReverse/S/F/I                the same replies with the services: decrypt, reverse
//                                          lookup, the VIP put back as source
//   BM_*Fixed                              512 bursts of one flow, for callgrind
// S is the frame size (64). F the flows, distinct (client address, port)
// pairs sent in turn: 1, or 100,000 (12.8 MB of flow records and an 8 MB
// index, read at random: more than L2). I the frontend under test among the
// 1,000, in config order: 0 (10.96.0.10) or 500 (10.96.2.110).
//
// Counters: cyc_pkt is the TSC cycles per packet of the stage alone (rdtsc
// around process_local_burst / process_uplink_burst) in the median burst,
// ns_pkt the same in nanoseconds, cyc_pkt_mean the mean over all bursts:
// divide by the baseline with the same S and F. items_per_second counts the
// whole iteration, harness included. The harness is the same in every run:
// 32 fresh mbufs per burst, each a copy of the base frame with its flow's 18
// bytes (addresses, ports, checksums) written over it. The connection table
// is the data plane's default size (262,144 flows). Every run checks
// afterwards that each packet went where the run says (encrypted, DNATed,
// given the VIP back) and that none was dropped or punted; otherwise the run
// fails (SkipWithError).
#include <benchmark/benchmark.h>
#include <rte_cycles.h>
#include <rte_mbuf.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include "lb/conntrack.h"
#include "lb/services.h"
#include "net/parse.h"
#include "stage_harness.h"
#include "support/two_nodes.h"

namespace {

namespace dp = meshwire::dp;
namespace lb = meshwire::dp::lb;
namespace test = meshwire::test;
using meshwire::bench::kBurst;
using meshwire::bench::pool;
using test::Bytes;
using test::Ip4;
using test::TestNode;
using test::kLocal;
using test::kUplink;

constexpr uint32_t kCapacity = 262'144;  // Config::conntrack_max's default
constexpr uint32_t kFrontends = 1000;
constexpr uint16_t kVipPort = 80;
constexpr uint16_t kBackendPort = 8080;
constexpr uint32_t kBackends = 4;  // of the frontend under test, pods 10.12.0.5-8 on node b
// What differs between the frames of two flows: IPv4 checksum, addresses,
// ports, UDP length and checksum (bytes 24..41 of an untagged frame).
constexpr size_t kPatchAt = 14 + 10;
constexpr size_t kPatchLen = 18;

constexpr const char* kClientMacText = "02:00:00:00:11:02";
const test::Mac kClientMac = test::mac(kClientMacText);
const test::Mac kBackendMac = test::mac("02:00:00:00:12:05");
const test::Mac kLocalMacA = test::mac("02:aa:00:00:00:01");  // node a's local port
const test::Mac kLocalMacB = test::mac("02:bb:00:00:00:01");  // node b's

Ip4 ip4(uint8_t a, uint8_t b, uint8_t c, uint8_t d) { return Ip4{a, b, c, d}; }

// Client n: one of 250 pods of node a, and a port; distinct for n < 250 * 64,000.
Ip4 client_ip(uint32_t n) { return ip4(10, 11, 0, static_cast<uint8_t>(2 + n % 250)); }
uint16_t client_port(uint32_t n) { return static_cast<uint16_t>(40000 + n / 250); }

// Frontend i's VIP: 10.96.0.10 for frontend 0, then on through 10.96.4.209.
Ip4 vip_of(uint32_t i) { return ip4(10, 96, static_cast<uint8_t>(i / 200), static_cast<uint8_t>(10 + i % 200)); }

Bytes udp_frame(size_t size, const test::Mac& src_mac, const test::Mac& dst_mac, Ip4 src, uint16_t sport, Ip4 dst,
                uint16_t dport) {
  return test::PacketBuilder()
      .eth(src_mac, dst_mac)
      .ipv4(src, dst)
      .udp(sport, dport)
      .payload(Bytes(size - 14 - 20 - 8, 0x42))
      .build();
}

// Client n's frame to a pod on node b (10.12.0.2, port 5000 or another).
Bytes pod_frame(size_t size, uint32_t n, uint16_t port = 5000) {
  return udp_frame(size, kClientMac, kLocalMacA, client_ip(n), client_port(n), ip4(10, 12, 0, 2), port);
}
// Client n's frame to frontend i.
Bytes vip_frame(size_t size, uint32_t n, uint32_t i) {
  return udp_frame(size, kClientMac, kLocalMacA, client_ip(n), client_port(n), vip_of(i), kVipPort);
}

// The frames of a set of flows: one base frame, and per flow the bytes that
// differ from it. fill() hands out the flows in turn.
class FrameSet {
 public:
  // False when the frame differs from the first one outside the patch.
  bool add(const Bytes& frame) {
    if (base_.empty()) base_ = frame;
    if (frame.size() != base_.size() || frame.size() < kPatchAt + kPatchLen ||
        !std::equal(frame.begin(), frame.begin() + kPatchAt, base_.begin()) ||
        !std::equal(frame.begin() + kPatchAt + kPatchLen, frame.end(), base_.begin() + kPatchAt + kPatchLen)) {
      return false;
    }
    std::array<uint8_t, kPatchLen> p;
    std::memcpy(p.data(), frame.data() + kPatchAt, kPatchLen);
    patch_.push_back(p);
    return true;
  }
  // n fresh mbufs holding the next n flows' frames. False when the pool is empty.
  bool fill(rte_mbuf** pkts, uint16_t n) {
    if (rte_pktmbuf_alloc_bulk(pool(), pkts, n) != 0) return false;
    const auto len = static_cast<uint16_t>(base_.size());
    for (uint16_t i = 0; i < n; ++i) {
      auto* d = reinterpret_cast<uint8_t*>(rte_pktmbuf_append(pkts[i], len));
      std::memcpy(d, base_.data(), len);
      std::memcpy(d + kPatchAt, patch_[next_].data(), kPatchLen);
      if (++next_ == patch_.size()) next_ = 0;
    }
    return true;
  }
  size_t size() const { return patch_.size(); }
  void rewind() { next_ = 0; }

 private:
  Bytes base_;
  std::vector<std::array<uint8_t, kPatchLen>> patch_;
  size_t next_ = 0;
};

// Client n's frame for n < flows: to frontend `target`'s VIP, or (target
// kNowhere) to the pod on node b.
bool client_frames(FrameSet& set, size_t size, uint32_t flows, uint32_t target, uint16_t pod_port) {
  for (uint32_t n = 0; n < flows; ++n) {
    if (!set.add(target == lb::ServiceTable::kNowhere ? pod_frame(size, n, pod_port) : vip_frame(size, n, target))) {
      return false;
    }
  }
  return true;
}

// 1,000 UDP frontends on port 80 (VIPs vip_of(i)), each with backends on
// node b: frontend `target`, the one under test, with pods 10.12.0.5-8, the
// others two each among 10.12.0.20-219.
lb::ServicesConfig services(uint32_t target) {
  lb::ServicesConfig out;
  char text[32];
  for (uint32_t i = 0; i < kFrontends; ++i) {
    lb::FrontendConfig f;
    f.name = "bench/svc-" + std::to_string(i) + ":http";
    const Ip4 vip = vip_of(i);
    std::snprintf(text, sizeof(text), "%u.%u.%u.%u", vip[0], vip[1], vip[2], vip[3]);
    f.vip = test::addr(text);
    f.port = kVipPort;
    f.protocol = dp::net::kProtoUdp;
    const uint32_t count = i == target ? kBackends : 2;
    for (uint32_t k = 0; k < count; ++k) {
      lb::BackendConfig b;
      std::snprintf(text, sizeof(text), "10.12.0.%u", i == target ? 5 + k : 20 + (2 * i + k) % 200);
      b.address = test::addr(text);
      b.port = kBackendPort;
      f.backends.push_back(b);
    }
    out.push_back(std::move(f));
  }
  return out;
}

// A connection table of the data plane's default size in place of the
// TestNode's 4096 flows, for as long as it lives.
class BigConnTrack {
 public:
  explicit BigConnTrack(TestNode& n) : n_(n) {
    lb::ConnTrackConfig c;
    c.capacity = kCapacity;
    c.workers = 1;
    c.qsbr = n.quiescence->qsbr();  // no reader registered: grace periods pass at once
    auto r = lb::ConnTrack::create(c);
    if (!r.ok()) {
      error_ = r.error();
      return;
    }
    ct_ = std::move(r).value();
    n_.ctx.conntrack = ct_.get();
    n_.ctx.ct_cache = lb::ConnTrack::WorkerCache(0);
  }
  ~BigConnTrack() {
    if (!ct_) return;
    ct_->release(n_.ctx.ct_cache);
    n_.ctx.ct_cache = lb::ConnTrack::WorkerCache(0);
    n_.ctx.conntrack = n_.conntrack.get();
  }
  BigConnTrack(const BigConnTrack&) = delete;
  BigConnTrack& operator=(const BigConnTrack&) = delete;
  lb::ConnTrack* get() const { return ct_.get(); }
  const std::string& error() const { return error_; }

 private:
  TestNode& n_;
  std::unique_ptr<lb::ConnTrack> ct_;
  std::string error_;
};

// The counters a run checks, before and after its timed loop.
struct Snapshot {
  uint64_t encrypted, decrypted, dnat, reverse, new_flows, punted, drops;
  static Snapshot of(const TestNode& n) {
    const dp::WorkerCounters& c = n.counters;
    const uint64_t drops = std::accumulate(c.drops.begin(), c.drops.end(), uint64_t{0});
    return {c.encrypted_packets, c.decrypted_packets, c.service_dnat_packets, c.service_reverse_packets,
            c.service_new_flows, c.punted, drops};
  }
  Snapshot operator-(const Snapshot& o) const {
    return {encrypted - o.encrypted, decrypted - o.decrypted, dnat - o.dnat, reverse - o.reverse,
            new_flows - o.new_flows, punted - o.punted, drops - o.drops};
  }
};

void free_tx(TestNode& n) { meshwire::bench::free_tx_buffers(n.tx); }

// Sends every flow of `frames` once through node a's local stage, in bursts
// of distinct flows: the flows' connections are made before the timing.
bool warm_up(TestNode& a, FrameSet& frames) {
  rte_mbuf* pkts[kBurst];
  frames.rewind();
  for (size_t done = 0; done < frames.size(); done += kBurst) {
    const auto n = static_cast<uint16_t>(std::min<size_t>(kBurst, frames.size() - done));
    if (!frames.fill(pkts, n)) return false;
    a.ctx.now_ms = lb::flow_clock_ms();
    dp::process_local_burst(a.ctx, a.tx, kLocal, pkts, n);
    free_tx(a);
  }
  frames.rewind();
  return true;
}

// TSC cycles of each burst through the timed stage. The median burst is
// what to read on a shared machine: a burst during which the host took the
// CPU away counts once, not by how long it lasted.
class BurstClock {
 public:
  explicit BurstClock(const benchmark::State& state) { cycles_.reserve(static_cast<size_t>(state.max_iterations)); }
  void start() { t0_ = rte_rdtsc(); }
  void stop() { cycles_.push_back(rte_rdtsc() - t0_); }
  // cyc_pkt and ns_pkt from the median burst, cyc_pkt_mean from them all.
  void report(benchmark::State& state) {
    if (cycles_.empty()) return;
    const uint64_t total = std::accumulate(cycles_.begin(), cycles_.end(), uint64_t{0});
    auto mid = cycles_.begin() + static_cast<std::ptrdiff_t>(cycles_.size() / 2);
    std::nth_element(cycles_.begin(), mid, cycles_.end());
    const double median = double(*mid) / kBurst;
    state.counters["cyc_pkt"] = median;
    state.counters["ns_pkt"] = median * 1e9 / double(rte_get_tsc_hz());
    state.counters["cyc_pkt_mean"] = double(total) / double(cycles_.size() * kBurst);
    meshwire::bench::account(state, state.range(0));
  }

 private:
  std::vector<uint64_t> cycles_;
  uint64_t t0_ = 0;
};

// ---- Client -> server: node a's local stage

enum class Local { kPlain, kNotMatching, kNotMatchingOnServicePort, kDnat, kNewConnection };

void run_local(benchmark::State& state, Local mode) {
  const auto size = static_cast<size_t>(state.range(0));
  const auto flows = static_cast<uint32_t>(state.range(1));
  const bool to_vip = mode == Local::kDnat || mode == Local::kNewConnection;
  const auto target = to_vip ? static_cast<uint32_t>(state.range(2)) : lb::ServiceTable::kNowhere;
  FrameSet frames;
  const uint16_t pod_port = mode == Local::kNotMatchingOnServicePort ? kVipPort : 5000;
  if (!client_frames(frames, size, flows, target, pod_port)) {
    return state.SkipWithError("flows' frames differ outside the patch");
  }
  TestNode a("svc_a", false, 0);
  BigConnTrack ct(a);
  if (!ct.get()) return state.SkipWithError(ct.error().c_str());
  if (mode != Local::kPlain) {
    if (const std::string e = a.apply_services(services(to_vip ? target : 0), 1); !e.empty()) {
      return state.SkipWithError(e.c_str());
    }
  }
  if (mode == Local::kDnat) {
    if (!warm_up(a, frames)) return state.SkipWithError("mbuf pool empty");
    if (ct.get()->size() != flows) return state.SkipWithError("warm-up did not make one flow per client");
  }
  const Snapshot before = Snapshot::of(a);
  rte_mbuf* pkts[kBurst];
  BurstClock clock(state);
  size_t sent = 0;  // new connections: tuples used since the table was last cleared
  for (auto _ : state) {
    if (mode == Local::kNewConnection && sent + kBurst > frames.size()) {
      // Every tuple used: start again from an empty table, untimed.
      state.PauseTiming();
      ct.get()->clear();
      frames.rewind();
      sent = 0;
      state.ResumeTiming();
      if (ct.get()->size() != 0) return state.SkipWithError("the table did not clear");
    }
    if (!frames.fill(pkts, kBurst)) return state.SkipWithError("mbuf pool empty");
    sent += kBurst;
    a.ctx.now_ms = lb::flow_clock_ms();  // as worker_main does once per round
    clock.start();
    dp::process_local_burst(a.ctx, a.tx, kLocal, pkts, kBurst);
    clock.stop();
    free_tx(a);
  }
  const Snapshot d = Snapshot::of(a) - before;
  const uint64_t packets = static_cast<uint64_t>(state.iterations()) * kBurst;
  const uint64_t want_dnat = to_vip ? packets : 0;
  const uint64_t want_new = mode == Local::kNewConnection ? packets : 0;
  if (d.drops != 0 || d.punted != 0) return state.SkipWithError("packets were dropped or punted");
  if (d.encrypted != packets) return state.SkipWithError("not every packet was encrypted");
  if (d.dnat != want_dnat) return state.SkipWithError("service_dnat_packets is not what the run sends");
  if (d.new_flows != want_new) return state.SkipWithError("service_new_flows is not what the run sends");
  const lb::ConnTrackStats s = ct.get()->stats();
  if (s.insert_no_record + s.insert_no_slot + s.insert_clash + s.duplicates_avoided != 0) {
    return state.SkipWithError("inserts failed or found duplicates");
  }
  clock.report(state);
}

void BM_EncryptPlain(benchmark::State& state) { run_local(state, Local::kPlain); }
void BM_EncryptWithServicesNotMatching(benchmark::State& state) { run_local(state, Local::kNotMatching); }
void BM_EncryptWithServicesOnTheirPort(benchmark::State& state) { run_local(state, Local::kNotMatchingOnServicePort); }
void BM_ServiceDnat(benchmark::State& state) { run_local(state, Local::kDnat); }
void BM_ServiceNewConnection(benchmark::State& state) { run_local(state, Local::kNewConnection); }

// ---- Server -> client: node b encrypts the backends' replies (untimed),
// node a's uplink stage decrypts them (timed)

void run_reverse(benchmark::State& state, bool with_services) {
  const auto size = static_cast<size_t>(state.range(0));
  const auto flows = static_cast<uint32_t>(state.range(1));
  const auto target = with_services ? static_cast<uint32_t>(state.range(2)) : 0;
  TestNode a("svc_ra", false, 0);
  TestNode b("svc_rb", false, 1);
  BigConnTrack ct(a);
  if (!ct.get()) return state.SkipWithError(ct.error().c_str());
  char text[32];
  for (uint32_t n = 0; n < std::min<uint32_t>(flows, 250); ++n) {
    std::snprintf(text, sizeof(text), "10.11.0.%u", client_ip(n)[3]);
    a.learn(text, kClientMacText);
  }
  // The connections, then each one's reply from the backend Maglev gave it.
  if (const std::string e = a.apply_services(services(target), 1); !e.empty()) return state.SkipWithError(e.c_str());
  FrameSet requests;
  if (!client_frames(requests, size, flows, target, 5000)) return state.SkipWithError("frames differ outside the patch");
  if (!warm_up(a, requests)) return state.SkipWithError("mbuf pool empty");
  FrameSet replies;
  for (uint32_t n = 0; n < flows; ++n) {
    lb::FlowTuple t{};
    t.family = 4;
    t.proto = dp::net::kProtoUdp;
    t.src_port = client_port(n);
    t.dst_port = kVipPort;
    const Ip4 src = client_ip(n);
    std::memcpy(t.src, src.data(), 4);
    const Ip4 vip = vip_of(target);
    std::memcpy(t.dst, vip.data(), 4);
    const lb::LookupResult r = ct.get()->lookup(t, lb::flow_hash(t));
    if (r.flow == lb::kNoFlow || r.reverse) return state.SkipWithError("warm-up did not make a client's flow");
    const lb::Flow& f = ct.get()->flow(r.flow);
    const Ip4 backend = ip4(f.backend[0], f.backend[1], f.backend[2], f.backend[3]);
    if (!replies.add(udp_frame(size, kBackendMac, kLocalMacB, backend, f.backend_port, src, t.src_port))) {
      return state.SkipWithError("frames differ outside the patch");
    }
  }
  if (!with_services) {
    // The same frames through a node without services.
    if (const std::string e = a.apply_services({}, 2); !e.empty()) return state.SkipWithError(e.c_str());
  }
  const Snapshot before = Snapshot::of(a);
  const Snapshot before_b = Snapshot::of(b);
  rte_mbuf* pkts[kBurst];
  BurstClock clock(state);
  uint64_t delivered = 0;
  for (auto _ : state) {
    if (!replies.fill(pkts, kBurst)) return state.SkipWithError("mbuf pool empty");
    dp::process_local_burst(b.ctx, b.tx, kLocal, pkts, kBurst);
    const uint16_t n = b.tx.count[kUplink];
    b.tx.count[kUplink] = 0;
    a.ctx.now_ms = lb::flow_clock_ms();
    clock.start();
    dp::process_uplink_burst(a.ctx, a.tx, b.tx.pkts[kUplink], n);
    clock.stop();
    delivered += a.tx.count[kLocal];
    free_tx(a);
    free_tx(b);
  }
  const Snapshot d = Snapshot::of(a) - before;
  const Snapshot db = Snapshot::of(b) - before_b;
  const uint64_t packets = static_cast<uint64_t>(state.iterations()) * kBurst;
  if (db.encrypted != packets || db.drops != 0) return state.SkipWithError("node b did not encrypt every reply");
  if (d.drops != 0 || d.punted != 0) return state.SkipWithError("packets were dropped or punted");
  if (d.decrypted != packets || delivered != packets) return state.SkipWithError("not every reply was delivered");
  if (d.reverse != (with_services ? packets : 0)) {
    return state.SkipWithError("service_reverse_packets is not what the run sends");
  }
  clock.report(state);
}

void BM_ReverseDecryptPlain(benchmark::State& state) { run_reverse(state, false); }
void BM_ServiceReverse(benchmark::State& state) { run_reverse(state, true); }

void flows(benchmark::internal::Benchmark* b) {
  b->ArgNames({"", "flows"});
  for (int64_t f : {1, 100'000}) b->Args({64, f});
}

// The frontend under test: the first of the 1,000 in config order, and one
// in the middle (the index probes from the key's slot on: see BASELINE.md).
void flows_frontends(benchmark::internal::Benchmark* b) {
  b->ArgNames({"", "flows", "frontend"});
  for (int64_t f : {1, 100'000}) {
    for (int64_t i : {0, 500}) b->Args({64, f, i});
  }
}

BENCHMARK(BM_EncryptPlain)->Apply(flows);
BENCHMARK(BM_EncryptWithServicesNotMatching)->Apply(flows);
BENCHMARK(BM_EncryptWithServicesOnTheirPort)->Apply(flows);
BENCHMARK(BM_ServiceDnat)->Apply(flows_frontends);
BENCHMARK(BM_ServiceNewConnection)
    ->ArgNames({"", "flows", "frontend"})
    ->Args({64, 100'000, 0})
    ->Args({64, 100'000, 500});
BENCHMARK(BM_ReverseDecryptPlain)->Apply(flows);
BENCHMARK(BM_ServiceReverse)->Apply(flows_frontends);

// 512 bursts of one flow (frontend 0), for instruction counts under
// callgrind: Google Benchmark would stop after one slow iteration there.
// Count with --toggle-collect naming the stage exactly,
// 'meshwire::dp::process_local_burst(meshwire::dp::WorkerContext&, meshwire::dp::TxBuffers&, unsigned short, rte_mbuf**, unsigned short)'
// for the local runs (the DNAT warm-up adds one packet to the 16,384), and
// 'meshwire::dp::process_uplink_burst(meshwire::dp::WorkerContext&, meshwire::dp::TxBuffers&, rte_mbuf**, unsigned short)'
// for the reverse ones (node b's encryption of the replies runs in
// process_local_burst). Not 'meshwire::dp::process_local_burst*': the
// stage's lambdas that the compiler keeps out of line match that pattern
// too, and entering one toggles collection off until it returns, so
// whatever they do is left out of the count.
void fixed(benchmark::internal::Benchmark* b) { b->Iterations(512); }
BENCHMARK(BM_EncryptPlain)->Name("BM_EncryptPlainFixed")->ArgNames({"", "flows"})->Args({64, 1})->Apply(fixed);
BENCHMARK(BM_EncryptWithServicesNotMatching)
    ->Name("BM_EncryptWithServicesNotMatchingFixed")
    ->ArgNames({"", "flows"})
    ->Args({64, 1})
    ->Apply(fixed);
BENCHMARK(BM_ServiceDnat)
    ->Name("BM_ServiceDnatFixed")
    ->ArgNames({"", "flows", "frontend"})
    ->Args({64, 1, 0})
    ->Apply(fixed);
BENCHMARK(BM_ReverseDecryptPlain)
    ->Name("BM_ReverseDecryptPlainFixed")
    ->ArgNames({"", "flows"})
    ->Args({64, 1})
    ->Apply(fixed);
BENCHMARK(BM_ServiceReverse)
    ->Name("BM_ServiceReverseFixed")
    ->ArgNames({"", "flows", "frontend"})
    ->Args({64, 1, 0})
    ->Apply(fixed);

}  // namespace
