// Packet trace on real mbufs: marking up to the budget (and only on the
// armed port), the worker's steps for a marked packet through node A's
// encrypt stage and node B's decrypt stage, drops, and the one-line header
// summaries the CLI shows.
#include <gtest/gtest.h>
#include <rte_mbuf.h>

#include <cstdio>
#include <memory>
#include <vector>

#include "telemetry/trace.h"
#include "dataplane/worker/worker_fixture.h"

namespace meshwire::dp {
namespace {

std::vector<TraceEvent> drain(WorkerTrace& t) {
  std::vector<TraceEvent> out;
  t.queue.consume_all([&](const TraceEvent& e) { out.push_back(e); });
  return out;
}

std::vector<TraceStep> steps_of(const std::vector<TraceEvent>& events, uint32_t packet) {
  std::vector<TraceStep> out;
  for (const TraceEvent& e : events) {
    if (e.packet == packet) out.push_back(e.step);
  }
  return out;
}

class TraceTest : public WorkerTest {
 protected:
  void SetUp() override {
    WorkerTest::SetUp();
    ASSERT_TRUE(register_trace_marks());
    a_->ctx.trace = ta_.get();
    b_->ctx.trace = tb_.get();
    a_->learn("10.11.0.2", "02:00:00:00:11:02");
    b_->learn("10.12.0.2", "02:00:00:00:12:02");
  }
  // local_rx with the worker's marking first, as its main loop does.
  void traced_local_rx(TestNode& n, const std::vector<Bytes>& frames) {
    std::vector<rte_mbuf*> ms;
    for (const Bytes& f : frames) ms.push_back(mbuf(f));
    trace_mark_burst(*n.ctx.trace, kLocal, ms.data(), static_cast<uint16_t>(ms.size()));
    process_local_burst(n.ctx, n.tx, kLocal, ms.data(), static_cast<uint16_t>(ms.size()));
  }
  std::unique_ptr<WorkerTrace> ta_ = std::make_unique<WorkerTrace>();
  std::unique_ptr<WorkerTrace> tb_ = std::make_unique<WorkerTrace>();
};

TEST_F(TraceTest, OnlyTheBudgetIsMarkedAndOnlyOnTheArmedPort) {
  std::vector<rte_mbuf*> ms{mbuf(pod_a_to_b()), mbuf(pod_a_to_b()), mbuf(pod_a_to_b())};
  trace_mark_burst(*ta_, kLocal, ms.data(), 3);  // not armed
  EXPECT_FALSE(traced(ms[0]));
  trace_arm(*ta_, 2);
  ta_->port.store(kUplink);
  trace_mark_burst(*ta_, kLocal, ms.data(), 3);  // another port
  EXPECT_FALSE(traced(ms[0]));
  ta_->port.store(-1);
  trace_mark_burst(*ta_, kLocal, ms.data(), 3);
  EXPECT_TRUE(traced(ms[0]));
  EXPECT_TRUE(traced(ms[1]));
  EXPECT_FALSE(traced(ms[2]));
  EXPECT_EQ(ta_->budget.load(), 0u);
  const std::vector<TraceEvent> events = drain(*ta_);
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].step, TraceStep::kRx);
  EXPECT_EQ(events[0].packet, 1u);
  EXPECT_EQ(events[1].packet, 2u);
  EXPECT_EQ(events[0].len, ms[0]->pkt_len);
  // An ending step takes the mark off.
  trace_step(*ta_, ms[0], TraceStep::kTx, kLocal);
  EXPECT_FALSE(traced(ms[0]));
  for (rte_mbuf* m : ms) rte_pktmbuf_free(m);
}

TEST_F(TraceTest, APacketIsFollowedThroughEncryptionAndDecryption) {
  trace_arm(*ta_, 1);
  traced_local_rx(*a_, {pod_a_to_b(), pod_a_to_b()});
  const std::vector<Bytes> wire = a_->take(kUplink);
  ASSERT_EQ(wire.size(), 2u);
  const std::vector<TraceEvent> sent = drain(*ta_);
  EXPECT_EQ(steps_of(sent, 1), (std::vector<TraceStep>{TraceStep::kRx, TraceStep::kRoute, TraceStep::kEncrypt,
                                                         TraceStep::kTx}));
  EXPECT_EQ(sent.size(), 4u);  // the second packet was not marked
  EXPECT_EQ(sent[1].a, 1u);    // to a peer: node B, index 0
  EXPECT_EQ(sent[1].b, 0u);
  EXPECT_EQ(sent[2].a, a_->tables->outbound[0][0]->spi);
  char spi[64];
  std::snprintf(spi, sizeof(spi), "UDP %u > 4500 ESP spi 0x%08x seq 1", a_->tables->outbound[0][0]->udp_sport,
                a_->tables->outbound[0][0]->spi);
  EXPECT_NE(summarize_head(sent[3].head, sent[3].head_len, false).find(spi), std::string::npos)
      << summarize_head(sent[3].head, sent[3].head_len, false);

  // Node B: the ESP frame marked on its uplink, decrypted, delivered.
  trace_arm(*tb_, 1);
  std::vector<rte_mbuf*> ms{mbuf(wire[0])};
  trace_mark_burst(*tb_, kUplink, ms.data(), 1);
  process_uplink_burst(b_->ctx, b_->tx, ms.data(), 1);
  ASSERT_EQ(b_->take(kLocal).size(), 1u);
  const std::vector<TraceEvent> got = drain(*tb_);
  EXPECT_EQ(steps_of(got, 1), (std::vector<TraceStep>{TraceStep::kRx, TraceStep::kDecrypt, TraceStep::kTx}));
  ASSERT_EQ(got.size(), 3u);
  EXPECT_TRUE(got[1].head_is_ip);
  EXPECT_EQ(got[1].b, 0u);  // from peer A
  EXPECT_NE(summarize_head(got[1].head, got[1].head_len, true).find("IPv4 10.11.0.2 > 10.12.0.2"), std::string::npos);
}

TEST_F(TraceTest, ADropIsTheLastStepWithItsReason) {
  trace_arm(*ta_, 1);
  const Bytes nowhere = PacketBuilder()
                            .eth(mac("02:00:00:00:11:02"), mac("02:aa:00:00:00:01"))
                            .ipv4(ip4("10.11.0.2"), ip4("10.99.0.1"))
                            .udp(40000, 5000)
                            .payload(Bytes(8, 0))
                            .build();
  traced_local_rx(*a_, {nowhere});
  const std::vector<TraceEvent> events = drain(*ta_);
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[1].step, TraceStep::kDrop);
  EXPECT_EQ(events[1].a, static_cast<uint32_t>(DropReason::kNoRoute));
}

TEST(TraceSummary, HeadersInOneLine) {
  const Bytes udp = PacketBuilder()
                        .eth(mac("02:00:00:00:11:02"), mac("02:aa:00:00:00:01"))
                        .ipv4(ip4("10.11.0.2"), ip4("10.12.0.2"))
                        .udp(40000, 5000)
                        .payload(Bytes(8, 0))
                        .build();
  EXPECT_EQ(summarize_head(udp.data(), udp.size(), false),
            "02:00:00:00:11:02 > 02:aa:00:00:00:01 IPv4 10.11.0.2 > 10.12.0.2 ttl 64 UDP 40000 > 5000");
  // From the IP header, and cut short.
  EXPECT_EQ(summarize_head(udp.data() + 14, udp.size() - 14, true), "IPv4 10.11.0.2 > 10.12.0.2 ttl 64 UDP 40000 > 5000");
  EXPECT_EQ(summarize_head(udp.data(), 20, false), "02:00:00:00:11:02 > 02:aa:00:00:00:01 IPv4 (truncated)");
  const Bytes syn = PacketBuilder()
                        .eth(mac("02:00:00:00:11:02"), mac("02:aa:00:00:00:01"))
                        .ipv6(test::ip6("fd00:11::2"), test::ip6("fd00:12::2"))
                        .tcp(40000, 80, 0x02)
                        .build();
  EXPECT_EQ(summarize_head(syn.data(), syn.size(), false),
            "02:00:00:00:11:02 > 02:aa:00:00:00:01 IPv6 fd00:11::2 > fd00:12::2 hlim 64 TCP 40000 > 80 [S]");
}

}  // namespace
}  // namespace meshwire::dp
