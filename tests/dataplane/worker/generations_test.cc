// Table generations: what an Apply changes and what it must carry over. An SA
// kept from one generation to the next keeps its sequence number (a reset
// would repeat GCM nonces under the same key) and its replay window (a reset
// would accept replays); a changed key is a new SA. The RCU hand-over frees
// an old generation only after every worker has passed a quiescent state.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdio>
#include <thread>

#include "route/generations.h"
#include "dataplane/worker/worker_fixture.h"

namespace meshwire::dp {
namespace {

class GenerationsTest : public WorkerTest {
 protected:
  void SetUp() override {
    WorkerTest::SetUp();
    b_->learn("10.12.0.2", "02:00:00:00:12:02");
  }
  // A sends one packet to B; returns B's deliveries.
  size_t a_to_b() {
    local_rx(*a_, {pod_a_to_b()});
    auto wire = a_->take(kUplink);
    if (wire.size() != 1) return 0;
    uplink_rx(*b_, wire);
    return b_->take(kLocal).size();
  }
  static uint32_t spi_of(const Bytes& frame) {
    const size_t esp = 14 + 20 + 8;
    return (uint32_t{frame[esp]} << 24) | (uint32_t{frame[esp + 1]} << 16) | (uint32_t{frame[esp + 2]} << 8) |
           frame[esp + 3];
  }
};

TEST_F(GenerationsTest, AKeptSaCarriesItsSequenceNumberOver) {
  ASSERT_EQ(a_to_b(), 1u);
  ASSERT_EQ(a_to_b(), 1u);
  const esp::OutboundSa* before = a_->tables->outbound[0][0];
  EXPECT_EQ(before->seq, 2u);
  // Generation 1: the same peers and SAs, and one more pod CIDR of our own.
  RoutingState next = routing_of(a_->config);
  next.pod_cidrs.push_back(test::prefix("10.11.1.0/24"));
  ASSERT_EQ(a_->apply(next, 1), "");
  EXPECT_EQ(a_->tables->generation, 1u);
  EXPECT_EQ(a_->tables->outbound[0][0], before);  // the same object
  ASSERT_EQ(a_to_b(), 1u);
  EXPECT_EQ(a_->tables->outbound[0][0]->seq, 3u);
  EXPECT_EQ(a_->shared->outbound_sas(), 1u);
  EXPECT_EQ(a_->shared->links(), 1u);
}

TEST_F(GenerationsTest, AKeptInboundSaStillRefusesReplays) {
  local_rx(*a_, {pod_a_to_b()});
  auto wire = a_->take(kUplink);
  ASSERT_EQ(wire.size(), 1u);
  uplink_rx(*b_, wire);
  ASSERT_EQ(b_->take(kLocal).size(), 1u);
  ASSERT_EQ(b_->apply(routing_of(b_->config), 1), "");
  uplink_rx(*b_, wire);  // the same packet again, after the Apply
  EXPECT_EQ(b_->take(kLocal).size(), 0u);
  EXPECT_EQ(b_->drops(DropReason::kReplay), 1u);
}

TEST_F(GenerationsTest, ANewKeyIsANewSaThatStartsAtOne) {
  ASSERT_EQ(a_to_b(), 1u);
  RoutingState a_next = routing_of(a_->config);
  RoutingState b_next = routing_of(b_->config);
  a_next.peers[0].outbound[0] = test::sa(0x1101, 77);
  b_next.peers[0].inbound.push_back(test::sa(0x1101, 77));  // B accepts the new SA beside the old
  ASSERT_EQ(b_->apply(b_next, 1), "");
  ASSERT_EQ(a_->apply(a_next, 1), "");
  EXPECT_EQ(a_->tables->outbound[0][0]->seq, 0u);
  local_rx(*a_, {pod_a_to_b()});
  auto wire = a_->take(kUplink);
  ASSERT_EQ(wire.size(), 1u);
  EXPECT_EQ(spi_of(wire[0]), 0x1101u);
  uplink_rx(*b_, wire);
  EXPECT_EQ(b_->take(kLocal).size(), 1u);
  EXPECT_EQ(a_->shared->outbound_sas(), 1u);  // the old SA went with the old generation
}

TEST_F(GenerationsTest, AnApplyThatOnlyChangesKeysKeepsTheFibs) {
  const Fibs* before = a_->tables->fibs;
  RoutingState next = routing_of(a_->config);
  next.peers[0].outbound[0] = test::sa(0x1101, 77);
  ASSERT_EQ(a_->apply(next, 1), "");
  EXPECT_EQ(a_->tables->fibs, before);
  next.peers[0].pod_cidrs.push_back(test::prefix("10.13.0.0/24"));  // a route changes: new FIBs
  ASSERT_EQ(a_->apply(next, 2), "");
  EXPECT_NE(a_->tables->fibs, before);
  EXPECT_EQ(route_lookup(*a_->tables, test::addr("10.13.0.7")), kNextHopPeerBase + 0);
  EXPECT_EQ(route_lookup(*a_->tables, test::addr("10.12.0.7")), kNextHopPeerBase + 0);
  EXPECT_EQ(route_lookup(*a_->tables, test::addr("10.11.0.7")), kNextHopLocal);
}

TEST_F(GenerationsTest, TheSameSpiWithAnotherKeyIsNotReused) {
  ASSERT_EQ(a_to_b(), 1u);
  RoutingState next = routing_of(a_->config);
  next.peers[0].outbound[0] = test::sa(0x1001, 99);  // same SPI, new key
  const esp::OutboundSa* before = a_->tables->outbound[0][0];
  ASSERT_EQ(a_->apply(next, 1), "");
  EXPECT_NE(a_->tables->outbound[0][0], before);
  EXPECT_EQ(a_->tables->outbound[0][0]->seq, 0u);
}

TEST_F(GenerationsTest, ARemovedPeerIsNoLongerRoutedAndItsStateIsFreed) {
  ASSERT_EQ(a_to_b(), 1u);
  RoutingState next = routing_of(a_->config);
  next.peers.clear();
  ASSERT_EQ(a_->apply(next, 1), "");
  local_rx(*a_, {pod_a_to_b()});
  EXPECT_EQ(a_->take(kUplink).size(), 0u);
  EXPECT_EQ(a_->drops(DropReason::kNoRoute), 1u);
  EXPECT_EQ(a_->shared->outbound_sas(), 0u);
  EXPECT_EQ(a_->shared->inbound_sas(), 0u);
  EXPECT_EQ(a_->shared->links(), 0u);
}

TEST_F(GenerationsTest, ThePeersResolvedMacOutlivesTheGeneration) {
  const uint64_t mac = a_->tables->peers[0]->link->fabric_mac.load();
  ASSERT_NE(mac, 0u);
  RoutingState next = routing_of(a_->config);
  next.peers[0].pod_cidrs.push_back(test::prefix("10.13.0.0/24"));
  ASSERT_EQ(a_->apply(next, 1), "");
  EXPECT_EQ(a_->tables->peers[0]->link->fabric_mac.load(), mac);
  ASSERT_EQ(a_to_b(), 1u);  // sent at once, no new resolution needed
}

TEST_F(GenerationsTest, AFailedBuildLeavesTheLiveTablesAndSharedStateAlone) {
  RoutingState bad = routing_of(a_->config);
  bad.peers[0].inbound.push_back(bad.peers[0].inbound[0]);  // a duplicate SPI (check_routing would refuse it)
  const std::string error = a_->apply(bad, 1);
  EXPECT_NE(error.find("peers[0].sas.inbound[1].spi"), std::string::npos) << error;
  EXPECT_EQ(a_->tables->generation, 0u);
  EXPECT_EQ(a_->shared->outbound_sas(), 1u);
  EXPECT_EQ(a_->shared->inbound_sas(), 1u);
  ASSERT_EQ(a_to_b(), 1u);
}

// Peers found by tunnel address without a scan (SA misses and ARP replies).
TEST(FindPeer, FindsEveryPeerOfAThousandAndNothingElse) {
  TestNode n("find_peer", false, 0);
  RoutingState r = routing_of(n.config);
  r.peers.clear();
  for (int i = 0; i < 1000; ++i) {
    char addr[32], cidr[32], name[16];
    std::snprintf(addr, sizeof(addr), "198.%d.%d.%d", 18 + i % 2, (i * 7) % 256, i / 4);
    std::snprintf(cidr, sizeof(cidr), "10.%d.%d.0/24", 100 + i / 256, i % 256);
    std::snprintf(name, sizeof(name), "p%d", i);
    PeerConfig p;
    p.name = name;
    p.tunnel_address = test::addr(addr);
    p.pod_cidrs = {test::prefix(cidr)};
    p.outbound = {test::sa(0x1000, static_cast<uint8_t>(i))};
    p.inbound = {test::sa(0x2000, static_cast<uint8_t>(i + 1))};
    r.peers.push_back(p);
  }
  auto t = build_tables(r, n.config.tunnel_address, 1, *n.engine, *n.shared);
  ASSERT_TRUE(t.ok()) << t.error();
  for (int i = 0; i < 1000; ++i) {
    const IpAddress& a = r.peers[i].tunnel_address;
    EXPECT_EQ(find_peer(**t, a.family, a.bytes.data()), i);
  }
  const IpAddress stranger = test::addr("203.0.113.9");
  EXPECT_EQ(find_peer(**t, stranger.family, stranger.bytes.data()), -1);
  const IpAddress as_v6 = r.peers[5].tunnel_address;
  EXPECT_EQ(find_peer(**t, 6, as_v6.bytes.data()), -1);  // the family counts
  free_tables(*t, *n.shared);
}

// FIBs freed with their last generation are kept as a spare and brought up
// to date in place at the next change of routes (a few adds and deletes
// instead of 32 MB cleared and every route added). Whatever the change
// (peers shifting positions, CIDRs gone, longer prefixes that need tbl8
// groups, IPv6), the result must answer like FIBs built from scratch.
TEST(SpareFibs, AnUpdatedSpareAnswersLikeANewOne) {
  TestNode n("spare_fib", false, 0);
  auto state = [&](int first, int count, int variant) {
    RoutingState r = routing_of(n.config);
    r.peers.clear();
    for (int i = first; i < first + count; ++i) {
      char addr[32], cidr[32], name[16];
      std::snprintf(addr, sizeof(addr), "198.18.%d.%d", i / 200, i % 200 + 1);
      std::snprintf(cidr, sizeof(cidr), "10.%d.%d.0/24", 100 + i / 256, i % 256);
      std::snprintf(name, sizeof(name), "p%03d", i);
      PeerConfig p;
      p.name = name;
      p.tunnel_address = test::addr(addr);
      p.pod_cidrs = {test::prefix(cidr)};
      if (variant == 1 && i % 7 == 0) {  // more-specifics (tbl8) and IPv6
        std::snprintf(cidr, sizeof(cidr), "10.200.%d.64/26", i % 256);
        p.pod_cidrs.push_back(test::prefix(cidr));
        std::snprintf(cidr, sizeof(cidr), "fd00:%x::/64", i + 1);
        p.pod_cidrs.push_back(test::prefix(cidr));
      }
      p.outbound = {test::sa(0x1000, static_cast<uint8_t>(i))};
      p.inbound = {test::sa(0x2000, static_cast<uint8_t>(i + 1))};
      r.peers.push_back(p);
    }
    return r;
  };
  // The next hop a FIB must give for dst: longest match over the state.
  auto expected = [](const RoutingState& r, const IpAddress& dst) {
    int best = -1;
    uint64_t nh = kNextHopNone;
    auto contains = [&](const IpPrefix& p) {  // bit by bit, as a reference
      if (p.address.family != dst.family) return false;
      for (int b = 0; b < p.length; ++b) {
        const int bit = 7 - b % 8;
        if (((p.address.bytes[b / 8] >> bit) & 1) != ((dst.bytes[b / 8] >> bit) & 1)) return false;
      }
      return true;
    };
    auto consider = [&](const IpPrefix& p, uint64_t hop) {
      if (contains(p) && p.length > best) {
        best = p.length;
        nh = hop;
      }
    };
    for (const IpPrefix& p : r.pod_cidrs) consider(p, kNextHopLocal);
    for (size_t i = 0; i < r.peers.size(); ++i) {
      for (const IpPrefix& p : r.peers[i].pod_cidrs) consider(p, kNextHopPeerBase + i);
    }
    return nh;
  };
  auto probes = [](const RoutingState& a, const RoutingState& b) {
    std::vector<IpAddress> out;
    for (const RoutingState* r : {&a, &b}) {
      for (const PeerConfig& p : r->peers) {
        for (const IpPrefix& c : p.pod_cidrs) {
          IpAddress x = c.address;
          x.bytes[x.is_v4() ? 3 : 15] |= 0x45;  // inside a /24 and a /26 at .64, and a /64
          out.push_back(x);
          out.push_back(c.address);
        }
      }
    }
    return out;
  };
  const RoutingState r1 = state(0, 300, 1);
  const RoutingState r2 = state(0, 300, 0);
  const RoutingState r3 = state(5, 290, 1);  // five peers gone at the front: every next hop moves
  auto t1 = build_tables(r1, n.config.tunnel_address, 1, *n.engine, *n.shared);
  ASSERT_TRUE(t1.ok()) << t1.error();
  auto t2 = build_tables(r2, n.config.tunnel_address, 2, *n.engine, *n.shared);
  ASSERT_TRUE(t2.ok()) << t2.error();
  const Fibs* first = (*t1)->fibs;
  free_tables(*t1, *n.shared);  // retired: its FIBs become the spare
  auto t3 = build_tables(r3, n.config.tunnel_address, 3, *n.engine, *n.shared);
  ASSERT_TRUE(t3.ok()) << t3.error();
  EXPECT_EQ((*t3)->fibs, first) << "the spare was not reused";
  for (const IpAddress& dst : probes(r1, r3)) {
    EXPECT_EQ(route_lookup(**t3, dst), expected(r3, dst)) << format_ip(dst);
  }
  free_tables(*t2, *n.shared);
  auto t4 = build_tables(r2, n.config.tunnel_address, 4, *n.engine, *n.shared);  // and back
  ASSERT_TRUE(t4.ok()) << t4.error();
  for (const IpAddress& dst : probes(r1, r2)) {
    EXPECT_EQ(route_lookup(**t4, dst), expected(r2, dst)) << format_ip(dst);
  }
  free_tables(*t3, *n.shared);
  free_tables(*t4, *n.shared);
}

// What a delta Apply starts from: the live generation's routing state, read
// back from its tables (the SAs' keys from their expanded schedules).
TEST_F(GenerationsTest, TheRoutingStateReadBackFromTheTablesIsTheOneApplied) {
  RoutingState r = routing_of(a_->config);
  r.pod_cidrs.push_back(test::prefix("fd00:11::/64"));
  r.peers[0].inbound.push_back(test::sa(0x3001, 42));
  SaConfig wide = test::sa(0x3002, 43);
  wide.algorithm = AeadAlgorithm::kAes256Gcm;
  wide.key.resize(32, 0x5A);
  r.peers[0].inbound.push_back(wide);
  ASSERT_EQ(a_->apply(r, 1), "");
  RoutingState back = routing_of(*a_->tables);
  ASSERT_EQ(back.peers.size(), r.peers.size());
  EXPECT_EQ(back.pod_cidrs, r.pod_cidrs);
  const PeerConfig& want = r.peers[0];
  const PeerConfig& got = back.peers[0];
  EXPECT_EQ(got.name, want.name);
  EXPECT_EQ(got.tunnel_address, want.tunnel_address);
  EXPECT_EQ(got.pod_cidrs, want.pod_cidrs);
  ASSERT_EQ(got.inbound.size(), want.inbound.size());
  for (size_t i = 0; i < want.inbound.size(); ++i) {
    EXPECT_EQ(got.inbound[i].spi, want.inbound[i].spi);
    EXPECT_EQ(got.inbound[i].algorithm, want.inbound[i].algorithm);
    EXPECT_EQ(got.inbound[i].key, want.inbound[i].key) << i;
    EXPECT_EQ(got.inbound[i].salt, want.inbound[i].salt);
  }
  ASSERT_EQ(got.outbound.size(), 1u);
  EXPECT_EQ(got.outbound[0].key, want.outbound[0].key);
}

// The RCU hand-over with a real reader thread.
TEST(GenerationsRcu, TheOldGenerationLivesUntilEveryWorkerIsQuiescent) {
  TestNode n("gen_rcu", false, 0);
  auto g = Generations::create(1, *n.shared);
  ASSERT_TRUE(g.ok()) << g.error();
  Generations& gens = **g;
  auto first = build_tables(routing_of(n.config), n.config.tunnel_address, 1, *n.engine, *n.shared);
  ASSERT_TRUE(first.ok());
  ASSERT_TRUE(gens.publish(first.value()).ok());

  std::atomic<int> phase{0};
  // Joined however the test ends (an ASSERT returns early).
  struct Joiner {
    std::atomic<int>& phase;
    std::thread t;
    ~Joiner() {
      phase = 4;
      if (t.joinable()) t.join();
    }
  } joiner{phase, {}};
  std::thread& worker = joiner.t;
  worker = std::thread([&] {
    rte_rcu_qsbr_thread_register(gens.qsbr(), 0);
    rte_rcu_qsbr_thread_online(gens.qsbr(), 0);
    const Tables* seen = gens.live().load(std::memory_order_acquire);  // a round begins on generation 1
    phase = 1;
    while (phase.load() < 2) std::this_thread::yield();
    EXPECT_EQ(seen->generation, 1u);  // still readable: not freed under us
    rte_rcu_qsbr_quiescent(gens.qsbr(), 0);  // the round ends
    phase = 3;
    while (phase.load() < 4) std::this_thread::yield();
    rte_rcu_qsbr_thread_offline(gens.qsbr(), 0);
    rte_rcu_qsbr_thread_unregister(gens.qsbr(), 0);
  });
  while (phase.load() != 1) std::this_thread::yield();
  auto second = build_tables(routing_of(n.config), n.config.tunnel_address, 2, *n.engine, *n.shared);
  ASSERT_TRUE(second.ok());
  ASSERT_TRUE(gens.publish(second.value()).ok());
  EXPECT_EQ(gens.current()->generation, 2u);
  EXPECT_EQ(gens.reclaim(), 0u);  // the worker is still in its round
  EXPECT_EQ(gens.retired(), 1u);
  phase = 2;
  while (phase.load() != 3) std::this_thread::yield();
  EXPECT_EQ(gens.reclaim(), 1u);
  EXPECT_EQ(gens.retired(), 0u);

  // A worker that stops reporting holds generations back; publish says which.
  for (uint64_t gen = 3; gen < 3 + Generations::kMaxRetired; ++gen) {
    auto t = build_tables(routing_of(n.config), n.config.tunnel_address, gen, *n.engine, *n.shared);
    ASSERT_TRUE(t.ok());
    ASSERT_TRUE(gens.publish(t.value()).ok());
  }
  auto refused = build_tables(routing_of(n.config), n.config.tunnel_address, 99, *n.engine, *n.shared);
  ASSERT_TRUE(refused.ok());
  Status s = gens.publish(refused.value());
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.error().find("worker 0"), std::string::npos) << s.error();
  EXPECT_EQ(gens.current()->generation, 2u + Generations::kMaxRetired);
  phase = 4;
  worker.join();
  EXPECT_EQ(gens.reclaim(), Generations::kMaxRetired);
}

}  // namespace
}  // namespace meshwire::dp
