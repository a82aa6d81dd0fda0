// Connection tracking on one worker: lookups of 32 hits at a time with 1,
// 100,000 and 1,000,000 live flows, one at a time against a burst, misses,
// inserts (alone, and after the lookup that missed), and the hash.
//
//   dp_micro_bench --benchmark_filter='ConnTrack|FlowHash' --benchmark_repetitions=3
//
// The table has room for 262,144 flows (1,048,576 for the 1M case), so that
// up to 100,000 only the number of live flows (the working set) differs. At
// 100,000 the lookups read 6.4 MB of records and an 8 MB index at random:
// more than L2, within a large L3; at 1M, 64 MB and 32 MB, beyond most L3s.
// Tuples are drawn before the timed loop (half forward, half reverse hits,
// each with its hash, as a worker computes it once per packet); per_op is the
// CPU time per tuple.
#include <benchmark/benchmark.h>
#include <rte_malloc.h>
#include <rte_rcu_qsbr.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>
#include <random>
#include <vector>

#include "lb/conntrack.h"

namespace meshwire::dp::lb {
namespace {

constexpr uint16_t kBurst = 32;
constexpr uint32_t kCapacity = 262'144;
constexpr uint32_t kStream = 1u << 16;  // tuples looked up in turn

FlowTuple forward_of(uint32_t n) {
  FlowTuple t{};
  t.family = 4;
  t.proto = 6;
  t.src_port = static_cast<uint16_t>(1024 + n % 60000);
  t.dst_port = 80;
  const uint8_t src[4] = {10, 1, static_cast<uint8_t>(n / 60000), static_cast<uint8_t>(n % 251)};
  const uint8_t dst[4] = {10, 96, 0, static_cast<uint8_t>(1 + n % 50)};
  std::memcpy(t.src, src, 4);
  std::memcpy(t.dst, dst, 4);
  return t;
}

void backend_of(uint32_t n, uint8_t out[16]) {
  std::memset(out, 0, 16);
  out[0] = 10;
  out[1] = 2;
  out[2] = static_cast<uint8_t>(n % 7);
  out[3] = static_cast<uint8_t>(n % 199);
}

Flow& init_of(uint32_t n) {
  static Flow init{};
  init.forward = forward_of(n);
  backend_of(n, init.backend);
  init.backend_port = 8080;
  init.backend_id = static_cast<uint16_t>(n % 7);
  init.frontend_id = n % 50;
  init.state.store(static_cast<uint8_t>(FlowState::kEstablished), std::memory_order_relaxed);
  init.attempts.store(1, std::memory_order_relaxed);
  return init;
}

struct Table {
  rte_rcu_qsbr* qsbr = nullptr;
  std::unique_ptr<ConnTrack> ct;
  ConnTrack::WorkerCache cache{0};

  bool init(benchmark::State& state, uint32_t capacity = kCapacity) {
    const size_t size = rte_rcu_qsbr_get_memsize(1);
    qsbr = static_cast<rte_rcu_qsbr*>(rte_zmalloc("bench_qsbr", size, RTE_CACHE_LINE_SIZE));
    if (!qsbr || rte_rcu_qsbr_init(qsbr, 1) != 0) {
      state.SkipWithError("cannot create the RCU state");
      return false;
    }
    ConnTrackConfig c;
    c.capacity = capacity;
    c.qsbr = qsbr;
    auto r = ConnTrack::create(c);
    if (!r.ok()) {
      state.SkipWithError(r.error().c_str());
      return false;
    }
    ct = std::move(r).value();
    return true;
  }
  ~Table() {
    ct.reset();
    rte_free(qsbr);
  }

  bool fill(benchmark::State& state, uint32_t flows) {
    for (uint32_t n = 0; n < flows; ++n) {
      const Flow& init = init_of(n);
      if (ct->insert(cache, init, flow_hash(init.forward), 1) == kNoFlow) {
        state.SkipWithError("insert failed while filling the table");
        return false;
      }
    }
    return true;
  }
};

// kStream hits on the table's `flows` flows, half forward, half reverse, in
// random order, with their hashes.
struct Stream {
  std::vector<FlowTuple> tuples;
  std::vector<const FlowTuple*> ptrs;
  std::vector<uint64_t> hashes;

  explicit Stream(uint32_t flows) {
    std::mt19937 gen(0x636f6e6e);
    tuples.resize(kStream);
    for (FlowTuple& t : tuples) {
      const uint32_t n = gen() % flows;
      const FlowTuple fwd = forward_of(n);
      if (gen() & 1) {
        t = fwd;
      } else {
        uint8_t be[16];
        backend_of(n, be);
        t = reverse_tuple(fwd, be, 8080);
      }
    }
    for (const FlowTuple& t : tuples) {
      ptrs.push_back(&t);
      hashes.push_back(flow_hash(t));
    }
  }
};

void per_op(benchmark::State& state, int64_t ops_per_iteration) {
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()) * ops_per_iteration);
  // CPU time per tuple (or insert), shown with its unit (e.g. 11.2ns).
  state.counters["per_op"] = benchmark::Counter(static_cast<double>(ops_per_iteration),
                                                benchmark::Counter::kIsIterationInvariantRate |
                                                    benchmark::Counter::kInvert);
}

void BM_ConnTrackLookupBurst(benchmark::State& state) {
  const uint32_t flows = static_cast<uint32_t>(state.range(0));
  Table table;
  if (!table.init(state, std::max(kCapacity, flows + flows / 20)) || !table.fill(state, flows)) return;
  const Stream s(flows);
  LookupResult out[kBurst];
  uint32_t at = 0;
  uint64_t misses = 0;
  for (auto _ : state) {
    table.ct->lookup_burst(&s.ptrs[at], &s.hashes[at], kBurst, out);
    for (const LookupResult& r : out) misses += r.flow == kNoFlow;
    at = (at + kBurst) & (kStream - 1);
  }
  if (misses != 0) state.SkipWithError("a lookup missed");
  per_op(state, kBurst);
}
BENCHMARK(BM_ConnTrackLookupBurst)->Arg(1)->Arg(100'000)->Arg(1'000'000);

// The same tuples one lookup() at a time: what the burst's prefetching buys.
void BM_ConnTrackLookupOneByOne(benchmark::State& state) {
  const uint32_t flows = static_cast<uint32_t>(state.range(0));
  Table table;
  if (!table.init(state) || !table.fill(state, flows)) return;
  const Stream s(flows);
  uint32_t at = 0;
  uint64_t misses = 0;
  for (auto _ : state) {
    for (uint16_t i = 0; i < kBurst; ++i) {
      misses += table.ct->lookup(s.tuples[at + i], s.hashes[at + i]).flow == kNoFlow;
    }
    at = (at + kBurst) & (kStream - 1);
  }
  if (misses != 0) state.SkipWithError("a lookup missed");
  per_op(state, kBurst);
}
BENCHMARK(BM_ConnTrackLookupOneByOne)->Arg(1)->Arg(100'000);

// Misses (new connections' first packets): both buckets read, no record.
void BM_ConnTrackLookupBurstMiss(benchmark::State& state) {
  const uint32_t flows = static_cast<uint32_t>(state.range(0));
  Table table;
  if (!table.init(state) || !table.fill(state, flows)) return;
  Stream s(1);
  for (uint32_t i = 0; i < kStream; ++i) {
    s.tuples[i] = forward_of(flows + i);
    s.hashes[i] = flow_hash(s.tuples[i]);
  }
  LookupResult out[kBurst];
  uint32_t at = 0;
  for (auto _ : state) {
    table.ct->lookup_burst(&s.ptrs[at], &s.hashes[at], kBurst, out);
    benchmark::DoNotOptimize(out);
    at = (at + kBurst) & (kStream - 1);
  }
  per_op(state, kBurst);
}
BENCHMARK(BM_ConnTrackLookupBurstMiss)->Arg(100'000);

// Inserts (both entries) into a table filling from 0 to N flows (room for
// 2N + 64: 1000 stays in L2, 100,000 does not), emptied outside the timing
// and filled again.
void BM_ConnTrackInsert(benchmark::State& state) {
  const uint32_t kFill = static_cast<uint32_t>(state.range(0));
  Table table;
  if (!table.init(state, kFill * 2 + 64)) return;
  std::vector<uint64_t> hashes(kFill);
  for (uint32_t n = 0; n < kFill; ++n) hashes[n] = flow_hash(forward_of(n));
  uint32_t n = 0;
  uint64_t failed = 0;
  for (auto _ : state) {
    failed += table.ct->insert(table.cache, init_of(n), hashes[n], 1) == kNoFlow;
    if (++n == kFill) {
      state.PauseTiming();
      table.ct->clear();  // no reader: the records are free again at once
      n = 0;
      state.ResumeTiming();
    }
  }
  if (failed != 0) state.SkipWithError("an insert failed");
  per_op(state, 1);
}
BENCHMARK(BM_ConnTrackInsert)->Arg(1000)->Arg(100'000);

// A new connection's first packet as a worker handles it: the lookup that
// misses, then the insert (whose forward buckets the lookup just read).
void BM_ConnTrackMissThenInsert(benchmark::State& state) {
  constexpr uint32_t kFill = 100'000;
  Table table;
  if (!table.init(state)) return;
  std::vector<FlowTuple> tuples(kFill);
  std::vector<uint64_t> hashes(kFill);
  for (uint32_t n = 0; n < kFill; ++n) {
    tuples[n] = forward_of(n);
    hashes[n] = flow_hash(tuples[n]);
  }
  uint32_t n = 0;
  uint64_t failed = 0;
  for (auto _ : state) {
    if (table.ct->lookup(tuples[n], hashes[n]).flow == kNoFlow) {
      failed += table.ct->insert(table.cache, init_of(n), hashes[n], 1) == kNoFlow;
    }
    if (++n == kFill) {
      state.PauseTiming();
      table.ct->clear();
      n = 0;
      state.ResumeTiming();
    }
  }
  if (failed != 0) state.SkipWithError("an insert failed");
  per_op(state, 1);
}
BENCHMARK(BM_ConnTrackMissThenInsert);

void BM_FlowHash(benchmark::State& state) {
  const Stream s(100'000);
  uint32_t at = 0;
  uint64_t sum = 0;
  for (auto _ : state) {
    for (uint16_t i = 0; i < kBurst; ++i) sum += flow_hash(s.tuples[at + i]);
    at = (at + kBurst) & (kStream - 1);
  }
  benchmark::DoNotOptimize(sum);
  per_op(state, kBurst);
}
BENCHMARK(BM_FlowHash);

}  // namespace
}  // namespace meshwire::dp::lb
