// The worker's neighbour cache: hits, misses, slot collisions and the epoch
// that empties it.
#include "route/neighbor_cache.h"

#include <gtest/gtest.h>

#include <cstring>

namespace meshwire::dp {
namespace {

NeighborKey v4(uint8_t a, uint8_t b, uint8_t c, uint8_t d) {
  NeighborKey k;
  std::memset(&k, 0, sizeof(k));
  k.family = 4;
  k.addr[0] = a, k.addr[1] = b, k.addr[2] = c, k.addr[3] = d;
  return k;
}

NeighborKey v6(uint8_t last) {
  NeighborKey k;
  std::memset(&k, 0, sizeof(k));
  k.family = 6;
  k.addr[0] = 0xfd;
  k.addr[15] = last;
  return k;
}

TEST(NeighborCache, MissThenHitAfterInsert) {
  NeighborCache c;
  c.sync(1);
  const NeighborKey k = v4(10, 11, 0, 5);
  EXPECT_EQ(c.find(k), 0u);
  c.insert(k, 0x1234 | kMacValid);
  EXPECT_EQ(c.find(k), 0x1234 | kMacValid);
  EXPECT_EQ(c.find(v4(10, 11, 0, 6)), 0u);
}

TEST(NeighborCache, FamiliesAndFullAddressesAreCompared) {
  NeighborCache c;
  c.sync(1);
  NeighborKey a = v6(7);
  c.insert(a, 1 | kMacValid);
  NeighborKey b = a;
  b.addr[0] = 0xfe;  // same last four bytes: same slot, another address
  EXPECT_EQ(c.find(b), 0u);
  NeighborKey as_v4 = v4(0, 0, 0, 7);
  EXPECT_EQ(c.find(as_v4), 0u);
  EXPECT_EQ(c.find(a), 1 | kMacValid);
}

TEST(NeighborCache, ACollisionEvictsAndAnEpochChangeEmptiesAll) {
  NeighborCache c;
  c.sync(1);
  // Find two IPv4 keys that share a slot, by brute force over the last byte.
  const NeighborKey first = v4(10, 11, 0, 1);
  c.insert(first, 1 | kMacValid);
  NeighborKey other{};
  bool found = false;
  for (int x = 0; x < 256 * 256 && !found; ++x) {
    NeighborKey k = v4(10, 11, static_cast<uint8_t>(x >> 8), static_cast<uint8_t>(x));
    if (std::memcmp(&k, &first, sizeof(k)) == 0) continue;
    NeighborCache probe;
    probe.sync(1);
    probe.insert(first, 1 | kMacValid);
    probe.insert(k, 2 | kMacValid);
    if (probe.find(first) == 0) {
      other = k;
      found = true;
    }
  }
  ASSERT_TRUE(found);
  c.insert(other, 2 | kMacValid);
  EXPECT_EQ(c.find(first), 0u);
  EXPECT_EQ(c.find(other), 2 | kMacValid);

  c.sync(1);  // same epoch: kept
  EXPECT_EQ(c.find(other), 2 | kMacValid);
  c.sync(2);
  EXPECT_EQ(c.find(other), 0u);
}

}  // namespace
}  // namespace meshwire::dp
