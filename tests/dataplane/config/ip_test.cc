#include <gtest/gtest.h>

#include <meshwire/dp/config.h>

namespace meshwire::dp {
namespace {

struct AddressCase {
  const char* text;
  uint8_t family;  // 0: must be rejected
  const char* formatted;
};

class IpAddressTest : public testing::TestWithParam<AddressCase> {};

TEST_P(IpAddressTest, ParsesAndFormats) {
  const AddressCase& c = GetParam();
  const std::optional<IpAddress> address = parse_ip_address(c.text);
  if (c.family == 0) {
    EXPECT_FALSE(address.has_value()) << c.text;
    return;
  }
  ASSERT_TRUE(address.has_value()) << c.text;
  EXPECT_EQ(address->family, c.family);
  EXPECT_EQ(format_ip(*address), c.formatted);
}

INSTANTIATE_TEST_SUITE_P(
    Table, IpAddressTest,
    testing::Values(AddressCase{"192.0.2.1", 4, "192.0.2.1"}, AddressCase{"0.0.0.0", 4, "0.0.0.0"},
                    AddressCase{"255.255.255.255", 4, "255.255.255.255"},
                    AddressCase{"2001:db8::1", 6, "2001:db8::1"},
                    AddressCase{"2001:0DB8:0000:0000:0000:0000:0000:0001", 6, "2001:db8::1"},
                    AddressCase{"::", 6, "::"}, AddressCase{"fe80::1", 6, "fe80::1"},
                    AddressCase{"::ffff:192.0.2.1", 6, "::ffff:192.0.2.1"}, AddressCase{"", 0, ""},
                    AddressCase{"192.0.2", 0, ""}, AddressCase{"192.0.2.256", 0, ""},
                    AddressCase{" 192.0.2.1", 0, ""}, AddressCase{"192.0.2.1 ", 0, ""},
                    AddressCase{"fe80::1%eth0", 0, ""}, AddressCase{"2001:db8:::1", 0, ""},
                    AddressCase{"host.example", 0, ""},
                    AddressCase{"1111:2222:3333:4444:5555:6666:7777:8888:9999", 0, ""}));

TEST(IpAddressTest, V4BytesAreFirstFourAndRestZero) {
  const auto address = parse_ip_address("10.1.2.3");
  ASSERT_TRUE(address.has_value());
  const std::array<uint8_t, 16> expected{10, 1, 2, 3};
  EXPECT_EQ(address->bytes, expected);
  EXPECT_TRUE(address->is_v4());
  EXPECT_FALSE(address->is_v6());
}

TEST(IpAddressTest, DefaultFormatsAsNone) { EXPECT_EQ(format_ip(IpAddress{}), "(none)"); }

struct PrefixCase {
  const char* text;
  const char* formatted;  // nullptr: must be rejected
  const char* error;      // the start of the error when rejected
};

class IpPrefixTest : public testing::TestWithParam<PrefixCase> {};

TEST_P(IpPrefixTest, ParsesOrNamesTheProblem) {
  const PrefixCase& c = GetParam();
  const Result<IpPrefix> prefix = parse_ip_prefix(c.text);
  if (c.formatted == nullptr) {
    ASSERT_FALSE(prefix.ok()) << c.text;
    EXPECT_EQ(prefix.error().rfind(c.error, 0), 0u) << prefix.error();
    return;
  }
  ASSERT_TRUE(prefix.ok()) << c.text << ": " << prefix.error();
  EXPECT_EQ(format_prefix(*prefix), c.formatted);
}

INSTANTIATE_TEST_SUITE_P(
    Table, IpPrefixTest,
    testing::Values(PrefixCase{"10.11.0.0/24", "10.11.0.0/24", nullptr},
                    PrefixCase{"0.0.0.0/0", "0.0.0.0/0", nullptr},
                    PrefixCase{"192.0.2.1/32", "192.0.2.1/32", nullptr},
                    PrefixCase{"10.128.0.0/9", "10.128.0.0/9", nullptr},
                    PrefixCase{"fd00:11::/64", "fd00:11::/64", nullptr},
                    PrefixCase{"2001:db8::1/128", "2001:db8::1/128", nullptr},
                    PrefixCase{"::/0", "::/0", nullptr},
                    PrefixCase{"fd00:0:0:8000::/49", "fd00:0:0:8000::/49", nullptr},
                    PrefixCase{"10.1.0.1/24", nullptr, "host bits set in 10.1.0.1/24 (did you mean 10.1.0.0/24?)"},
                    PrefixCase{"10.192.0.0/9", nullptr, "host bits set in 10.192.0.0/9"},
                    PrefixCase{"fd00::1/64", nullptr, "host bits set in fd00::1/64"},
                    PrefixCase{"0.0.0.1/0", nullptr, "host bits set"},
                    PrefixCase{"10.0.0.0", nullptr, "expected address/length, got '10.0.0.0'"},
                    PrefixCase{"10.0.0.0/33", nullptr, "prefix length must be 0..32, got '33'"},
                    PrefixCase{"fd00::/129", nullptr, "prefix length must be 0..128, got '129'"},
                    PrefixCase{"10.0.0.0/", nullptr, "prefix length must be 0..32"},
                    PrefixCase{"10.0.0.0/-1", nullptr, "prefix length must be 0..32"},
                    PrefixCase{"10.0.0.0/24x", nullptr, "prefix length must be 0..32"},
                    PrefixCase{"10.0.0.0/ 24", nullptr, "prefix length must be 0..32"},
                    PrefixCase{"10.0.0/24", nullptr, "not an IP address: '10.0.0'"},
                    PrefixCase{"/24", nullptr, "not an IP address"}));

TEST(IpPrefixTest, KeepsAddressAndLength) {
  const auto prefix = parse_ip_prefix("fd00:11::/64");
  ASSERT_TRUE(prefix.ok());
  EXPECT_EQ(prefix->length, 64);
  EXPECT_EQ(prefix->address, *parse_ip_address("fd00:11::"));
}

}  // namespace
}  // namespace meshwire::dp
