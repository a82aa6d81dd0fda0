#include "metrics/exposition.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>

namespace meshwire::ctl::metrics {
namespace {

TEST(Exposition, FamiliesHaveHelpTypeAndTheirSamples) {
  Exposition e;
  e.family("meshwire_x_total", Type::kCounter, "Things.\nMore \\ things.");
  e.sample({{"port", "pods"}, {"role", "local"}}, 42);
  e.sample({{"port", "fabric"}, {"role", "uplink"}}, 7);
  e.family("meshwire_y", Type::kGauge, "A level.");
  e.sample(0.5);
  EXPECT_EQ(e.text(),
            "# HELP meshwire_x_total Things.\\nMore \\\\ things.\n"
            "# TYPE meshwire_x_total counter\n"
            "meshwire_x_total{port=\"pods\",role=\"local\"} 42\n"
            "meshwire_x_total{port=\"fabric\",role=\"uplink\"} 7\n"
            "# HELP meshwire_y A level.\n"
            "# TYPE meshwire_y gauge\n"
            "meshwire_y 0.5\n");
}

TEST(Exposition, LabelValuesAreEscapedAndNamesSanitized) {
  EXPECT_EQ(escape_label_value("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
  EXPECT_EQ(sanitize_name("meshwire_dataplane_rx-bytes.total"), "meshwire_dataplane_rx_bytes_total");
  EXPECT_EQ(sanitize_name("9lives"), "_9lives");
  Exposition e;
  e.family("m", Type::kGauge, "h");
  e.sample({{"service", "default/web:\"http\""}}, 1);
  EXPECT_NE(e.text().find("m{service=\"default/web:\\\"http\\\"\"} 1\n"), std::string::npos);
}

TEST(Exposition, ValuesAreExactIntegersOrRoundTripping) {
  EXPECT_EQ(format_value(0), "0");
  EXPECT_EQ(format_value(18446744073709551615.0), "18446744073709551616");  // 2^64, the double nearest
  EXPECT_EQ(format_value(9007199254740992.0), "9007199254740992");
  EXPECT_EQ(format_value(0.25), "0.25");
  EXPECT_EQ(format_value(std::nan("")), "NaN");
  EXPECT_EQ(format_value(std::numeric_limits<double>::infinity()), "+Inf");
  EXPECT_EQ(format_value(-std::numeric_limits<double>::infinity()), "-Inf");
}

}  // namespace
}  // namespace meshwire::ctl::metrics
