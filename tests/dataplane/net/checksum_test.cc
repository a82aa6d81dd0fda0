#include "net/checksum.h"

#include <gtest/gtest.h>

#include <random>

#include "net/parse.h"
#include "packet_builder.h"

namespace meshwire::dp::net {
namespace {

using test::Bytes;
using test::PacketBuilder;
using test::ip4;
using test::ip6;

TEST(InternetChecksum, KnownVectors) {
  struct Case {
    const char* description;
    Bytes input;
    uint16_t expected;
  };
  const Case cases[] = {
      // RFC 1071 section 3: the sum of these words is 0xddf2.
      {"RFC 1071 example", {0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7}, static_cast<uint16_t>(~0xddf2)},
      {"odd length pads with zero", {0x00, 0x01, 0xf2}, static_cast<uint16_t>(~0xf201)},
      {"empty", {}, 0xFFFF},
      {"all ones is negative zero", {0xFF, 0xFF}, 0x0000},
      {"carry wraps around", {0xFF, 0xFF, 0x00, 0x02}, static_cast<uint16_t>(~0x0002)},
      // IPv4 header with its checksum 0xb861 in place verifies to 0.
      {"IPv4 header", {0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8, 0x00,
                       0x01, 0xc0, 0xa8, 0x00, 0xc7},
       0x0000},
      {"IPv4 header, checksum zeroed", {0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00,
                                        0xc0, 0xa8, 0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7},
       0xb861},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.description);
    EXPECT_EQ(internet_checksum(c.input.data(), c.input.size()), c.expected);
  }
  EXPECT_EQ(ipv4_header_checksum(cases[6].input.data(), 20), 0xb861);
}

TEST(InternetChecksum, MatchesNaiveSumAtEveryLengthAndAlignment) {
  std::mt19937 rng(1);
  Bytes buf(300);
  for (uint8_t& b : buf) b = static_cast<uint8_t>(rng());
  for (size_t align = 0; align < 8; ++align) {
    for (size_t n = 0; n + align <= 260; ++n) {
      ASSERT_EQ(internet_checksum(buf.data() + align, n), test::naive_fold(test::naive_sum(buf.data() + align, n)))
          << "align " << align << " len " << n;
    }
  }
}

TEST(InternetChecksum, PiecesOfEvenLengthAddUp) {
  std::mt19937 rng(2);
  Bytes buf(1501);
  for (uint8_t& b : buf) b = static_cast<uint8_t>(rng());
  for (size_t cut = 0; cut <= buf.size(); cut += 2) {
    const uint64_t sum = checksum_partial(buf.data() + cut, buf.size() - cut, checksum_partial(buf.data(), cut, 0));
    ASSERT_EQ(checksum_fold(sum), internet_checksum(buf.data(), buf.size())) << cut;
  }
}

// The builder fills checksums with its own naive code; the library must agree
// on both verification (0) and computation (same value with the field zeroed).
TEST(L4Checksum, AgreesWithIndependentComputation) {
  struct Case {
    const char* description;
    Bytes ip_packet;
    size_t csum_offset;  // within L4
  };
  const Case cases[] = {
      {"IPv4 UDP", PacketBuilder().ipv4(ip4("10.1.2.3"), ip4("192.168.7.9")).udp(53, 40000).payload("odd").build(),
       6},
      {"IPv4 TCP with options", PacketBuilder().ipv4(ip4("10.1.2.3"), ip4("10.9.9.9")).tcp(1, 2, 0x12)
                                    .tcp_mss(1400).payload_size(999).build(),
       16},
      {"IPv6 UDP", PacketBuilder().ipv6(ip6("fd00::1"), ip6("fd00:ffff::2")).udp(4500, 4500).payload_size(1401)
                       .build(),
       6},
      {"IPv6 TCP", PacketBuilder().ipv6(ip6("2001:db8::1"), ip6("2001:db8::2")).tcp(443, 5555, 0x10).build(), 16},
      {"ICMPv6 echo", PacketBuilder().ipv6(ip6("fe80::1"), ip6("fe80::2")).icmp6(128, 0, 0x00010002).payload("ping")
                          .build(),
       2},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.description);
    Bytes p = c.ip_packet;
    PacketInfo info;
    ASSERT_EQ(parse_ip(p.data(), p.size(), &info), ParseResult::kOk);
    const bool v6 = info.ether_type == kEtherTypeIpv6;
    auto compute = [&] {
      return v6 ? l4_checksum_v6(p.data(), p.data() + info.l4_offset, info.l4_len, info.l4_proto)
                : l4_checksum_v4(p.data(), p.data() + info.l4_offset, info.l4_len, info.l4_proto);
    };
    EXPECT_EQ(compute(), 0);
    uint8_t* field = p.data() + info.l4_offset + c.csum_offset;
    const uint16_t wire = load_be16(field);
    store_be16(field, 0);
    EXPECT_EQ(compute(), wire);
    // A single flipped bit is caught.
    store_be16(field, wire);
    p.back() ^= 0x01;
    EXPECT_NE(compute(), 0);
  }
}

TEST(ChecksumAdjust, MatchesRecomputation) {
  std::mt19937 rng(3);
  for (int iter = 0; iter < 20000; ++iter) {
    Bytes data(2 * (1 + rng() % 30));
    for (uint8_t& b : data) b = static_cast<uint8_t>(rng() % 4 == 0 ? 0xFF : rng() % 4 == 0 ? 0 : rng());
    data[0] = 1;  // a sum that is never all zero, as in any real header
    const uint16_t before = internet_checksum(data.data(), data.size());
    const size_t word = 2 * (rng() % (data.size() / 2));
    const uint16_t old_word = load_be16(data.data() + word);
    const uint16_t new_word = static_cast<uint16_t>(rng() % 3 == 0 ? 0xFFFF : rng() % 3 == 0 ? 0 : rng());
    if (word == 0 && (new_word >> 8) == 0) continue;
    store_be16(data.data() + word, new_word);
    ASSERT_EQ(checksum_adjust16(before, old_word, new_word), internet_checksum(data.data(), data.size()))
        << "iteration " << iter;
  }
}

TEST(ChecksumAdjust, Rfc1624Example) {
  // RFC 1624 section 4: checksum 0xDD2F with the word 0x5555 changed to 0x3285
  // gives 0x0000 (a recomputation), where eqn. 2 would give 0xFFFF.
  EXPECT_EQ(checksum_adjust16(0xDD2F, 0x5555, 0x3285), 0x0000);
}

Bytes ipv4_header(uint8_t ttl) {
  return PacketBuilder().ipv4(ip4("10.0.0.1"), ip4("10.0.0.2")).ttl(ttl).ip_id(0xBEEF).udp(1, 2).build();
}

TEST(IpDecrementTtl, Table) {
  struct Case {
    const char* description;
    Bytes packet;
    bool result;
    uint8_t ttl_after;
    size_t ttl_offset;
  };
  const Case cases[] = {
      {"IPv4 TTL 64", ipv4_header(64), true, 63, 8},
      {"IPv4 TTL 2", ipv4_header(2), true, 1, 8},
      {"IPv4 TTL 1 would reach 0", ipv4_header(1), false, 1, 8},
      {"IPv4 TTL 0", ipv4_header(0), false, 0, 8},
      {"IPv4 TTL 255", ipv4_header(255), true, 254, 8},
      {"IPv6 hop limit 255", PacketBuilder().ipv6(ip6("::1"), ip6("::2")).ttl(255).build(), true, 254, 7},
      {"IPv6 hop limit 1", PacketBuilder().ipv6(ip6("::1"), ip6("::2")).ttl(1).build(), false, 1, 7},
      {"IPv6 hop limit 0", PacketBuilder().ipv6(ip6("::1"), ip6("::2")).ttl(0).build(), false, 0, 7},
      {"version 5", [] {
         Bytes b = ipv4_header(64);
         b[0] = 0x55;
         return b;
       }(), false, 64, 8},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.description);
    for (bool sized : {false, true}) {
      Bytes p = c.packet;
      const Bytes before = p;
      EXPECT_EQ(sized ? ip_decrement_ttl(p.data(), p.size()) : ip_decrement_ttl(p.data()), c.result);
      EXPECT_EQ(p[c.ttl_offset], c.ttl_after);
      if (!c.result) {
        EXPECT_EQ(p, before);
      }
      if ((p[0] >> 4) == 4) {
        EXPECT_EQ(test::naive_fold(test::naive_sum(p.data(), 20)), 0);
      }
    }
  }
}

TEST(IpDecrementTtl, KeepsTheHeaderChecksumValidForEveryTtl) {
  std::mt19937 rng(4);
  for (int ttl = 2; ttl <= 255; ++ttl) {
    for (int i = 0; i < 50; ++i) {
      Bytes p = PacketBuilder()
                    .ipv4(test::Ip4{static_cast<uint8_t>(rng()), static_cast<uint8_t>(rng()), 0, 1},
                          test::Ip4{static_cast<uint8_t>(rng()), 2, static_cast<uint8_t>(rng()), 3})
                    .ttl(static_cast<uint8_t>(ttl))
                    .ip_id(static_cast<uint16_t>(rng()))
                    .tos(static_cast<uint8_t>(rng()))
                    .ip_proto(static_cast<uint8_t>(rng()))
                    .build();
      ASSERT_TRUE(ip_decrement_ttl(p.data(), p.size()));
      ASSERT_EQ(ipv4_header_checksum(p.data(), 20), 0) << "ttl " << ttl;
      ASSERT_EQ(load_be16(p.data() + 10), [&] {
        Bytes q = p;
        store_be16(q.data() + 10, 0);
        return test::naive_fold(test::naive_sum(q.data(), 20));
      }());
    }
  }
}

// The decrement updates the checksum on native words (the one's complement
// sum is byte-order blind): the same bits as RFC 1624 on big-endian words,
// whatever the checksum field held before, valid or not.
TEST(IpDecrementTtl, UpdatesAnyChecksumAsRfc1624OnBigEndianWords) {
  for (int ttl : {2, 3, 64, 128, 255}) {
    for (int proto : {0, 6, 17, 255}) {
      for (uint32_t csum = 0; csum <= 0xFFFF; ++csum) {
        uint8_t h[20] = {0x45};
        h[8] = static_cast<uint8_t>(ttl);
        h[9] = static_cast<uint8_t>(proto);
        store_be16(h + 10, static_cast<uint16_t>(csum));
        const uint16_t old_word = load_be16(h + 8);
        const uint16_t want = checksum_adjust16(static_cast<uint16_t>(csum), old_word, static_cast<uint16_t>(old_word - 0x100));
        ASSERT_TRUE(ip_decrement_ttl(h));
        ASSERT_EQ(h[8], ttl - 1);
        ASSERT_EQ(load_be16(h + 10), want) << "ttl " << ttl << " proto " << proto << " checksum " << csum;
      }
    }
  }
}

TEST(IpDecrementTtl, ShortBuffers) {
  Bytes v4 = ipv4_header(64);
  EXPECT_FALSE(ip_decrement_ttl(v4.data(), 19));
  EXPECT_EQ(v4[8], 64);
  Bytes v6 = PacketBuilder().ipv6(ip6("::1"), ip6("::2")).build();
  EXPECT_FALSE(ip_decrement_ttl(v6.data(), 39));
  EXPECT_FALSE(ip_decrement_ttl(v6.data(), 0));
  EXPECT_FALSE(ip_decrement_ttl(nullptr, 40));
}

}  // namespace
}  // namespace meshwire::dp::net
