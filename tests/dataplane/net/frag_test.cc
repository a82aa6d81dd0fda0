#include "net/frag.h"

#include <gtest/gtest.h>

#include <map>

#include "net/parse.h"
#include "packet_builder.h"

namespace meshwire::dp::net {
namespace {

using test::Bytes;
using test::PacketBuilder;
using test::ip4;

Bytes udp_packet(size_t payload, Bytes options = {}) {
  Bytes data(payload);
  for (size_t i = 0; i < payload; ++i) data[i] = static_cast<uint8_t>(i * 7);
  PacketBuilder b;
  b.ipv4(ip4("10.11.0.2"), ip4("10.12.0.2")).ip_id(0x4242);
  if (!options.empty()) b.ipv4_options(options);
  return b.udp(5060, 5060).payload(data).build();
}

std::vector<Bytes> fragment(const Bytes& ip, size_t max_len) {
  std::vector<Bytes> out;
  const size_t n = ipv4_fragment_count(ip.data(), ip.size(), max_len);
  for (size_t k = 0; k < n; ++k) {
    Bytes f(max_len);
    const size_t len = ipv4_build_fragment(ip.data(), ip.size(), max_len, k, f.data(), f.size());
    EXPECT_GT(len, 0u) << k;
    f.resize(len);
    out.push_back(f);
  }
  return out;
}

// Reassembles as a receiver would: payload bytes by offset.
Bytes reassemble(const std::vector<Bytes>& frags, bool* last_mf_clear) {
  std::map<size_t, Bytes> parts;
  *last_mf_clear = false;
  for (const Bytes& f : frags) {
    const size_t hl = (f[0] & 0x0F) * 4;
    const uint16_t fo = load_be16(f.data() + 6);
    parts[(fo & 0x1FFF) * 8] = Bytes(f.begin() + static_cast<long>(hl), f.end());
    if (!(fo & 0x2000)) *last_mf_clear = true;
  }
  Bytes payload;
  for (auto& [offset, bytes] : parts) {
    EXPECT_EQ(offset, payload.size());
    payload.insert(payload.end(), bytes.begin(), bytes.end());
  }
  return payload;
}

TEST(Ipv4Fragment, SplitsIntoFragmentsThatFitAndReassemble) {
  const Bytes ip = udp_packet(2000);
  const auto frags = fragment(ip, 1000);
  ASSERT_EQ(frags.size(), 3u);
  for (size_t k = 0; k < frags.size(); ++k) {
    const Bytes& f = frags[k];
    EXPECT_LE(f.size(), 1000u);
    PacketInfo info;
    ASSERT_EQ(parse_ip(f.data(), f.size(), &info), ParseResult::kOk) << k;
    EXPECT_TRUE(info.is_fragment);
    EXPECT_EQ(load_be16(f.data() + 2), f.size());
    EXPECT_EQ(load_be16(f.data() + 4), 0x4242) << "same identification";
    EXPECT_EQ(test::naive_fold(test::naive_sum(f.data(), 20)), 0) << "header checksum of fragment " << k;
    if (k + 1 < frags.size()) {
      EXPECT_EQ((f.size() - 20) % 8, 0u);
    }
  }
  bool last_mf_clear;
  EXPECT_EQ(reassemble(frags, &last_mf_clear), Bytes(ip.begin() + 20, ip.end()));
  EXPECT_TRUE(last_mf_clear);
}

TEST(Ipv4Fragment, FitsAsItIs) {
  const Bytes ip = udp_packet(100);
  EXPECT_EQ(ipv4_fragment_count(ip.data(), ip.size(), 1000), 1u);
  Bytes out(1000);
  ASSERT_EQ(ipv4_build_fragment(ip.data(), ip.size(), 1000, 0, out.data(), out.size()), ip.size());
  out.resize(ip.size());
  EXPECT_EQ(out, ip);
}

TEST(Ipv4Fragment, OnlyCopiedOptionsGoBeyondTheFirstFragment) {
  // 0x94 router alert (copied, 4 bytes), 0x07 record route (not copied, 7 bytes), EOL.
  const Bytes opts = {0x94, 0x04, 0x00, 0x00, 0x07, 0x07, 0x04, 0, 0, 0, 0, 0x00};
  const Bytes ip = udp_packet(1500, opts);
  const auto frags = fragment(ip, 800);
  ASSERT_GE(frags.size(), 2u);
  EXPECT_EQ((frags[0][0] & 0x0F) * 4, 20 + 12);
  EXPECT_EQ(Bytes(frags[0].begin() + 20, frags[0].begin() + 32), opts);
  for (size_t k = 1; k < frags.size(); ++k) {
    EXPECT_EQ((frags[k][0] & 0x0F) * 4, 24) << k;
    EXPECT_EQ(Bytes(frags[k].begin() + 20, frags[k].begin() + 24), Bytes({0x94, 0x04, 0x00, 0x00}));
  }
  bool last_mf_clear;
  EXPECT_EQ(reassemble(frags, &last_mf_clear), Bytes(ip.begin() + 32, ip.end()));
}

TEST(Ipv4Fragment, AFragmentIsFragmentedAgainRelativeToItsOffset) {
  Bytes ip = udp_packet(1200);
  store_be16(ip.data() + 6, 0x2000 | 100);  // offset 800, more fragments follow
  const auto frags = fragment(ip, 500);
  ASSERT_EQ(frags.size(), 3u);
  EXPECT_EQ(load_be16(frags[0].data() + 6), 0x2000 | 100);
  EXPECT_EQ(load_be16(frags[1].data() + 6) & 0x1FFF, 100 + 480 / 8);
  EXPECT_TRUE(load_be16(frags[2].data() + 6) & 0x2000) << "the original's MF carries over to its last piece";
}

TEST(Ipv4Fragment, RefusesWhatCannotBeFragmented) {
  const Bytes ip = udp_packet(100);
  EXPECT_EQ(ipv4_fragment_count(ip.data(), ip.size(), 27), 0u) << "header leaves no room for 8 bytes";
  EXPECT_EQ(ipv4_fragment_count(ip.data(), 19, 1000), 0u);
  Bytes v6 = ip;
  v6[0] = 0x65;
  EXPECT_EQ(ipv4_fragment_count(v6.data(), v6.size(), 1000), 0u);
  Bytes long_len = ip;
  store_be16(long_len.data() + 2, static_cast<uint16_t>(ip.size() + 1));
  EXPECT_EQ(ipv4_fragment_count(long_len.data(), long_len.size(), 1000), 0u);
  Bytes out(10);
  EXPECT_EQ(ipv4_build_fragment(ip.data(), ip.size(), 60, 0, out.data(), out.size()), 0u) << "cap too small";
  EXPECT_EQ(ipv4_build_fragment(ip.data(), ip.size(), 60, 99, out.data(), out.size()), 0u) << "k out of range";
}

}  // namespace
}  // namespace meshwire::dp::net
