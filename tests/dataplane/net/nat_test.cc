#include "net/nat.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "packet_builder.h"

namespace meshwire::dp::net {
namespace {

using test::Bytes;
using test::PacketBuilder;
using test::ip4;
using test::ip6;
using test::naive_fold;
using test::naive_sum;

// --- Independent references: bitwise CRC32c and checksums from scratch.

uint32_t naive_crc32c_update(uint32_t c, const uint8_t* p, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    c ^= p[i];
    for (int k = 0; k < 8; ++k) c = (c >> 1) ^ (0x82F63B78 & (0u - (c & 1)));
  }
  return c;
}
uint32_t naive_crc32c(const uint8_t* p, size_t n) { return ~naive_crc32c_update(0xFFFFFFFF, p, n); }

// CRC32c of an SCTP packet (n >= 12) with its checksum field zeroed, as on
// the wire (least significant byte first) read big-endian: what the field
// holds.
uint32_t sctp_wire_crc(const uint8_t* sctp, size_t n) {
  const uint8_t zeros[4] = {};
  uint32_t c = naive_crc32c_update(0xFFFFFFFF, sctp, 8);
  c = naive_crc32c_update(c, zeros, 4);
  c = naive_crc32c_update(c, sctp + 12, n - 12);
  return __builtin_bswap32(~c);
}

uint32_t field32(const uint8_t* p) { return static_cast<uint32_t>(p[0]) << 24 | p[1] << 16 | p[2] << 8 | p[3]; }
uint16_t field16(const uint8_t* p) { return static_cast<uint16_t>(p[0] << 8 | p[1]); }

// SCTP common header + chunks, CRC32c filled in.
Bytes sctp(uint16_t sport, uint16_t dport, uint32_t vtag, const Bytes& chunks) {
  Bytes b = {static_cast<uint8_t>(sport >> 8), static_cast<uint8_t>(sport), static_cast<uint8_t>(dport >> 8),
             static_cast<uint8_t>(dport), static_cast<uint8_t>(vtag >> 24), static_cast<uint8_t>(vtag >> 16),
             static_cast<uint8_t>(vtag >> 8), static_cast<uint8_t>(vtag), 0, 0, 0, 0};
  b.insert(b.end(), chunks.begin(), chunks.end());
  const uint32_t c = sctp_wire_crc(b.data(), b.size());
  for (int i = 0; i < 4; ++i) b[8 + i] = static_cast<uint8_t>(c >> (24 - 8 * i));
  return b;
}

// A DATA chunk around payload, padded to 4.
Bytes data_chunk(const Bytes& payload) {
  const size_t len = 16 + payload.size();
  Bytes c = {0, 3, static_cast<uint8_t>(len >> 8), static_cast<uint8_t>(len), 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 46};
  c.insert(c.end(), payload.begin(), payload.end());
  while (c.size() % 4 != 0) c.push_back(0);
  return c;
}

// Checks every checksum of the parsed packet in b against one computed from
// scratch: the IPv4 header, TCP/UDP (an IPv4 UDP 0 accepted), SCTP CRC32c,
// ICMP/ICMPv6, and in an ICMP error the quoted IPv4 header.
void expect_checksums(const Bytes& b, bool frame) {
  PacketInfo info;
  ASSERT_EQ(frame ? parse_frame(b.data(), b.size(), &info) : parse_ip(b.data(), b.size(), &info), ParseResult::kOk);
  const uint8_t* ip = b.data() + info.l3_offset;
  const bool v6 = info.ether_type == kEtherTypeIpv6;
  if (!v6) {
    Bytes hdr(ip, ip + (info.l4_offset - info.l3_offset));
    hdr[10] = hdr[11] = 0;
    EXPECT_EQ(field16(ip + 10), naive_fold(naive_sum(hdr.data(), hdr.size()))) << "IPv4 header checksum";
  }
  if (!info.has_l4) return;
  Bytes l4(b.begin() + info.l4_offset, b.begin() + info.l4_offset + info.l4_len);
  const uint32_t pseudo = v6 ? naive_sum(ip + 8, 32) + info.l4_proto + info.l4_len
                             : naive_sum(ip + 12, 8) + info.l4_proto + info.l4_len;
  switch (info.l4_proto) {
    case kProtoTcp:
    case kProtoUdp: {
      const size_t off = info.l4_proto == kProtoTcp ? 16 : 6;
      const uint16_t got = field16(l4.data() + off);
      if (info.l4_proto == kProtoUdp && !v6 && got == 0) break;
      l4[off] = l4[off + 1] = 0;
      uint16_t want = naive_fold(naive_sum(l4.data(), l4.size(), pseudo));
      if (info.l4_proto == kProtoUdp && want == 0) want = 0xFFFF;
      EXPECT_EQ(got, want) << (info.l4_proto == kProtoTcp ? "TCP checksum" : "UDP checksum");
      break;
    }
    case kProtoSctp:
      EXPECT_EQ(field32(l4.data() + 8), sctp_wire_crc(l4.data(), l4.size())) << "SCTP CRC32c";
      break;
    case kProtoIcmp:
    case kProtoIcmpv6: {
      const uint16_t got = field16(l4.data() + 2);
      l4[2] = l4[3] = 0;
      EXPECT_EQ(got, naive_fold(naive_sum(l4.data(), l4.size(), v6 ? pseudo : 0))) << "ICMP checksum";
      if (!v6 && l4.size() >= 28 && (l4[8] >> 4) == 4) {
        const size_t ihl = static_cast<size_t>(l4[8] & 0xF) * 4;
        if (l4.size() >= 8 + ihl) {
          Bytes hdr(l4.begin() + 8, l4.begin() + 8 + static_cast<std::ptrdiff_t>(ihl));
          const uint16_t inner_got = field16(hdr.data() + 10);
          hdr[10] = hdr[11] = 0;
          EXPECT_EQ(inner_got, naive_fold(naive_sum(hdr.data(), hdr.size()))) << "quoted IPv4 header checksum";
        }
      }
      break;
    }
    default:
      break;
  }
}

// --- Packets of a flow, built whole by the test builder.

enum class Proto { kTcp, kUdp, kSctp };
const char* name(Proto p) { return p == Proto::kTcp ? "TCP" : p == Proto::kUdp ? "UDP" : "SCTP"; }

struct Endpoint {
  Bytes addr;  // 4 or 16 bytes
  uint16_t port;
};

const test::Mac kMacA = test::mac("02:00:00:00:00:0a");
const test::Mac kMacB = test::mac("02:00:00:00:00:0b");

Bytes a4(const char* text) {
  const test::Ip4 a = ip4(text);
  return Bytes(a.begin(), a.end());
}
Bytes a6(const char* text) {
  const test::Ip6 a = ip6(text);
  return Bytes(a.begin(), a.end());
}

const Endpoint kClient4{a4("10.244.1.7"), 40123};
const Endpoint kVip4{a4("10.96.0.20"), 80};
const Endpoint kBackend4{a4("10.244.2.9"), 8080};
const Endpoint kClient6{a6("fd00:10:244:1::7"), 40123};
const Endpoint kVip6{a6("fd00:96::20"), 80};
const Endpoint kBackend6{a6("fd00:10:244:2::9"), 8080};

// The IP layer of a packet src -> dst (family from the address length).
PacketBuilder ip_layer(const Endpoint& src, const Endpoint& dst, bool eth) {
  PacketBuilder b;
  if (eth) b.eth(kMacA, kMacB);
  if (src.addr.size() == 16) {
    test::Ip6 s{}, d{};
    std::copy(src.addr.begin(), src.addr.end(), s.begin());
    std::copy(dst.addr.begin(), dst.addr.end(), d.begin());
    b.ipv6(s, d).flow_label(0xBEEF);
  } else {
    test::Ip4 s{}, d{};
    std::copy(src.addr.begin(), src.addr.end(), s.begin());
    std::copy(dst.addr.begin(), dst.addr.end(), d.begin());
    b.ipv4(s, d).ip_id(0x4242).dont_fragment();
  }
  return b;
}

PacketBuilder& l4_layer(PacketBuilder& b, Proto proto, const Endpoint& src, const Endpoint& dst,
                        const Bytes& payload) {
  switch (proto) {
    case Proto::kTcp:
      return b.tcp(src.port, dst.port, test::kTcpAck | test::kTcpPsh, 0x01020304, 0x0A0B0C0D).payload(payload);
    case Proto::kUdp: return b.udp(src.port, dst.port).payload(payload);
    case Proto::kSctp:
      return b.ip_proto(kProtoSctp).payload(sctp(src.port, dst.port, 0xCAFEF00D, data_chunk(payload)));
  }
  return b;
}

Bytes packet(Proto proto, const Endpoint& src, const Endpoint& dst, bool eth, const Bytes& payload) {
  PacketBuilder b = ip_layer(src, dst, eth);
  return l4_layer(b, proto, src, dst, payload).build();
}

PacketInfo parsed(const Bytes& b, bool frame) {
  PacketInfo info;
  const ParseResult r = frame ? parse_frame(b.data(), b.size(), &info) : parse_ip(b.data(), b.size(), &info);
  EXPECT_EQ(r, ParseResult::kOk);
  return info;
}

std::string label(Proto p, bool v6, bool eth, const char* what) {
  std::string s = name(p);
  s += v6 ? "/IPv6" : "/IPv4";
  s += eth ? " frame " : " packet ";
  s += what;
  return s;
}

// --- rewrite_dst / rewrite_src

TEST(NatRewrite, EveryProtocolAndFamilyMatchesAPacketBuiltWithTheNewTuple) {
  const Bytes payloads[] = {{}, test::bytes("x"), test::bytes("GET / HTTP/1.1\r\nHost: a\r\n\r\n")};
  for (Proto proto : {Proto::kTcp, Proto::kUdp, Proto::kSctp}) {
    for (bool v6 : {false, true}) {
      for (bool eth : {false, true}) {
        for (const Bytes& payload : payloads) {
          const Endpoint& client = v6 ? kClient6 : kClient4;
          const Endpoint& vip = v6 ? kVip6 : kVip4;
          const Endpoint& backend = v6 ? kBackend6 : kBackend4;
          SCOPED_TRACE(label(proto, v6, eth, "") + std::to_string(payload.size()));

          // Request: client -> VIP becomes client -> backend.
          Bytes p = packet(proto, client, vip, eth, payload);
          const Bytes original = p;
          ASSERT_TRUE(rewrite_dst(p.data(), p.size(), parsed(p, eth), backend.addr.data(), backend.port));
          EXPECT_EQ(p, packet(proto, client, backend, eth, payload));
          expect_checksums(p, eth);
          // And back: the original bytes.
          ASSERT_TRUE(rewrite_dst(p.data(), p.size(), parsed(p, eth), vip.addr.data(), vip.port));
          EXPECT_EQ(p, original);

          // Reply: backend -> client becomes VIP -> client.
          Bytes r = packet(proto, backend, client, eth, payload);
          const Bytes reply = r;
          ASSERT_TRUE(rewrite_src(r.data(), r.size(), parsed(r, eth), vip.addr.data(), vip.port));
          EXPECT_EQ(r, packet(proto, vip, client, eth, payload));
          expect_checksums(r, eth);
          ASSERT_TRUE(rewrite_src(r.data(), r.size(), parsed(r, eth), backend.addr.data(), backend.port));
          EXPECT_EQ(r, reply);
        }
      }
    }
  }
}

TEST(NatRewrite, SamePortChangesOnlyTheAddress) {
  for (Proto proto : {Proto::kTcp, Proto::kUdp, Proto::kSctp}) {
    SCOPED_TRACE(name(proto));
    const Endpoint backend{kBackend4.addr, kVip4.port};
    Bytes p = packet(proto, kClient4, kVip4, true, test::bytes("abc"));
    ASSERT_TRUE(rewrite_dst(p.data(), p.size(), parsed(p, true), backend.addr.data(), backend.port));
    EXPECT_EQ(p, packet(proto, kClient4, backend, true, test::bytes("abc")));
  }
}

TEST(NatRewrite, Ipv4UdpWithoutChecksumStaysWithout) {
  Bytes p = ip_layer(kClient4, kVip4, true).udp(kClient4.port, kVip4.port).payload("no sum").l4_checksum(0).build();
  ASSERT_TRUE(rewrite_dst(p.data(), p.size(), parsed(p, true), kBackend4.addr.data(), kBackend4.port));
  EXPECT_EQ(p, ip_layer(kClient4, kBackend4, true).udp(kClient4.port, kBackend4.port).payload("no sum")
                   .l4_checksum(0).build());
  expect_checksums(p, true);
}

// A UDP checksum that computes to 0 goes on the wire as 0xFFFF (RFC 768;
// RFC 8200 8.1 for IPv6, where 0 would mean "none", which IPv6 forbids).
TEST(NatRewrite, UdpChecksumComingOutZeroIsAllOnes) {
  for (bool v6 : {false, true}) {
    SCOPED_TRACE(v6 ? "IPv6" : "IPv4");
    const Endpoint& client = v6 ? kClient6 : kClient4;
    const Endpoint& vip = v6 ? kVip6 : kVip4;
    const Endpoint& backend = v6 ? kBackend6 : kBackend4;
    // After the rewrite, a payload word equal to the checksum without it
    // makes the sum all ones: the computed checksum is 0.
    const Bytes probe = packet(Proto::kUdp, client, backend, false, {0, 0});
    const uint16_t c = field16(probe.data() + (v6 ? 40 : 20) + 6);
    const Bytes payload = {static_cast<uint8_t>(c >> 8), static_cast<uint8_t>(c)};
    const Bytes expected = packet(Proto::kUdp, client, backend, false, payload);
    ASSERT_EQ(field16(expected.data() + (v6 ? 40 : 20) + 6), 0xFFFF);

    Bytes p = packet(Proto::kUdp, client, vip, false, payload);
    ASSERT_TRUE(rewrite_dst(p.data(), p.size(), parsed(p, false), backend.addr.data(), backend.port));
    EXPECT_EQ(p, expected);
    Bytes q = packet(Proto::kUdp, client, vip, false, payload);
    ASSERT_TRUE(rewrite_dst_with(q.data(), q.size(), parsed(q, false), backend.addr.data(), backend.port,
                                 nat_deltas(v6, vip.addr.data(), vip.port, backend.addr.data(), backend.port)));
    EXPECT_EQ(q, expected);
  }
}

TEST(NatRewrite, FirstFragmentsAreRewrittenExceptSctp) {
  // The checksum covers the whole datagram: updating it from the first
  // fragment alone is still right (compare with the same fragment built for
  // the new tuple: the builder sums what is there, the same on both sides).
  for (bool v6 : {false, true}) {
    for (Proto proto : {Proto::kTcp, Proto::kUdp}) {
      SCOPED_TRACE(label(proto, v6, true, "first fragment"));
      const Endpoint& client = v6 ? kClient6 : kClient4;
      const Endpoint& vip = v6 ? kVip6 : kVip4;
      const Endpoint& backend = v6 ? kBackend6 : kBackend4;
      auto build = [&](const Endpoint& dst) {
        PacketBuilder b = ip_layer(client, dst, true).dont_fragment(false).fragment(0, true);
        l4_layer(b, proto, client, dst, Bytes(64, 0x5A));
        if (proto == Proto::kUdp) b.udp_length(3000);
        return b.build();
      };
      Bytes p = build(vip);
      const PacketInfo info = parsed(p, true);
      ASSERT_TRUE(info.is_fragment && info.has_l4);
      ASSERT_TRUE(rewrite_dst(p.data(), p.size(), info, backend.addr.data(), backend.port));
      EXPECT_EQ(p, build(backend));
    }
    SCOPED_TRACE(v6 ? "SCTP/IPv6 first fragment" : "SCTP/IPv4 first fragment");
    PacketBuilder b = ip_layer(kClient4, kVip4, true).dont_fragment(false);
    if (v6) b = ip_layer(kClient6, kVip6, true);
    b.fragment(0, true);
    Bytes p = l4_layer(b, Proto::kSctp, kClient4, kVip4, Bytes(64, 1)).build();
    const PacketInfo info = parsed(p, true);
    ASSERT_TRUE(info.is_fragment && info.has_l4);
    const Bytes before = p;
    EXPECT_FALSE(rewrite_dst(p.data(), p.size(), info, (v6 ? kBackend6 : kBackend4).addr.data(), 1));
    EXPECT_FALSE(rewrite_src(p.data(), p.size(), info, (v6 ? kBackend6 : kBackend4).addr.data(), 1));
    EXPECT_EQ(p, before);
  }
}

// An SCTP packet that arrived with a bad CRC leaves with a bad CRC (wrong by
// the same bits), not with a freshly computed one.
TEST(NatRewrite, SctpBadCrcStaysBad) {
  Bytes p = packet(Proto::kSctp, kClient4, kVip4, true, test::bytes("payload"));
  p[14 + 20 + 9] ^= 0x40;
  ASSERT_TRUE(rewrite_dst(p.data(), p.size(), parsed(p, true), kBackend4.addr.data(), kBackend4.port));
  Bytes expected = packet(Proto::kSctp, kClient4, kBackend4, true, test::bytes("payload"));
  expected[14 + 20 + 9] ^= 0x40;
  EXPECT_EQ(p, expected);
}

TEST(NatRewrite, RefusesWithoutTouching) {
  struct Case {
    const char* description;
    Bytes frame;
    bool dst_ok;  // rewrite_dst accepted (these cases exist to show what is refused)
    bool src_ok;
  };
  const Case cases[] = {
      {"IPv4 later fragment", ip_layer(kClient4, kVip4, true).dont_fragment(false).fragment(1480, false)
                                  .ip_proto(kProtoTcp).payload_size(40).build(), false, false},
      {"IPv6 later fragment", ip_layer(kClient6, kVip6, true).fragment(1232, false).ip_proto(kProtoUdp)
                                  .payload_size(40).build(), false, false},
      {"IPv4 first fragment with the TCP header cut", ip_layer(kClient4, kVip4, true).dont_fragment(false)
                                                          .fragment(0, true).ip_proto(kProtoTcp).payload_size(16)
                                                          .build(),
       false, false},
      {"ICMP echo", ip_layer(kClient4, kVip4, true).icmp(8, 0, 1, 1).build(), false, false},
      {"ICMPv6 echo", ip_layer(kClient6, kVip6, true).icmp6(128, 0, 0x10001).build(), false, false},
      {"ESP", ip_layer(kClient4, kVip4, true).ip_proto(kProtoEsp).payload_size(40).build(), false, false},
      {"IPv4 with a loose source route still to follow",
       ip_layer(kClient4, kVip4, true).ipv4_options({131, 7, 4, 10, 0, 0, 1}).tcp(1, 80, test::kTcpSyn).build(),
       false, true},
      {"IPv4 with a strict source route still to follow",
       ip_layer(kClient4, kVip4, true).ipv4_options({1, 137, 7, 4, 10, 0, 0, 1}).udp(1, 80).build(), false, true},
      {"IPv4 with a malformed option", ip_layer(kClient4, kVip4, true).ipv4_options({7, 9, 4}).udp(1, 80).build(),
       false, true},
      {"IPv6 with a routing header, 1 segment left",
       ip_layer(kClient6, kVip6, true).ext_header(kProtoRouting, {4, 1, 0, 0, 0, 0}).udp(1, 80).build(), false,
       true},
      // Accepted: the route is used up, the destination is final.
      {"IPv4 with a used-up source route",
       ip_layer(kClient4, kVip4, true).ipv4_options({131, 7, 8, 10, 0, 0, 1}).tcp(1, 80, test::kTcpSyn).build(),
       true, true},
      {"IPv4 with a record-route option", ip_layer(kClient4, kVip4, true).ipv4_options({1, 7, 7, 4, 0, 0, 0, 0})
                                              .udp(1, 80).build(),
       true, true},
      {"IPv6 with a routing header, no segment left",
       ip_layer(kClient6, kVip6, true).ext_header(kProtoRouting, {4, 0, 0, 0, 0, 0}).udp(1, 80).build(), true, true},
      {"IPv6 with hop-by-hop and destination options",
       ip_layer(kClient6, kVip6, true).ext_header(kProtoHopByHop).ext_header(kProtoDestOpts).tcp(1, 80, 0).build(),
       true, true},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.description);
    const PacketInfo info = parsed(c.frame, true);
    const bool v6 = info.ether_type == kEtherTypeIpv6;
    const uint8_t* addr = (v6 ? kBackend6 : kBackend4).addr.data();
    Bytes p = c.frame;
    EXPECT_EQ(rewrite_dst(p.data(), p.size(), info, addr, 9), c.dst_ok);
    if (c.dst_ok) {
      expect_checksums(p, true);
    } else {
      EXPECT_EQ(p, c.frame);
    }
    p = c.frame;
    EXPECT_EQ(rewrite_src(p.data(), p.size(), info, addr, 9), c.src_ok);
    if (c.src_ok) {
      expect_checksums(p, true);
    } else {
      EXPECT_EQ(p, c.frame);
    }
  }
}

TEST(NatRewrite, DistrustsTheInfo) {
  const Bytes frame = packet(Proto::kTcp, kClient4, kVip4, true, test::bytes("data"));
  const PacketInfo info = parsed(frame, true);
  for (size_t n = 0; n < frame.size(); ++n) {
    SCOPED_TRACE(n);
    std::unique_ptr<uint8_t[]> copy(new uint8_t[n + 1]);
    std::memcpy(copy.get(), frame.data(), n);
    EXPECT_FALSE(rewrite_dst(copy.get(), n, info, kBackend4.addr.data(), 1));  // the whole frame's info
    EXPECT_FALSE(rewrite_outer_src_addr(copy.get(), n, info, kBackend4.addr.data()));
    PacketInfo short_info;
    parse_frame(copy.get(), n, &short_info);
    EXPECT_FALSE(rewrite_src(copy.get(), n, short_info, kBackend4.addr.data(), 1));
    EXPECT_FALSE(std::memcmp(copy.get(), frame.data(), n));
  }
  Bytes p = frame;
  PacketInfo lying = info;
  lying.l4_len = 12;  // fits the buffer, too short for TCP
  lying.l3_len = static_cast<uint16_t>(lying.l4_offset - lying.l3_offset + 12);
  EXPECT_FALSE(rewrite_dst(p.data(), p.size(), lying, kBackend4.addr.data(), 1));
  lying = info;
  lying.l4_offset = static_cast<uint16_t>(lying.l3_offset + 16);  // an IPv4 header of 16 bytes
  lying.l4_len = static_cast<uint16_t>(lying.l3_len - 16);
  EXPECT_FALSE(rewrite_dst(p.data(), p.size(), lying, kBackend4.addr.data(), 1));
  EXPECT_FALSE(rewrite_outer_dst_addr(p.data(), p.size(), lying, kBackend4.addr.data()));
  lying = info;
  lying.ether_type = kEtherTypeArp;
  EXPECT_FALSE(rewrite_dst(p.data(), p.size(), lying, kBackend4.addr.data(), 1));
  EXPECT_EQ(p, frame);
  EXPECT_FALSE(rewrite_dst(nullptr, 0, info, kBackend4.addr.data(), 1));
}

// Random tuples, payloads, protocols and IPv4 options / IPv6 extension
// headers: every checksum stays valid, and rewriting back restores the bytes.
TEST(NatRewrite, RandomPacketsKeepEveryChecksumValid) {
  std::mt19937 rng(7);
  auto random_endpoint = [&](bool v6) {
    Endpoint e{Bytes(v6 ? 16 : 4), static_cast<uint16_t>(rng())};
    for (uint8_t& b : e.addr) b = static_cast<uint8_t>(rng());
    return e;
  };
  for (int iter = 0; iter < 3000; ++iter) {
    const bool v6 = rng() % 2 != 0;
    const bool eth = rng() % 2 != 0;
    const Proto proto = static_cast<Proto>(rng() % 3);
    const Endpoint src = random_endpoint(v6), dst = random_endpoint(v6), to = random_endpoint(v6);
    Bytes payload(rng() % 80);
    for (uint8_t& b : payload) b = static_cast<uint8_t>(rng());
    PacketBuilder b = ip_layer(src, dst, eth);
    if (rng() % 4 == 0) {
      if (v6) {
        b.ext_header(kProtoDestOpts, Bytes(rng() % 20, 1));
      } else {
        b.ipv4_options({1, 1, 1, 1, 7, 7, 4, 0, 0, 0, 0});
      }
    }
    l4_layer(b, proto, src, dst, payload);
    Bytes p = b.build();
    const Bytes original = p;
    const bool dst_side = rng() % 2 != 0;
    SCOPED_TRACE(label(proto, v6, eth, dst_side ? "dst" : "src") + " iteration " + std::to_string(iter));
    const PacketInfo info = parsed(p, eth);
    ASSERT_TRUE(dst_side ? rewrite_dst(p.data(), p.size(), info, to.addr.data(), to.port)
                         : rewrite_src(p.data(), p.size(), info, to.addr.data(), to.port));
    expect_checksums(p, eth);
    const Endpoint& back = dst_side ? dst : src;
    ASSERT_TRUE(dst_side ? rewrite_dst(p.data(), p.size(), info, back.addr.data(), back.port)
                         : rewrite_src(p.data(), p.size(), info, back.addr.data(), back.port));
    ASSERT_EQ(p, original);
  }
}

// The service stage's variants (rewrite_dst_with and its deltas,
// rewrite_src_parsed) give the same bytes as the general rewrites on random
// packets (IPv4 with and without options, IPv6, TCP, UDP, SCTP),
// IPv4 UDP without checksum included (and UdpChecksumComingOutZeroIsAllOnes
// checks the all-ones rule on them too).
TEST(NatRewrite, ParsedVariantsGiveTheSameBytes) {
  std::mt19937 rng(11);
  auto random_endpoint = [&](bool v6) {
    Endpoint e{Bytes(v6 ? 16 : 4), static_cast<uint16_t>(rng())};
    for (uint8_t& b : e.addr) b = static_cast<uint8_t>(rng());
    return e;
  };
  int short_path = 0;
  for (int iter = 0; iter < 4000; ++iter) {
    const bool v6 = rng() % 4 == 0;
    const bool eth = rng() % 2 != 0;
    const Proto proto = static_cast<Proto>(rng() % 5 == 0 ? 2 : rng() % 2);
    const Endpoint src = random_endpoint(v6), dst = random_endpoint(v6), to = random_endpoint(v6);
    Bytes payload(rng() % 40);
    for (uint8_t& b : payload) b = static_cast<uint8_t>(rng());
    PacketBuilder b = ip_layer(src, dst, eth);
    if (!v6 && rng() % 6 == 0) b.ipv4_options({1, 1, 1, 1});
    l4_layer(b, proto, src, dst, payload);
    Bytes p = b.build();
    const PacketInfo info = parsed(p, eth);
    if (proto == Proto::kUdp && !v6 && rng() % 5 == 0) {  // no checksum
      p[info.l4_offset + 6] = p[info.l4_offset + 7] = 0;
    }
    short_path += proto != Proto::kSctp && static_cast<size_t>(info.l4_offset - info.l3_offset) == (v6 ? kIpv6HdrLen : kIpv4HdrLen);
    const bool dst_side = rng() % 2 != 0;
    SCOPED_TRACE(label(proto, v6, eth, dst_side ? "dst" : "src") + " iteration " + std::to_string(iter));
    Bytes general = p;
    ASSERT_TRUE(dst_side ? rewrite_dst(general.data(), general.size(), info, to.addr.data(), to.port)
                         : rewrite_src(general.data(), general.size(), info, to.addr.data(), to.port));
    ASSERT_TRUE(dst_side ? rewrite_dst_with(p.data(), p.size(), info, to.addr.data(), to.port,
                                            nat_deltas(v6, dst.addr.data(), dst.port, to.addr.data(), to.port))
                         : rewrite_src_parsed(p.data(), p.size(), info, to.addr.data(), to.port));
    ASSERT_EQ(p, general);
  }
  EXPECT_GT(short_path, 1500);
}

// --- rewrite_outer_*_addr

TEST(NatOuterAddr, FixesWhatCoversTheAddress) {
  // TCP and UDP: the pseudo-header; IPv4 header checksum.
  for (bool v6 : {false, true}) {
    for (Proto proto : {Proto::kTcp, Proto::kUdp, Proto::kSctp}) {
      SCOPED_TRACE(label(proto, v6, true, "outer address"));
      const Endpoint& client = v6 ? kClient6 : kClient4;
      const Endpoint& vip = v6 ? kVip6 : kVip4;
      const Endpoint& backend = v6 ? kBackend6 : kBackend4;
      const Endpoint backend_vip_port{backend.addr, vip.port};
      Bytes p = packet(proto, client, vip, true, test::bytes("data!"));
      ASSERT_TRUE(rewrite_outer_dst_addr(p.data(), p.size(), parsed(p, true), backend.addr.data()));
      EXPECT_EQ(p, packet(proto, client, backend_vip_port, true, test::bytes("data!")));
      ASSERT_TRUE(rewrite_outer_src_addr(p.data(), p.size(), parsed(p, true), vip.addr.data()));
      EXPECT_EQ(p, packet(proto, Endpoint{vip.addr, client.port}, backend_vip_port, true, test::bytes("data!")));
    }
  }
  // ICMPv6: its pseudo-header. ICMPv4: no pseudo-header.
  Bytes p = ip_layer(kBackend6, kClient6, true).icmp6(1, 4).payload_size(48).build();
  ASSERT_TRUE(rewrite_outer_src_addr(p.data(), p.size(), parsed(p, true), kVip6.addr.data()));
  EXPECT_EQ(p, ip_layer(kVip6, kClient6, true).icmp6(1, 4).payload_size(48).build());
  p = ip_layer(kBackend4, kClient4, true).icmp(3, 3).payload_size(28).build();
  ASSERT_TRUE(rewrite_outer_src_addr(p.data(), p.size(), parsed(p, true), kVip4.addr.data()));
  EXPECT_EQ(p, ip_layer(kVip4, kClient4, true).icmp(3, 3).payload_size(28).build());
  // IPv4 UDP without checksum.
  p = ip_layer(kClient4, kVip4, false).udp(1, 2).l4_checksum(0).build();
  ASSERT_TRUE(rewrite_outer_dst_addr(p.data(), p.size(), parsed(p, false), kBackend4.addr.data()));
  EXPECT_EQ(p, ip_layer(kClient4, kBackend4, false).udp(1, 2).l4_checksum(0).build());
}

TEST(NatOuterAddr, LaterFragmentsGetTheAddressOnly) {
  for (bool v6 : {false, true}) {
    SCOPED_TRACE(v6 ? "IPv6" : "IPv4");
    const Endpoint& client = v6 ? kClient6 : kClient4;
    const Endpoint& vip = v6 ? kVip6 : kVip4;
    const Endpoint& backend = v6 ? kBackend6 : kBackend4;
    auto later = [&](const Endpoint& dst) {
      return ip_layer(client, dst, true).dont_fragment(false).fragment(1480, false).ip_proto(kProtoUdp)
          .payload_size(100).build();
    };
    Bytes p = later(vip);
    ASSERT_TRUE(rewrite_outer_dst_addr(p.data(), p.size(), parsed(p, true), backend.addr.data()));
    EXPECT_EQ(p, later(backend));
    expect_checksums(p, true);
  }
  // A first fragment whose checksum is cut off cannot be fixed.
  const Bytes cut = ip_layer(kClient4, kVip4, true).dont_fragment(false).fragment(0, true).ip_proto(kProtoTcp)
                        .payload_size(12).build();
  Bytes p = cut;
  EXPECT_FALSE(rewrite_outer_dst_addr(p.data(), p.size(), parsed(p, true), kBackend4.addr.data()));
  EXPECT_EQ(p, cut);
}

// --- ICMP errors

// An ICMP error from `from` to `to` quoting the first quote_len bytes of
// quoted (a bare IP packet).
Bytes icmp_error(const Endpoint& from, const Endpoint& to, const Bytes& quoted, size_t quote_len, bool eth = true,
                 uint8_t type = 0, uint8_t code = 0) {
  const Bytes quote(quoted.begin(), quoted.begin() + static_cast<std::ptrdiff_t>(std::min(quote_len, quoted.size())));
  PacketBuilder b = ip_layer(from, to, eth);
  if (from.addr.size() == 16) return b.icmp6(type != 0 ? type : 2, code, 1280).payload(quote).build();
  return b.icmp(type != 0 ? type : 3, code != 0 ? code : 4, 0, 1400).payload(quote).build();
}

TEST(NatIcmpError, InnerViewOfEveryProtocolAndFamily) {
  for (bool v6 : {false, true}) {
    for (Proto proto : {Proto::kTcp, Proto::kUdp, Proto::kSctp}) {
      SCOPED_TRACE(label(proto, v6, true, "quoted"));
      const Endpoint& client = v6 ? kClient6 : kClient4;
      const Endpoint& backend = v6 ? kBackend6 : kBackend4;
      const Endpoint router{v6 ? a6("fd00::1") : a4("10.244.0.1"), 0};
      const Bytes quoted = packet(proto, client, backend, false, Bytes(40, 0x33));
      const size_t hdr = v6 ? 40 : 20;
      for (size_t quote_len = 0; quote_len <= quoted.size(); ++quote_len) {
        SCOPED_TRACE(quote_len);
        const Bytes e = icmp_error(router, client, quoted, quote_len);
        const PacketInfo info = parsed(e, true);
        // Exactly sized, so that a sanitizer build sees any overread.
        std::unique_ptr<uint8_t[]> copy(new uint8_t[e.size()]);
        std::memcpy(copy.get(), e.data(), e.size());
        InnerView v;
        const bool ok = icmp_error_inner(copy.get(), e.size(), info, &v);
        ASSERT_EQ(ok, quote_len >= hdr + 8);
        if (!ok) {
          EXPECT_EQ(v.proto, 0);
          continue;
        }
        EXPECT_EQ(v.ether_type, v6 ? kEtherTypeIpv6 : kEtherTypeIpv4);
        EXPECT_EQ(v.proto, proto == Proto::kTcp ? kProtoTcp : proto == Proto::kUdp ? kProtoUdp : kProtoSctp);
        EXPECT_EQ(v.ip_offset, info.l4_offset + 8);
        EXPECT_EQ(v.l4_offset, info.l4_offset + 8 + hdr);
        EXPECT_EQ(v.l4_avail, quote_len - hdr);
        EXPECT_EQ(Bytes(v.src, v.src + client.addr.size()), client.addr);
        EXPECT_EQ(Bytes(v.dst, v.dst + backend.addr.size()), backend.addr);
        EXPECT_EQ(v.sport, client.port);
        EXPECT_EQ(v.dport, backend.port);
      }
    }
  }
}

TEST(NatIcmpError, NotAnErrorOrNothingToMap) {
  const Bytes tcp4 = packet(Proto::kTcp, kClient4, kBackend4, false, {});
  const Bytes tcp6 = packet(Proto::kTcp, kClient6, kBackend6, false, {});
  const Endpoint router4{a4("10.244.0.1"), 0};
  const Endpoint router6{a6("fd00::1"), 0};
  struct Case {
    const char* description;
    Bytes frame;
  };
  const Case cases[] = {
      {"ICMP echo request", ip_layer(router4, kClient4, true).icmp(8, 0).payload(tcp4).build()},
      {"ICMP redirect", ip_layer(router4, kClient4, true).icmp(5, 1).payload(tcp4).build()},
      {"ICMPv6 echo reply", ip_layer(router6, kClient6, true).icmp6(129, 0).payload(tcp6).build()},
      {"ICMPv6 neighbor solicitation", ip_layer(router6, kClient6, true).icmp6(135, 0).payload(tcp6).build()},
      {"TCP", packet(Proto::kTcp, kClient4, kBackend4, true, tcp4)},
      {"ICMP error quoting ICMP", icmp_error(router4, kClient4, ip_layer(kClient4, kBackend4, false).icmp(8, 0, 1, 2)
                                                                    .payload_size(8).build(), 100)},
      {"ICMP error quoting ESP", icmp_error(router4, kClient4, ip_layer(kClient4, kBackend4, false)
                                                                    .ip_proto(kProtoEsp).payload_size(40).build(),
                                            100)},
      {"ICMP error quoting a later fragment",
       icmp_error(router4, kClient4, ip_layer(kClient4, kBackend4, false).dont_fragment(false).fragment(8, false)
                                         .ip_proto(kProtoUdp).payload_size(16).build(), 100)},
      {"ICMPv6 error quoting a later fragment",
       icmp_error(router6, kClient6, ip_layer(kClient6, kBackend6, false).fragment(8, true).ip_proto(kProtoUdp)
                                         .payload_size(16).build(), 100)},
      {"ICMPv6 error quoting a packet with segments left",
       icmp_error(router6, kClient6, ip_layer(kClient6, kBackend6, false).ext_header(kProtoRouting, {4, 1})
                                         .udp(1, 2).build(), 100)},
      {"ICMP error quoting a source-routed packet",
       icmp_error(router4, kClient4, ip_layer(kClient4, kBackend4, false).ipv4_options({137, 7, 4, 1, 2, 3, 4})
                                         .udp(1, 2).build(), 100)},
      {"ICMP error quoting IPv6", icmp_error(router4, kClient4, tcp6, 100)},
      {"ICMPv6 error quoting IPv4", icmp_error(router6, kClient6, tcp4, 100)},
      {"ICMP error quoting IHL 4", [&] {
         Bytes q = tcp4;
         q[0] = 0x44;
         return icmp_error(router4, kClient4, q, 100);
       }()},
      {"ICMP error quoting IHL 15", [&] {
         Bytes q = tcp4;
         q[0] = 0x4F;
         return icmp_error(router4, kClient4, q, 67);
       }()},
      {"ICMP error in a fragment", ip_layer(router4, kClient4, true).dont_fragment(false).fragment(0, true)
                                      .icmp(3, 4).payload(tcp4).build()},
      {"ICMPv6 error behind 9 extension headers in the quote", [&] {
         PacketBuilder q = ip_layer(kClient6, kBackend6, false);
         for (int i = 0; i <= kMaxIpv6ExtHeaders; ++i) q.ext_header(kProtoDestOpts);
         return icmp_error(router6, kClient6, q.udp(1, 2).build(), 200);
       }()},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.description);
    const PacketInfo info = parsed(c.frame, true);
    InnerView v;
    EXPECT_FALSE(icmp_error_inner(c.frame.data(), c.frame.size(), info, &v));
    Bytes p = c.frame;
    EXPECT_FALSE(rewrite_icmp_error_inner_dst(p.data(), p.size(), info, kVip4.addr.data(), 80));
    EXPECT_FALSE(rewrite_icmp_error_inner_src(p.data(), p.size(), info, kVip4.addr.data(), 80));
    EXPECT_EQ(p, c.frame);
  }
  // Accepted: extension headers in the quote, walked.
  const Bytes q = ip_layer(kClient6, kBackend6, false).ext_header(kProtoHopByHop).fragment(0, true)
                      .ext_header(kProtoDestOpts).udp(1, 2).build();
  const Bytes e = icmp_error(router6, kClient6, q, 200);
  InnerView v;
  ASSERT_TRUE(icmp_error_inner(e.data(), e.size(), parsed(e, true), &v));
  EXPECT_EQ(v.l4_offset, 14 + 40 + 8 + 40 + 8 + 8 + 8);
  EXPECT_EQ(v.dport, 2);
}

// The quote rewritten in place must equal the quote of the packet as it
// would have been with the new tuple: the same bytes, the quoted checksums
// those of the whole rewritten packet, and a valid ICMP checksum. Except:
// SCTP's CRC32c is left as quoted, and so is a TCP checksum cut in half (a
// quote of 17 bytes of TCP, not tested).
TEST(NatIcmpError, RewriteInnerMatchesTheQuoteOfTheRewrittenPacket) {
  for (bool v6 : {false, true}) {
    for (Proto proto : {Proto::kTcp, Proto::kUdp, Proto::kSctp}) {
      const Endpoint& client = v6 ? kClient6 : kClient4;
      const Endpoint& vip = v6 ? kVip6 : kVip4;
      const Endpoint& backend = v6 ? kBackend6 : kBackend4;
      const Endpoint router{v6 ? a6("fd00::1") : a4("10.244.0.1"), 0};
      const Bytes payload(100, 0x77);
      const size_t hdr = v6 ? 40 : 20;
      const Bytes to_backend = packet(proto, client, backend, false, payload);
      Bytes to_vip = packet(proto, client, vip, false, payload);
      Bytes from_backend = packet(proto, backend, client, false, payload);
      const Bytes from_vip = packet(proto, vip, client, false, payload);
      if (proto == Proto::kSctp) {
        std::copy_n(to_backend.begin() + static_cast<std::ptrdiff_t>(hdr + 8), 4,
                    to_vip.begin() + static_cast<std::ptrdiff_t>(hdr + 8));
        std::copy_n(from_vip.begin() + static_cast<std::ptrdiff_t>(hdr + 8), 4,
                    from_backend.begin() + static_cast<std::ptrdiff_t>(hdr + 8));
      }
      for (size_t quote_len : {hdr + 8, hdr + 12, hdr + 16, hdr + 18, hdr + 20, to_backend.size()}) {
        for (bool eth : {false, true}) {
          SCOPED_TRACE(label(proto, v6, eth, "quoted, bytes: ") + std::to_string(quote_len));
          // A router's error about client -> backend, to the client.
          Bytes e = icmp_error(router, client, to_backend, quote_len, eth);
          ASSERT_TRUE(rewrite_icmp_error_inner_dst(e.data(), e.size(), parsed(e, eth), vip.addr.data(), vip.port));
          EXPECT_EQ(e, icmp_error(router, client, to_vip, quote_len, eth));
          expect_checksums(e, eth);
          // The backend's own error: the outer source too.
          e = icmp_error(backend, client, to_backend, quote_len, eth);
          ASSERT_TRUE(rewrite_icmp_error_inner_dst(e.data(), e.size(), parsed(e, eth), vip.addr.data(), vip.port));
          ASSERT_TRUE(rewrite_outer_src_addr(e.data(), e.size(), parsed(e, eth), vip.addr.data()));
          EXPECT_EQ(e, icmp_error(vip, client, to_vip, quote_len, eth));
          expect_checksums(e, eth);
          // The other way: a client's error about backend -> client (a reply
          // not yet rewritten is never seen, but the rewrite is symmetric).
          e = icmp_error(client, vip, from_vip, quote_len, eth);
          ASSERT_TRUE(
              rewrite_icmp_error_inner_src(e.data(), e.size(), parsed(e, eth), backend.addr.data(), backend.port));
          ASSERT_TRUE(rewrite_outer_dst_addr(e.data(), e.size(), parsed(e, eth), backend.addr.data()));
          EXPECT_EQ(e, icmp_error(client, backend, from_backend, quote_len, eth));
          expect_checksums(e, eth);
        }
      }
    }
  }
}

// --- Golden vectors from Scapy: tests/dataplane/net/nat_vectors.py.

enum class Call { kDst, kSrc, kInnerDst, kInnerDstAndOuterSrc };
constexpr Call kDst = Call::kDst;
constexpr Call kSrc = Call::kSrc;
constexpr Call kInnerDst = Call::kInnerDst;
constexpr Call kInnerDstAndOuterSrc = Call::kInnerDstAndOuterSrc;
const Bytes BACKEND4 = a4("10.244.2.9");
const Bytes VIP4 = a4("10.96.0.20");
const Bytes BACKEND6 = a6("fd00:10:244:2::9");
const Bytes VIP6 = a6("fd00:96::20");

struct Golden {
  const char* description;
  Call call;
  const Bytes& addr;
  uint16_t port;
  const char* before;  // hex, a bare IP packet
  const char* after;
};

Bytes from_hex(const char* hex) {
  Bytes out;
  for (size_t i = 0; hex[i] != 0 && hex[i + 1] != 0; i += 2) {
    out.push_back(static_cast<uint8_t>(std::stoi(std::string(hex + i, 2), nullptr, 16)));
  }
  return out;
}

// Output of /usr/bin/python3 tests/dataplane/net/nat_vectors.py (Scapy 2.5.0).
const Golden kGolden[] = {
    // clang-format off
    {"SCTP/IPv4 dst", kDst, BACKEND4, 3869,
     "4500004800010000408463c30af401070a6000149c400f1c1234abcdb2bdda2d0000002600000001000000000000002e68656c6c6f20736374702c206f6464206c656e6774680000",
     "45000048000100004084613a0af401070af402099c400f1d1234abcdb0035cea0000002600000001000000000000002e68656c6c6f20736374702c206f6464206c656e6774680000"},
    {"SCTP/IPv6 src", kSrc, VIP6, 3868,
     "6000000000208440fd000010024400020000000000000009fd0000100244000100000000000000070f1d9c4000000000677491b001000014a1b2c3d40001a000000affff00000007",
     "6000000000208440fd000096000000000000000000000020fd0000100244000100000000000000070f1c9c4000000000ea1436c801000014a1b2c3d40001a000000affff00000007"},
    {"TCP/IPv6 dst", kDst, BACKEND6, 8080,
     "6001234500200640fd000010024400010000000000000007fd000096000000000000000000000020c7380050075bcd15000000008002fd20d3ff0000020405a00402030307000000",
     "6001234500200640fd000010024400010000000000000007fd000010024400020000000000000009c7381f90075bcd15000000008002fd20b3160000020405a00402030307000000"},
    {"TCP/IPv4 src", kSrc, VIP4, 80,
     "4500003900094000400621bf0af402090af401071f90c738000000070000000950182000d0250000485454502f312e3120323030204f4b0d0a",
     "4500003900094000400624480a6000140af401070050c738000000070000000950182000f1ee0000485454502f312e3120323030204f4b0d0a"},
    {"UDP/IPv6 dst", kDst, BACKEND6, 5353,
     "6000000000101140fd000010024400010000000000000007fd000096000000000000000000000020823500350010956e12340100646e733f",
     "6000000000101140fd000010024400010000000000000007fd000010024400020000000000000009823514e900107f1112340100646e733f"},
    {"ICMP frag needed quoting TCP/IPv4", kInnerDst, VIP4, 80,
     "4500004c004d0000400163750af400010af401070304109e000005784500003000054000400621cc0af401070af40209c7381f90000000000000000050102000ae2a00007878787878787878",
     "4500004c004d0000400163750af400010af4010703040e15000005784500003000054000400624550af401070a600014c7380050000000000000000050102000cff300007878787878787878"},
    {"ICMP port unreachable from the backend quoting UDP/IPv4", kInnerDstAndOuterSrc, VIP4, 53,
     "45000038004d0000400161810af402090af40107030365fb000000004500002100060000401161cf0af401070af40209823514e9000dffd5",
     "45000038004d00004001640a0a6000140af4010703036372000000004500002100060000401164580af401070a60001482350035000d1713"},
    {"ICMPv6 packet too big from the backend quoting TCP/IPv6", kInnerDstAndOuterSrc, VIP6, 80,
     "6000000000483a40fd000010024400020000000000000009fd00001002440001000000000000000702005548000005006000000004c40640fd000010024400010000000000000007fd000010024400020000000000000009c7381f90000000000000000050102000f0ea000079797979",
     "6000000000483a40fd000096000000000000000000000020fd000010024400010000000000000007020056f1000005006000000004c40640fd000010024400010000000000000007fd000096000000000000000000000020c738005000000000000000005010200011d4000079797979"},
    {"ICMPv6 unreachable quoting 8 bytes of TCP/IPv6", kInnerDst, VIP6, 80,
     "6000000000383a40fd000010024400010000000000000007fd0000100244000100000000000000070103af46000000006000000004c40640fd000010024400010000000000000007fd000010024400020000000000000009c7381f9000000000",
     "6000000000383a40fd000010024400010000000000000007fd0000100244000100000000000000070103d02f000000006000000004c40640fd000010024400010000000000000007fd000096000000000000000000000020c738005000000000"},
    // clang-format on
};

bool apply(Call call, Bytes& b, bool frame, const Bytes& addr, uint16_t port) {
  const PacketInfo info = parsed(b, frame);
  switch (call) {
    case Call::kDst: return rewrite_dst(b.data(), b.size(), info, addr.data(), port);
    case Call::kSrc: return rewrite_src(b.data(), b.size(), info, addr.data(), port);
    case Call::kInnerDst: return rewrite_icmp_error_inner_dst(b.data(), b.size(), info, addr.data(), port);
    case Call::kInnerDstAndOuterSrc:
      return rewrite_icmp_error_inner_dst(b.data(), b.size(), info, addr.data(), port) &&
             rewrite_outer_src_addr(b.data(), b.size(), parsed(b, frame), addr.data());
  }
  return false;
}

TEST(NatGolden, ScapyVectors) {
  const Bytes eth_header = {0x02, 0, 0, 0, 0, 0x0b, 0x02, 0, 0, 0, 0, 0x0a, 0, 0};
  for (const Golden& g : kGolden) {
    SCOPED_TRACE(g.description);
    const Bytes before = from_hex(g.before);
    const Bytes after = from_hex(g.after);
    ASSERT_EQ(before.size(), after.size());
    expect_checksums(before, false);
    Bytes p = before;
    ASSERT_TRUE(apply(g.call, p, false, g.addr, g.port));
    EXPECT_EQ(p, after);
    // The same in an Ethernet frame (l3_offset 14).
    Bytes f = eth_header;
    f[12] = (before[0] >> 4) == 6 ? 0x86 : 0x08;
    f[13] = (before[0] >> 4) == 6 ? 0xDD : 0x00;
    f.insert(f.end(), before.begin(), before.end());
    ASSERT_TRUE(apply(g.call, f, true, g.addr, g.port));
    EXPECT_TRUE(std::equal(after.begin(), after.end(), f.begin() + 14));
    if (g.call == kDst || g.call == kSrc) {  // and the service stage's variants
      Bytes q = eth_header;
      q[12] = f[12];
      q[13] = f[13];
      q.insert(q.end(), before.begin(), before.end());
      const PacketInfo info = parsed(q, true);
      const bool v6 = info.ether_type == kEtherTypeIpv6;
      const uint8_t* old_dst = q.data() + info.l3_offset + (v6 ? 24 : 16);
      const NatDeltas d = nat_deltas(v6, old_dst, field16(q.data() + info.l4_offset + 2), g.addr.data(), g.port);
      ASSERT_TRUE(g.call == kDst ? rewrite_dst_with(q.data(), q.size(), info, g.addr.data(), g.port, d)
                                 : rewrite_src_parsed(q.data(), q.size(), info, g.addr.data(), g.port));
      EXPECT_TRUE(std::equal(after.begin(), after.end(), q.begin() + 14));
    }
  }
}

// --- CRC32c

TEST(NatCrc32c, KnownVectors) {
  struct Case {
    const char* description;
    Bytes input;
    uint32_t expected;
  };
  Bytes inc(32), dec(32);
  for (int i = 0; i < 32; ++i) {
    inc[i] = static_cast<uint8_t>(i);
    dec[i] = static_cast<uint8_t>(31 - i);
  }
  const Case cases[] = {
      {"check value", test::bytes("123456789"), 0xE3069283},
      // RFC 3720 B.4 (iSCSI, the same CRC and byte order as SCTP), which lists
      // the bytes on the wire, least significant first: aa 36 91 8a, ...
      {"32 bytes of zeros", Bytes(32, 0), 0x8A9136AA},
      {"32 bytes of ones", Bytes(32, 0xFF), 0x62A8AB43},
      {"32 incrementing bytes", inc, 0x46DD794E},
      {"32 decrementing bytes", dec, 0x113FDB5C},
      {"empty", {}, 0},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.description);
    EXPECT_EQ(crc32c(c.input.data(), c.input.size()), c.expected);
    EXPECT_EQ(crc32c_sw(c.input.data(), c.input.size()), c.expected);
    EXPECT_EQ(naive_crc32c(c.input.data(), c.input.size()), c.expected);
  }
}

TEST(NatCrc32c, MatchesBitwiseAtEveryLengthAndAlignment) {
  std::mt19937 rng(3);
  Bytes buf(300);
  for (uint8_t& b : buf) b = static_cast<uint8_t>(rng());
  for (size_t align = 0; align < 8; ++align) {
    for (size_t n = 0; n + align <= buf.size(); n += 1 + n / 16) {
      const uint32_t want = naive_crc32c(buf.data() + align, n);
      ASSERT_EQ(crc32c(buf.data() + align, n), want) << align << " " << n;
      ASSERT_EQ(crc32c_sw(buf.data() + align, n), want) << align << " " << n;
    }
  }
}

}  // namespace
}  // namespace meshwire::dp::net
