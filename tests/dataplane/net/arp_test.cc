#include "net/arp.h"

#include <gtest/gtest.h>

#include <cstring>
#include <memory>

#include "net/parse.h"
#include "packet_builder.h"

namespace meshwire::dp::net {
namespace {

using test::Bytes;
using test::PacketBuilder;
using test::ip4;
using test::mac;

const test::Mac kPodMac = mac("0a:58:0a:f4:00:05");
const test::Mac kOurMac = mac("02:42:ac:11:00:02");
const test::Mac kBroadcast = mac("ff:ff:ff:ff:ff:ff");

Bytes arp_frame(uint16_t op, const test::Mac& sha, const char* spa, const test::Mac& tha, const char* tpa) {
  return PacketBuilder().eth(sha, op == kArpOpRequest ? kBroadcast : tha).arp(op, sha, ip4(spa), tha, ip4(tpa))
      .pad_to(60).build();
}

TEST(ParseArp, Table) {
  struct Case {
    const char* description;
    Bytes frame;
    uint16_t l3_offset;
    bool ok;
    uint16_t op;
  };
  const Bytes request = arp_frame(kArpOpRequest, kPodMac, "10.244.0.5", test::Mac{}, "10.244.0.1");
  auto with = [&](size_t off, uint8_t v) {
    Bytes b = request;
    b[off] = v;
    return b;
  };
  const Case cases[] = {
      {"request", request, 14, true, kArpOpRequest},
      {"reply", arp_frame(kArpOpReply, kPodMac, "10.244.0.5", kOurMac, "10.244.0.1"), 14, true, kArpOpReply},
      {"after an 802.1Q tag", PacketBuilder().eth(kPodMac, kBroadcast).vlan(7)
                                  .arp(1, kPodMac, ip4("1.1.1.1"), test::Mac{}, ip4("1.1.1.2")).build(),
       18, true, kArpOpRequest},
      {"op 3 (RARP)", with(21, 3), 14, false, 0},
      {"op 0", with(21, 0), 14, false, 0},
      {"op 257", with(20, 1), 14, false, 0},
      {"hardware type 6", with(15, 6), 14, false, 0},
      {"protocol type IPv6", with(16, 0x86), 14, false, 0},
      {"hardware length 8", with(18, 8), 14, false, 0},
      {"protocol length 16", with(19, 16), 14, false, 0},
      {"offset past the frame", request, 61, false, 0},
      {"body past the frame", request, 33, false, 0},
      {"body ends at the frame end", Bytes(request.begin(), request.begin() + 42), 14, true, kArpOpRequest},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.description);
    ArpInfo arp{};
    const bool ok = parse_arp(c.frame.data(), c.frame.size(), c.l3_offset, &arp);
    EXPECT_EQ(ok, c.ok);
    if (ok) {
      EXPECT_EQ(arp.op, c.op);
    }
  }
}

TEST(ParseArp, Fields) {
  const Bytes f = arp_frame(kArpOpRequest, kPodMac, "10.244.0.5", test::Mac{}, "10.244.0.1");
  ArpInfo arp{};
  ASSERT_TRUE(parse_arp(f.data(), f.size(), 14, &arp));
  EXPECT_EQ(0, std::memcmp(arp.sha, kPodMac.data(), 6));
  EXPECT_EQ(arp.spa_be, test::ip4_be("10.244.0.5"));
  EXPECT_EQ(arp.tpa_be, test::ip4_be("10.244.0.1"));
  const uint8_t zero[6] = {};
  EXPECT_EQ(0, std::memcmp(arp.tha, zero, 6));
}

TEST(ParseArp, EveryTruncation) {
  const Bytes f = arp_frame(kArpOpRequest, kPodMac, "10.244.0.5", test::Mac{}, "10.244.0.1");
  for (size_t n = 0; n < 42; ++n) {
    std::unique_ptr<uint8_t[]> copy(new uint8_t[n + 1]);
    std::memcpy(copy.get(), f.data(), n);
    ArpInfo arp{};
    EXPECT_FALSE(parse_arp(copy.get(), n, 14, &arp)) << n;
    PacketInfo info;
    EXPECT_EQ(parse_frame(copy.get(), n, &info), ParseResult::kTruncated) << n;
  }
  ArpInfo arp{};
  EXPECT_FALSE(parse_arp(nullptr, 0, 0, &arp));
}

TEST(BuildArp, ReplyAnswersTheRequester) {
  const Bytes req = arp_frame(kArpOpRequest, kPodMac, "10.244.0.5", test::Mac{}, "10.244.0.1");
  ArpInfo request{};
  ASSERT_TRUE(parse_arp(req.data(), req.size(), 14, &request));
  uint8_t out[64];
  std::memset(out, 0xAA, sizeof(out));
  ASSERT_EQ(build_arp_reply(request, kOurMac.data(), out, sizeof(out)), 60u);
  const Bytes expected =
      arp_frame(kArpOpReply, kOurMac, "10.244.0.1", kPodMac, "10.244.0.5");  // eth dst = tha = pod
  EXPECT_EQ(Bytes(out, out + 60), expected);
  EXPECT_EQ(out[60], 0xAA);  // nothing written past the frame

  PacketInfo info;
  ASSERT_EQ(parse_frame(out, 60, &info), ParseResult::kOk);
  ArpInfo reply{};
  ASSERT_TRUE(parse_arp(out, 60, info.l3_offset, &reply));
  EXPECT_EQ(reply.op, kArpOpReply);
  EXPECT_EQ(reply.spa_be, request.tpa_be);
  EXPECT_EQ(reply.tpa_be, request.spa_be);
}

TEST(BuildArp, Request) {
  uint8_t out[60];
  ASSERT_EQ(build_arp_request(kOurMac.data(), test::ip4_be("192.168.1.10"), test::ip4_be("192.168.1.1"), out,
                              sizeof(out)),
            60u);
  const Bytes expected = PacketBuilder().eth(kOurMac, kBroadcast)
                             .arp(1, kOurMac, ip4("192.168.1.10"), test::Mac{}, ip4("192.168.1.1"))
                             .pad_to(60).build();
  EXPECT_EQ(Bytes(out, out + 60), expected);
}

TEST(BuildArp, CapacityTooSmall) {
  uint8_t out[59];
  ArpInfo request{kArpOpRequest, {1, 2, 3, 4, 5, 6}, 1, {}, 2};
  EXPECT_EQ(build_arp_reply(request, kOurMac.data(), out, sizeof(out)), 0u);
  EXPECT_EQ(build_arp_request(kOurMac.data(), 1, 2, out, sizeof(out)), 0u);
  EXPECT_EQ(build_arp_request(kOurMac.data(), 1, 2, nullptr, 100), 0u);
}

}  // namespace
}  // namespace meshwire::dp::net
