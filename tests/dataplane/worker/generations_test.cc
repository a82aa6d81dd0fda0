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
