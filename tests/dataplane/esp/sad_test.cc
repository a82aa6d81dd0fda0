#include "esp/sad.h"

#include <gtest/gtest.h>

#include <vector>

namespace meshwire::dp::esp {
namespace {

IpAddress addr(const char* text) { return *parse_ip_address(text); }

InboundSaTable::Key key(const IpAddress& a, uint32_t spi) {
  InboundSaTable::Key k{spi, a.family, {}};
  std::memcpy(k.addr, a.bytes.data(), 16);
  return k;
}

// Stand-ins: the table only stores and returns the pointers.
InboundSa* fake(uintptr_t n) { return reinterpret_cast<InboundSa*>(n * 64); }

InboundSa* sa_of(const InboundSaTable& t, const InboundSaTable::Key& k) { return t.lookup(k).sa; }

TEST(InboundSaTable, FindsEveryEntryWithItsPeerAndNothingElse) {
  InboundSaTable t;
  struct Added {
    InboundSaTable::Key key;
    InboundSa* sa;
    uint16_t peer;
  };
  std::vector<Added> added;
  uintptr_t n = 1;
  // 100 peers x 8 SPIs: enough to make the table grow and probe past collisions.
  for (int p = 0; p < 100; ++p) {
    const IpAddress a = addr(("192.0.2." + std::to_string(p)).c_str());
    for (uint32_t spi = 0x1000; spi < 0x1008; ++spi) {
      ASSERT_TRUE(t.add(a, spi, fake(n), static_cast<uint16_t>(p)));
      added.push_back({key(a, spi), fake(n), static_cast<uint16_t>(p)});
      ++n;
    }
  }
  EXPECT_EQ(t.size(), 800u);
  for (const Added& e : added) {
    const InboundSaTable::Hit hit = t.lookup(e.key);
    EXPECT_EQ(hit.sa, e.sa);
    EXPECT_EQ(hit.peer, e.peer);
  }
  EXPECT_EQ(sa_of(t, key(addr("192.0.2.1"), 0x1008)), nullptr) << "unknown SPI";
  EXPECT_EQ(sa_of(t, key(addr("198.51.100.1"), 0x1000)), nullptr) << "unknown source";
}

TEST(InboundSaTable, SourceFamilyAndAllAddressBytesCount) {
  InboundSaTable t;
  ASSERT_TRUE(t.add(addr("2001:db8::1"), 0x2001, fake(1), 0));
  ASSERT_TRUE(t.add(addr("2001:db8::2"), 0x2001, fake(2), 1));
  ASSERT_TRUE(t.add(addr("32.1.13.184"), 0x2001, fake(3), 2));  // 2001:0db8 as IPv4 bytes
  EXPECT_EQ(sa_of(t, key(addr("2001:db8::1"), 0x2001)), fake(1));
  EXPECT_EQ(sa_of(t, key(addr("2001:db8::2"), 0x2001)), fake(2));
  EXPECT_EQ(sa_of(t, key(addr("32.1.13.184"), 0x2001)), fake(3));
  InboundSaTable::Key v4_as_v6 = key(addr("32.1.13.184"), 0x2001);
  v4_as_v6.family = 6;
  EXPECT_EQ(sa_of(t, v4_as_v6), nullptr);
}

TEST(InboundSaTable, RefusesADuplicateAndAnEmptyTableFindsNothing) {
  InboundSaTable t;
  EXPECT_EQ(sa_of(t, key(addr("192.0.2.1"), 0x1001)), nullptr);
  ASSERT_TRUE(t.add(addr("192.0.2.1"), 0x1001, fake(1), 0));
  EXPECT_FALSE(t.add(addr("192.0.2.1"), 0x1001, fake(2), 1));
  EXPECT_EQ(sa_of(t, key(addr("192.0.2.1"), 0x1001)), fake(1));
}

}  // namespace
}  // namespace meshwire::dp::esp
