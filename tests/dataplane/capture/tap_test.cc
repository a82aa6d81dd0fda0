// The worker side of capture: bounded copies into the session's ring, drops
// counted when the ring or pool is full, the filter and port mask applied,
// snaplen kept, nothing leaked; and the worker's stages calling it at the
// pre-encrypt and post-decrypt points.
#include "capture/tap.h"

#include <gtest/gtest.h>
#include <rte_mbuf.h>

#include <cstring>
#include <memory>
#include <vector>

#include "capture/session.h"
#include "dataplane/worker/worker_fixture.h"

namespace meshwire::dp::capture {
namespace {

class TapTest : public WorkerTest {
 protected:
  static std::unique_ptr<Session> session(Point point, uint32_t ring_size, const char* filter = "",
                                          uint32_t snaplen = Spec::kMaxSnaplen, uint32_t port_mask = 0xFF) {
    Spec spec;
    spec.point = point;
    spec.port_mask = port_mask;
    spec.filter = filter;
    spec.snaplen = snaplen;
    spec.ring_size = ring_size;
    auto s = Session::create(spec, 1, 0);
    EXPECT_TRUE(s.ok()) << s.error();
    return s.ok() ? std::move(s.value()) : nullptr;
  }
  static std::vector<rte_mbuf*> burst(size_t n, uint16_t dport = 5000) {
    std::vector<rte_mbuf*> ms;
    for (size_t i = 0; i < n; ++i) {
      ms.push_back(mbuf(PacketBuilder()
                            .eth(mac("02:00:00:00:11:02"), mac("02:aa:00:00:00:01"))
                            .ipv4(ip4("10.11.0.2"), ip4("10.12.0.2"))
                            .udp(40000, dport)
                            .payload(Bytes(100, static_cast<uint8_t>(i)))
                            .build()));
    }
    return ms;
  }
  static void free_all(std::vector<rte_mbuf*>& ms) {
    for (rte_mbuf* m : ms) rte_pktmbuf_free(m);
    ms.clear();
  }
  static std::vector<rte_mbuf*> drain_all(Session& s) {
    std::vector<rte_mbuf*> out(4096);
    out.resize(s.drain(out.data(), static_cast<unsigned>(out.size())));
    return out;
  }
};

TEST_F(TapTest, AFullRingDropsAndCountsTheRestAndNeverWaits) {
  auto s = session(Point::kRx, 4);
  WorkerCounters c{};
  auto ms = burst(10);
  tap_burst(s->taps().workers[0], c, 0, ms.data(), static_cast<uint16_t>(ms.size()));
  EXPECT_EQ(c.capture_copies, 4u);
  EXPECT_EQ(c.capture_dropped, 6u);
  // The next burst finds the ring still full: all dropped.
  tap_burst(s->taps().workers[0], c, 0, ms.data(), 3);
  EXPECT_EQ(c.capture_copies, 4u);
  EXPECT_EQ(c.capture_dropped, 9u);
  auto copies = drain_all(*s);
  ASSERT_EQ(copies.size(), 4u);
  for (size_t i = 0; i < copies.size(); ++i) {
    // Copies, not the packets: same bytes, other mbufs, from the capture's pool.
    EXPECT_NE(copies[i], ms[i]);
    EXPECT_EQ(copies[i]->pool, s->pool());
    ASSERT_EQ(copies[i]->data_len, ms[i]->data_len);
    EXPECT_EQ(std::memcmp(rte_pktmbuf_mtod(copies[i], void*), rte_pktmbuf_mtod(ms[i], void*), ms[i]->data_len), 0);
    EXPECT_EQ(meta_of(copies[i])->orig_len, ms[i]->pkt_len);
    EXPECT_EQ(meta_of(copies[i])->port_index, 0);
    rte_pktmbuf_free(copies[i]);
  }
  // With room again, copies flow again.
  tap_burst(s->taps().workers[0], c, 0, ms.data(), 2);
  EXPECT_EQ(c.capture_copies, 6u);
  free_all(ms);
  // Every copy goes back to the pool (the session frees what its rings hold).
  const unsigned size = s->pool()->size;
  EXPECT_EQ(rte_mempool_avail_count(s->pool()) + rte_mempool_in_use_count(s->pool()), size);
  for (rte_mbuf* m : drain_all(*s)) rte_pktmbuf_free(m);
  EXPECT_EQ(rte_mempool_in_use_count(s->pool()), 0u);
}

TEST_F(TapTest, FilterPortAndSnaplenApply) {
  auto s = session(Point::kRx, 64, "udp port 5001", 60, 1u << 1);
  WorkerCounters c{};
  auto five = burst(3, 5000);
  auto one = burst(3, 5001);
  tap_burst(s->taps().workers[0], c, 0, one.data(), 3);  // port 0 is not captured
  EXPECT_EQ(c.capture_copies, 0u);
  tap_burst(s->taps().workers[0], c, 1, five.data(), 3);  // not matching
  tap_burst(s->taps().workers[0], c, 1, one.data(), 3);
  EXPECT_EQ(c.capture_copies, 3u);
  EXPECT_EQ(c.capture_dropped, 0u);
  auto copies = drain_all(*s);
  ASSERT_EQ(copies.size(), 3u);
  for (rte_mbuf* m : copies) {
    EXPECT_EQ(m->pkt_len, 60u);                           // cut to snaplen
    EXPECT_EQ(meta_of(m)->orig_len, one[0]->pkt_len);     // the real length kept
    EXPECT_EQ(meta_of(m)->port_index, 1);
    rte_pktmbuf_free(m);
  }
  free_all(five);
  free_all(one);
}

TEST_F(TapTest, AnIdleWorkerHasNoTap) {
  std::atomic<const Taps*> slot{nullptr};
  EXPECT_EQ(tap_of(slot.load(), 0), nullptr);
  EXPECT_EQ(tap_of(kNoCapture.load(), 0), nullptr);
  EXPECT_EQ(a_->ctx.capture, nullptr);  // a worker context starts without
}

TEST_F(TapTest, OnlyOneCaptureHoldsTheSlot) {
  CaptureSlot slot;
  auto s1 = session(Point::kRx, 4);
  auto s2 = session(Point::kTx, 4);
  EXPECT_TRUE(publish(slot, *s1));
  EXPECT_EQ(slot.live.load(), &s1->taps());
  EXPECT_FALSE(publish(slot, *s2));
  EXPECT_EQ(slot.live.load(), &s1->taps());
  // Withdrawn, the slot stays held until released (the grace period).
  rte_rcu_qsbr* q = a_->quiescence->qsbr();
  (void)withdraw(slot, q);
  EXPECT_EQ(slot.live.load(), nullptr);
  EXPECT_FALSE(publish(slot, *s2));
  release(slot);
  EXPECT_TRUE(publish(slot, *s2));
}

TEST_F(TapTest, PreEncryptSeesTheInnerPacketAndPostDecryptTheSameOnTheOtherNode) {
  auto pre = session(Point::kPreEncrypt, 16);
  auto post = session(Point::kPostDecrypt, 16);
  auto rx = session(Point::kRx, 16);  // another point: the stages do not call it
  a_->ctx.capture = &pre->taps().workers[0];
  local_rx(*a_, {pod_a_to_b()});
  auto wire = a_->take(kUplink);
  ASSERT_EQ(wire.size(), 1u);
  const Bytes frame = pod_a_to_b(63);  // TTL already decremented when sealed
  const Bytes inner(frame.begin() + 14, frame.end());
  auto copies = drain_all(*pre);
  ASSERT_EQ(copies.size(), 1u);
  EXPECT_EQ(Bytes(rte_pktmbuf_mtod(copies[0], uint8_t*), rte_pktmbuf_mtod(copies[0], uint8_t*) + copies[0]->data_len),
            inner);
  EXPECT_EQ(meta_of(copies[0])->port_index, kLocal);
  rte_pktmbuf_free(copies[0]);
  EXPECT_EQ(a_->counters.capture_copies, 1u);

  b_->learn("10.12.0.2", "02:00:00:00:12:02");
  b_->ctx.capture = &rx->taps().workers[0];
  uplink_rx(*b_, wire);
  EXPECT_TRUE(drain_all(*rx).empty());  // rx is worker_main's, before the stages
  ASSERT_EQ(b_->take(kLocal).size(), 1u);
  b_->ctx.capture = &post->taps().workers[0];
  // The same packet again would be a replay: a fresh one.
  local_rx(*a_, {pod_a_to_b()});
  uplink_rx(*b_, a_->take(kUplink));
  ASSERT_EQ(b_->take(kLocal).size(), 1u);
  copies = drain_all(*post);
  ASSERT_EQ(copies.size(), 1u);
  EXPECT_EQ(Bytes(rte_pktmbuf_mtod(copies[0], uint8_t*), rte_pktmbuf_mtod(copies[0], uint8_t*) + copies[0]->data_len),
            inner);
  EXPECT_EQ(meta_of(copies[0])->port_index, kUplink);
  rte_pktmbuf_free(copies[0]);
  a_->ctx.capture = nullptr;
  b_->ctx.capture = nullptr;
}

}  // namespace
}  // namespace meshwire::dp::capture
