// Connection tracking: both directions of v4 and v6 flows, misses for near
// tuples, a full table and its capacity coming back after a grace period,
// expiry per state, the close predicate, rebind, affinity records, clashes
// and duplicates, and workers inserting and looking up while the control
// thread sweeps. Time is driven explicitly (now_ms); no test depends on
// timing.
#include "lb/conntrack.h"

#include <gtest/gtest.h>
#include <rte_crc_sw.h>
#include <rte_malloc.h>
#include <rte_rcu_qsbr.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <random>
#include <set>
#include <thread>
#include <vector>

namespace meshwire::dp::lb {
namespace {

constexpr uint8_t kTcp = 6;
constexpr uint8_t kUdp = 17;
constexpr uint8_t kSctp = 132;

// The RCU state the workers of a test report to (thread ids 0..kReaders-1).
class Qsbr {
 public:
  static constexpr uint32_t kReaders = 8;
  Qsbr() {
    const size_t size = rte_rcu_qsbr_get_memsize(kReaders);
    qsbr_ = static_cast<rte_rcu_qsbr*>(rte_zmalloc("test_qsbr", size, RTE_CACHE_LINE_SIZE));
    if (qsbr_) rte_rcu_qsbr_init(qsbr_, kReaders);
  }
  ~Qsbr() { rte_free(qsbr_); }
  rte_rcu_qsbr* get() const { return qsbr_; }

 private:
  rte_rcu_qsbr* qsbr_ = nullptr;
};

// A worker thread's presence in the RCU state, for its lifetime.
class Reader {
 public:
  Reader(rte_rcu_qsbr* qsbr, unsigned id) : qsbr_(qsbr), id_(id) {
    rte_rcu_qsbr_thread_register(qsbr_, id_);
    rte_rcu_qsbr_thread_online(qsbr_, id_);
  }
  ~Reader() {
    rte_rcu_qsbr_thread_offline(qsbr_, id_);
    rte_rcu_qsbr_thread_unregister(qsbr_, id_);
  }
  void quiescent() { rte_rcu_qsbr_quiescent(qsbr_, id_); }

 private:
  rte_rcu_qsbr* qsbr_;
  unsigned id_;
};

std::unique_ptr<ConnTrack> make_table(rte_rcu_qsbr* qsbr, uint32_t capacity, uint16_t workers = 1,
                                      ConnTrackTimeouts timeouts = {}) {
  ConnTrackConfig c;
  c.capacity = capacity;
  c.workers = workers;
  c.qsbr = qsbr;
  c.timeouts = timeouts;
  auto r = ConnTrack::create(c);
  EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error());
  return r.ok() ? std::move(r.value()) : nullptr;
}

// Connection n: client 10.1.x.y:(10000 + n % 50000) (x.y: n / 50000) ->
// VIP 10.96.0.<vip>:80, backend 10.2.0.<backend>:8080.
struct Conn {
  FlowTuple forward;
  uint8_t backend[16] = {};
  uint16_t backend_port = 8080;
};

Conn v4_conn(uint32_t n, uint8_t vip = 1, uint8_t backend = 7, uint8_t proto = kTcp) {
  Conn c;
  c.forward.family = 4;
  c.forward.proto = proto;
  c.forward.src_port = static_cast<uint16_t>(10000 + n % 50000);
  c.forward.dst_port = 80;
  const uint8_t src[4] = {10, 1, static_cast<uint8_t>(n / 50000 / 256), static_cast<uint8_t>(n / 50000 % 256)};
  const uint8_t dst[4] = {10, 96, 0, vip};
  const uint8_t be[4] = {10, 2, 0, backend};
  std::memcpy(c.forward.src, src, 4);
  std::memcpy(c.forward.dst, dst, 4);
  std::memcpy(c.backend, be, 4);
  return c;
}

Conn v6_conn(uint32_t n) {
  Conn c;
  c.forward.family = 6;
  c.forward.proto = kTcp;
  c.forward.src_port = static_cast<uint16_t>(20000 + n % 40000);
  c.forward.dst_port = 443;
  const uint8_t src[16] = {0xfd, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, static_cast<uint8_t>(n >> 8),
                           static_cast<uint8_t>(n)};
  const uint8_t dst[16] = {0xfd, 0, 0, 0x96, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
  const uint8_t be[16] = {0xfd, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9};
  std::memcpy(c.forward.src, src, 16);
  std::memcpy(c.forward.dst, dst, 16);
  std::memcpy(c.backend, be, 16);
  c.backend_port = 8443;
  return c;
}

FlowTuple reverse_of(const Conn& c) { return reverse_tuple(c.forward, c.backend, c.backend_port); }

uint32_t insert(ConnTrack& ct, ConnTrack::WorkerCache& cache, const Conn& c, uint32_t now_ms,
                FlowState state = FlowState::kSynSent, uint16_t backend_id = 3, uint32_t frontend_id = 11) {
  Flow init{};
  init.forward = c.forward;
  std::memcpy(init.backend, c.backend, 16);
  init.backend_port = c.backend_port;
  init.backend_id = backend_id;
  init.frontend_id = frontend_id;
  init.state.store(static_cast<uint8_t>(state), std::memory_order_relaxed);
  init.attempts.store(1, std::memory_order_relaxed);
  return ct.insert(cache, init, flow_hash(c.forward), now_ms);
}

LookupResult find(const ConnTrack& ct, const FlowTuple& t) { return ct.lookup(t, flow_hash(t)); }

// One sweep over the whole table, then another to reclaim what the first
// removed (the grace period ends at once when no reader is online).
SweepStats sweep_all(ConnTrack& ct, uint32_t now_ms) { return ct.sweep(now_ms, ct.capacity()); }

TEST(ConnTrack, CreateRejectsBadConfig) {
  Qsbr q;
  ConnTrackConfig c;
  c.qsbr = q.get();
  c.capacity = 0;
  auto r = ConnTrack::create(c);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().find("conntrack.capacity"), std::string::npos) << r.error();
  c.capacity = 10;
  c.qsbr = nullptr;
  r = ConnTrack::create(c);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().find("conntrack.qsbr"), std::string::npos) << r.error();
  c.qsbr = q.get();
  c.workers = 0;
  r = ConnTrack::create(c);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().find("conntrack.workers"), std::string::npos) << r.error();
}

TEST(ConnTrack, InsertAndLookupBothDirectionsV4) {
  Qsbr q;
  auto ct = make_table(q.get(), 1000);
  ASSERT_TRUE(ct);
  ConnTrack::WorkerCache cache;
  const Conn c = v4_conn(1);
  EXPECT_EQ(find(*ct, c.forward).flow, kNoFlow);
  const uint32_t f = insert(*ct, cache, c, 5000);
  ASSERT_NE(f, kNoFlow);
  EXPECT_EQ(ct->size(), 1u);

  const LookupResult fwd = find(*ct, c.forward);
  EXPECT_EQ(fwd.flow, f);
  EXPECT_FALSE(fwd.reverse);
  const LookupResult rev = find(*ct, reverse_of(c));
  EXPECT_EQ(rev.flow, f);
  EXPECT_TRUE(rev.reverse);

  const Flow& flow = ct->flow(f);
  EXPECT_EQ(flow.forward, c.forward);
  EXPECT_EQ(std::memcmp(flow.backend, c.backend, 16), 0);
  EXPECT_EQ(flow.backend_port, 8080);
  EXPECT_EQ(flow.backend_id, 3);
  EXPECT_EQ(flow.frontend_id, 11u);
  EXPECT_EQ(flow.created_ms, 5000u);
  EXPECT_EQ(flow.last_seen_ms.load(), 5000u);
  EXPECT_EQ(flow.state.load(), static_cast<uint8_t>(FlowState::kSynSent));
  EXPECT_EQ(flow.attempts.load(), 1);
  EXPECT_EQ(ct->stats().inserted, 1u);
}

TEST(ConnTrack, InsertAndLookupBothDirectionsV6) {
  Qsbr q;
  auto ct = make_table(q.get(), 1000);
  ASSERT_TRUE(ct);
  ConnTrack::WorkerCache cache;
  std::vector<uint32_t> flows;
  for (uint32_t n = 0; n < 300; ++n) {
    flows.push_back(insert(*ct, cache, v6_conn(n), 1));
    ASSERT_NE(flows.back(), kNoFlow) << n;
  }
  EXPECT_EQ(ct->size(), 300u);
  for (uint32_t n = 0; n < 300; ++n) {
    const Conn c = v6_conn(n);
    const LookupResult fwd = find(*ct, c.forward);
    EXPECT_EQ(fwd.flow, flows[n]);
    EXPECT_FALSE(fwd.reverse);
    const LookupResult rev = find(*ct, reverse_of(c));
    EXPECT_EQ(rev.flow, flows[n]);
    EXPECT_TRUE(rev.reverse);
  }
  // The v4 flow with the same low bytes is another flow.
  EXPECT_EQ(find(*ct, v4_conn(0).forward).flow, kNoFlow);
}

TEST(ConnTrack, NearTuplesMiss) {
  Qsbr q;
  auto ct = make_table(q.get(), 100);
  ASSERT_TRUE(ct);
  ConnTrack::WorkerCache cache;
  for (const Conn& c : {v4_conn(42), v6_conn(42)}) {
    ASSERT_NE(insert(*ct, cache, c, 1), kNoFlow);
    const int addr_len = c.forward.family == 4 ? 4 : 16;
    for (const FlowTuple& base : {c.forward, reverse_of(c)}) {
      ASSERT_NE(find(*ct, base).flow, kNoFlow);
      std::vector<FlowTuple> near;
      for (int i = 0; i < addr_len; ++i) {
        FlowTuple t = base;
        t.src[i] ^= 1;
        near.push_back(t);
        t = base;
        t.dst[i] ^= 0x80;
        near.push_back(t);
      }
      FlowTuple t = base;
      t.src_port ^= 1;
      near.push_back(t);
      t = base;
      t.dst_port ^= 0x100;
      near.push_back(t);
      t = base;
      std::swap(t.src_port, t.dst_port);
      near.push_back(t);
      t = base;
      std::swap(t.src, t.dst);
      near.push_back(t);
      for (uint8_t proto : {kUdp, kSctp, kAffinityProto}) {
        t = base;
        t.proto = proto;
        near.push_back(t);
      }
      t = base;
      t.family = c.forward.family == 4 ? 6 : 4;
      near.push_back(t);
      t = base;
      t.pad[1] = 1;
      near.push_back(t);
      // The reply as if it came from the VIP (not un-DNATed yet) is not the flow.
      if (base.src_port == c.backend_port) {
        t = base;
        std::memcpy(t.src, c.forward.dst, 16);
        near.push_back(t);
      }
      for (size_t k = 0; k < near.size(); ++k) {
        EXPECT_EQ(find(*ct, near[k]).flow, kNoFlow) << "near tuple " << k << " of family " << int(base.family);
      }
    }
  }
}

// flow_hash's CRC32-C step is the same function whichever way it is
// compiled: the SSE4.2 instruction (the data plane's build) or DPDK's
// tables (a build for generic x86-64), so that every node and every build
// hashes a tuple alike.
TEST(FlowHash, TheCrcStepIsDpdksSoftwareCrc32c) {
  std::mt19937_64 rng(7);
  for (int k = 0; k < 10000; ++k) {
    const uint64_t data = rng();
    const auto seed = static_cast<uint32_t>(rng());
    ASSERT_EQ(hash_detail::crc64(data, seed), crc32c_2words(data, seed)) << k;
  }
  // A published CRC32-C check value: crc32c("123456789") == 0xE3069283,
  // here as one 8-byte step and one byte, with the usual ~0 in and out.
  uint64_t w;
  std::memcpy(&w, "12345678", 8);
  EXPECT_EQ(~crc32c_1byte('9', hash_detail::crc64(w, 0xFFFFFFFF)), 0xE3069283u);
}

// The halves of the hash (bucket and tag) are not one function of each
// other, and tuples that differ in one field only (a client's port or
// address, as the benchmark's and a node's clients do) spread evenly over
// the first buckets of a table the data plane's default size.
TEST(FlowHash, SpreadsNearTuplesOverBucketsAndTags) {
  constexpr uint32_t kBuckets = 1u << 17;  // 262,144 flows: 131,072 buckets of 8
  constexpr uint32_t kTuples = 200'000;    // both entries of 100,000 connections
  std::vector<uint16_t> load(kBuckets);
  std::set<uint32_t> tags;
  std::set<uint32_t> lo_xor_hi;
  for (uint32_t n = 0; n < kTuples; ++n) {
    const Conn c = v4_conn(n);
    const uint64_t h = flow_hash(n % 2 ? c.forward : reverse_of(c));
    ++load[static_cast<uint32_t>(h) & (kBuckets - 1)];
    tags.insert(static_cast<uint32_t>(h >> 32));
    if (n < 1000) lo_xor_hi.insert(static_cast<uint32_t>(h) ^ static_cast<uint32_t>(h >> 32));
  }
  // Poisson(1.5): a bucket of 8 overflows about once in 10^4 buckets, and
  // none holds more than about 11.
  EXPECT_LE(*std::max_element(load.begin(), load.end()), 12);
  EXPECT_GE(tags.size(), kTuples - 20);  // 32-bit tags: a handful of collisions at most
  EXPECT_GE(lo_xor_hi.size(), 990u);
  // IPv6: the same, over the address's last bytes.
  std::fill(load.begin(), load.end(), 0);
  for (uint32_t n = 0; n < kTuples; ++n) {
    Conn c = v6_conn(n);
    c.forward.src[13] = static_cast<uint8_t>(n >> 16);
    ++load[static_cast<uint32_t>(flow_hash(c.forward)) & (kBuckets - 1)];
  }
  EXPECT_LE(*std::max_element(load.begin(), load.end()), 12);
}

TEST(ConnTrack, LookupBurstAgreesWithLookup) {
  Qsbr q;
  auto ct = make_table(q.get(), 4096);
  ASSERT_TRUE(ct);
  ConnTrack::WorkerCache cache;
  std::vector<uint32_t> flows;
  for (uint32_t n = 0; n < 1000; ++n) {
    flows.push_back(insert(*ct, cache, v4_conn(n), 1));
    ASSERT_NE(flows.back(), kNoFlow);
  }
  // 1000 hits (forward and reverse) and 1000 misses, in bursts of 45 (more
  // than the 32 it prefetches at once).
  std::vector<FlowTuple> tuples;
  for (uint32_t n = 0; n < 1000; ++n) {
    tuples.push_back(n % 2 ? v4_conn(n).forward : reverse_of(v4_conn(n)));
    tuples.push_back(v4_conn(n + 5000).forward);
  }
  std::vector<const FlowTuple*> ptrs;
  std::vector<uint64_t> hashes;
  for (const FlowTuple& t : tuples) {
    ptrs.push_back(&t);
    hashes.push_back(flow_hash(t));
  }
  // Both ways: the buckets fetched by lookup_burst, or by the caller's
  // prefetch() first (the worker's way).
  for (const bool prefetched : {false, true}) {
    std::vector<LookupResult> out(tuples.size(), LookupResult{12345, true});
    for (size_t base = 0; base < tuples.size(); base += 45) {
      const uint16_t n = static_cast<uint16_t>(std::min<size_t>(45, tuples.size() - base));
      if (prefetched) {
        for (uint16_t i = 0; i < n; ++i) ct->prefetch(hashes[base + i]);
      }
      ct->lookup_burst(ptrs.data() + base, hashes.data() + base, n, out.data() + base, prefetched);
    }
    for (uint32_t n = 0; n < 1000; ++n) {
      EXPECT_EQ(out[2 * n].flow, flows[n]);
      EXPECT_EQ(out[2 * n].reverse, n % 2 == 0);
      EXPECT_EQ(out[2 * n + 1].flow, kNoFlow);
      EXPECT_FALSE(out[2 * n + 1].reverse);
    }
  }
}

// A table filled to its capacity (every bucket pair as full as it gets):
// the entries that found their first bucket full live in their second, and
// lookups find them there too, in bursts and one by one.
TEST(ConnTrack, FullTableFindsEntriesInEitherBucket) {
  Qsbr q;
  auto ct = make_table(q.get(), 4096);
  ASSERT_TRUE(ct);
  ConnTrack::WorkerCache cache;
  std::vector<uint32_t> flows;
  for (uint32_t n = 0; n < 4096; ++n) flows.push_back(insert(*ct, cache, v4_conn(n), 1));
  uint32_t inserted = 0;
  for (uint32_t n = 0; n < 4096; ++n) {
    if (flows[n] == kNoFlow) continue;  // its bucket pair was full (counted below)
    ++inserted;
    const Conn c = v4_conn(n);
    EXPECT_EQ(find(*ct, c.forward).flow, flows[n]) << n;
    const LookupResult r = find(*ct, reverse_of(c));
    EXPECT_EQ(r.flow, flows[n]) << n;
    EXPECT_TRUE(r.reverse);
  }
  const ConnTrackStats st = ct->stats();
  EXPECT_EQ(st.live, inserted);
  EXPECT_EQ(inserted + st.insert_no_slot, 4096u - st.insert_no_record);
  EXPECT_GE(inserted, 4000u);
}

TEST(ConnTrack, FullTableFailsAndCapacityComesBackAfterTheGracePeriod) {
  Qsbr q;
  auto ct = make_table(q.get(), 64);
  ASSERT_TRUE(ct);
  ConnTrack::WorkerCache cache;
  for (uint32_t n = 0; n < 64; ++n) ASSERT_NE(insert(*ct, cache, v4_conn(n), 1), kNoFlow) << n;
  EXPECT_EQ(ct->size(), 64u);
  EXPECT_EQ(insert(*ct, cache, v4_conn(64), 1), kNoFlow);
  EXPECT_EQ(ct->stats().insert_no_record, 1u);

  // A worker that has not passed a quiescent state since the flows went.
  Reader reader(q.get(), 0);
  const SweepStats removed = ct->sweep(1'000'000'000, 64);
  EXPECT_EQ(removed.expired, 64u);
  EXPECT_EQ(removed.reclaimed, 0u);
  EXPECT_EQ(ct->size(), 0u);
  EXPECT_EQ(ct->stats().waiting_reuse, 64u);
  EXPECT_EQ(find(*ct, v4_conn(3).forward).flow, kNoFlow);
  EXPECT_EQ(insert(*ct, cache, v4_conn(64), 1), kNoFlow) << "records reused before the grace period";
  EXPECT_EQ(ct->reclaim(), 0u);

  reader.quiescent();
  EXPECT_EQ(ct->reclaim(), 64u);
  EXPECT_EQ(ct->stats().waiting_reuse, 0u);
  for (uint32_t n = 100; n < 164; ++n) ASSERT_NE(insert(*ct, cache, v4_conn(n), 1), kNoFlow) << n;
  EXPECT_EQ(insert(*ct, cache, v4_conn(200), 1), kNoFlow);
  EXPECT_EQ(ct->size(), 64u);
}

TEST(ConnTrack, CachedRecordsGoBackWithRelease) {
  Qsbr q;
  auto ct = make_table(q.get(), 16, 2);
  ASSERT_TRUE(ct);
  ConnTrack::WorkerCache a(0), b(1);
  ASSERT_NE(insert(*ct, a, v4_conn(0), 1), kNoFlow);  // a now holds a few spare records
  uint32_t inserted = 1;
  while (insert(*ct, b, v4_conn(inserted), 1) != kNoFlow) ++inserted;
  EXPECT_LT(inserted, 16u);
  ct->release(a);
  while (insert(*ct, b, v4_conn(inserted), 1) != kNoFlow) ++inserted;
  EXPECT_EQ(inserted, 16u);
  EXPECT_EQ(ct->size(), 16u);
}

TEST(ConnTrack, ExpiresEachStateAfterItsTimeout) {
  Qsbr q;
  ConnTrackTimeouts t;  // the defaults
  EXPECT_EQ(t.syn_sent_ms, 60'000u);
  EXPECT_EQ(t.established_ms, 21'600'000u);
  EXPECT_EQ(t.fin_seen_ms, 10'000u);
  EXPECT_EQ(t.closed_ms, 10'000u);
  EXPECT_EQ(t.udp_ms, 60'000u);
  EXPECT_EQ(t.sctp_ms, 21'600'000u);
  auto ct = make_table(q.get(), 100);
  ASSERT_TRUE(ct);
  ConnTrack::WorkerCache cache;
  const uint32_t t0 = 1'000;
  struct Case {
    FlowState state;
    uint8_t proto;
    uint32_t timeout;
  };
  const Case cases[] = {
      {FlowState::kSynSent, kTcp, 60'000},    {FlowState::kEstablished, kTcp, 21'600'000},
      {FlowState::kFinSeen, kTcp, 10'000},    {FlowState::kClosed, kTcp, 10'000},
      {FlowState::kUdp, kUdp, 60'000},        {FlowState::kSctp, kSctp, 21'600'000},
  };
  for (uint32_t i = 0; i < std::size(cases); ++i) {
    ASSERT_NE(insert(*ct, cache, v4_conn(i, 1, 7, cases[i].proto), t0, cases[i].state), kNoFlow);
    EXPECT_EQ(idle_timeout_ms(t, cases[i].state, 0), cases[i].timeout);
  }
  // One more established flow, seen again later: its idle time starts then.
  const uint32_t touched = insert(*ct, cache, v4_conn(50), t0, FlowState::kEstablished);
  ASSERT_NE(touched, kNoFlow);
  touch(ct->flow(touched), t0 + 20'000'000);

  auto alive = [&](uint32_t i) { return find(*ct, v4_conn(i, 1, 7, cases[i].proto).forward).flow != kNoFlow; };
  for (const uint32_t timeout : {10'000u, 60'000u, 21'600'000u}) {
    // Idle exactly the timeout: kept; one millisecond more: gone.
    sweep_all(*ct, t0 + timeout);
    for (uint32_t i = 0; i < std::size(cases); ++i) EXPECT_EQ(alive(i), cases[i].timeout >= timeout) << i;
    sweep_all(*ct, t0 + timeout + 1);
    for (uint32_t i = 0; i < std::size(cases); ++i) EXPECT_EQ(alive(i), cases[i].timeout > timeout) << i;
  }
  EXPECT_EQ(find(*ct, v4_conn(50).forward).flow, touched);
  EXPECT_EQ(ct->size(), 1u);
  sweep_all(*ct, t0 + 20'000'000 + 21'600'001);
  EXPECT_EQ(ct->size(), 0u);

  // A worker's stamp a little after the control thread's now is not idle time.
  const uint32_t later = insert(*ct, cache, v4_conn(60), 5'000'000, FlowState::kFinSeen);
  ASSERT_NE(later, kNoFlow);
  EXPECT_EQ(sweep_all(*ct, 4'999'990).expired, 0u);
  EXPECT_EQ(ct->size(), 1u);
}

TEST(ConnTrack, ExpiryAcrossTheMillisecondWrap) {
  Qsbr q;
  auto ct = make_table(q.get(), 10);
  ASSERT_TRUE(ct);
  ConnTrack::WorkerCache cache;
  ASSERT_NE(insert(*ct, cache, v4_conn(1), 0xFFFFF000u, FlowState::kFinSeen), kNoFlow);
  EXPECT_EQ(sweep_all(*ct, 0xFFFFF000u + 10'000).expired, 0u);  // wrapped: 10 s later
  EXPECT_EQ(sweep_all(*ct, 0xFFFFF000u + 10'001).expired, 1u);
}

TEST(ConnTrack, ShouldCloseRemovesTheFlowsItNames) {
  Qsbr q;
  auto ct = make_table(q.get(), 100);
  ASSERT_TRUE(ct);
  ConnTrack::WorkerCache cache;
  for (uint32_t n = 0; n < 30; ++n) {
    ASSERT_NE(insert(*ct, cache, v4_conn(n), 1, FlowState::kEstablished, static_cast<uint16_t>(n % 3)), kNoFlow);
  }
  // Backend 1 left the service.
  uint32_t asked = 0;
  const SweepStats s = ct->sweep(2, 100, [&](const Flow& f) {
    ++asked;
    return f.backend_id == 1;
  });
  EXPECT_EQ(asked, 30u);
  EXPECT_EQ(s.closed, 10u);
  EXPECT_EQ(s.expired, 0u);
  EXPECT_EQ(ct->size(), 20u);
  for (uint32_t n = 0; n < 30; ++n) {
    EXPECT_EQ(find(*ct, v4_conn(n).forward).flow == kNoFlow, n % 3 == 1) << n;
    EXPECT_EQ(find(*ct, reverse_of(v4_conn(n))).flow == kNoFlow, n % 3 == 1) << n;
  }
}

// The sweep tells its caller of every flow it removes, expired or closed,
// with the record as it was (what flow logs write), and lets should_close
// write the caller's fields.
TEST(ConnTrack, TheSweepReportsWhatItRemovesWhole) {
  Qsbr q;
  ConnTrackTimeouts timeouts;
  timeouts.established_ms = 1000;
  auto ct = make_table(q.get(), 100, 1, timeouts);
  ASSERT_TRUE(ct);
  ConnTrack::WorkerCache cache;
  for (uint32_t n = 0; n < 6; ++n) {
    Flow init{};
    const Conn c = v4_conn(n);
    init.forward = c.forward;
    std::memcpy(init.backend, c.backend, 16);
    init.backend_port = c.backend_port;
    init.backend_id = static_cast<uint16_t>(n % 2);
    init.state.store(static_cast<uint8_t>(FlowState::kEstablished));
    init.connect_started_us = 77;
    init.log_reported_ms.store(n + 1);
    const uint32_t idx = ct->insert(cache, init, flow_hash(c.forward), 10);
    ASSERT_NE(idx, kNoFlow);
    Flow& f = ct->flow(idx);
    EXPECT_EQ(f.connect_started_us, 77u);
    EXPECT_EQ(f.log_reported_ms.load(), n + 1);
    EXPECT_EQ(f.fwd_packets.load() + f.fwd_bytes.load() + f.rev_packets.load() + f.rev_bytes.load(), 0u);
    count_flow(f.fwd_packets, f.fwd_bytes, 100);
    count_flow(f.fwd_packets, f.fwd_bytes, 60);
    count_flow(f.rev_packets, f.rev_bytes, 1500);
  }
  // Flows 0-2 are seen again later; 3-5 idle out. Of the live ones, backend 1's are closed.
  for (uint32_t n = 0; n < 3; ++n) touch(ct->flow(find(*ct, v4_conn(n).forward).flow), 900);
  struct Seen {
    uint16_t src_port;
    bool expired;
    uint64_t fwd_packets, fwd_bytes, rev_bytes;
  };
  std::vector<Seen> removed;
  uint32_t visits = 0;
  const SweepStats s = ct->sweep(
      1500, 100,
      [&](Flow& f) {
        f.log_reported_ms.store(4242);  // the caller's field, written in the visit
        ++visits;
        return f.backend_id == 1;
      },
      [&](const Flow& f, bool expired) {
        removed.push_back({f.forward.src_port, expired, f.fwd_packets.load(), f.fwd_bytes.load(), f.rev_bytes.load()});
      });
  EXPECT_EQ(s.expired, 3u);
  EXPECT_EQ(s.closed, 1u);  // flow 1 (backend 1, not idle)
  EXPECT_EQ(visits, 3u);
  ASSERT_EQ(removed.size(), 4u);
  for (const Seen& r : removed) {
    const uint32_t n = r.src_port - 10000u;
    EXPECT_EQ(r.expired, n >= 3) << n;
    EXPECT_EQ(r.fwd_packets, 2u);
    EXPECT_EQ(r.fwd_bytes, 160u);
    EXPECT_EQ(r.rev_bytes, 1500u);
  }
  EXPECT_EQ(ct->flow(find(*ct, v4_conn(0).forward).flow).log_reported_ms.load(), 4242u);
}

TEST(ConnTrack, SweepIsIncremental) {
  Qsbr q;
  auto ct = make_table(q.get(), 100);
  ASSERT_TRUE(ct);
  ConnTrack::WorkerCache cache;
  for (uint32_t n = 0; n < 100; ++n) ASSERT_NE(insert(*ct, cache, v4_conn(n), 1, FlowState::kClosed), kNoFlow);
  uint32_t removed = 0;
  for (int call = 0; call < 4; ++call) {
    const SweepStats s = ct->sweep(1'000'000, 30);
    EXPECT_EQ(s.visited, 30u);
    removed += s.expired;
    EXPECT_EQ(ct->size(), 100 - removed);
  }
  EXPECT_EQ(removed, 100u) << "four calls of 30 cover the 100 records";
}

TEST(ConnTrack, RebindMovesTheReverseEntry) {
  Qsbr q;
  auto ct = make_table(q.get(), 100);
  ASSERT_TRUE(ct);
  ConnTrack::WorkerCache cache;
  const Conn c = v4_conn(5);
  const uint32_t f = insert(*ct, cache, c, 1);
  ASSERT_NE(f, kNoFlow);
  const uint8_t next[16] = {10, 2, 0, 8};
  ASSERT_TRUE(ct->rebind(f, next, 9090, 4));

  EXPECT_EQ(find(*ct, c.forward).flow, f);
  EXPECT_EQ(find(*ct, reverse_of(c)).flow, kNoFlow) << "the old backend's replies";
  const FlowTuple new_rev = reverse_tuple(c.forward, next, 9090);
  const LookupResult r = find(*ct, new_rev);
  EXPECT_EQ(r.flow, f);
  EXPECT_TRUE(r.reverse);
  EXPECT_EQ(std::memcmp(ct->flow(f).backend, next, 16), 0);
  EXPECT_EQ(ct->flow(f).backend_port, 9090);
  EXPECT_EQ(ct->flow(f).backend_id, 4);
  EXPECT_EQ(ct->flow(f).attempts.load(), 2);
  uint8_t addr[16];
  uint16_t port = 0, id = 0;
  ASSERT_TRUE(ct->read_backend(f, addr, &port, &id));
  EXPECT_EQ(std::memcmp(addr, next, 16), 0);
  EXPECT_EQ(port, 9090);
  EXPECT_EQ(id, 4);
  EXPECT_EQ(ct->stats().rebinds, 1u);

  // Back to the first backend, then removal takes the current entries.
  ASSERT_TRUE(ct->rebind(f, c.backend, c.backend_port, 3));
  EXPECT_EQ(find(*ct, new_rev).flow, kNoFlow);
  EXPECT_EQ(find(*ct, reverse_of(c)).flow, f);
  ct->sweep(2, 100, [](const Flow&) { return true; });
  EXPECT_EQ(find(*ct, c.forward).flow, kNoFlow);
  EXPECT_EQ(find(*ct, reverse_of(c)).flow, kNoFlow);
  EXPECT_FALSE(ct->rebind(f, next, 9090, 4)) << "a removed flow";
  EXPECT_EQ(ct->stats().rebind_failures, 1u);
}

TEST(ConnTrack, ReverseClashFailsTheSecondInsert) {
  Qsbr q;
  auto ct = make_table(q.get(), 100);
  ASSERT_TRUE(ct);
  ConnTrack::WorkerCache cache;
  // One client port to two VIPs whose backends share an address and port.
  const Conn a = v4_conn(9, 1, 7);
  const Conn b = v4_conn(9, 2, 7);
  ASSERT_EQ(reverse_of(a), reverse_of(b));
  const uint32_t fa = insert(*ct, cache, a, 1);
  ASSERT_NE(fa, kNoFlow);
  EXPECT_EQ(insert(*ct, cache, b, 1), kNoFlow);
  EXPECT_EQ(ct->stats().insert_clash, 1u);
  EXPECT_EQ(ct->size(), 1u);
  EXPECT_EQ(find(*ct, b.forward).flow, kNoFlow);
  EXPECT_EQ(find(*ct, reverse_of(a)).flow, fa);
  // A rebind onto a taken reverse tuple fails the same way.
  const Conn c = v4_conn(9, 3, 8);
  const uint32_t fc = insert(*ct, cache, c, 1);
  ASSERT_NE(fc, kNoFlow);
  EXPECT_FALSE(ct->rebind(fc, a.backend, a.backend_port, 1));
  EXPECT_EQ(find(*ct, reverse_of(c)).flow, fc);
  // The undone insert's record comes back after a grace period.
  EXPECT_EQ(sweep_all(*ct, 2).abandoned, 1u);
}

TEST(ConnTrack, InsertingAnExistingTupleReturnsTheExistingFlow) {
  Qsbr q;
  auto ct = make_table(q.get(), 8);
  ASSERT_TRUE(ct);
  ConnTrack::WorkerCache cache;
  const Conn c = v4_conn(1);
  const uint32_t f = insert(*ct, cache, c, 1);
  ASSERT_NE(f, kNoFlow);
  EXPECT_EQ(insert(*ct, cache, c, 2), f);
  EXPECT_EQ(ct->size(), 1u);
  EXPECT_EQ(ct->stats().duplicates_avoided, 1u);
  const SweepStats s = sweep_all(*ct, 3);
  EXPECT_EQ(s.abandoned, 1u);
  EXPECT_EQ(s.reclaimed, 1u);
  // Every record usable again.
  for (uint32_t n = 10; n < 17; ++n) ASSERT_NE(insert(*ct, cache, v4_conn(n), 1), kNoFlow);
  EXPECT_EQ(ct->size(), 8u);
}

TEST(ConnTrack, AffinityRecords) {
  Qsbr q;
  auto ct = make_table(q.get(), 100);
  ASSERT_TRUE(ct);
  ConnTrack::WorkerCache cache;
  const Conn c = v4_conn(3);
  const FlowTuple key = affinity_tuple(4, c.forward.src, c.forward.dst, 80);
  EXPECT_EQ(key.proto, kAffinityProto);
  EXPECT_EQ(key.src_port, 0);
  Flow init{};
  init.forward = key;
  std::memcpy(init.backend, c.backend, 16);
  init.backend_port = 8080;
  init.backend_id = 2;
  init.affinity_timeout_ms = 10'800'000;  // 3 h
  const uint32_t a = ct->insert_affinity(cache, init, flow_hash(key), 100);
  ASSERT_NE(a, kNoFlow);
  EXPECT_EQ(ct->flow(a).state.load(), static_cast<uint8_t>(FlowState::kAffinity));
  const LookupResult r = find(*ct, key);
  EXPECT_EQ(r.flow, a);
  EXPECT_FALSE(r.reverse);
  // The connection of the same client to the same VIP is another record.
  EXPECT_EQ(find(*ct, c.forward).flow, kNoFlow);
  const uint32_t conn = insert(*ct, cache, c, 100);
  ASSERT_NE(conn, kNoFlow);
  EXPECT_NE(conn, a);
  EXPECT_EQ(find(*ct, key).flow, a);
  EXPECT_EQ(find(*ct, c.forward).flow, conn);
  EXPECT_EQ(ct->size(), 2u);
  EXPECT_FALSE(ct->rebind(a, c.backend, 1, 1)) << "affinity records have no reverse entry";
  // Not an affinity tuple.
  Flow wrong{};
  wrong.forward = v4_conn(4).forward;
  EXPECT_EQ(ct->insert_affinity(cache, wrong, flow_hash(wrong.forward), 100), kNoFlow);

  // The record's own timeout, from its last touch.
  touch(ct->flow(conn), 100 + 10'800'000);
  EXPECT_EQ(sweep_all(*ct, 100 + 10'800'000).expired, 0u);
  EXPECT_EQ(sweep_all(*ct, 100 + 10'800'001).expired, 1u);
  EXPECT_EQ(find(*ct, key).flow, kNoFlow);
  EXPECT_EQ(find(*ct, c.forward).flow, conn);
}

TEST(ConnTrack, ForEachAndClear) {
  Qsbr q;
  auto ct = make_table(q.get(), 200);
  ASSERT_TRUE(ct);
  ConnTrack::WorkerCache cache;
  std::set<uint32_t> inserted;
  for (uint32_t n = 0; n < 150; ++n) inserted.insert(insert(*ct, cache, v4_conn(n), 1));
  ASSERT_EQ(inserted.count(kNoFlow), 0u);
  std::set<uint32_t> seen;
  ct->for_each([&](uint32_t index, const Flow& f) {
    seen.insert(index);
    EXPECT_EQ(find(*ct, f.forward).flow, index);
  });
  EXPECT_EQ(seen, inserted);
  const SweepStats s = ct->clear();
  EXPECT_EQ(s.closed, 150u);
  EXPECT_EQ(ct->size(), 0u);
  EXPECT_EQ(find(*ct, v4_conn(7).forward).flow, kNoFlow);
  uint32_t visited = 0;
  ct->for_each([&](uint32_t, const Flow&) { ++visited; });
  EXPECT_EQ(visited, 0u);
  for (uint32_t n = 0; n < 200; ++n) ASSERT_NE(insert(*ct, cache, v4_conn(n + 1000), 1), kNoFlow);
}

// A worker that found a record reads it unchanged, however the control
// thread removes it, until it reports a quiescent state; only then is the
// record reused.
TEST(ConnTrack, AReaderKeepsItsRecordUntilQuiescent) {
  Qsbr q;
  auto ct = make_table(q.get(), 1);
  ASSERT_TRUE(ct);
  ConnTrack::WorkerCache cache;
  const Conn a = v4_conn(1);
  const Conn b = v4_conn(2, 2, 9);
  const uint32_t fa = insert(*ct, cache, a, 1);
  ASSERT_EQ(fa, 0u);

  std::atomic<int> phase{0};
  auto wait_for = [&](int p) {
    while (phase.load() < p) std::this_thread::yield();
  };
  bool unchanged = false;
  std::thread worker([&] {
    Reader reader(q.get(), 3);
    const LookupResult r = find(*ct, a.forward);
    const Flow& f = ct->flow(r.flow);
    phase = 1;  // holding it
    wait_for(2);
    unchanged = r.flow == fa && f.forward == a.forward && std::memcmp(f.backend, a.backend, 16) == 0;
    reader.quiescent();
    phase = 3;
    wait_for(4);
  });
  wait_for(1);
  EXPECT_EQ(ct->sweep(2, 1, [](const Flow&) { return true; }).closed, 1u);
  EXPECT_EQ(find(*ct, a.forward).flow, kNoFlow);
  EXPECT_EQ(ct->sweep(2, 1).reclaimed, 0u);
  EXPECT_EQ(insert(*ct, cache, b, 2), kNoFlow) << "the only record is still being read";
  phase = 2;
  wait_for(3);
  EXPECT_TRUE(unchanged);
  EXPECT_EQ(ct->reclaim(), 1u);
  EXPECT_EQ(insert(*ct, cache, b, 3), fa) << "reused after the grace period";
  phase = 4;
  worker.join();
}

// Four workers insert distinct flows while two look up and the control
// thread sweeps, closing every odd backend's flows as it goes (so records
// are reused under the readers). No insert is lost, no lookup matches a
// tuple it should not, and the count adds up.
TEST(ConnTrack, ConcurrentInsertLookupAndSweep) {
  Qsbr q;
  constexpr uint16_t kInserters = 4;
  constexpr uint32_t kPerInserter = 6000;
  constexpr uint32_t kTotal = kInserters * kPerInserter;
  constexpr uint32_t kNow = 1000;
  // Room for the flows that stay (half) and some of the others, not all.
  auto ct = make_table(q.get(), 16384, kInserters);
  ASSERT_TRUE(ct);
  auto conn = [](uint32_t n) { return v4_conn(n, static_cast<uint8_t>(1 + n % 5), static_cast<uint8_t>(n % 200)); };
  auto closable = [](uint32_t n) { return n % 2 == 1; };  // backend_id = n % 2

  std::atomic<uint32_t> inserters_done{0};
  std::atomic<uint64_t> bad_insert{0}, lost{0}, false_match{0}, wrong_direction{0}, hits{0};
  std::vector<std::thread> threads;
  for (uint16_t w = 0; w < kInserters; ++w) {
    threads.emplace_back([&, w] {
      Reader reader(q.get(), w);
      ConnTrack::WorkerCache cache(w);
      for (uint32_t k = 0; k < kPerInserter; ++k) {
        const uint32_t n = k * kInserters + w;
        const Conn c = conn(n);
        uint32_t f;
        // No free record: wait for the sweeper (as a worker would drop).
        while ((f = insert(*ct, cache, c, kNow, FlowState::kEstablished, static_cast<uint16_t>(n % 2), n)) ==
               kNoFlow) {
          reader.quiescent();
          std::this_thread::yield();
        }
        const Flow& flow = ct->flow(f);
        if (!(flow.forward == c.forward) || flow.frontend_id != n) ++bad_insert;
        // Visible at once in both directions (closable ones may already be gone).
        if (!closable(n)) {
          const LookupResult fwd = find(*ct, c.forward);
          const LookupResult rev = find(*ct, reverse_of(c));
          if (fwd.flow != f || fwd.reverse || rev.flow != f || !rev.reverse) ++lost;
        }
        if (k % 16 == 0) reader.quiescent();
      }
      ct->release(cache);
      ++inserters_done;
    });
  }
  for (unsigned r = 0; r < 2; ++r) {
    threads.emplace_back([&, r] {
      Reader reader(q.get(), kInserters + r);
      uint64_t x = 88172645463325252ull + r;
      while (inserters_done.load() < kInserters) {
        for (int i = 0; i < 32; ++i) {
          x ^= x << 13;
          x ^= x >> 7;
          x ^= x << 17;
          const uint32_t n = static_cast<uint32_t>(x % kTotal);
          const Conn c = conn(n);
          const bool reverse = (x >> 40) & 1;
          FlowTuple t = reverse ? reverse_of(c) : c.forward;
          const bool never = (x >> 41) % 4 == 0;  // a tuple never inserted
          if (never) t.dst_port ^= 0x4000;
          const LookupResult res = find(*ct, t);
          if (res.flow == kNoFlow) continue;
          if (never) ++false_match;
          // The record must be the tuple's, and stay so until we quiesce.
          const Flow& f = ct->flow(res.flow);
          const FlowTuple matched = res.reverse ? reverse_tuple(f.forward, f.backend, f.backend_port) : f.forward;
          if (!(matched == t) || f.frontend_id != n) ++false_match;
          if (res.reverse != reverse) ++wrong_direction;
          ++hits;
        }
        reader.quiescent();
      }
    });
  }
  auto close_odd = [](const Flow& f) { return f.backend_id == 1; };
  while (inserters_done.load() < kInserters) {
    ct->sweep(kNow, 512, close_odd);
    std::this_thread::yield();
  }
  for (std::thread& t : threads) t.join();
  ct->sweep(kNow, ct->capacity(), close_odd);

  EXPECT_EQ(bad_insert.load(), 0u);
  EXPECT_EQ(lost.load(), 0u);
  EXPECT_EQ(false_match.load(), 0u);
  EXPECT_EQ(wrong_direction.load(), 0u);
  EXPECT_GT(hits.load(), 0u);
  const ConnTrackStats s = ct->stats();
  EXPECT_EQ(s.inserted, kTotal);
  EXPECT_EQ(s.insert_no_slot, 0u);
  EXPECT_EQ(s.insert_clash, 0u);
  EXPECT_EQ(ct->size(), kTotal / 2);
  EXPECT_EQ(s.removed, kTotal / 2);
  for (uint32_t n = 0; n < kTotal; ++n) {
    const Conn c = conn(n);
    const LookupResult fwd = find(*ct, c.forward);
    const LookupResult rev = find(*ct, reverse_of(c));
    if (closable(n)) {
      ASSERT_EQ(fwd.flow, kNoFlow) << n;
      ASSERT_EQ(rev.flow, kNoFlow) << n;
    } else {
      ASSERT_NE(fwd.flow, kNoFlow) << n;
      ASSERT_EQ(rev.flow, fwd.flow) << n;
      ASSERT_EQ(ct->flow(fwd.flow).frontend_id, n);
    }
  }
  uint32_t listed = 0;
  ct->for_each([&](uint32_t, const Flow&) { ++listed; });
  EXPECT_EQ(listed, kTotal / 2);
  // Everything comes back: the readers are gone.
  ct->clear();
  EXPECT_EQ(ct->size(), 0u);
  ConnTrack::WorkerCache cache(0);
  for (uint32_t n = 0; n < ct->capacity(); ++n) ASSERT_NE(insert(*ct, cache, conn(n), kNow), kNoFlow) << n;
}

// The owner of 2000 flows moves each between two backends over and over
// while another worker looks up both reverse tuples and reads the backend,
// and the control thread sweeps and lists (holding records still as it
// does). A lookup matches only the flow's own tuples, a backend is never
// read half old and half new, and each flow ends with the entries of its
// last backend only.
TEST(ConnTrack, RebindWhileOthersLookUpAndSweep) {
  Qsbr q;
  constexpr uint32_t kFlows = 2000;
  constexpr int kRounds = 20;
  auto ct = make_table(q.get(), 4096, 2);
  ASSERT_TRUE(ct);
  const uint8_t backend_a[16] = {10, 2, 0, 1};
  const uint8_t backend_b[16] = {10, 3, 7, 2};
  auto conn = [&](uint32_t n) {
    Conn c = v4_conn(n);
    std::memcpy(c.backend, backend_a, 16);
    return c;
  };
  std::vector<uint32_t> flows(kFlows);
  {
    ConnTrack::WorkerCache cache(0);
    for (uint32_t n = 0; n < kFlows; ++n) {
      flows[n] = insert(*ct, cache, conn(n), 1, FlowState::kSynSent, 1, n);
      ASSERT_NE(flows[n], kNoFlow);
    }
  }
  std::vector<int> on_b(kFlows, 0), rebound(kFlows, 0);
  std::atomic<bool> done{false};
  std::atomic<uint64_t> failures{0}, rebinds{0}, false_match{0}, torn{0}, hits{0}, other_rounds{0};
  uint64_t rounds = 0;
  std::thread owner([&] {
    Reader reader(q.get(), 0);
    // Overlap whatever the scheduling: start after the other's first round,
    // go on until it has done a few more (at most 200 rounds: attempts is 8 bits).
    while (other_rounds.load() == 0) std::this_thread::yield();
    for (int round = 0; round < 200 && (round < kRounds || other_rounds.load() < 10); ++round, ++rounds) {
      for (uint32_t n = 0; n < kFlows; ++n) {
        const bool to_b = !on_b[n];
        if (ct->rebind(flows[n], to_b ? backend_b : backend_a, to_b ? 9090 : 8080, to_b ? 2 : 1)) {
          on_b[n] = to_b;
          ++rebound[n];
          ++rebinds;
        } else {
          ++failures;
        }
        if (n % 32 == 0) reader.quiescent();
      }
    }
    done = true;
  });
  std::thread other([&] {
    Reader reader(q.get(), 1);
    uint32_t n = 0;
    while (!done.load()) {
      for (int i = 0; i < 32; ++i, n = (n + 7) % kFlows) {
        const Conn c = conn(n);
        const FlowTuple to_a = reverse_tuple(c.forward, backend_a, 8080);
        const FlowTuple to_b = reverse_tuple(c.forward, backend_b, 9090);
        for (const FlowTuple& t : {to_a, to_b}) {
          const LookupResult r = find(*ct, t);
          if (r.flow == kNoFlow) continue;
          ++hits;
          if (r.flow != flows[n] || !r.reverse || ct->flow(r.flow).frontend_id != n) ++false_match;
        }
        uint8_t addr[16];
        uint16_t port = 0, id = 0;
        if (ct->read_backend(flows[n], addr, &port, &id)) {
          const bool is_a = std::memcmp(addr, backend_a, 16) == 0 && port == 8080 && id == 1;
          const bool is_b = std::memcmp(addr, backend_b, 16) == 0 && port == 9090 && id == 2;
          if (!is_a && !is_b) ++torn;
        }
      }
      reader.quiescent();
      ++other_rounds;
    }
  });
  uint64_t listed = 0;
  while (!done.load()) {
    ct->sweep(2, 256, [](const Flow&) { return false; });
    ct->for_each([&](uint32_t, const Flow&) { ++listed; });
  }
  owner.join();
  other.join();
  EXPECT_EQ(false_match.load(), 0u);
  EXPECT_EQ(torn.load(), 0u);
  EXPECT_GT(hits.load(), 0u);  // its first round, before any rebind, hits every flow it tries
  EXPECT_EQ(rebinds.load() + failures.load(), kFlows * rounds);
  EXPECT_EQ(ct->stats().rebinds, rebinds.load());
  EXPECT_EQ(ct->stats().rebind_failures, failures.load());
  EXPECT_EQ(ct->size(), kFlows);
  for (uint32_t n = 0; n < kFlows; ++n) {
    const Conn c = conn(n);
    ASSERT_EQ(find(*ct, c.forward).flow, flows[n]);
    const LookupResult a = find(*ct, reverse_tuple(c.forward, backend_a, 8080));
    const LookupResult b = find(*ct, reverse_tuple(c.forward, backend_b, 9090));
    ASSERT_EQ(a.flow == flows[n], !on_b[n]) << n;
    ASSERT_EQ(b.flow == flows[n], bool(on_b[n])) << n;
    ASSERT_EQ(ct->flow(flows[n]).attempts.load(), 1 + rebound[n]) << n;
  }
  // Removal takes whichever reverse entry is current.
  ct->clear();
  for (uint32_t n = 0; n < kFlows; ++n) {
    const Conn c = conn(n);
    ASSERT_EQ(find(*ct, reverse_tuple(c.forward, backend_a, 8080)).flow, kNoFlow);
    ASSERT_EQ(find(*ct, reverse_tuple(c.forward, backend_b, 9090)).flow, kNoFlow);
  }
}

// Two workers insert the same tuples at the same time (the duplicate race,
// made as likely as possible): each tuple ends with one or two records, both
// insert calls get a live one, and never does the race lose the flow.
TEST(ConnTrack, ConcurrentInsertsOfTheSameTupleNeverLoseIt) {
  Qsbr q;
  constexpr uint32_t kFlows = 20000;
  auto ct = make_table(q.get(), 2 * kFlows, 2);
  ASSERT_TRUE(ct);
  std::vector<uint32_t> got[2];
  std::atomic<int> ready{0};
  std::vector<std::thread> threads;
  for (uint16_t w = 0; w < 2; ++w) {
    threads.emplace_back([&, w] {
      Reader reader(q.get(), w);
      ConnTrack::WorkerCache cache(w);
      got[w].resize(kFlows);
      ++ready;
      while (ready.load() < 2) {
      }
      for (uint32_t n = 0; n < kFlows; ++n) got[w][n] = insert(*ct, cache, v4_conn(n), 1);
    });
  }
  for (std::thread& t : threads) t.join();
  for (uint32_t n = 0; n < kFlows; ++n) {
    ASSERT_NE(got[0][n], kNoFlow) << n;
    ASSERT_NE(got[1][n], kNoFlow) << n;
    const LookupResult r = find(*ct, v4_conn(n).forward);
    ASSERT_NE(r.flow, kNoFlow) << n;
    ASSERT_NE(find(*ct, reverse_of(v4_conn(n))).flow, kNoFlow) << n;
  }
  const ConnTrackStats s = ct->stats();
  EXPECT_EQ(s.inserted, s.live);
  EXPECT_EQ(s.live + s.duplicates_avoided, 2u * kFlows) << "each call made a flow or used another's";
  EXPECT_GE(s.live, kFlows);
  uint32_t listed = 0;
  ct->for_each([&](uint32_t, const Flow&) { ++listed; });
  EXPECT_EQ(listed, s.live);
  std::printf("duplicate race: %llu of %u tuples kept two records, %llu inserts used the other's\n",
              static_cast<unsigned long long>(s.live - kFlows), kFlows,
              static_cast<unsigned long long>(s.duplicates_avoided));
}

}  // namespace
}  // namespace meshwire::dp::lb
