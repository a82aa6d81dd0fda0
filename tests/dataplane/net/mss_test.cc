#include "net/mss.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <random>
#include <string>

#include "net/checksum.h"
#include "packet_builder.h"

namespace meshwire::dp::net {
namespace {

using test::Bytes;
using test::PacketBuilder;
using test::ip4;
using test::ip6;

PacketBuilder v4() { return PacketBuilder().ipv4(ip4("10.244.0.5"), ip4("10.96.0.10")); }
PacketBuilder v6() { return PacketBuilder().ipv6(ip6("fd00:10:244::5"), ip6("fd00:10:96::a")); }
Bytes mss(uint16_t v) { return {2, 4, static_cast<uint8_t>(v >> 8), static_cast<uint8_t>(v)}; }

struct MssCase {
  std::string description;
  Bytes packet;
  uint16_t max_mss;
  bool changed;
  Bytes expected_options;  // the TCP options after the call
};

std::vector<MssCase> cases() {
  const Bytes ws = {3, 3, 7};
  const Bytes sack_ok = {4, 2};
  const Bytes ts = {8, 10, 0, 0, 0, 1, 0, 0, 0, 0};
  auto cat = [](std::initializer_list<Bytes> parts) {
    Bytes out;
    for (const Bytes& p : parts) out.insert(out.end(), p.begin(), p.end());
    while (out.size() % 4 != 0) out.push_back(0);
    return out;
  };
  return {
      {"SYN with MSS 1460 clamped to 1360", v4().tcp(40000, 443, test::kTcpSyn).tcp_mss(1460).build(), 1360, true,
       mss(1360)},
      {"SYN-ACK clamped", v4().tcp(443, 40000, test::kTcpSyn | test::kTcpAck).tcp_mss(9000).build(), 1360, true,
       mss(1360)},
      {"MSS already smaller", v4().tcp(1, 2, test::kTcpSyn).tcp_mss(1300).build(), 1360, false, mss(1300)},
      {"MSS equal", v4().tcp(1, 2, test::kTcpSyn).tcp_mss(1360).build(), 1360, false, mss(1360)},
      {"not a SYN", v4().tcp(1, 2, test::kTcpAck).tcp_mss(1460).build(), 1360, false, mss(1460)},
      {"Linux SYN options", v4().tcp(1, 2, test::kTcpSyn).tcp_options(cat({mss(1460), sack_ok, ts, {1}, ws})).build(),
       1400, true, cat({mss(1400), sack_ok, ts, {1}, ws})},
      {"MSS after two NOPs", v4().tcp(1, 2, test::kTcpSyn).tcp_options(cat({{1, 1}, mss(65535)})).build(), 1000,
       true, cat({{1, 1}, mss(1000)})},
      {"MSS at an odd offset", v4().tcp(1, 2, test::kTcpSyn).tcp_options(cat({{1}, mss(0xFFFF)})).build(), 0x1234,
       true, cat({{1}, mss(0x1234)})},
      {"MSS at an odd offset after window scale", v4().tcp(1, 2, test::kTcpSyn).tcp_options(cat({ws, mss(8960)}))
                                                      .build(),
       1380, true, cat({ws, mss(1380)})},
      {"two MSS options both clamped", v4().tcp(1, 2, test::kTcpSyn).tcp_options(cat({mss(2000), mss(3000)})).build(),
       1500, true, cat({mss(1500), mss(1500)})},
      {"MSS after EOL is not an option", v4().tcp(1, 2, test::kTcpSyn).tcp_options(cat({{0, 0, 0, 0}, mss(9000)}))
                                             .build(),
       1360, false, cat({{0, 0, 0, 0}, mss(9000)})},
      {"option of length 0 stops the walk", v4().tcp(1, 2, test::kTcpSyn).tcp_options(cat({{5, 0, 0, 0}, mss(9000)}))
                                                .build(),
       1360, false, cat({{5, 0, 0, 0}, mss(9000)})},
      {"option of length 1 stops the walk", v4().tcp(1, 2, test::kTcpSyn).tcp_options(cat({{5, 1, 0, 0}, mss(9000)}))
                                                .build(),
       1360, false, cat({{5, 1, 0, 0}, mss(9000)})},
      {"option running past the header", v4().tcp(1, 2, test::kTcpSyn).tcp_options(cat({mss(9000), {8, 40}})).build(),
       1360, true, cat({mss(1360), {8, 40}})},
      {"MSS option cut by the header end", v4().tcp(1, 2, test::kTcpSyn).tcp_options({1, 1, 2, 4}).payload("xy")
                                               .build(),
       1360, false, {1, 1, 2, 4}},
      {"MSS with length 3", v4().tcp(1, 2, test::kTcpSyn).tcp_options({2, 3, 0x23, 1}).build(), 1360, false,
       {2, 3, 0x23, 1}},
      {"MSS with length 6", v4().tcp(1, 2, test::kTcpSyn).tcp_options({2, 6, 0x23, 0x28, 1, 1, 0, 0}).build(), 1360,
       false, {2, 6, 0x23, 0x28, 1, 1, 0, 0}},
      {"no options", v4().tcp(1, 2, test::kTcpSyn).build(), 1360, false, {}},
      {"SYN with data", v4().tcp(1, 2, test::kTcpSyn).tcp_mss(1460).payload_size(101).build(), 1200, true,
       mss(1200)},
      {"IPv4 with options", v4().ipv4_options({1, 1, 1, 0}).tcp(1, 2, test::kTcpSyn).tcp_mss(1460).build(), 1360,
       true, mss(1360)},
      {"IPv6 SYN", v6().tcp(1, 2, test::kTcpSyn).tcp_mss(1440).build(), 1340, true, mss(1340)},
      {"IPv6 SYN behind a destination options header", v6().ext_header(kProtoDestOpts).tcp(1, 2, test::kTcpSyn)
                                                           .tcp_options(cat({{1}, mss(1440)})).build(),
       1340, true, cat({{1}, mss(1340)})},
      {"IPv4 first fragment", v4().fragment(0, true).tcp(1, 2, test::kTcpSyn).tcp_mss(1460).payload_size(16).build(),
       1360, true, mss(1360)},
  };
}

// Options bytes of the TCP header in p, per its data offset.
Bytes options_of(const Bytes& p, const PacketInfo& info) {
  const size_t doff = static_cast<size_t>(p[info.l4_offset + 12] >> 4) * 4;
  return Bytes(p.begin() + info.l4_offset + 20, p.begin() + info.l4_offset + static_cast<std::ptrdiff_t>(doff));
}

uint16_t naive_tcp_checksum(const Bytes& p, const PacketInfo& info) {
  const bool v6 = info.ether_type == kEtherTypeIpv6;
  uint32_t pseudo = v6 ? test::naive_sum(p.data() + 8, 32) : test::naive_sum(p.data() + 12, 8);
  pseudo += kProtoTcp + info.l4_len;
  return test::naive_fold(test::naive_sum(p.data() + info.l4_offset, info.l4_len, pseudo));
}

TEST(ClampTcpMss, Table) {
  for (const MssCase& c : cases()) {
    SCOPED_TRACE(c.description);
    Bytes p = c.packet;
    PacketInfo info;
    ASSERT_EQ(parse_ip(p.data(), p.size(), &info), ParseResult::kOk);
    ASSERT_EQ(naive_tcp_checksum(p, info), 0);
    EXPECT_EQ(clamp_tcp_mss(p.data(), p.size(), info, c.max_mss), c.changed);
    EXPECT_EQ(options_of(p, info), c.expected_options);
    EXPECT_EQ(naive_tcp_checksum(p, info), 0) << "checksum no longer valid";
    // Only options and checksum may change.
    for (size_t i = 0; i < p.size(); ++i) {
      const size_t tcp_off = i - info.l4_offset;
      const bool may_change = i >= info.l4_offset && ((tcp_off >= 16 && tcp_off < 18) ||
                                                      (tcp_off >= 20 && tcp_off < 20 + c.expected_options.size()));
      if (!may_change) {
        ASSERT_EQ(p[i], c.packet[i]) << "byte " << i;
      }
    }
  }
}

TEST(ClampTcpMss, NotTcpOrNotTrusted) {
  Bytes udp = v4().udp(1, 2).payload(Bytes{2, 4, 0x23, 0x28, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02, 0, 0}).build();
  PacketInfo info;
  ASSERT_EQ(parse_ip(udp.data(), udp.size(), &info), ParseResult::kOk);
  EXPECT_FALSE(clamp_tcp_mss(udp.data(), udp.size(), info, 100));

  Bytes later = v4().fragment(8, false).ip_proto(kProtoTcp).payload_size(40).build();
  ASSERT_EQ(parse_ip(later.data(), later.size(), &info), ParseResult::kOk);
  EXPECT_FALSE(clamp_tcp_mss(later.data(), later.size(), info, 100));

  const Bytes syn = v4().tcp(1, 2, test::kTcpSyn).tcp_options({1, 2, 4, 0x23, 0x28, 0, 0, 0}).build();
  ASSERT_EQ(parse_ip(syn.data(), syn.size(), &info), ParseResult::kOk);
  for (size_t n = 0; n < syn.size(); ++n) {
    std::unique_ptr<uint8_t[]> copy(new uint8_t[n + 1]);
    std::memcpy(copy.get(), syn.data(), n);
    EXPECT_FALSE(clamp_tcp_mss(copy.get(), n, info, 100)) << n;  // the whole packet's info, a shorter buffer
    PacketInfo short_info;
    parse_ip(copy.get(), n, &short_info);
    EXPECT_FALSE(clamp_tcp_mss(copy.get(), n, short_info, 100)) << n;
  }
  PacketInfo lying = info;
  lying.l4_len = 12;
  lying.l3_len = static_cast<uint16_t>(lying.l4_offset + 12);
  Bytes copy = syn;
  EXPECT_FALSE(clamp_tcp_mss(copy.data(), copy.size(), lying, 100));
  EXPECT_FALSE(clamp_tcp_mss(nullptr, 0, info, 100));
}

// Random option soups: whatever happens, the checksum stays valid and
// nothing outside the option block changes.
TEST(ClampTcpMss, RandomOptionsKeepTheChecksumValid) {
  std::mt19937 rng(5);
  for (int iter = 0; iter < 5000; ++iter) {
    Bytes opts(4 * (rng() % 11));
    for (uint8_t& b : opts) {
      const unsigned r = rng() % 8;
      b = static_cast<uint8_t>(r == 0 ? 2 : r == 1 ? 4 : r == 2 ? 1 : rng());
    }
    Bytes p = (rng() % 2 ? v4() : v6()).tcp(1, 2, test::kTcpSyn).tcp_options(opts).payload_size(rng() % 7).build();
    PacketInfo info;
    ASSERT_EQ(parse_ip(p.data(), p.size(), &info), ParseResult::kOk);
    const Bytes before = p;
    clamp_tcp_mss(p.data(), p.size(), info, static_cast<uint16_t>(rng()));
    ASSERT_EQ(naive_tcp_checksum(p, info), 0) << "iteration " << iter;
    ASSERT_TRUE(std::equal(p.begin(), p.begin() + info.l4_offset + 16, before.begin()));
    ASSERT_TRUE(std::equal(p.begin() + info.l4_offset + 20 + static_cast<std::ptrdiff_t>(opts.size()), p.end(),
                           before.begin() + info.l4_offset + 20 + static_cast<std::ptrdiff_t>(opts.size())));
  }
}

}  // namespace
}  // namespace meshwire::dp::net
