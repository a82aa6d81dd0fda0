// The pcapng a capture writes: a section header, an interface block per
// DPDK port, an enhanced packet block per copy with the packet's real
// length, inner packets behind a synthetic Ethernet header, statistics at
// the end; pieces handed out end on block boundaries; no mbuf leaks.
#include "capture/pcapng_writer.h"

#include <gtest/gtest.h>
#include <rte_dev.h>
#include <rte_ethdev.h>

#include <cstdlib>
#include <cstring>
#include <ctime>
#include <string>
#include <vector>

#include "capture/session.h"
#include "dataplane/net/packet_builder.h"

namespace meshwire::dp::capture {
namespace {

using test::Bytes;
using test::ip4;
using test::mac;
using test::PacketBuilder;

struct Block {
  uint32_t type;
  std::string body;  // after type and length, before the trailing length
};

// Splits a pcapng byte string into blocks; fails on a torn one.
std::vector<Block> blocks_of(const std::string& bytes) {
  std::vector<Block> out;
  size_t at = 0;
  while (at < bytes.size()) {
    uint32_t type, len, trail;
    EXPECT_GE(bytes.size() - at, 12u);
    if (bytes.size() - at < 12) break;
    std::memcpy(&type, bytes.data() + at, 4);
    std::memcpy(&len, bytes.data() + at + 4, 4);
    EXPECT_EQ(len % 4, 0u);
    EXPECT_LE(at + len, bytes.size());
    if (len < 12 || at + len > bytes.size()) break;
    std::memcpy(&trail, bytes.data() + at + len - 4, 4);
    EXPECT_EQ(trail, len);
    out.push_back({type, bytes.substr(at + 8, len - 12)});
    at += len;
  }
  return out;
}
uint32_t u32(const std::string& s, size_t off) {
  uint32_t v;
  std::memcpy(&v, s.data() + off, 4);
  return v;
}

class PcapngWriterTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    ASSERT_EQ(rte_dev_probe("net_null_capture0"), 0);  // a DPDK port for the interface blocks
    ASSERT_EQ(rte_eth_dev_get_port_by_name("net_null_capture0", &port_), 0);
    pool_ = rte_pktmbuf_pool_create("pw_pool", 64, 0, 0, RTE_MBUF_DEFAULT_BUF_SIZE, 0);
  }
  static void TearDownTestSuite() {
    rte_mempool_free(pool_);
    rte_eal_hotplug_remove("vdev", "net_null_capture0");
  }
  static rte_mbuf* mbuf(const Bytes& b) {
    rte_mbuf* m = rte_pktmbuf_alloc(pool_);
    std::memcpy(rte_pktmbuf_append(m, static_cast<uint16_t>(b.size())), b.data(), b.size());
    return m;
  }
  // Copies of frames as a worker's tap makes them, drained.
  static std::vector<rte_mbuf*> copies(Session& s, const std::vector<Bytes>& frames) {
    WorkerCounters c{};
    std::vector<rte_mbuf*> ms;
    for (const Bytes& f : frames) ms.push_back(mbuf(f));
    tap_burst(s.taps().workers[0], c, 0, ms.data(), static_cast<uint16_t>(ms.size()));
    for (rte_mbuf* m : ms) rte_pktmbuf_free(m);
    std::vector<rte_mbuf*> out(frames.size());
    out.resize(s.drain(out.data(), static_cast<unsigned>(out.size())));
    return out;
  }
  static std::unique_ptr<Session> session(Point point, uint32_t snaplen) {
    Spec spec;
    spec.point = point;
    spec.port_mask = 1;
    spec.snaplen = snaplen;
    spec.ring_size = 16;
    return std::move(Session::create(spec, 1, 0).value());
  }
  inline static uint16_t port_ = 0;
  inline static rte_mempool* pool_ = nullptr;
};

TEST_F(PcapngWriterTest, FramesOnAPortBecomeEnhancedPacketBlocks) {
  auto s = session(Point::kRx, 64);
  auto w = PcapngWriter::open(Point::kRx, {port_}, s->pool(), "unit test");
  ASSERT_TRUE(w.ok()) << w.error();
  auto head = (*w)->take();
  ASSERT_TRUE(head.ok());
  auto hb = blocks_of(*head);
  ASSERT_GE(hb.size(), 2u);
  EXPECT_EQ(hb[0].type, 0x0A0D0D0Au);  // section header
  EXPECT_EQ(u32(hb[0].body, 0), 0x1A2B3C4Du);  // byte-order magic
  EXPECT_EQ(hb[1].type, 1u);                  // interface description
  EXPECT_EQ(u32(hb[1].body, 0) & 0xFFFF, 1u);  // LINKTYPE_ETHERNET

  const Bytes small = PacketBuilder().eth(mac("02:00:00:00:00:01"), mac("02:00:00:00:00:02"))
                          .ipv4(ip4("10.0.0.1"), ip4("10.0.0.2")).udp(1, 2).payload("x").build();
  const Bytes big = PacketBuilder().eth(mac("02:00:00:00:00:01"), mac("02:00:00:00:00:02"))
                        .ipv4(ip4("10.0.0.1"), ip4("10.0.0.2")).udp(1, 2).payload(Bytes(500, 7)).build();
  auto cs = copies(*s, {small, big});
  ASSERT_EQ(cs.size(), 2u);
  EXPECT_EQ((*w)->write(cs.data(), 2), 2u);
  (*w)->write_stats(0, UINT64_MAX, UINT64_MAX, "done");
  auto body = (*w)->take();
  ASSERT_TRUE(body.ok());
  auto bb = blocks_of(*body);
  ASSERT_EQ(bb.size(), 3u);
  ASSERT_EQ(bb[0].type, 6u);
  // interface, ts hi, ts lo, captured, original, then the data.
  EXPECT_EQ(u32(bb[0].body, 12), small.size());
  EXPECT_EQ(u32(bb[0].body, 16), small.size());
  EXPECT_EQ(bb[0].body.substr(20, small.size()), std::string(small.begin(), small.end()));
  // Wall-clock nanoseconds, taken by the worker.
  timespec now{};
  clock_gettime(CLOCK_REALTIME, &now);
  const uint64_t ns = uint64_t{u32(bb[0].body, 4)} << 32 | u32(bb[0].body, 8);
  const int64_t skew = static_cast<int64_t>(ns) - (now.tv_sec * 1000000000ll + now.tv_nsec);
  EXPECT_LT(std::llabs(skew), 5000000000ll) << ns;
  EXPECT_EQ(u32(bb[1].body, 12), 64u);          // cut to snaplen
  EXPECT_EQ(u32(bb[1].body, 16), big.size());   // the real length
  EXPECT_EQ(bb[2].type, 5u);                    // interface statistics
  EXPECT_EQ((*w)->written(), 2u);
  EXPECT_EQ((*w)->lost(), 0u);
  // Taken pieces are not handed out twice.
  EXPECT_TRUE((*w)->take()->empty());
  w->reset();
  EXPECT_EQ(rte_mempool_in_use_count(s->pool()), 0u);  // copies and blocks all freed, once
}

TEST_F(PcapngWriterTest, InnerPacketsGetASyntheticEthernetHeader) {
  auto s = session(Point::kPostDecrypt, 2048);
  auto w = PcapngWriter::open(Point::kPostDecrypt, {port_}, s->pool(), "");
  ASSERT_TRUE(w.ok()) << w.error();
  (void)(*w)->take();
  const Bytes v4 = PacketBuilder().ipv4(ip4("10.0.0.1"), ip4("10.0.0.2")).icmp(8, 0, 1, 1).build();
  const Bytes v6 = PacketBuilder().ipv6(test::ip6("fd00::1"), test::ip6("fd00::2")).udp(1, 2).build();
  auto cs = copies(*s, {v4, v6});
  ASSERT_EQ((*w)->write(cs.data(), static_cast<unsigned>(cs.size())), 2u);
  auto bb = blocks_of(*(*w)->take());
  ASSERT_EQ(bb.size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    const Bytes& ip = i == 0 ? v4 : v6;
    EXPECT_EQ(u32(bb[i].body, 12), ip.size() + 14);
    EXPECT_EQ(u32(bb[i].body, 16), ip.size() + 14);
    const std::string eth = bb[i].body.substr(20, 14);
    EXPECT_EQ(eth.substr(0, 12), std::string(12, '\0'));
    EXPECT_EQ(eth.substr(12), i == 0 ? std::string("\x08\x00", 2) : std::string("\x86\xdd", 2));
    EXPECT_EQ(bb[i].body.substr(34, ip.size()), std::string(ip.begin(), ip.end()));
  }
  w->reset();
  EXPECT_EQ(rte_mempool_in_use_count(s->pool()), 0u);
}

}  // namespace
}  // namespace meshwire::dp::capture
