#include "net/parse.h"

#include <gtest/gtest.h>

#include <algorithm>
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

const test::Mac kMacA = mac("02:00:00:00:00:0a");
const test::Mac kMacB = mac("02:00:00:00:00:0b");

PacketBuilder eth() { return PacketBuilder().eth(kMacA, kMacB); }
PacketBuilder eth_v4() { return eth().ipv4(ip4("10.0.0.1"), ip4("10.0.0.2")); }
PacketBuilder eth_v6() { return eth().ipv6(ip6("fd00::1"), ip6("fd00::2")); }

const char* name(ParseResult r) {
  switch (r) {
    case ParseResult::kOk: return "kOk";
    case ParseResult::kTruncated: return "kTruncated";
    case ParseResult::kBadHeader: return "kBadHeader";
    case ParseResult::kUnsupported: return "kUnsupported";
  }
  return "?";
}

// Parses from an exactly sized heap copy, so that a sanitizer build catches
// any read past the end.
ParseResult parse_exact(const Bytes& b, size_t len, PacketInfo* info, bool ip_only = false) {
  std::unique_ptr<uint8_t[]> copy(new uint8_t[len == 0 ? 1 : len]);
  std::copy(b.begin(), b.begin() + static_cast<std::ptrdiff_t>(len), copy.get());
  return ip_only ? parse_ip(copy.get(), len, info) : parse_frame(copy.get(), len, info);
}

struct Expect {
  uint16_t ether_type;
  uint16_t l4_offset;
  uint16_t l3_len;
  uint8_t l4_proto;
  bool is_fragment;
  bool later_fragment;
  bool has_l4;
};

struct ParseCase {
  std::string description;
  Bytes input;
  ParseResult result;
  Expect expect;  // checked when result is kOk or the VLAN kUnsupported
};

std::vector<ParseCase> frame_cases() {
  const Bytes ike = test::bytes("ike");
  return {
      {"IPv4 UDP", eth_v4().udp(1000, 53).payload("query").build(), ParseResult::kOk,
       {kEtherTypeIpv4, 34, 33, kProtoUdp, false, false, true}},
      {"IPv4 TCP with MSS and window scale", eth_v4().tcp(40000, 80, test::kTcpSyn).tcp_mss(1460)
                                                 .tcp_options({1, 3, 3, 7}).build(),
       ParseResult::kOk, {kEtherTypeIpv4, 34, 48, kProtoTcp, false, false, true}},
      {"IPv4 with 8 bytes of options", eth_v4().ipv4_options({7, 7, 4, 0, 0, 0, 0}).udp(1, 2).build(),
       ParseResult::kOk, {kEtherTypeIpv4, 42, 36, kProtoUdp, false, false, true}},
      {"IPv4 ICMP echo", eth_v4().icmp(8, 0, 7, 1).payload_size(56).build(), ParseResult::kOk,
       {kEtherTypeIpv4, 34, 84, kProtoIcmp, false, false, true}},
      {"IPv4 ESP (no L4 view)", eth_v4().ip_proto(kProtoEsp).payload_size(40).build(), ParseResult::kOk,
       {kEtherTypeIpv4, 34, 60, kProtoEsp, false, false, false}},
      {"IPv4 with Ethernet padding", eth_v4().udp(1, 2).pad_to(60).build(), ParseResult::kOk,
       {kEtherTypeIpv4, 34, 28, kProtoUdp, false, false, true}},
      {"IPv4 empty payload protocol 255", eth_v4().build(), ParseResult::kOk,
       {kEtherTypeIpv4, 34, 20, 255, false, false, false}},
      {"IPv4 first fragment", eth_v4().fragment(0, true).udp(1, 2).payload_size(100).udp_length(3000).build(),
       ParseResult::kOk, {kEtherTypeIpv4, 34, 128, kProtoUdp, true, false, true}},
      {"IPv4 first fragment too short for TCP", eth_v4().fragment(0, true).ip_proto(kProtoTcp).payload_size(8).build(),
       ParseResult::kOk, {kEtherTypeIpv4, 34, 28, kProtoTcp, true, false, false}},
      {"IPv4 later fragment", eth_v4().fragment(1480, false).ip_proto(kProtoUdp).payload_size(3).build(),
       ParseResult::kOk, {kEtherTypeIpv4, 34, 23, kProtoUdp, true, true, false}},
      {"IPv4 DF is not a fragment", eth_v4().dont_fragment().udp(1, 2).build(), ParseResult::kOk,
       {kEtherTypeIpv4, 34, 28, kProtoUdp, false, false, true}},
      {"IPv6 UDP", eth_v6().udp(1, 4500).payload_size(10).build(), ParseResult::kOk,
       {kEtherTypeIpv6, 54, 58, kProtoUdp, false, false, true}},
      {"IPv6 TCP", eth_v6().tcp(1, 2, test::kTcpAck).build(), ParseResult::kOk,
       {kEtherTypeIpv6, 54, 60, kProtoTcp, false, false, true}},
      {"IPv6 ICMPv6", eth_v6().icmp6(128, 0).build(), ParseResult::kOk,
       {kEtherTypeIpv6, 54, 48, kProtoIcmpv6, false, false, true}},
      {"IPv6 hop-by-hop, dest opts, routing, UDP",
       eth_v6().ext_header(kProtoHopByHop).ext_header(kProtoDestOpts, Bytes(10, 1)).ext_header(kProtoRouting)
           .udp(1, 2).build(),
       ParseResult::kOk, {kEtherTypeIpv6, 54 + 8 + 16 + 8, 40 + 32 + 8, kProtoUdp, false, false, true}},
      {"IPv6 AH then TCP", eth_v6().ext_header(kProtoAh, Bytes(18, 0)).tcp(1, 2, test::kTcpSyn).build(),
       ParseResult::kOk, {kEtherTypeIpv6, 54 + 20, 40 + 20 + 20, kProtoTcp, false, false, true}},
      {"IPv6 no next header", eth_v6().build(), ParseResult::kOk,
       {kEtherTypeIpv6, 54, 40, kProtoNoNext, false, false, false}},
      {"IPv6 first fragment", eth_v6().fragment(0, true).udp(1, 2).payload_size(32).udp_length(5000).build(),
       ParseResult::kOk, {kEtherTypeIpv6, 62, 88, kProtoUdp, true, false, true}},
      {"IPv6 later fragment", eth_v6().fragment(1232, true).ip_proto(kProtoUdp).payload_size(3).build(),
       ParseResult::kOk, {kEtherTypeIpv6, 62, 51, kProtoUdp, true, true, false}},
      {"IPv6 atomic fragment", eth_v6().fragment(0, false).icmp6(129, 0).build(), ParseResult::kOk,
       {kEtherTypeIpv6, 62, 56, kProtoIcmpv6, true, false, true}},
      {"IPv4 SCTP with an INIT chunk", eth_v4().ip_proto(kProtoSctp).payload_size(12 + 20).build(), ParseResult::kOk,
       {kEtherTypeIpv4, 34, 52, kProtoSctp, false, false, true}},
      {"IPv4 SCTP common header only", eth_v4().ip_proto(kProtoSctp).payload_size(12).build(), ParseResult::kOk,
       {kEtherTypeIpv4, 34, 32, kProtoSctp, false, false, true}},
      {"IPv6 SCTP with a DATA chunk", eth_v6().ip_proto(kProtoSctp).payload_size(12 + 20).build(), ParseResult::kOk,
       {kEtherTypeIpv6, 54, 72, kProtoSctp, false, false, true}},
      {"IPv6 SCTP after a destination options header", eth_v6().ext_header(kProtoDestOpts).ip_proto(kProtoSctp)
                                                           .payload_size(16).build(),
       ParseResult::kOk, {kEtherTypeIpv6, 62, 64, kProtoSctp, false, false, true}},
      {"IPv4 first fragment with SCTP", eth_v4().fragment(0, true).ip_proto(kProtoSctp).payload_size(24).build(),
       ParseResult::kOk, {kEtherTypeIpv4, 34, 44, kProtoSctp, true, false, true}},
      {"IPv4 first fragment with the SCTP header cut", eth_v4().fragment(0, true).ip_proto(kProtoSctp)
                                                           .payload_size(8).build(),
       ParseResult::kOk, {kEtherTypeIpv4, 34, 28, kProtoSctp, true, false, false}},
      {"IPv4 later fragment of SCTP", eth_v4().fragment(1480, false).ip_proto(kProtoSctp).payload_size(12).build(),
       ParseResult::kOk, {kEtherTypeIpv4, 34, 32, kProtoSctp, true, true, false}},
      {"IPv6 first fragment with SCTP", eth_v6().fragment(0, true).ip_proto(kProtoSctp).payload_size(16).build(),
       ParseResult::kOk, {kEtherTypeIpv6, 62, 64, kProtoSctp, true, false, true}},
      {"IPv6 later fragment of SCTP", eth_v6().fragment(8, false).ip_proto(kProtoSctp).payload_size(4).build(),
       ParseResult::kOk, {kEtherTypeIpv6, 62, 52, kProtoSctp, true, true, false}},
      {"IPv6 8 extension headers",
       [] {
         PacketBuilder b = eth_v6();
         for (int i = 0; i < kMaxIpv6ExtHeaders; ++i) b.ext_header(kProtoDestOpts);
         return b.udp(1, 2).build();
       }(),
       ParseResult::kOk,
       {kEtherTypeIpv6, static_cast<uint16_t>(54 + 8 * kMaxIpv6ExtHeaders),
        static_cast<uint16_t>(48 + 8 * kMaxIpv6ExtHeaders), kProtoUdp, false, false, true}},
      {"ARP request",
       eth().arp(1, kMacA, ip4("10.0.0.1"), test::Mac{}, ip4("10.0.0.2")).pad_to(60).build(), ParseResult::kOk,
       {kEtherTypeArp, 42, 28, 0, false, false, false}},
      {"VLAN-tagged IPv4 is parsed through but unsupported", eth().vlan(0x2064).ipv4(ip4("1.1.1.1"), ip4("2.2.2.2"))
                                                                .udp(1, 2).build(),
       ParseResult::kUnsupported, {kEtherTypeIpv4, 38, 28, kProtoUdp, false, false, true}},

      {"empty frame", Bytes{}, ParseResult::kTruncated, {}},
      {"VLAN tag cut", [] {
         Bytes b = eth().vlan(5).ipv4(ip4("1.1.1.1"), ip4("2.2.2.2")).build();
         b.resize(16);
         return b;
       }(), ParseResult::kTruncated, {}},
      {"two 802.1Q tags", eth().vlan(1).vlan(2).ipv4(ip4("1.1.1.1"), ip4("2.2.2.2")).build(),
       ParseResult::kUnsupported, {}},
      {"802.1ad outer tag", eth().vlan(1, kEtherTypeQinQ).vlan(2).ipv4(ip4("1.1.1.1"), ip4("2.2.2.2")).build(),
       ParseResult::kUnsupported, {}},
      {"LLDP", eth().ether_type(0x88CC).payload_size(40).build(), ParseResult::kUnsupported, {}},
      {"ARP for another hardware type",
       [] {
         Bytes b = eth().arp(1, kMacA, ip4("10.0.0.1"), test::Mac{}, ip4("10.0.0.2")).build();
         b[15] = 6;
         return b;
       }(),
       ParseResult::kUnsupported, {}},
      {"ARP body of 27 bytes", [] {
         Bytes b = eth().arp(1, kMacA, ip4("10.0.0.1"), test::Mac{}, ip4("10.0.0.2")).build();
         b.pop_back();
         return b;
       }(), ParseResult::kTruncated, {}},
      {"IPv4 IHL 4", eth_v4().ihl(4).udp(1, 2).build(), ParseResult::kBadHeader, {}},
      {"IPv4 IHL 0", eth_v4().ihl(0).build(), ParseResult::kBadHeader, {}},
      {"IPv4 IHL 15 past the buffer", eth_v4().ihl(15).udp(1, 2).build(), ParseResult::kTruncated, {}},
      {"IPv4 IHL 15 past the total length", eth_v4().ihl(15).payload_size(60).total_length(40).build(),
       ParseResult::kBadHeader, {}},
      {"IPv4 version 6 in an IPv4 EtherType", eth_v4().ip_version(6).build(), ParseResult::kBadHeader, {}},
      {"IPv4 total length past the buffer", eth_v4().udp(1, 2).total_length(29).build(),
       ParseResult::kTruncated, {}},
      {"IPv4 total length 0 (TSO)", eth_v4().udp(1, 2).total_length(0).build(), ParseResult::kBadHeader, {}},
      {"IPv4 total length under the IHL", eth_v4().udp(1, 2).total_length(19).build(), ParseResult::kBadHeader,
       {}},
      {"IPv4 total length cuts the UDP header", eth_v4().udp(1, 2).total_length(24).build(),
       ParseResult::kTruncated, {}},
      {"UDP length past the IP packet", eth_v4().udp(1, 2).payload_size(4).udp_length(13).build(),
       ParseResult::kBadHeader, {}},
      {"UDP length 7", eth_v4().udp(1, 2).udp_length(7).build(), ParseResult::kBadHeader, {}},
      {"TCP data offset 4", eth_v4().tcp(1, 2, 0).tcp_data_offset(4).build(), ParseResult::kBadHeader, {}},
      {"TCP options past the segment", eth_v4().tcp(1, 2, 0).tcp_data_offset(6).build(), ParseResult::kTruncated,
       {}},
      {"ICMP of 7 bytes", eth_v4().ip_proto(kProtoIcmp).payload_size(7).build(), ParseResult::kTruncated, {}},
      {"ICMPv6 of 3 bytes", eth_v6().ip_proto(kProtoIcmpv6).payload_size(3).build(), ParseResult::kTruncated, {}},
      {"SCTP of 11 bytes", eth_v4().ip_proto(kProtoSctp).payload_size(11).build(), ParseResult::kTruncated, {}},
      {"IPv6 SCTP of 11 bytes", eth_v6().ip_proto(kProtoSctp).payload_size(11).build(), ParseResult::kTruncated, {}},
      {"IPv4 total length cuts the SCTP header", eth_v4().ip_proto(kProtoSctp).payload_size(12).total_length(31)
                                                     .build(),
       ParseResult::kTruncated, {}},
      {"IPv6 version 4 in an IPv6 EtherType", eth_v6().ip_version(4).build(), ParseResult::kBadHeader, {}},
      {"IPv6 payload length past the buffer", eth_v6().udp(1, 2).total_length(9).build(),
       ParseResult::kTruncated, {}},
      {"IPv6 payload length 0 with UDP", eth_v6().udp(1, 2).total_length(0).build(), ParseResult::kTruncated, {}},
      {"IPv6 jumbogram", eth_v6().ext_header(kProtoHopByHop, {0xC2, 4, 0, 1, 0, 0}).udp(1, 2).total_length(0)
                             .build(),
       ParseResult::kUnsupported, {}},
      {"IPv6 hop-by-hop not first", eth_v6().ext_header(kProtoDestOpts).ext_header(kProtoHopByHop).udp(1, 2)
                                        .build(),
       ParseResult::kBadHeader, {}},
      {"IPv6 extension header length past the packet", eth_v6().ext_header_raw(kProtoDestOpts, {0, 5, 0, 0, 0, 0,
                                                                                               0, 0})
                                                           .udp(1, 2).build(),
       ParseResult::kTruncated, {}},
      {"IPv6 extension header cut after 1 byte", eth_v6().ext_header_raw(kProtoRouting, {0}).build(),
       ParseResult::kTruncated, {}},
      {"IPv6 fragment header cut", eth_v6().ext_header_raw(kProtoFragment, {0, 0, 0, 0}).build(),
       ParseResult::kTruncated, {}},
      {"IPv6 9 extension headers",
       [] {
         PacketBuilder b = eth_v6();
         for (int i = 0; i <= kMaxIpv6ExtHeaders; ++i) b.ext_header(kProtoDestOpts);
         return b.udp(1, 2).build();
       }(),
       ParseResult::kUnsupported, {}},
      {"IPv6 mobility header", eth_v6().ip_proto(135).payload_size(16).build(), ParseResult::kUnsupported, {}},
      {"IPv6 first fragment with the UDP header cut", eth_v6().fragment(0, true).ip_proto(kProtoUdp).payload_size(4)
                                                          .build(),
       ParseResult::kOk, {kEtherTypeIpv6, 62, 52, kProtoUdp, true, false, false}},
      {"IPv6 ext header after a cut", eth_v6().fragment(0, true).ext_header_raw(kProtoDestOpts, {0, 2}).build(),
       ParseResult::kTruncated, {}},
  };
}

void check_fields(const ParseCase& c, const PacketInfo& info) {
  EXPECT_EQ(info.ether_type, c.expect.ether_type);
  EXPECT_EQ(info.l4_offset, c.expect.l4_offset);
  EXPECT_EQ(info.l3_len, c.expect.l3_len);
  EXPECT_EQ(info.l4_len, info.l3_offset + info.l3_len - info.l4_offset);
  EXPECT_EQ(info.l4_proto, c.expect.l4_proto);
  EXPECT_EQ(info.is_fragment, c.expect.is_fragment);
  EXPECT_EQ(info.later_fragment, c.expect.later_fragment);
  EXPECT_EQ(info.has_l4, c.expect.has_l4);
  EXPECT_TRUE(info_fits(info, c.input.size()));
}

TEST(ParseFrame, Table) {
  for (const ParseCase& c : frame_cases()) {
    SCOPED_TRACE(c.description);
    PacketInfo info;
    const ParseResult r = parse_exact(c.input, c.input.size(), &info);
    EXPECT_STREQ(name(r), name(c.result));
    if (c.result == ParseResult::kOk || c.expect.ether_type != 0) check_fields(c, info);
  }
}

TEST(ParseFrame, VlanFieldsAreReported) {
  const Bytes b = eth().vlan(0xA07B).ipv6(ip6("::1"), ip6("::2")).udp(1, 2).build();
  PacketInfo info;
  EXPECT_EQ(parse_frame(b.data(), b.size(), &info), ParseResult::kUnsupported);
  EXPECT_TRUE(info.has_vlan);
  EXPECT_EQ(info.vlan_tci, 0xA07B);
  EXPECT_EQ(info.l3_offset, 18);
  EXPECT_EQ(info.l4_offset, 58);
}

TEST(ParseFrame, FieldsAfterAFailureAreZero) {
  const Bytes b = eth_v4().udp(1, 2).udp_length(3).build();
  PacketInfo info;
  info.has_l4 = true;
  info.vlan_tci = 9;
  EXPECT_EQ(parse_frame(b.data(), b.size(), &info), ParseResult::kBadHeader);
  EXPECT_FALSE(info.has_l4);
  EXPECT_EQ(info.vlan_tci, 0);
  EXPECT_EQ(info.l3_offset, 14);
}

TEST(ParseFrame, NullBuffer) {
  PacketInfo info;
  EXPECT_EQ(parse_frame(nullptr, 0, &info), ParseResult::kTruncated);
  EXPECT_EQ(parse_ip(nullptr, 0, &info), ParseResult::kTruncated);
}

// Valid packets without Ethernet padding: every strict prefix is kTruncated.
std::vector<std::pair<std::string, Bytes>> unpadded_valid_frames() {
  std::vector<std::pair<std::string, Bytes>> out;
  for (const ParseCase& c : frame_cases()) {
    if (c.result == ParseResult::kOk && c.description.find("padding") == std::string::npos &&
        c.description.find("ARP") == std::string::npos) {
      out.emplace_back(c.description, c.input);
    }
  }
  out.emplace_back("ARP unpadded",
                   eth().arp(2, kMacA, ip4("10.0.0.1"), kMacB, ip4("10.0.0.2")).build());
  return out;
}

TEST(ParseFrame, EveryPrefixIsTruncated) {
  for (const auto& [description, frame] : unpadded_valid_frames()) {
    SCOPED_TRACE(description);
    PacketInfo info;
    ASSERT_EQ(parse_exact(frame, frame.size(), &info), ParseResult::kOk);
    for (size_t n = 0; n < frame.size(); ++n) {
      SCOPED_TRACE(n);
      EXPECT_STREQ(name(parse_exact(frame, n, &info)), "kTruncated");
    }
  }
}

TEST(ParseIp, Table) {
  struct Case {
    const char* description;
    Bytes input;
    ParseResult result;
    uint16_t ether_type;
    uint16_t l4_offset;
  };
  const Case cases[] = {
      {"IPv4 UDP", PacketBuilder().ipv4(ip4("1.2.3.4"), ip4("5.6.7.8")).udp(1, 2).build(), ParseResult::kOk,
       kEtherTypeIpv4, 20},
      {"IPv6 TCP", PacketBuilder().ipv6(ip6("::1"), ip6("::2")).tcp(1, 2, 0).build(), ParseResult::kOk,
       kEtherTypeIpv6, 40},
      {"IPv4 with trailing bytes", PacketBuilder().ipv4(ip4("1.2.3.4"), ip4("5.6.7.8")).pad_to(64).build(),
       ParseResult::kOk, kEtherTypeIpv4, 20},
      {"version 5", Bytes(40, 0x50), ParseResult::kBadHeader, 0, 0},
      {"version 0", Bytes(40, 0x00), ParseResult::kBadHeader, 0, 0},
      {"one byte", Bytes{0x45}, ParseResult::kTruncated, kEtherTypeIpv4, 0},
      {"empty", Bytes{}, ParseResult::kTruncated, 0, 0},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.description);
    PacketInfo info;
    EXPECT_STREQ(name(parse_exact(c.input, c.input.size(), &info, true)), name(c.result));
    EXPECT_EQ(info.ether_type, c.ether_type);
    EXPECT_EQ(info.l3_offset, 0);
    EXPECT_EQ(info.l4_offset, c.l4_offset);
  }
}

TEST(ParseIp, EveryPrefixIsTruncated) {
  const Bytes packets[] = {
      PacketBuilder().ipv4(ip4("1.2.3.4"), ip4("5.6.7.8")).ipv4_options({1, 1, 1, 1}).tcp(1, 2, 0).build(),
      PacketBuilder().ipv6(ip6("fe80::1"), ip6("ff02::1")).ext_header(kProtoHopByHop).icmp6(143, 0).build(),
  };
  for (const Bytes& p : packets) {
    PacketInfo info;
    ASSERT_EQ(parse_exact(p, p.size(), &info, true), ParseResult::kOk);
    for (size_t n = 0; n < p.size(); ++n) {
      SCOPED_TRACE(n);
      EXPECT_STREQ(name(parse_exact(p, n, &info, true)), "kTruncated");
    }
  }
}

TEST(ParseIp, HugeIpv6PacketIsUnsupportedNotOverflowed) {
  // 40 + 65535 bytes cannot be described by 16-bit offsets.
  Bytes p = PacketBuilder().ipv6(ip6("::1"), ip6("::2")).ip_proto(kProtoUdp).payload_size(65535).build();
  PacketInfo info;
  EXPECT_EQ(parse_ip(p.data(), p.size(), &info), ParseResult::kUnsupported);
  p = PacketBuilder().ipv6(ip6("::1"), ip6("::2")).ip_proto(kProtoEsp).payload_size(65495).build();
  EXPECT_EQ(parse_ip(p.data(), p.size(), &info), ParseResult::kOk);
  EXPECT_EQ(info.l3_len, 65535);
}

// --- ESP-in-UDP

Bytes esp_packet(uint32_t spi, uint32_t seq, size_t body) {
  Bytes esp;
  for (int i = 3; i >= 0; --i) esp.push_back(static_cast<uint8_t>(spi >> (8 * i)));
  for (int i = 3; i >= 0; --i) esp.push_back(static_cast<uint8_t>(seq >> (8 * i)));
  for (size_t i = 0; i < body; ++i) esp.push_back(static_cast<uint8_t>(0xA0 + i));
  return esp;
}

TEST(ClassifyEspInUdp, Table) {
  struct Case {
    const char* description;
    Bytes frame;
    EspClass result;
    uint32_t spi;
    uint32_t seq;
    uint16_t esp_len;
  };
  auto udp4500 = [] { return eth_v4().udp(49152, kEspInUdpPort); };
  const Case cases[] = {
      {"ESP, 20 bytes of ciphertext", udp4500().payload(esp_packet(0x1001, 7, 8 + 20 + 16)).build(), EspClass::kEsp,
       0x1001, 7, 52},
      {"ESP, minimum length", udp4500().payload(esp_packet(0xFFFFFFFF, 0xFFFFFFFF, 26)).build(), EspClass::kEsp,
       0xFFFFFFFF, 0xFFFFFFFF, 34},
      {"ESP, one byte short", udp4500().payload(esp_packet(0x1001, 7, 25)).build(), EspClass::kTruncated, 0, 0, 0},
      {"ESP delimited by the UDP length, not the frame",
       udp4500().payload(esp_packet(5, 1, 40)).udp_length(8 + 34).build(), EspClass::kEsp, 5, 1, 34},
      {"NAT-T keepalive", udp4500().payload(Bytes{0xFF}).build(), EspClass::kKeepalive, 0, 0, 0},
      {"NAT-T keepalive in a padded frame", udp4500().payload(Bytes{0xFF}).pad_to(60).build(),
       EspClass::kKeepalive, 0, 0, 0},
      {"single byte that is not 0xFF", udp4500().payload(Bytes{0xFE}).build(), EspClass::kTruncated, 0, 0, 0},
      {"non-ESP marker (IKE)", udp4500().payload(esp_packet(0, 0, 28)).build(), EspClass::kNonEsp, 0, 0, 0},
      {"non-ESP marker alone", udp4500().payload(Bytes{0, 0, 0, 0}).build(), EspClass::kNonEsp, 0, 0, 0},
      {"3 bytes", udp4500().payload(Bytes{1, 2, 3}).build(), EspClass::kTruncated, 0, 0, 0},
      {"empty UDP payload", udp4500().build(), EspClass::kTruncated, 0, 0, 0},
      {"UDP length past the frame", udp4500().payload(esp_packet(9, 9, 26)).udp_length(43).build(),
       EspClass::kTruncated, 0, 0, 0},
      {"UDP length 7", udp4500().payload(esp_packet(9, 9, 26)).udp_length(7).build(), EspClass::kTruncated, 0, 0,
       0},
      {"UDP length 9 with 0xFF first", udp4500().payload(Bytes{0xFF, 1, 2, 3}).udp_length(9).build(),
       EspClass::kKeepalive, 0, 0, 0},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.description);
    EspView view;
    view.spi = 42;
    EXPECT_EQ(static_cast<int>(classify_esp_in_udp(c.frame.data(), c.frame.size(), 34, &view)),
              static_cast<int>(c.result));
    if (c.result == EspClass::kEsp) {
      EXPECT_EQ(view.spi, c.spi);
      EXPECT_EQ(view.seq_low, c.seq);
      EXPECT_EQ(view.esp_offset, 42);
      EXPECT_EQ(view.esp_len, c.esp_len);
    } else {
      EXPECT_EQ(view.spi, 0u);
    }
  }
}

TEST(ClassifyEspInUdp, IPv6AndPrefixes) {
  const Bytes frame = eth_v6().udp(50000, kEspInUdpPort).payload(esp_packet(0xABCD, 3, 40)).build();
  PacketInfo info;
  ASSERT_EQ(parse_frame(frame.data(), frame.size(), &info), ParseResult::kOk);
  EspView view;
  ASSERT_EQ(classify_esp_in_udp(frame.data(), frame.size(), info.l4_offset, &view), EspClass::kEsp);
  EXPECT_EQ(view.esp_offset, 62);
  EXPECT_EQ(view.esp_len, 48);
  for (size_t n = 0; n < frame.size(); ++n) {
    SCOPED_TRACE(n);
    std::unique_ptr<uint8_t[]> copy(new uint8_t[n + 1]);
    std::copy(frame.begin(), frame.begin() + static_cast<std::ptrdiff_t>(n), copy.get());
    EXPECT_EQ(classify_esp_in_udp(copy.get(), n, info.l4_offset, &view), EspClass::kTruncated);
  }
  EXPECT_EQ(classify_esp_in_udp(frame.data(), frame.size(), 0xFFFF, &view), EspClass::kTruncated);
  EXPECT_EQ(classify_esp_in_udp(nullptr, 0, 0, &view), EspClass::kTruncated);
}

}  // namespace
}  // namespace meshwire::dp::net
