// Pod-CIDR membership for the decrypt path, checked against a plain
// bit-by-bit reference over prefix lengths 0..32 and 0..128.
#include "route/prefix_set.h"

#include <gtest/gtest.h>

#include <random>

namespace meshwire::dp {
namespace {

bool reference(const IpPrefix& p, const IpAddress& a) {
  if (p.address.family != a.family) return false;
  for (int bit = 0; bit < p.length; ++bit) {
    const int byte = bit / 8, shift = 7 - bit % 8;
    if (((p.address.bytes[byte] >> shift) & 1) != ((a.bytes[byte] >> shift) & 1)) return false;
  }
  return true;
}

IpPrefix prefix_of(IpAddress a, int length) {
  for (int bit = length; bit < (a.is_v4() ? 32 : 128); ++bit) a.bytes[bit / 8] &= ~(1u << (7 - bit % 8));
  return IpPrefix{a, static_cast<uint8_t>(length)};
}

TEST(PrefixSet, MatchesTheBitwiseReferenceAtEveryLength) {
  std::mt19937 rng(7);
  for (int family : {4, 6}) {
    const int bits = family == 4 ? 32 : 128;
    for (int length = 0; length <= bits; ++length) {
      IpAddress base{static_cast<uint8_t>(family), {}};
      for (int i = 0; i < bits / 8; ++i) base.bytes[i] = static_cast<uint8_t>(rng());
      const IpPrefix p = prefix_of(base, length);
      PrefixSet set;
      set.add(p);
      for (int trial = 0; trial < 200; ++trial) {
        IpAddress a = base;
        // Flip one bit (inside or outside the prefix) or none.
        const int flip = static_cast<int>(rng() % (bits + 1)) - 1;
        if (flip >= 0) a.bytes[flip / 8] ^= static_cast<uint8_t>(1u << (7 - flip % 8));
        EXPECT_EQ(set.contains(a.bytes.data(), family == 6), reference(p, a))
            << "family " << family << " /" << length << " flip " << flip;
      }
    }
  }
}

TEST(PrefixSet, SeveralPrefixesAndBothFamilies) {
  PrefixSet set;
  set.add(*parse_ip_prefix("10.11.0.0/24"));
  set.add(*parse_ip_prefix("10.99.0.0/16"));
  set.add(*parse_ip_prefix("fd00:11::/64"));
  EXPECT_TRUE(set.contains_v4(parse_ip_address("10.11.0.200")->bytes.data()));
  EXPECT_TRUE(set.contains_v4(parse_ip_address("10.99.250.1")->bytes.data()));
  EXPECT_FALSE(set.contains_v4(parse_ip_address("10.11.1.1")->bytes.data()));
  EXPECT_TRUE(set.contains_v6(parse_ip_address("fd00:11::ffff")->bytes.data()));
  EXPECT_FALSE(set.contains_v6(parse_ip_address("fd00:12::1")->bytes.data()));
  PrefixSet empty;
  EXPECT_FALSE(empty.contains_v4(parse_ip_address("10.11.0.1")->bytes.data()));
}

}  // namespace
}  // namespace meshwire::dp
