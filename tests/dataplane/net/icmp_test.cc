#include "net/icmp.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <string>

#include "packet_builder.h"

namespace meshwire::dp::net {
namespace {

using test::Bytes;
using test::PacketBuilder;
using test::ip4;
using test::ip6;
using test::mac;

const test::Mac kPodMac = mac("0a:58:0a:f4:00:05");
const test::Mac kOurMac = mac("02:42:ac:11:00:02");
const test::Ip4 kPod4 = ip4("10.244.0.5");
const test::Ip4 kNode4 = ip4("10.244.0.1");
const test::Ip6 kPod6 = ip6("fd00:10:244::5");
const test::Ip6 kNode6 = ip6("fd00:10:244::1");

// Verifies every checksum of a built frame with the naive code of the builder.
void expect_valid_frame(const uint8_t* frame, size_t len) {
  PacketInfo info;
  ASSERT_EQ(parse_frame(frame, len, &info), ParseResult::kOk);
  const uint8_t* ip = frame + info.l3_offset;
  const uint8_t* l4 = frame + info.l4_offset;
  if (info.ether_type == kEtherTypeIpv4) {
    EXPECT_EQ(test::naive_fold(test::naive_sum(ip, info.l4_offset - info.l3_offset)), 0);
    EXPECT_EQ(test::naive_fold(test::naive_sum(l4, info.l4_len)), 0);
    EXPECT_EQ(ip[8], kIcmpTtl);
  } else {
    const uint32_t pseudo = test::naive_sum(ip + 8, 32) + kProtoIcmpv6 + info.l4_len;
    EXPECT_EQ(test::naive_fold(test::naive_sum(l4, info.l4_len, pseudo)), 0);
    EXPECT_EQ(ip[7], kIcmpHopLimit);
  }
  EXPECT_GE(len, kEtherMinFrame);
}

// --- echo

PacketBuilder ping4() {
  return PacketBuilder().eth(kPodMac, kOurMac).ipv4(kPod4, kNode4).tos(0x10).ip_id(0x4242).ttl(61);
}
PacketBuilder pong4() {
  return PacketBuilder().eth(kOurMac, kPodMac).ipv4(kNode4, kPod4).tos(0x10).ip_id(0x4242).ttl(kIcmpTtl);
}
PacketBuilder ping6() {
  return PacketBuilder().eth(kPodMac, kOurMac).ipv6(kPod6, kNode6).tos(0xB8).flow_label(0xABCDE).ttl(63);
}
PacketBuilder pong6() {
  return PacketBuilder().eth(kOurMac, kPodMac).ipv6(kNode6, kPod6).tos(0xB8).flow_label(0xABCDE)
      .ttl(kIcmpHopLimit);
}

struct EchoCase {
  std::string description;
  Bytes request;
  Bytes reply;  // empty: no reply
};

std::vector<EchoCase> echo_cases() {
  return {
      {"IPv4, 56 bytes of data", ping4().icmp(8, 0, 0x1234, 7).payload_size(56).build(),
       pong4().icmp(0, 0, 0x1234, 7).payload_size(56).build()},
      {"IPv4, no data (reply padded)", ping4().icmp(8, 0, 1, 1).build(), pong4().icmp(0, 0, 1, 1).pad_to(60).build()},
      {"IPv4, odd data length", ping4().icmp(8, 0, 0xFFFF, 0xFFFF).payload("abc").build(),
       pong4().icmp(0, 0, 0xFFFF, 0xFFFF).payload("abc").pad_to(60).build()},
      {"IPv4 with options (dropped)", ping4().ipv4_options({1, 1, 1, 1, 1, 1, 1, 0}).icmp(8, 0, 9, 9).payload("x")
                                          .build(),
       pong4().icmp(0, 0, 9, 9).payload("x").pad_to(60).build()},
      {"IPv4 with Ethernet padding", ping4().icmp(8, 0, 2, 3).pad_to(60).build(),
       pong4().icmp(0, 0, 2, 3).pad_to(60).build()},
      {"IPv4 behind an 802.1Q tag", ping4().vlan(100).icmp(8, 0, 5, 6).payload_size(20).build(),
       pong4().vlan(100).icmp(0, 0, 5, 6).payload_size(20).build()},
      {"IPv6", ping6().icmp6(128, 0, 0x00420001).payload_size(1000).build(),
       pong6().icmp6(129, 0, 0x00420001).payload_size(1000).build()},
      {"IPv6 after a destination options header (dropped)",
       ping6().ext_header(kProtoDestOpts, Bytes(6, 0)).icmp6(128, 0, 0x00010002).payload("hi").build(),
       pong6().icmp6(129, 0, 0x00010002).payload("hi").build()},

      {"IPv4 echo reply", ping4().icmp(0, 0, 1, 1).build(), {}},
      {"IPv4 code 1", ping4().icmp(8, 1, 1, 1).build(), {}},
      {"IPv4 bad ICMP checksum", ping4().icmp(8, 0, 1, 1).l4_checksum(0xBAD).build(), {}},
      {"IPv4 fragment", ping4().fragment(0, true).icmp(8, 0, 1, 1).payload_size(64).build(), {}},
      {"IPv4 from 0.0.0.0", PacketBuilder().eth(kPodMac, kOurMac).ipv4(ip4("0.0.0.0"), kNode4).icmp(8, 0).build(),
       {}},
      {"IPv4 from broadcast", PacketBuilder().eth(kPodMac, kOurMac).ipv4(ip4("255.255.255.255"), kNode4)
                                  .icmp(8, 0).build(),
       {}},
      {"IPv4 to multicast", PacketBuilder().eth(kPodMac, kOurMac).ipv4(kPod4, ip4("224.0.0.1")).icmp(8, 0).build(),
       {}},
      {"IPv4 to broadcast", PacketBuilder().eth(kPodMac, kOurMac).ipv4(kPod4, ip4("255.255.255.255")).icmp(8, 0)
                                .build(),
       {}},
      {"IPv4 UDP", ping4().udp(8, 0).build(), {}},
      {"IPv6 echo reply", ping6().icmp6(129, 0).build(), {}},
      {"IPv6 bad checksum", ping6().icmp6(128, 0).l4_checksum(0).build(), {}},
      {"IPv6 from ::", PacketBuilder().eth(kPodMac, kOurMac).ipv6(ip6("::"), kNode6).icmp6(128, 0).build(), {}},
      {"IPv6 from multicast", PacketBuilder().eth(kPodMac, kOurMac).ipv6(ip6("ff02::1"), kNode6).icmp6(128, 0)
                                  .build(),
       {}},
      {"IPv6 to all-nodes", PacketBuilder().eth(kPodMac, kOurMac).ipv6(kPod6, ip6("ff02::1")).icmp6(128, 0).build(),
       {}},
      {"IPv6 ICMP (v4 protocol) echo", ping6().icmp(8, 0).build(), {}},
  };
}

TEST(BuildEchoReply, Table) {
  for (const EchoCase& c : echo_cases()) {
    SCOPED_TRACE(c.description);
    PacketInfo info;
    const ParseResult r = parse_frame(c.request.data(), c.request.size(), &info);
    ASSERT_TRUE(r == ParseResult::kOk || info.has_vlan);
    std::vector<uint8_t> out(2048, 0xEE);
    const size_t n = build_echo_reply(c.request.data(), c.request.size(), info, out.data(), out.size());
    ASSERT_EQ(n, c.reply.size());
    if (n == 0) continue;
    EXPECT_EQ(Bytes(out.begin(), out.begin() + static_cast<std::ptrdiff_t>(n)), c.reply);
    EXPECT_EQ(out[n], 0xEE);
    if (!info.has_vlan) expect_valid_frame(out.data(), n);

    // In place, as a worker turning the mbuf around.
    Bytes in_place = c.request;
    in_place.resize(std::max(in_place.size(), kEtherMinFrame));
    ASSERT_EQ(build_echo_reply(in_place.data(), c.request.size(), info, in_place.data(), in_place.size()), n);
    EXPECT_EQ(Bytes(in_place.begin(), in_place.begin() + static_cast<std::ptrdiff_t>(n)), c.reply);

    // One byte short of room.
    EXPECT_EQ(build_echo_reply(c.request.data(), c.request.size(), info, out.data(), n - 1), 0u);
  }
}

TEST(BuildEchoReply, DistrustsTheInfo) {
  const Bytes req = ping4().icmp(8, 0, 1, 1).payload_size(30).build();
  PacketInfo info;
  ASSERT_EQ(parse_frame(req.data(), req.size(), &info), ParseResult::kOk);
  uint8_t out[256];
  for (size_t n = 0; n < req.size(); ++n) {
    std::unique_ptr<uint8_t[]> copy(new uint8_t[n + 1]);
    std::memcpy(copy.get(), req.data(), n);
    EXPECT_EQ(build_echo_reply(copy.get(), n, info, out, sizeof(out)), 0u) << n;
  }
  PacketInfo lying = info;
  lying.l4_len += 1;
  EXPECT_EQ(build_echo_reply(req.data(), req.size(), lying, out, sizeof(out)), 0u);
  lying = info;
  lying.l3_offset = 4;  // no room for Ethernet
  lying.l3_len = static_cast<uint16_t>(lying.l3_len + 10);
  EXPECT_EQ(build_echo_reply(req.data(), req.size(), lying, out, sizeof(out)), 0u);
  EXPECT_EQ(build_echo_reply(req.data(), req.size(), info, nullptr, 100), 0u);
}

// --- errors

struct ErrorCase {
  std::string description;
  IcmpError kind;
  uint32_t mtu;
  Bytes offending;
  bool sent;
  uint8_t type, code;
  uint32_t rest;     // bytes 4..7 of the ICMP header
  size_t quote_len;  // bytes of the offending packet quoted
};

PacketBuilder from_pod4() { return PacketBuilder().ipv4(kPod4, ip4("10.244.9.9")).ttl(1); }
PacketBuilder from_pod6() { return PacketBuilder().ipv6(kPod6, ip6("fd00:10:244:9::9")).ttl(1); }

std::vector<ErrorCase> error_cases() {
  using K = IcmpError;
  return {
      {"v4 time exceeded, UDP", K::kTimeExceeded, 0, from_pod4().udp(1, 53).payload_size(100).build(), true, 11, 0, 0,
       128},
      {"v4 frag needed quotes up to 576", K::kFragNeeded, 1400, from_pod4().dont_fragment().tcp(1, 2, 0x10)
                                                                   .payload_size(1460).build(),
       true, 3, 4, 1400, 548},
      {"v4 frag needed clamps the MTU", K::kFragNeeded, 100000, from_pod4().udp(1, 2).build(), true, 3, 4, 0xFFFF,
       28},
      {"v4 no route", K::kNoRoute, 1234, from_pod4().udp(1, 2).build(), true, 3, 1, 0, 28},
      {"v4 host unreachable (node down)", K::kHostUnreachable, 0, from_pod4().tcp(1, 2, 0x02).build(), true, 3, 1,
       0, 40},
      {"v4 about an echo request", K::kNoRoute, 0, from_pod4().icmp(8, 0, 1, 1).build(), true, 3, 1, 0, 28},
      {"v4 about a first fragment", K::kNoRoute, 0, from_pod4().fragment(0, true).udp(1, 2).payload_size(8).build(),
       true, 3, 1, 0, 36},
      {"v4 about ESP", K::kTimeExceeded, 0, from_pod4().ip_proto(kProtoEsp).payload_size(60).build(), true, 11, 0, 0,
       80},
      {"v4 about a trailing-junk buffer quotes the packet only", K::kTimeExceeded, 0,
       from_pod4().udp(1, 2).pad_to(100).build(), true, 11, 0, 0, 28},
      {"v4 about a destination unreachable", K::kNoRoute, 0, from_pod4().icmp(3, 1).payload_size(28).build(), false,
       0, 0, 0, 0},
      {"v4 about a time exceeded", K::kNoRoute, 0, from_pod4().icmp(11, 0).build(), false, 0, 0, 0, 0},
      {"v4 about an ICMP cut short", K::kNoRoute, 0, from_pod4().ip_proto(kProtoIcmp).payload_size(4).build(), false,
       0, 0, 0, 0},
      {"v4 about a first-fragment ICMP too short to tell", K::kNoRoute, 0,
       from_pod4().fragment(0, true).ip_proto(kProtoIcmp).payload_size(4).build(), false, 0, 0, 0, 0},
      {"v4 about a later fragment", K::kNoRoute, 0, from_pod4().fragment(8, false).ip_proto(kProtoUdp)
                                                     .payload_size(8).build(),
       false, 0, 0, 0, 0},
      {"v4 from 0.0.0.0", K::kNoRoute, 0, PacketBuilder().ipv4(ip4("0.0.0.0"), kNode4).udp(68, 67).build(), false, 0,
       0, 0, 0},
      {"v4 from loopback", K::kNoRoute, 0, PacketBuilder().ipv4(ip4("127.0.0.1"), kNode4).udp(1, 2).build(), false,
       0, 0, 0, 0},
      {"v4 from multicast", K::kNoRoute, 0, PacketBuilder().ipv4(ip4("239.1.1.1"), kNode4).udp(1, 2).build(), false,
       0, 0, 0, 0},
      {"v4 from class E", K::kNoRoute, 0, PacketBuilder().ipv4(ip4("240.0.0.1"), kNode4).udp(1, 2).build(), false,
       0, 0, 0, 0},
      {"v4 from broadcast", K::kNoRoute, 0, PacketBuilder().ipv4(ip4("255.255.255.255"), kNode4).udp(1, 2).build(),
       false, 0, 0, 0, 0},
      {"v4 to multicast", K::kFragNeeded, 1400, PacketBuilder().ipv4(kPod4, ip4("224.0.0.251")).udp(1, 2).build(),
       false, 0, 0, 0, 0},
      {"v4 to broadcast", K::kNoRoute, 0, PacketBuilder().ipv4(kPod4, ip4("255.255.255.255")).udp(1, 2).build(),
       false, 0, 0, 0, 0},
      {"v4 cut short", K::kNoRoute, 0, from_pod4().udp(1, 2).total_length(200).build(), false, 0, 0, 0, 0},
      {"not IP", K::kNoRoute, 0, Bytes(60, 0x55), false, 0, 0, 0, 0},
      {"nothing", K::kNoRoute, 0, Bytes{}, false, 0, 0, 0, 0},

      {"v6 time exceeded quotes up to 1280", K::kTimeExceeded, 0, from_pod6().udp(1, 2).payload_size(1452).build(),
       true, 3, 0, 0, 1232},
      {"v6 packet too big", K::kFragNeeded, 1280, from_pod6().tcp(1, 2, 0x18).payload_size(1400).build(), true, 2, 0,
       1280, 1232},
      {"v6 packet too big keeps a 32-bit MTU", K::kFragNeeded, 70000, from_pod6().udp(1, 2).build(), true, 2, 0,
       70000, 48},
      {"v6 no route", K::kNoRoute, 0, from_pod6().udp(1, 2).build(), true, 1, 0, 0, 48},
      {"v6 address unreachable (node down)", K::kHostUnreachable, 0, from_pod6().udp(1, 2).build(), true, 1, 3, 0,
       48},
      {"v6 about an echo request", K::kNoRoute, 0, from_pod6().icmp6(128, 0).build(), true, 1, 0, 0, 48},
      {"v6 packet too big to multicast", K::kFragNeeded, 1500,
       PacketBuilder().ipv6(kPod6, ip6("ff05::2")).udp(1, 2).build(), true, 2, 0, 1500, 48},
      {"v6 about a destination unreachable", K::kNoRoute, 0, from_pod6().icmp6(1, 0).build(), false, 0, 0, 0, 0},
      {"v6 about a packet too big behind an extension header", K::kNoRoute, 0,
       from_pod6().ext_header(kProtoDestOpts).icmp6(2, 0, 1280).build(), false, 0, 0, 0, 0},
      {"v6 about a later fragment", K::kTimeExceeded, 0, from_pod6().fragment(64, false).ip_proto(kProtoUdp)
                                                          .payload_size(10).build(),
       false, 0, 0, 0, 0},
      {"v6 from ::", K::kNoRoute, 0, PacketBuilder().ipv6(ip6("::"), kNode6).udp(1, 2).build(), false, 0, 0, 0, 0},
      {"v6 from ::1", K::kNoRoute, 0, PacketBuilder().ipv6(ip6("::1"), kNode6).udp(1, 2).build(), false, 0, 0, 0, 0},
      {"v6 from multicast", K::kNoRoute, 0, PacketBuilder().ipv6(ip6("ff02::1"), kNode6).udp(1, 2).build(), false, 0,
       0, 0, 0},
      {"v6 time exceeded to multicast", K::kTimeExceeded, 0,
       PacketBuilder().ipv6(kPod6, ip6("ff05::2")).udp(1, 2).build(), false, 0, 0, 0, 0},
  };
}

TEST(BuildIcmpError, Table) {
  for (const ErrorCase& c : error_cases()) {
    SCOPED_TRACE(c.description);
    const bool v6 = !c.offending.empty() && (c.offending[0] >> 4) == 6;
    const uint8_t* src = v6 ? kNode6.data() : kNode4.data();
    std::vector<uint8_t> out(1600, 0xEE);
    // The offending packet in an exactly sized buffer, for sanitizer builds.
    std::unique_ptr<uint8_t[]> offending(new uint8_t[c.offending.size() + 1]);
    if (!c.offending.empty()) std::memcpy(offending.get(), c.offending.data(), c.offending.size());
    const size_t n = build_icmp_error(c.kind, c.mtu, offending.get(), c.offending.size(), src, kOurMac.data(),
                                      kPodMac.data(), out.data(), out.size());
    if (!c.sent) {
      EXPECT_EQ(n, 0u);
      continue;
    }
    const size_t ip_hdr = v6 ? kIpv6HdrLen : kIpv4HdrLen;
    ASSERT_EQ(n, std::max(kEtherHdrLen + ip_hdr + kIcmpHdrLen + c.quote_len, kEtherMinFrame));
    EXPECT_EQ(out[n], 0xEE);
    expect_valid_frame(out.data(), n);
    EXPECT_EQ(0, std::memcmp(out.data(), kPodMac.data(), 6));
    EXPECT_EQ(0, std::memcmp(out.data() + 6, kOurMac.data(), 6));
    const uint8_t* ip = out.data() + kEtherHdrLen;
    const uint8_t* icmp = ip + ip_hdr;
    if (v6) {
      EXPECT_LE(kIpv6HdrLen + load_be16(ip + 4), kIcmpv6ErrorMaxIpLen);
      EXPECT_EQ(0, std::memcmp(ip + 8, kNode6.data(), 16));
      EXPECT_EQ(0, std::memcmp(ip + 24, c.offending.data() + 8, 16));
    } else {
      EXPECT_LE(load_be16(ip + 2), kIcmpv4ErrorMaxIpLen);
      EXPECT_EQ(ip[1], 0xC0);
      EXPECT_EQ(load_be16(ip + 6), 0x4000);
      EXPECT_EQ(0, std::memcmp(ip + 12, kNode4.data(), 4));
      EXPECT_EQ(0, std::memcmp(ip + 16, c.offending.data() + 12, 4));
    }
    EXPECT_EQ(icmp[0], c.type);
    EXPECT_EQ(icmp[1], c.code);
    EXPECT_EQ(load_be32(icmp + 4), c.rest);
    EXPECT_EQ(0, std::memcmp(icmp + 8, c.offending.data(), c.quote_len));

    // No room: nothing written.
    std::vector<uint8_t> small(n - 1, 0xEE);
    EXPECT_EQ(build_icmp_error(c.kind, c.mtu, offending.get(), c.offending.size(), src, kOurMac.data(),
                               kPodMac.data(), small.data(), small.size()),
              0u);
    EXPECT_EQ(small, std::vector<uint8_t>(n - 1, 0xEE));
  }
}

TEST(BuildIcmpError, AnErrorIsNeverAnsweredWithAnError) {
  const Bytes offending = from_pod4().udp(1, 2).payload_size(30).build();
  uint8_t first[600], second[600];
  const size_t n = build_icmp_error(IcmpError::kTimeExceeded, 0, offending.data(), offending.size(), kNode4.data(),
                                    kOurMac.data(), kPodMac.data(), first, sizeof(first));
  ASSERT_GT(n, 0u);
  for (IcmpError kind :
       {IcmpError::kFragNeeded, IcmpError::kTimeExceeded, IcmpError::kNoRoute, IcmpError::kHostUnreachable}) {
    EXPECT_EQ(build_icmp_error(kind, 1400, first + kEtherHdrLen, n - kEtherHdrLen, kPod4.data(), kOurMac.data(),
                               kPodMac.data(), second, sizeof(second)),
              0u);
  }
}

TEST(AddressClasses, Unicast) {
  EXPECT_TRUE(ipv4_is_unicast(ip4("10.0.0.1").data()));
  EXPECT_TRUE(ipv4_is_unicast(ip4("223.255.255.255").data()));
  EXPECT_FALSE(ipv4_is_unicast(ip4("0.1.2.3").data()));
  EXPECT_FALSE(ipv4_is_unicast(ip4("127.0.0.1").data()));
  EXPECT_FALSE(ipv4_is_unicast(ip4("224.0.0.1").data()));
  EXPECT_FALSE(ipv4_is_unicast(ip4("255.255.255.255").data()));
  EXPECT_TRUE(ipv6_is_unicast(ip6("fe80::1").data()));
  EXPECT_TRUE(ipv6_is_unicast(ip6("::2").data()));
  EXPECT_FALSE(ipv6_is_unicast(ip6("::").data()));
  EXPECT_FALSE(ipv6_is_unicast(ip6("::1").data()));
  EXPECT_FALSE(ipv6_is_unicast(ip6("ff02::1:ff00:1").data()));
}

}  // namespace
}  // namespace meshwire::dp::net
