// Node liveness on real mbufs, two nodes back to back: the control thread's
// keepalive becomes an ESP dummy packet (next header 59) that the peer's
// decrypt stage accepts, counts and discards while marking the sender
// heard; the control thread's evaluation turns silence into "down" at the
// right millisecond, and a down peer's routes are withdrawn with an ICMP
// host unreachable to the sender, until the peer is heard again.
#include <gtest/gtest.h>
#include <rte_mbuf.h>

#include <cstdlib>
#include <cstring>
#include <utility>
#include <vector>

#include "esp/encrypt.h"
#include "net/parse.h"
#include "worker/control.h"
#include "worker/keepalive.h"
#include "worker/liveness.h"
#include "worker/worker.h"
#include "support/two_nodes.h"
#include "dataplane/worker/worker_fixture.h"

namespace meshwire::dp {
namespace {

using test::Bytes;
using test::PacketBuilder;
using test::TestNode;
using test::ip4;
using test::ip6;
using test::kLocal;
using test::kUplink;
using test::mac;

// The frames a node's control thread handed its worker, of one kind; the
// others are freed.
std::vector<rte_mbuf*> injected(TestNode& n, InjectKind kind) {
  std::vector<rte_mbuf*> out;
  for (rte_mbuf* m : n.take_injected()) {
    if (static_cast<InjectKind>(m->hash.usr) == kind) {
      out.push_back(m);
    } else {
      rte_pktmbuf_free(m);
    }
  }
  return out;
}

// Frees what a node's control thread handed its worker; returns how many
// were of this kind.
size_t discard_injected(TestNode& n, InjectKind kind) {
  std::vector<rte_mbuf*> mine = injected(n, kind);
  for (rte_mbuf* m : mine) rte_pktmbuf_free(m);
  return mine.size();
}

uint64_t total_drops(const TestNode& n) {
  uint64_t sum = 0;
  for (uint64_t d : n.counters.drops) sum += d;
  return sum;
}

class LivenessTest : public WorkerTest {
 protected:
  void SetUp() override {
    WorkerTest::SetUp();
    a_->node.liveness = LivenessSettings{};  // 100 ms, 3 misses (TestNode turns the timer off)
    b_->node.liveness = LivenessSettings{};
  }

  // from's control thread runs a liveness round at now_ms; its worker seals
  // the keepalives; returns the frames on from's uplink.
  std::vector<Bytes> keepalives_from(TestNode& from, Control& control, uint32_t now_ms) {
    control.liveness_round(now_ms);
    std::vector<rte_mbuf*> k = injected(from, InjectKind::kKeepalive);
    if (!k.empty()) send_keepalives(from.ctx, from.tx, k.data(), static_cast<uint16_t>(k.size()));
    return from.take(kUplink);
  }

  PeerLink& link_to_peer(TestNode& n) { return *n.tables->peers[0]->link; }

  // An ESP-in-UDP frame from a to b around `plain` (inner data, padding, pad
  // length, next header: whatever the test wants), sealed with a's SA.
  Bytes seal(const Bytes& plain) {
    esp::OutboundSa* sa = a_->tables->outbound[0][0];
    const uint64_t seq = ++sa->seq;
    Bytes f(14 + 20 + 8 + 16 + plain.size() + 16);
    std::memcpy(f.data(), b_->node.ports[kUplink].mac, 6);
    std::memcpy(f.data() + 6, a_->node.ports[kUplink].mac, 6);
    f[12] = 0x08;
    uint8_t* ip = f.data() + 14;
    ip[0] = 0x45;
    net::store_be16(ip + 2, static_cast<uint16_t>(f.size() - 14));
    ip[8] = 64;
    ip[9] = net::kProtoUdp;
    std::memcpy(ip + 12, sa->outer_src, 4);
    std::memcpy(ip + 16, sa->outer_dst, 4);
    uint8_t* udp = ip + 20;
    net::store_be16(udp, sa->udp_sport);
    net::store_be16(udp + 2, net::kEspInUdpPort);
    net::store_be16(udp + 4, static_cast<uint16_t>(f.size() - 34));
    uint8_t* esp = udp + 8;
    net::store_be32(esp, sa->spi);
    net::store_be32(esp + 4, static_cast<uint32_t>(seq));
    net::store_be32(esp + 8, static_cast<uint32_t>(seq >> 32));
    net::store_be32(esp + 12, static_cast<uint32_t>(seq));
    std::memcpy(esp + 16, plain.data(), plain.size());
    esp::GcmOp op{};
    uint8_t aad[esp::kAadLen];
    esp::prepare_esp_op(op, &sa->key, esp, static_cast<uint32_t>(plain.size()), sa->spi, seq, aad);
    EXPECT_EQ(esp::gcm_encrypt_burst(*a_->engine, &op, 1), 1);
    return f;
  }

  static Bytes from_pod_to_b() {
    return PacketBuilder()
        .eth(mac("02:00:00:00:11:02"), mac("02:aa:00:00:00:01"))
        .ipv4(ip4("10.11.0.2"), ip4("10.12.0.2"))
        .udp(40000, 5000)
        .payload(Bytes(32, 0x42))
        .build();
  }
};

TEST_F(LivenessTest, AKeepaliveCrossesTheTunnelAsAnEspDummyAndMarksItsSenderHeard) {
  std::vector<WorkerContext> workers{a_->ctx};
  WorkerCounters control_counters{};
  Control control(a_->node, a_->live, workers, pool_, &control_counters);
  control.liveness_round(5000);
  std::vector<rte_mbuf*> k = injected(*a_, InjectKind::kKeepalive);
  ASSERT_EQ(k.size(), 1u);  // one peer
  EXPECT_EQ(k[0]->port, kUplink);
  Keepalive payload;
  ASSERT_TRUE(read_keepalive(rte_pktmbuf_mtod(k[0], const uint8_t*), k[0]->data_len, &payload));
  EXPECT_EQ(payload.generation, 0u);
  EXPECT_EQ(payload.peer, 0u);
  EXPECT_EQ(payload.interval_ms, 100u);
  send_keepalives(a_->ctx, a_->tx, k.data(), 1);
  EXPECT_EQ(a_->counters.keepalives_sent, 1u);
  EXPECT_EQ(a_->counters.encrypted_packets, 0u);  // pod traffic only
  auto wire = a_->take(kUplink);
  ASSERT_EQ(wire.size(), 1u);
  net::PacketInfo info;
  ASSERT_EQ(net::parse_frame(wire[0].data(), wire[0].size(), &info), net::ParseResult::kOk);
  net::EspView view;
  ASSERT_EQ(net::classify_esp_in_udp(wire[0].data(), wire[0].size(), info.l4_offset, &view), net::EspClass::kEsp);
  EXPECT_EQ(view.spi, 0x1001u);
  EXPECT_EQ(view.esp_len, 8 + 8 + 36 + 2 + 2 + 16);  // header, IV, payload, padding, pad length + next header, ICV

  b_->ctx.now_ms = 7000;
  ASSERT_EQ(link_to_peer(*b_).last_heard_ms.load(), 0u);
  uplink_rx(*b_, wire);
  EXPECT_EQ(link_to_peer(*b_).last_heard_ms.load(), 7000u);
  EXPECT_EQ(b_->counters.keepalives_received, 1u);
  EXPECT_EQ(b_->counters.decrypted_packets, 0u);
  EXPECT_EQ(total_drops(*b_), 0u);
  EXPECT_TRUE(b_->take(kLocal).empty());
  EXPECT_TRUE(b_->punted().empty());
  // The window moved: the same frame again is a replay, and proves nothing.
  b_->ctx.now_ms = 7100;
  uplink_rx(*b_, wire);
  EXPECT_EQ(b_->drops(DropReason::kReplay), 1u);
  EXPECT_EQ(link_to_peer(*b_).last_heard_ms.load(), 7000u);
}

// Both nodes' keepalives carry their wall clock and echo the other's last
// one: after a -> b -> a, a knows the round trip and b's clock offset (the
// same clock here: near 0), and b, after a's next one, knows them too.
TEST_F(LivenessTest, KeepalivesEchoEachOtherAndMeasureTheRoundTripAndTheClockOffset) {
  std::vector<WorkerContext> workers_a{a_->ctx};
  std::vector<WorkerContext> workers_b{b_->ctx};
  WorkerCounters counters_a{}, counters_b{};
  Control control_a(a_->node, a_->live, workers_a, pool_, &counters_a);
  Control control_b(b_->node, b_->live, workers_b, pool_, &counters_b);
  const uint64_t before_us = wall_us();

  std::vector<Bytes> first = keepalives_from(*a_, control_a, 1000);
  ASSERT_EQ(first.size(), 1u);
  uplink_rx(*b_, first);
  EXPECT_EQ(link_to_peer(*b_).clock.rtt_us.load(), 0u);  // nothing of b's echoed yet
  EXPECT_GE(link_to_peer(*b_).clock.peer_sent_us.load(), before_us);

  uplink_rx(*a_, keepalives_from(*b_, control_b, 1000));
  const uint32_t rtt_a = link_to_peer(*a_).clock.rtt_us.load();
  EXPECT_GT(rtt_a, 0u);
  EXPECT_LT(rtt_a, wall_us() - before_us + 1);
  EXPECT_LT(std::abs(link_to_peer(*a_).clock.clock_offset_us.load()), 1'000'000);

  uplink_rx(*b_, keepalives_from(*a_, control_a, 1100));
  EXPECT_GT(link_to_peer(*b_).clock.rtt_us.load(), 0u);
  EXPECT_LT(std::abs(link_to_peer(*b_).clock.clock_offset_us.load()), 1'000'000);
}

// The four stamps, worked by hand: we send at 1,000,000 (our clock); the
// peer, 2 s ahead, has it at 3,000,200 (200 µs on the wire), holds it 300
// µs and sends at 3,000,500; it is back at 1,000,700. Round trip 400 µs,
// offset +2 s.
TEST(KeepaliveClockTest, RoundTripAndOffsetFromTheFourStamps) {
  PeerLink link;
  Keepalive k{.generation = 1, .peer = 0, .interval_ms = 100, .timed = true, .sent_us = 3'000'500,
              .echo_us = 1'000'000, .held_us = 300};
  note_keepalive(link, k, 1'000'700);
  EXPECT_EQ(link.clock.rtt_us.load(), 400u);
  EXPECT_EQ(link.clock.clock_offset_us.load(), 2'000'000);
  // What we echo next: its stamp, held from when it came.
  Keepalive next;
  fill_echo(link, 1'000'950, &next);
  EXPECT_EQ(next.echo_us, 3'000'500u);
  EXPECT_EQ(next.held_us, 250u);
  // Nothing recent to echo: zeros (the peer then measures nothing).
  fill_echo(link, 1'000'700 + kKeepaliveMaxRttUs + 1, &next);
  EXPECT_EQ(next.echo_us, 0u);
  EXPECT_EQ(next.held_us, 0u);
  // An echo that says it was held longer than it was away, or that is
  // older than the longest round trip, measures nothing.
  PeerLink other;
  note_keepalive(other, Keepalive{.timed = true, .sent_us = 5, .echo_us = 1'000'000, .held_us = 900}, 1'000'700);
  note_keepalive(other, Keepalive{.timed = true, .sent_us = 5, .echo_us = 1'000'000, .held_us = 0},
                 1'000'001 + kKeepaliveMaxRttUs);
  EXPECT_EQ(other.clock.rtt_us.load(), 0u);
  EXPECT_EQ(other.clock.peer_sent_us.load(), 5u);  // still echoed back
}

TEST(KeepaliveClockTest, PayloadsWithAndWithoutStamps) {
  const Keepalive k{.generation = 0x0102030405060708ull, .peer = 7, .interval_ms = 250, .timed = true,
                    .sent_us = 0x1122334455667788ull, .echo_us = 42, .held_us = 99};
  uint8_t buf[kKeepaliveLen];
  write_keepalive(k, buf);
  Keepalive r;
  ASSERT_TRUE(read_keepalive(buf, sizeof(buf), &r));
  EXPECT_TRUE(r.timed);
  EXPECT_EQ(r.generation, k.generation);
  EXPECT_EQ(r.peer, 7u);
  EXPECT_EQ(r.interval_ms, 250u);
  EXPECT_EQ(r.sent_us, k.sent_us);
  EXPECT_EQ(r.echo_us, 42u);
  EXPECT_EQ(r.held_us, 99u);
  // A sender without stamps (16 bytes) still sends keepalives.
  ASSERT_TRUE(read_keepalive(buf, kKeepaliveUntimedLen, &r));
  EXPECT_FALSE(r.timed);
  EXPECT_EQ(r.peer, 7u);
  EXPECT_FALSE(read_keepalive(buf, 20, &r));
  buf[0] = 'X';
  EXPECT_FALSE(read_keepalive(buf, sizeof(buf), &r));
}

// Each ESP packet to or from a peer is counted in its link, by the worker
// that handled it: frames and their bytes as on the wire.
TEST_F(LivenessTest, TrafficWithAPeerIsCountedBothWays) {
  a_->learn("10.11.0.2", "02:00:00:00:11:02");
  b_->learn("10.12.0.2", "02:00:00:00:12:02");
  local_rx(*a_, {from_pod_to_b(), from_pod_to_b(), from_pod_to_b()});
  const std::vector<Bytes> wire = a_->take(kUplink);
  ASSERT_EQ(wire.size(), 3u);
  const PeerTraffic sent = peer_traffic(link_to_peer(*a_));
  EXPECT_EQ(sent.tx_packets, 3u);
  EXPECT_EQ(sent.tx_bytes, 3 * wire[0].size());
  EXPECT_EQ(sent.rx_packets, 0u);
  uplink_rx(*b_, {wire[0], wire[1], wire[2], wire[2]});  // the last one a replay: not counted
  const PeerTraffic received = peer_traffic(link_to_peer(*b_));
  EXPECT_EQ(received.rx_packets, 3u);
  EXPECT_EQ(received.rx_bytes, 3 * wire[0].size());
  EXPECT_EQ(received.tx_packets, 0u);
  EXPECT_EQ(b_->drops(DropReason::kReplay), 1u);
}

TEST_F(LivenessTest, NextHeader59IsAcceptedWhateverItCarriesOtherValuesStayBadTrailers) {
  struct Case {
    const char* what;
    Bytes plain;  // the whole ESP payload
    bool dummy;   // accepted as a dummy, else dropped as bad_trailer
  };
  auto with = [](Bytes data, std::initializer_list<uint8_t> trailer) {
    data.insert(data.end(), trailer);
    return data;
  };
  const Bytes garbage{0xFF, 0x00, 0x60, 0x45, 0xDE, 0xAD, 0xBE, 0xEF, 1, 2, 3, 4, 5, 6, 7, 8};
  const Bytes ipv4_header =
      PacketBuilder().ipv4(ip4("10.11.0.2"), ip4("10.12.0.2")).ip_proto(net::kProtoNoNext).build();
  const std::vector<Case> cases = {
      {"16 bytes of garbage", with(garbage, {1, 2, 2, 59}), true},
      {"14 bytes of garbage", with(Bytes(garbage.begin(), garbage.begin() + 14), {0, 59}), true},
      {"nothing at all", {1, 2, 2, 59}, true},
      {"an IPv4 header", with(ipv4_header, {1, 2, 2, 59}), true},
      {"bad padding", {0xAA, 0xAA, 0xAA, 0xAA, 9, 9, 2, 59}, false},
      {"pad length beyond the payload", {0xAA, 0xAA, 9, 59}, false},
      {"next header UDP", {0xAA, 0xAA, 0, 17}, false},
      {"next header 0", {0xAA, 0xAA, 0, 0}, false},
  };
  b_->ctx.now_ms = 3000;
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    const uint64_t received = b_->counters.keepalives_received;
    const uint64_t bad = b_->drops(DropReason::kBadTrailer);
    link_to_peer(*b_).last_heard_ms.store(0);
    uplink_rx(*b_, {seal(c.plain)});
    EXPECT_EQ(b_->counters.keepalives_received, received + (c.dummy ? 1 : 0));
    EXPECT_EQ(b_->drops(DropReason::kBadTrailer), bad + (c.dummy ? 0 : 1));
    // Authenticated: the sender is alive, whatever the trailer says.
    EXPECT_EQ(link_to_peer(*b_).last_heard_ms.load(), 3000u);
    EXPECT_TRUE(b_->take(kLocal).empty());
  }
  EXPECT_EQ(b_->counters.decrypted_packets, 0u);
}

TEST_F(LivenessTest, DummiesAndPodPacketsInOneBurstKeepTheirPlaces) {
  a_->learn("10.11.0.2", "02:00:00:00:11:02");
  b_->learn("10.12.0.2", "02:00:00:00:12:02");
  local_rx(*a_, {from_pod_to_b()});
  Bytes pod1 = a_->take(kUplink).at(0);
  const Bytes dummy = seal({1, 2, 2, 59});
  local_rx(*a_, {from_pod_to_b()});
  Bytes pod2 = a_->take(kUplink).at(0);
  const Bytes bad = seal({0xAA, 0xAA, 0, 17});
  uplink_rx(*b_, {pod1, dummy, bad, pod2});
  EXPECT_EQ(b_->take(kLocal).size(), 2u);
  EXPECT_EQ(b_->counters.decrypted_packets, 2u);
  EXPECT_EQ(b_->counters.keepalives_received, 1u);
  EXPECT_EQ(b_->drops(DropReason::kBadTrailer), 1u);
  EXPECT_EQ(total_drops(*b_), 1u);
}

TEST_F(LivenessTest, AnyPayloadIsSealedAsADummy) {
  for (size_t len : {0, 1, 7, 16, 100}) {
    SCOPED_TRACE(len);
    rte_mbuf* m = mbuf(Bytes(len, 0xEE));
    esp::OutboundSa* sa = a_->tables->outbound[0][0];
    const uint64_t mac_b = a_->tables->peers[0]->link->fabric_mac.load();
    esp::EncryptContext ectx{};
    std::memcpy(ectx.src_mac, a_->node.ports[kUplink].mac, 6);
    DropReason reason;
    ASSERT_EQ(esp::encrypt_dummy_burst(*a_->engine, ectx, &m, &sa, &mac_b, 1, &reason), 1);
    const uint8_t* d = rte_pktmbuf_mtod(m, const uint8_t*);
    const Bytes frame(d, d + m->data_len);
    rte_pktmbuf_free(m);
    const uint64_t received = b_->counters.keepalives_received;
    uplink_rx(*b_, {frame});
    EXPECT_EQ(b_->counters.keepalives_received, received + 1);
  }
  EXPECT_EQ(total_drops(*b_), 0u);
}

TEST_F(LivenessTest, AKeepaliveForAnotherGenerationIsFreedUncounted) {
  const unsigned free_before = rte_mempool_avail_count(pool_);
  rte_mbuf* stale[3] = {mbuf(Bytes(kKeepaliveLen, 0)), mbuf(Bytes(kKeepaliveLen, 0)), mbuf(Bytes(3, 0))};
  write_keepalive(Keepalive{7, 0, 100}, rte_pktmbuf_mtod(stale[0], uint8_t*));  // generation 7: we read 0
  write_keepalive(Keepalive{0, 1, 100}, rte_pktmbuf_mtod(stale[1], uint8_t*));  // no peer 1 in generation 0
  send_keepalives(a_->ctx, a_->tx, stale, 3);
  EXPECT_TRUE(a_->take(kUplink).empty());
  EXPECT_EQ(a_->counters.keepalives_sent, 0u);
  EXPECT_EQ(total_drops(*a_), 0u);
  EXPECT_EQ(rte_mempool_avail_count(pool_), free_before);
  // A peer whose fabric MAC is unknown: counted as unresolved.
  a_->tables->peers[0]->link->fabric_mac.store(0);
  rte_mbuf* unresolved = mbuf(Bytes(kKeepaliveLen, 0));
  write_keepalive(Keepalive{0, 0, 100}, rte_pktmbuf_mtod(unresolved, uint8_t*));
  send_keepalives(a_->ctx, a_->tx, &unresolved, 1);
  EXPECT_EQ(a_->drops(DropReason::kPeerUnresolved), 1u);
  EXPECT_TRUE(a_->take(kUplink).empty());
}

TEST_F(LivenessTest, TheControlThreadSendsNoKeepaliveToAnUnresolvedPeerOrWhenOff) {
  std::vector<WorkerContext> workers{a_->ctx};
  WorkerCounters control_counters{};
  {
    Control control(a_->node, a_->live, workers, pool_, &control_counters);
    a_->tables->peers[0]->link->fabric_mac.store(0);
    control.liveness_round(1000);
    EXPECT_EQ(discard_injected(*a_, InjectKind::kKeepalive), 0u);
  }
  a_->tables->peers[0]->link->fabric_mac.store(pack_mac(mac("02:bb:00:00:00:02").data()));
  a_->node.liveness.interval_ms = 0;
  Control off(a_->node, a_->live, workers, pool_, &control_counters);
  for (int i = 0; i < 3; ++i) off.poll();
  EXPECT_EQ(discard_injected(*a_, InjectKind::kKeepalive), 0u);
  EXPECT_EQ(link_to_peer(*a_).liveness, Liveness::kUnknown);
}

TEST(EvaluateLiveness, UnknownUpDownAndUpAgain) {
  PeerLink link;
  constexpr uint32_t kDownAfter = 300;
  // Never heard: unknown, and not down however long it stays silent.
  EXPECT_EQ(evaluate_liveness(link, 1000, kDownAfter), LivenessChange::kNone);
  EXPECT_EQ(evaluate_liveness(link, 900000, kDownAfter), LivenessChange::kNone);
  EXPECT_EQ(link.liveness, Liveness::kUnknown);
  EXPECT_FALSE(link.down.load());
  EXPECT_EQ(heard_ms_ago(link, 900000), 0u);

  link.last_heard_ms = 10000;
  EXPECT_EQ(evaluate_liveness(link, 10050, kDownAfter), LivenessChange::kUp);
  EXPECT_EQ(link.liveness, Liveness::kUp);
  EXPECT_EQ(evaluate_liveness(link, 10300, kDownAfter), LivenessChange::kNone);  // 300 ms: three misses, not more
  EXPECT_FALSE(link.down.load());
  EXPECT_EQ(evaluate_liveness(link, 10301, kDownAfter), LivenessChange::kDown);
  EXPECT_TRUE(link.down.load());
  EXPECT_EQ(link.liveness, Liveness::kDown);
  EXPECT_EQ(heard_ms_ago(link, 10301), 301u);
  EXPECT_EQ(evaluate_liveness(link, 20000, kDownAfter), LivenessChange::kNone);
  // Days of silence later (the clock's halfway point passed): still down.
  EXPECT_EQ(evaluate_liveness(link, 10000 + (1u << 31) + 5, kDownAfter), LivenessChange::kNone);
  EXPECT_TRUE(link.down.load());

  link.last_heard_ms = 30000;  // heard again
  EXPECT_EQ(evaluate_liveness(link, 30010, kDownAfter), LivenessChange::kUp);
  EXPECT_FALSE(link.down.load());
  EXPECT_EQ(link.heard_when_down, 10000u);
}

TEST(EvaluateLiveness, WrapSafe) {
  PeerLink link;
  link.last_heard_ms = 0xFFFFFF00u;
  EXPECT_EQ(evaluate_liveness(link, 0xFFFFFF10u, 300), LivenessChange::kUp);
  EXPECT_EQ(evaluate_liveness(link, 0x10u, 300), LivenessChange::kNone);  // 272 ms across the wrap
  EXPECT_EQ(evaluate_liveness(link, 0x2Du, 300), LivenessChange::kDown);  // 301 ms
  // A worker's clock a little ahead of the control thread's: heard "in the future" is recent.
  PeerLink ahead;
  ahead.last_heard_ms = 5002;
  EXPECT_EQ(evaluate_liveness(ahead, 5000, 300), LivenessChange::kUp);
  EXPECT_EQ(heard_ms_ago(ahead, 5000), 0u);
}

// The whole loop on node a: b's keepalives keep it up; silence takes it
// down at misses * interval; packets to its pods are then dropped as
// peer_down and answered with ICMP host unreachable; b is heard again and
// traffic flows.
TEST_F(LivenessTest, ASilentPeerGoesDownItsRoutesAreWithdrawnAndItComesBack) {
  a_->learn("10.11.0.2", "02:00:00:00:11:02");
  std::vector<WorkerContext> workers_a{a_->ctx};
  std::vector<WorkerContext> workers_b{b_->ctx};
  WorkerCounters counters_a{}, counters_b{};
  Control control_a(a_->node, a_->live, workers_a, pool_, &counters_a);
  Control control_b(b_->node, b_->live, workers_b, pool_, &counters_b);
  PeerLink& b_seen_by_a = link_to_peer(*a_);

  control_a.liveness_round(10000);
  discard_injected(*a_, InjectKind::kKeepalive);
  EXPECT_EQ(b_seen_by_a.liveness, Liveness::kUnknown);
  a_->ctx.now_ms = 10000;
  uplink_rx(*a_, keepalives_from(*b_, control_b, 10000));
  EXPECT_EQ(a_->counters.keepalives_received, 1u);
  control_a.liveness_round(10100);
  discard_injected(*a_, InjectKind::kKeepalive);
  EXPECT_EQ(b_seen_by_a.liveness, Liveness::kUp);
  control_a.liveness_round(10300);
  discard_injected(*a_, InjectKind::kKeepalive);
  EXPECT_FALSE(b_seen_by_a.down.load());
  local_rx(*a_, {from_pod_to_b()});
  EXPECT_EQ(a_->take(kUplink).size(), 1u);

  control_a.liveness_round(10301);  // b silent for more than 3 x 100 ms
  EXPECT_TRUE(b_seen_by_a.down.load());
  EXPECT_EQ(b_seen_by_a.liveness, Liveness::kDown);
  EXPECT_EQ(discard_injected(*a_, InjectKind::kKeepalive), 1u);  // still sent: b may come back

  // Routes withdrawn: dropped as peer_down, punted for an ICMP error.
  a_->ctx.now_ms = 10400;
  local_rx(*a_, {from_pod_to_b()});
  EXPECT_TRUE(a_->take(kUplink).empty());
  EXPECT_EQ(a_->drops(DropReason::kPeerDown), 1u);
  auto punted = a_->punted();
  ASSERT_EQ(punted.size(), 1u);
  EXPECT_EQ(punted[0].first, PuntKind::kPeerDown);
  // The control thread answers the pod: host unreachable from the gateway.
  rte_mbuf* m = mbuf(punted[0].second);
  m->hash.usr = static_cast<uint32_t>(PuntKind::kPeerDown);
  m->port = kLocal;
  control_a.handle(m);
  EXPECT_EQ(counters_a.icmp_errors_sent, 1u);
  std::vector<rte_mbuf*> sent = injected(*a_, InjectKind::kTransmit);
  ASSERT_EQ(sent.size(), 1u);
  const uint8_t* d = rte_pktmbuf_mtod(sent[0], const uint8_t*);
  const Bytes frame(d, d + sent[0]->data_len);
  EXPECT_EQ(sent[0]->port, kLocal);
  rte_pktmbuf_free(sent[0]);
  net::PacketInfo info;
  ASSERT_EQ(net::parse_frame(frame.data(), frame.size(), &info), net::ParseResult::kOk);
  const auto pod_mac = mac("02:00:00:00:11:02");
  EXPECT_EQ(Bytes(frame.begin(), frame.begin() + 6), Bytes(pod_mac.begin(), pod_mac.end()));
  EXPECT_EQ(Bytes(frame.begin() + info.l3_offset + 12, frame.begin() + info.l3_offset + 20),
            Bytes({169, 254, 1, 1, 10, 11, 0, 2}));
  ASSERT_EQ(info.l4_proto, net::kProtoIcmp);
  EXPECT_EQ(frame[info.l4_offset], 3);      // destination unreachable
  EXPECT_EQ(frame[info.l4_offset + 1], 1);  // host unreachable

  // b speaks again: up at the next round, and traffic flows.
  a_->ctx.now_ms = 10500;
  uplink_rx(*a_, keepalives_from(*b_, control_b, 10500));
  control_a.liveness_round(10510);
  discard_injected(*a_, InjectKind::kKeepalive);
  EXPECT_FALSE(b_seen_by_a.down.load());
  EXPECT_EQ(b_seen_by_a.liveness, Liveness::kUp);
  local_rx(*a_, {from_pod_to_b()});
  EXPECT_EQ(a_->take(kUplink).size(), 1u);
  EXPECT_EQ(a_->drops(DropReason::kPeerDown), 1u);
}

// A service with a backend on each node: while b is down, every new
// connection goes to the backend here; once b is heard again, some go to
// b's again.
TEST_F(LivenessTest, ADownNodesBackendsTakeNoNewConnections) {
  a_->learn("10.11.0.2", "02:00:00:00:11:02");
  a_->learn("10.11.0.7", "02:00:00:00:11:07");
  lb::FrontendConfig web;
  web.name = "default/web:http";
  web.vip = test::addr("10.96.0.10");
  web.port = 80;
  web.protocol = net::kProtoTcp;
  for (const char* address : {"10.12.0.5", "10.11.0.7"}) {
    lb::BackendConfig backend;
    backend.address = test::addr(address);
    backend.port = 8080;
    web.backends.push_back(backend);
  }
  ASSERT_EQ(a_->apply_services({web}, 1), "");
  // Where 100 new connections from ports first.. go: {here, through the tunnel}.
  auto connect = [&](uint16_t first) {
    std::pair<int, int> where{0, 0};
    for (uint16_t port = first; port < first + 100; ++port) {
      local_rx(*a_, {PacketBuilder()
                         .eth(mac("02:00:00:00:11:02"), mac("02:aa:00:00:00:01"))
                         .ipv4(ip4("10.11.0.2"), ip4("10.96.0.10"))
                         .tcp(port, 80, test::kTcpSyn)
                         .build()});
      where.first += static_cast<int>(a_->take(kLocal).size());
      where.second += static_cast<int>(a_->take(kUplink).size());
    }
    return where;
  };
  std::vector<WorkerContext> workers_a{a_->ctx};
  std::vector<WorkerContext> workers_b{b_->ctx};
  WorkerCounters counters_a{}, counters_b{};
  Control control_a(a_->node, a_->live, workers_a, pool_, &counters_a);
  Control control_b(b_->node, b_->live, workers_b, pool_, &counters_b);
  a_->ctx.now_ms = 20000;
  uplink_rx(*a_, keepalives_from(*b_, control_b, 20000));
  control_a.liveness_round(20001);
  control_a.liveness_round(20400);  // silent for 399 ms
  ASSERT_TRUE(link_to_peer(*a_).down.load());
  discard_injected(*a_, InjectKind::kKeepalive);
  EXPECT_EQ(connect(41000), std::make_pair(100, 0));
  EXPECT_EQ(a_->drops(DropReason::kNoBackend), 0u);

  a_->ctx.now_ms = 20500;
  uplink_rx(*a_, keepalives_from(*b_, control_b, 20500));
  control_a.liveness_round(20501);
  discard_injected(*a_, InjectKind::kKeepalive);
  ASSERT_FALSE(link_to_peer(*a_).down.load());
  const auto [here, there] = connect(42000);
  EXPECT_EQ(here + there, 100);
  EXPECT_GT(there, 20);
}

TEST_F(LivenessTest, PuntsForADownPeerAreBoundedPerMillisecond) {
  a_->tables->peers[0]->link->down.store(true);
  a_->ctx.now_ms = 500;
  std::vector<Bytes> burst(10, from_pod_to_b());
  local_rx(*a_, burst);
  EXPECT_EQ(a_->drops(DropReason::kPeerDown), 10u);
  EXPECT_EQ(a_->punted().size(), 4u);
  a_->ctx.now_ms = 501;
  local_rx(*a_, {from_pod_to_b()});
  EXPECT_EQ(a_->punted().size(), 1u);
  EXPECT_EQ(a_->drops(DropReason::kPeerDown), 11u);
  EXPECT_EQ(a_->counters.encrypted_packets, 0u);
}

TEST_F(LivenessTest, IcmpErrorsAreRateLimited) {
  a_->learn("10.11.0.2", "02:00:00:00:11:02");
  std::vector<WorkerContext> workers{a_->ctx};
  WorkerCounters counters{};
  Control control(a_->node, a_->live, workers, pool_, &counters);
  const Bytes ip = PacketBuilder().ipv4(ip4("10.11.0.2"), ip4("10.12.0.2")).udp(40000, 5000).build();
  constexpr unsigned kSent = 3 * Control::kIcmpErrorBurst;
  for (unsigned i = 0; i < kSent; ++i) {
    rte_mbuf* m = mbuf(ip);
    m->hash.usr = static_cast<uint32_t>(PuntKind::kPeerDown);
    m->port = kLocal;
    control.handle(m);
    for (rte_mbuf* out : a_->take_injected()) rte_pktmbuf_free(out);
  }
  // A burst's worth go out at once, and one more a millisecond (this loop
  // takes a few at most).
  EXPECT_GE(counters.icmp_errors_sent, Control::kIcmpErrorBurst);
  EXPECT_LT(counters.icmp_errors_sent, kSent);
  EXPECT_EQ(counters.icmp_errors_sent + counters.icmp_errors_rate_limited, kSent);
}

}  // namespace
}  // namespace meshwire::dp
