#include "net/nd.h"

#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <string>

#include "net/checksum.h"
#include "packet_builder.h"

namespace meshwire::dp::net {
namespace {

using test::Bytes;
using test::PacketBuilder;
using test::ip6;
using test::mac;

const test::Mac kPodMac = mac("0a:58:0a:f4:00:05");
const test::Mac kOurMac = mac("02:42:ac:11:00:02");
const test::Ip6 kPodIp = ip6("fd00:10:244::5");
const test::Ip6 kGatewayIp = ip6("fd00:10:244::1");
const test::Ip6 kUnspecified = ip6("::");
const test::Ip6 kAllNodes = ip6("ff02::1");

Bytes cat(std::initializer_list<Bytes> parts) {
  Bytes out;
  for (const Bytes& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}
Bytes b(const test::Ip6& ip) { return Bytes(ip.begin(), ip.end()); }
Bytes lladdr_option(uint8_t type, const test::Mac& m) { return cat({{type, 1}, Bytes(m.begin(), m.end())}); }
test::Ip6 solicited(const test::Ip6& target) {
  test::Ip6 out;
  solicited_node_multicast(target.data(), out.data());
  return out;
}

// An NS / NA as a pod would send it; tests override one thing at a time.
PacketBuilder ns(const test::Ip6& src, const test::Ip6& dst, const test::Ip6& target, const Bytes& options) {
  return PacketBuilder().eth(kPodMac, mac("33:33:ff:00:00:01")).ipv6(src, dst).ttl(255)
      .icmp6(kNdNeighborSolicitation, 0).payload(cat({b(target), options}));
}
PacketBuilder na(const test::Ip6& dst, uint32_t flags, const test::Ip6& target, const Bytes& options) {
  return PacketBuilder().eth(kPodMac, kOurMac).ipv6(kPodIp, dst).ttl(255)
      .icmp6(kNdNeighborAdvertisement, 0, flags).payload(cat({b(target), options}));
}
const Bytes kSll = lladdr_option(1, kPodMac);
const Bytes kTll = lladdr_option(2, kPodMac);

struct NdCase {
  std::string description;
  Bytes frame;
  bool ok;
  uint8_t type;
  bool has_lladdr;
  bool solicited;
};

std::vector<NdCase> cases() {
  return {
      {"NS with source link-layer address", ns(kPodIp, solicited(kGatewayIp), kGatewayIp, kSll).build(), true, 135,
       true, false},
      {"NS unicast (NUD)", ns(kPodIp, kGatewayIp, kGatewayIp, kSll).build(), true, 135, true, false},
      {"NS without options", ns(kPodIp, solicited(kGatewayIp), kGatewayIp, {}).build(), true, 135, false, false},
      {"NS with a nonce option first", ns(kPodIp, solicited(kGatewayIp), kGatewayIp,
                                          cat({{14, 1, 1, 2, 3, 4, 5, 6}, kSll})).build(),
       true, 135, true, false},
      {"NS with a 16-byte link-layer option (ignored)",
       ns(kPodIp, solicited(kGatewayIp), kGatewayIp, Bytes{1, 2, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14})
           .build(),
       true, 135, false, false},
      {"DAD NS from ::", ns(kUnspecified, solicited(kPodIp), kPodIp, {}).build(), true, 135, false, false},
      {"NA solicited with target link-layer address", na(kGatewayIp, 0x60000000, kPodIp, kTll).build(), true,
       136, true, true},
      {"NA unsolicited to all-nodes", na(kAllNodes, 0x20000000, kPodIp, kTll).build(), true, 136, true, false},
      {"NA after a destination options header",
       [] {
         return PacketBuilder().eth(kPodMac, kOurMac).ipv6(kPodIp, kGatewayIp).ext_header(kProtoDestOpts).ttl(255)
             .icmp6(kNdNeighborAdvertisement, 0, 0x40000000).payload(cat({b(kPodIp), kTll})).build();
       }(),
       true, 136, true, true},

      {"hop limit 254", ns(kPodIp, solicited(kGatewayIp), kGatewayIp, kSll).ttl(254).build(), false, 0, false,
       false},
      {"code 1", ns(kPodIp, solicited(kGatewayIp), kGatewayIp, kSll).icmp6(135, 1).build(), false, 0, false, false},
      {"bad checksum", ns(kPodIp, solicited(kGatewayIp), kGatewayIp, kSll).l4_checksum(0x1234).build(), false, 0,
       false, false},
      {"multicast target", ns(kPodIp, kAllNodes, kAllNodes, kSll).build(), false, 0, false, false},
      {"option of length 0", ns(kPodIp, solicited(kGatewayIp), kGatewayIp, Bytes{1, 0, 0, 0, 0, 0, 0, 0}).build(),
       false, 0, false, false},
      {"option past the message", ns(kPodIp, solicited(kGatewayIp), kGatewayIp, Bytes{1, 2, 0, 0, 0, 0, 0, 0})
                                      .build(),
       false, 0, false, false},
      {"option cut after its type", ns(kPodIp, solicited(kGatewayIp), kGatewayIp, Bytes{1}).build(), false, 0,
       false, false},
      {"message of 23 bytes", PacketBuilder().eth(kPodMac, kOurMac).ipv6(kPodIp, kGatewayIp).ttl(255)
                                  .icmp6(135, 0).payload_size(15).build(),
       false, 0, false, false},
      {"DAD NS with a source link-layer option",
       ns(kUnspecified, solicited(kPodIp), kPodIp, kSll).build(), false, 0, false, false},
      {"DAD NS to a unicast address", ns(kUnspecified, kGatewayIp, kPodIp, {}).build(), false, 0, false, false},
      {"NA to multicast with S set", na(kAllNodes, 0x40000000, kPodIp, kTll).build(), false, 0, false, false},
      {"NS in a fragment", [] {
         return PacketBuilder().eth(kPodMac, kOurMac).ipv6(kPodIp, kGatewayIp).fragment(0, false).ttl(255)
             .icmp6(135, 0).payload(b(kGatewayIp)).build();
       }(), false, 0, false, false},
      {"echo request", PacketBuilder().eth(kPodMac, kOurMac).ipv6(kPodIp, kGatewayIp).ttl(255).icmp6(128, 0)
                           .payload_size(24).build(),
       false, 0, false, false},
      {"router solicitation", PacketBuilder().eth(kPodMac, kOurMac).ipv6(kPodIp, kGatewayIp).ttl(255).icmp6(133, 0)
                                  .payload(kSll).build(),
       false, 0, false, false},
      {"UDP", PacketBuilder().eth(kPodMac, kOurMac).ipv6(kPodIp, kGatewayIp).ttl(255).udp(1, 2).payload_size(40)
                  .build(),
       false, 0, false, false},
      {"IPv4", PacketBuilder().eth(kPodMac, kOurMac).ipv4(test::ip4("1.1.1.1"), test::ip4("2.2.2.2")).ttl(255)
                   .icmp(135, 0).payload_size(40).build(),
       false, 0, false, false},
  };
}

TEST(ParseNd, Table) {
  for (const NdCase& c : cases()) {
    SCOPED_TRACE(c.description);
    PacketInfo info;
    // Every case is a well-formed packet: the rejection must come from parse_nd.
    ASSERT_EQ(parse_frame(c.frame.data(), c.frame.size(), &info), ParseResult::kOk);
    NdInfo nd{};
    const bool ok = parse_nd(c.frame.data(), c.frame.size(), info, &nd);
    EXPECT_EQ(ok, c.ok);
    if (!ok) continue;
    EXPECT_EQ(nd.type, c.type);
    EXPECT_EQ(nd.has_lladdr, c.has_lladdr);
    EXPECT_EQ(nd.solicited, c.solicited);
    if (nd.has_lladdr) {
      EXPECT_EQ(0, std::memcmp(nd.lladdr, kPodMac.data(), 6));
    }
    EXPECT_EQ(0, std::memcmp(nd.src_ip, c.frame.data() + 22, 16));
    EXPECT_EQ(0, std::memcmp(nd.dst_ip, c.frame.data() + 38, 16));
    EXPECT_EQ(0, std::memcmp(nd.target, c.frame.data() + info.l4_offset + 8, 16));
  }
}

TEST(ParseNd, EveryTruncationAndAMismatchedInfo) {
  const Bytes f = ns(kPodIp, solicited(kGatewayIp), kGatewayIp, kSll).build();
  PacketInfo info;
  ASSERT_EQ(parse_frame(f.data(), f.size(), &info), ParseResult::kOk);
  NdInfo nd{};
  for (size_t n = 0; n < f.size(); ++n) {
    std::unique_ptr<uint8_t[]> copy(new uint8_t[n + 1]);
    std::memcpy(copy.get(), f.data(), n);
    // The info of the whole frame, with a shorter buffer: must be re-checked.
    EXPECT_FALSE(parse_nd(copy.get(), n, info, &nd)) << n;
    PacketInfo short_info;
    parse_frame(copy.get(), n, &short_info);
    EXPECT_FALSE(parse_nd(copy.get(), n, short_info, &nd)) << n;
  }
  PacketInfo lying = info;
  lying.l4_len = 200;
  EXPECT_FALSE(parse_nd(f.data(), f.size(), lying, &nd));
  lying = info;
  lying.l4_offset = 20;  // inside the IPv6 header
  lying.l4_len = static_cast<uint16_t>(info.l3_offset + info.l3_len - 20);
  EXPECT_FALSE(parse_nd(f.data(), f.size(), lying, &nd));
}

void expect_checksums_ok(const uint8_t* frame, size_t len) {
  PacketInfo info;
  ASSERT_EQ(parse_frame(frame, len, &info), ParseResult::kOk);
  const uint8_t* ip = frame + info.l3_offset;
  uint32_t sum = test::naive_sum(ip + 8, 32) + kProtoIcmpv6 + info.l4_len;
  sum = test::naive_sum(frame + info.l4_offset, info.l4_len, sum);
  EXPECT_EQ(test::naive_fold(sum), 0);
}

TEST(BuildNa, RoundTripsAndMatchesTheBuilder) {
  uint8_t out[kNdFrameLen + 4];
  std::memset(out, 0xEE, sizeof(out));
  ASSERT_EQ(build_na(kOurMac.data(), kPodMac.data(), kGatewayIp.data(), kPodIp.data(), kGatewayIp.data(), true,
                     true, out, sizeof(out)),
            kNdFrameLen);
  EXPECT_EQ(out[kNdFrameLen], 0xEE);
  const Bytes expected = PacketBuilder().eth(kOurMac, kPodMac).ipv6(kGatewayIp, kPodIp).ttl(255)
                             .icmp6(136, 0, 0xE0000000).payload(cat({b(kGatewayIp), lladdr_option(2, kOurMac)}))
                             .build();
  EXPECT_EQ(Bytes(out, out + kNdFrameLen), expected);
  expect_checksums_ok(out, kNdFrameLen);

  PacketInfo info;
  ASSERT_EQ(parse_frame(out, kNdFrameLen, &info), ParseResult::kOk);
  NdInfo nd{};
  ASSERT_TRUE(parse_nd(out, kNdFrameLen, info, &nd));
  EXPECT_EQ(nd.type, kNdNeighborAdvertisement);
  EXPECT_TRUE(nd.router);
  EXPECT_TRUE(nd.solicited);
  EXPECT_TRUE(nd.override_flag);
  ASSERT_TRUE(nd.has_lladdr);
  EXPECT_EQ(0, std::memcmp(nd.lladdr, kOurMac.data(), 6));
  EXPECT_EQ(0, std::memcmp(nd.target, kGatewayIp.data(), 16));
}

TEST(BuildNa, FlagsAndCapacity) {
  uint8_t out[kNdFrameLen];
  ASSERT_EQ(build_na(kOurMac.data(), kPodMac.data(), kGatewayIp.data(), kAllNodes.data(), kGatewayIp.data(), false,
                     false, out, sizeof(out), false),
            kNdFrameLen);
  EXPECT_EQ(load_be32(out + 58), 0u);
  expect_checksums_ok(out, sizeof(out));
  EXPECT_EQ(build_na(kOurMac.data(), kPodMac.data(), kGatewayIp.data(), kPodIp.data(), kGatewayIp.data(), true,
                     false, out, sizeof(out) - 1),
            0u);
}

TEST(BuildNa, AnswersInPlaceFromTheSolicitation) {
  // A worker turning the NS buffer around: the arguments point into out.
  Bytes f = ns(kPodIp, solicited(kGatewayIp), kGatewayIp, kSll).build();
  f.resize(kNdFrameLen);
  PacketInfo info;
  ASSERT_EQ(parse_frame(f.data(), f.size(), &info), ParseResult::kOk);
  uint8_t* p = f.data();
  ASSERT_EQ(build_na(kOurMac.data(), p + 6, p + 38, p + 22, p + info.l4_offset + 8, true, false, p, f.size()),
            kNdFrameLen);
  NdInfo nd{};
  ASSERT_EQ(parse_frame(f.data(), f.size(), &info), ParseResult::kOk);
  ASSERT_TRUE(parse_nd(f.data(), f.size(), info, &nd));
  EXPECT_EQ(0, std::memcmp(nd.target, kGatewayIp.data(), 16));
  EXPECT_EQ(0, std::memcmp(nd.dst_ip, kPodIp.data(), 16));
  EXPECT_EQ(0, std::memcmp(nd.src_ip, solicited(kGatewayIp).data(), 16));  // the caller picks src; here as given
  EXPECT_EQ(0, std::memcmp(f.data(), kPodMac.data(), 6));
}

TEST(BuildNs, ToTheSolicitedNodeGroup) {
  const test::Ip6 target = ip6("fd00:10:244::12:3456");
  uint8_t out[kNdFrameLen];
  ASSERT_EQ(build_ns(kOurMac.data(), kGatewayIp.data(), target.data(), out, sizeof(out)), kNdFrameLen);
  const Bytes expected = PacketBuilder().eth(kOurMac, mac("33:33:ff:12:34:56"))
                             .ipv6(kGatewayIp, ip6("ff02::1:ff12:3456")).ttl(255).icmp6(135, 0)
                             .payload(cat({b(target), lladdr_option(1, kOurMac)})).build();
  EXPECT_EQ(Bytes(out, out + kNdFrameLen), expected);
  expect_checksums_ok(out, sizeof(out));
  PacketInfo info;
  ASSERT_EQ(parse_frame(out, sizeof(out), &info), ParseResult::kOk);
  NdInfo nd{};
  ASSERT_TRUE(parse_nd(out, sizeof(out), info, &nd));
  EXPECT_TRUE(nd.has_lladdr);
  EXPECT_TRUE(is_solicited_node_multicast(nd.dst_ip));
  EXPECT_EQ(build_ns(kOurMac.data(), kGatewayIp.data(), target.data(), out, sizeof(out) - 1), 0u);
}

TEST(BuildNs, DuplicateAddressDetectionHasNoOption) {
  uint8_t out[kNdFrameLen];
  const size_t n = build_ns(kOurMac.data(), kUnspecified.data(), kPodIp.data(), out, sizeof(out));
  ASSERT_EQ(n, kNdFrameLen - 8);
  expect_checksums_ok(out, n);
  PacketInfo info;
  ASSERT_EQ(parse_frame(out, n, &info), ParseResult::kOk);
  NdInfo nd{};
  ASSERT_TRUE(parse_nd(out, n, info, &nd));
  EXPECT_FALSE(nd.has_lladdr);
  EXPECT_EQ(build_ns(kOurMac.data(), kUnspecified.data(), kPodIp.data(), out, n - 1), 0u);
}

TEST(SolicitedNode, Addresses) {
  struct Case {
    const char* ip;
    bool solicited_node;
  };
  const Case cases[] = {
      {"ff02::1:ff00:1", true}, {"ff02::1:ffab:cdef", true}, {"ff02::1", false},
      {"ff02::1:fe00:1", false}, {"ff05::1:ff00:1", false},  {"fd00::1:ff00:1", false},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(is_solicited_node_multicast(ip6(c.ip).data()), c.solicited_node) << c.ip;
  }
  test::Ip6 a = ip6("2001:db8::aa:bbcc:ddee");
  solicited_node_multicast(a.data(), a.data());  // in place
  EXPECT_EQ(a, ip6("ff02::1:ffcc:ddee"));
  uint8_t m[6];
  ipv6_multicast_mac(a.data(), m);
  EXPECT_EQ(test::Mac({m[0], m[1], m[2], m[3], m[4], m[5]}), mac("33:33:ff:cc:dd:ee"));
}

}  // namespace
}  // namespace meshwire::dp::net
