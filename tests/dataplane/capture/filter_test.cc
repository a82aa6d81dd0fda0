// Capture filters: libpcap's compiler, DPDK's converter and both ways DPDK
// runs the result (JIT and interpreter) agree with what the expression says,
// on crafted frames and inner packets.
#include "capture/filter.h"

#include <gtest/gtest.h>
#include <rte_mbuf.h>

#include <cstring>
#include <string>
#include <vector>

#include "dataplane/net/packet_builder.h"

namespace meshwire::dp::capture {
namespace {

using test::Bytes;
using test::ip4;
using test::ip6;
using test::mac;
using test::PacketBuilder;

rte_mempool* pool() {
  static rte_mempool* p = rte_pktmbuf_pool_create("cf_pool", 256, 0, 0, RTE_MBUF_DEFAULT_BUF_SIZE, 0);
  return p;
}

rte_mbuf* mbuf_of(const Bytes& b) {
  rte_mbuf* m = rte_pktmbuf_alloc(pool());
  std::memcpy(rte_pktmbuf_append(m, static_cast<uint16_t>(b.size())), b.data(), b.size());
  return m;
}

PacketBuilder eth() { return std::move(PacketBuilder().eth(mac("02:00:00:00:00:01"), mac("02:00:00:00:00:02"))); }

Bytes udp4(uint16_t dport, bool with_eth = true) {
  PacketBuilder b = with_eth ? eth() : PacketBuilder();
  return b.ipv4(ip4("10.11.0.11"), ip4("10.12.0.11")).udp(40000, dport).payload("capture").build();
}
Bytes udp6(uint16_t dport, bool with_eth = true) {
  PacketBuilder b = with_eth ? eth() : PacketBuilder();
  return b.ipv6(ip6("fd00:11::11"), ip6("fd00:12::11")).udp(40000, dport).payload("capture").build();
}
Bytes icmp4(bool with_eth = true) {
  PacketBuilder b = with_eth ? eth() : PacketBuilder();
  return b.ipv4(ip4("10.11.0.11"), ip4("10.12.0.11")).icmp(8, 0, 1, 1).payload("ping").build();
}
Bytes arp() {
  return eth().arp(1, mac("02:00:00:00:00:01"), ip4("10.11.0.11"), mac("00:00:00:00:00:00"), ip4("10.11.0.1")).build();
}

struct Case {
  const char* description;
  const char* expression;
  LinkType link;
  std::vector<Bytes> packets;
  std::vector<uint64_t> matches;  // 1 or 0 per packet
};

std::vector<Case> cases() {
  const auto E = LinkType::kEthernet;
  const auto R = LinkType::kRawIp;
  return {
      {"empty matches all", "", E, {udp4(5000), arp()}, {1, 1}},
      {"udp port on frames", "udp port 5000", E, {udp4(5000), udp4(5001), icmp4(), arp(), udp6(5000)}, {1, 0, 0, 0, 1}},
      {"icmp on frames", "icmp", E, {udp4(5000), icmp4(), arp()}, {0, 1, 0}},
      {"arp", "arp", E, {udp4(5000), arp()}, {0, 1}},
      {"host and port", "dst host 10.12.0.11 and udp dst port 5001", E, {udp4(5000), udp4(5001)}, {0, 1}},
      {"ip6", "ip6", E, {udp4(5000), udp6(5000)}, {0, 1}},
      {"udp port on inner packets", "udp port 5000", R,
       {udp4(5000, false), udp4(5001, false), icmp4(false), udp6(5000, false)}, {1, 0, 0, 1}},
      {"icmp on inner packets", "icmp", R, {udp4(5000, false), icmp4(false)}, {0, 1}},
      {"negation", "not udp", R, {udp4(5000, false), icmp4(false)}, {0, 1}},
  };
}

class FilterTest : public ::testing::TestWithParam<bool> {};  // true: interpreter even with a JIT

TEST_P(FilterTest, MatchesWhatTheExpressionSays) {
  for (const Case& c : cases()) {
    SCOPED_TRACE(c.description);
    auto f = Filter::compile(c.expression, c.link, 2048);
    ASSERT_TRUE(f.ok()) << f.error();
    if (GetParam()) (*f)->disable_jit();
    std::vector<rte_mbuf*> ms;
    for (const Bytes& b : c.packets) ms.push_back(mbuf_of(b));
    std::vector<uint64_t> got(ms.size(), 99);
    (*f)->match_burst(ms.data(), static_cast<uint16_t>(ms.size()), got.data());
    for (size_t i = 0; i < got.size(); ++i) EXPECT_EQ(got[i] != 0, c.matches[i] != 0) << "packet " << i;
    for (rte_mbuf* m : ms) rte_pktmbuf_free(m);
  }
}

INSTANTIATE_TEST_SUITE_P(JitAndInterpreter, FilterTest, ::testing::Bool(),
                         [](const auto& info) { return info.param ? "Interpreter" : "Jit"; });

TEST(FilterErrors, NameTheExpressionAndCarryLibpcapsMessage) {
  auto f = Filter::compile("udp prot 5000", LinkType::kEthernet, 2048);
  ASSERT_FALSE(f.ok());
  EXPECT_EQ(f.error().rfind("filter 'udp prot 5000': ", 0), 0u) << f.error();
  EXPECT_NE(f.error().find("syntax error"), std::string::npos) << f.error();
}

TEST(FilterErrors, EthernetTermsDoNotApplyToInnerPackets) {
  auto f = Filter::compile("ether host 02:00:00:00:00:01", LinkType::kRawIp, 2048);
  ASSERT_FALSE(f.ok());
  EXPECT_EQ(f.error().rfind("filter 'ether host 02:00:00:00:00:01': ", 0), 0u) << f.error();
  EXPECT_TRUE(Filter::compile("ether host 02:00:00:00:00:01", LinkType::kEthernet, 2048).ok());
}

TEST(FilterJit, IsUsedWhereDpdkHasOne) {
  auto f = Filter::compile("udp", LinkType::kEthernet, 2048);
  ASSERT_TRUE(f.ok());
#if defined(__x86_64__)
  EXPECT_TRUE((*f)->jitted());
#endif
}

}  // namespace
}  // namespace meshwire::dp::capture
