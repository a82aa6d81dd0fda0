// LatencyHistogram: bucket layout, percentiles against the exact order
// statistics of a sorted copy, saturation, merge, reset, record_n.
#include "gen/histogram.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <vector>

namespace meshwire::perf {
namespace {

using H = LatencyHistogram;

// Reported value r for an exact sample x: never below, less than x/128 above.
::testing::AssertionResult within_precision(uint64_t reported, uint64_t exact) {
  if (reported >= exact && (reported - exact) * 128 <= exact) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "reported " << reported << " for exact " << exact;
}

std::vector<H::Bucket> buckets_of(const H& h) {
  std::vector<H::Bucket> out;
  h.for_each_bucket([&out](const H::Bucket& b) { out.push_back(b); });
  return out;
}

void expect_same(const H& a, const H& b) {
  EXPECT_EQ(a.count(), b.count());
  EXPECT_EQ(a.saturated(), b.saturated());
  EXPECT_EQ(a.min(), b.min());
  EXPECT_EQ(a.max(), b.max());
  EXPECT_EQ(a.mean(), b.mean());
  EXPECT_EQ(buckets_of(a), buckets_of(b));
  for (double p : {0.0, 50.0, 90.0, 99.0, 99.9, 100.0}) EXPECT_EQ(a.value_at_percentile(p), b.value_at_percentile(p)) << p;
  EXPECT_TRUE(a == b);
}

TEST(LatencyHistogram, BucketsTileTheRangeWithBoundedWidth) {
  uint32_t buckets = 0;
  uint64_t v = 0;
  while (v <= H::kMaxValue) {
    const uint64_t lo = H::lowest_equivalent(v), hi = H::highest_equivalent(v);
    ASSERT_EQ(lo, v) << "bucket " << buckets << " does not start where the previous ended";
    ASSERT_EQ(H::bucket_index(v), buckets);
    ASSERT_EQ(H::bucket_index(hi), buckets);
    if (v < 256) {
      ASSERT_EQ(hi, v) << "values below 256 are exact";
    } else {
      ASSERT_GT(hi, lo);
      ASSERT_LE((hi - lo + 1) * 128, lo) << "bucket [" << lo << ", " << hi << "] wider than 1/128 of its values";
    }
    ++buckets;
    v = hi + 1;
  }
  EXPECT_EQ(buckets, H::kBucketCount);
  EXPECT_EQ(H::lowest_equivalent(H::kMaxValue), H::kMaxValue);
  EXPECT_EQ(H::lowest_equivalent(1000), 1000u);  // bit width 10: buckets of 4
  EXPECT_EQ(H::highest_equivalent(1001), 1003u);
  EXPECT_EQ(H::lowest_equivalent(1023), 1020u);
}

TEST(LatencyHistogram, SmallValuesAreExact) {
  H h;
  for (uint64_t v = 0; v < 256; ++v) h.record(v);
  EXPECT_EQ(h.count(), 256u);
  for (uint64_t rank = 1; rank <= 256; ++rank) {
    EXPECT_EQ(h.value_at_percentile(100.0 * static_cast<double>(rank) / 256.0), rank - 1) << "rank " << rank;
  }
  const auto buckets = h.buckets();
  ASSERT_EQ(buckets.size(), 256u);
  for (uint64_t v = 0; v < 256; ++v) EXPECT_EQ(buckets[v], (H::Bucket{v, v, 1})) << v;
}

TEST(LatencyHistogram, EmptyReportsZero) {
  const H h;
  EXPECT_EQ(h.count(), 0u);
  EXPECT_EQ(h.saturated(), 0u);
  EXPECT_EQ(h.min(), 0u);
  EXPECT_EQ(h.max(), 0u);
  EXPECT_EQ(h.mean(), 0.0);
  for (double p : {0.0, 50.0, 100.0}) EXPECT_EQ(h.value_at_percentile(p), 0u);
  EXPECT_TRUE(h.buckets().empty());
}

TEST(LatencyHistogram, SingleValueIsEveryPercentile) {
  H h;
  constexpr uint64_t kV = 123'456'789;
  h.record(kV);
  EXPECT_EQ(h.count(), 1u);
  EXPECT_EQ(h.min(), kV);
  EXPECT_EQ(h.max(), kV);
  EXPECT_EQ(h.mean(), static_cast<double>(kV));
  // The bucket's upper bound is clamped to max(), which is exact.
  for (double p : {0.0, 1.0, 50.0, 99.9, 100.0}) EXPECT_EQ(h.value_at_percentile(p), kV) << p;
  const auto buckets = h.buckets();
  ASSERT_EQ(buckets.size(), 1u);
  EXPECT_LE(buckets[0].lowest, kV);
  EXPECT_GE(buckets[0].highest, kV);
  EXPECT_LT(buckets[0].lowest, buckets[0].highest);
  EXPECT_EQ(buckets[0].count, 1u);
}

TEST(LatencyHistogram, PercentileIsBucketUpperBoundClampedToMax) {
  H h;
  h.record(1000);  // bucket [1000, 1003]
  h.record(5000);
  EXPECT_EQ(h.value_at_percentile(50.0), 1003u);
  EXPECT_EQ(h.value_at_percentile(100.0), 5000u);
  H one;
  one.record(1001);
  EXPECT_EQ(one.value_at_percentile(50.0), 1001u);
}

TEST(LatencyHistogram, PercentileRankIsCeilingOfFraction) {
  H h;
  h.record_n(10, 999);
  h.record(200);
  // 99.9 / 100 * 1000 is 999.0000000000001 in doubles: still rank 999.
  EXPECT_EQ(h.value_at_percentile(99.9), 10u);
  EXPECT_EQ(h.value_at_percentile(99.95), 200u);  // rank 1000
  EXPECT_EQ(h.value_at_percentile(0.0), 10u);     // rank at least 1

  H three;
  for (uint64_t v : {1, 2, 3}) three.record(v);
  EXPECT_EQ(three.value_at_percentile(33.33), 1u);  // rank ceil(0.9999) = 1
  EXPECT_EQ(three.value_at_percentile(33.34), 2u);  // rank ceil(1.0002) = 2
  EXPECT_EQ(three.value_at_percentile(50.0), 2u);
  EXPECT_EQ(three.value_at_percentile(66.67), 3u);
  EXPECT_EQ(three.value_at_percentile(-5.0), 1u);
  EXPECT_EQ(three.value_at_percentile(std::nan("")), 1u);
  EXPECT_EQ(three.value_at_percentile(250.0), 3u);
}

struct Distribution {
  const char* name;
  std::function<uint64_t(std::mt19937_64&)> draw;
};

std::vector<Distribution> distributions() {
  return {
      {"uniform_wide", [](std::mt19937_64& g) { return std::uniform_int_distribution<uint64_t>(0, 1'000'000'000)(g); }},
      {"uniform_small", [](std::mt19937_64& g) { return std::uniform_int_distribution<uint64_t>(0, 5'000)(g); }},
      {"exponential",
       [](std::mt19937_64& g) { return static_cast<uint64_t>(std::exponential_distribution<double>(1.0 / 50'000)(g)); }},
      {"bimodal",
       [](std::mt19937_64& g) {
         const bool slow = std::bernoulli_distribution(0.1)(g);
         const double x = slow ? std::normal_distribution<double>(2e6, 2e5)(g) : std::normal_distribution<double>(8e3, 5e2)(g);
         return static_cast<uint64_t>(std::max(x, 0.0));
       }},
      {"log_uniform_full_range",
       [](std::mt19937_64& g) {
         return static_cast<uint64_t>(std::exp2(std::uniform_real_distribution<double>(0.0, 40.0)(g)));
       }},
  };
}

TEST(LatencyHistogram, PercentilesWithinPrecisionOfExactOrderStatistics) {
  constexpr size_t kN = 200'000;
  // Percentiles in millionths, so that the reference rank is integer math.
  constexpr uint64_t kPerMillion[] = {0, 10'000, 250'000, 500'000, 900'000, 990'000, 999'000, 999'900, 1'000'000};
  std::mt19937_64 gen(0x6d657368);
  for (const Distribution& d : distributions()) {
    SCOPED_TRACE(d.name);
    H h;
    std::vector<uint64_t> ref;
    ref.reserve(kN);
    uint64_t sum = 0;
    for (size_t i = 0; i < kN; ++i) {
      const uint64_t v = d.draw(gen);
      ASSERT_LE(v, H::kMaxValue);
      h.record(v);
      ref.push_back(v);
      sum += v;
    }
    std::sort(ref.begin(), ref.end());
    EXPECT_EQ(h.count(), kN);
    EXPECT_EQ(h.saturated(), 0u);
    EXPECT_EQ(h.min(), ref.front());
    EXPECT_EQ(h.max(), ref.back());
    EXPECT_DOUBLE_EQ(h.mean(), static_cast<double>(sum) / kN);
    for (uint64_t pm : kPerMillion) {
      const uint64_t rank = std::max<uint64_t>(1, (pm * kN + 999'999) / 1'000'000);
      const uint64_t exact = ref[rank - 1];
      const uint64_t got = h.value_at_percentile(static_cast<double>(pm) / 10'000.0);
      EXPECT_TRUE(within_precision(got, exact)) << "p" << static_cast<double>(pm) / 10'000.0 << " rank " << rank;
      // And it lies in the bucket of the exact sample, not a neighbour.
      EXPECT_EQ(H::bucket_index(got), H::bucket_index(exact)) << "p" << static_cast<double>(pm) / 10'000.0;
    }
    EXPECT_EQ(h.value_at_percentile(100.0), ref.back());
    uint64_t total = 0;
    h.for_each_bucket([&total](const H::Bucket& b) { total += b.count; });
    EXPECT_EQ(total, kN);
  }
}

TEST(LatencyHistogram, ValuesAboveMaxAreClampedAndCounted) {
  H h;
  h.record(H::kMaxValue);
  EXPECT_EQ(h.saturated(), 0u);
  EXPECT_EQ(h.value_at_percentile(100.0), H::kMaxValue);
  h.record(H::kMaxValue + 1);
  h.record(std::numeric_limits<uint64_t>::max());
  h.record_n(H::kMaxValue * 4, 5);
  EXPECT_EQ(h.saturated(), 7u);
  EXPECT_EQ(h.count(), 8u);
  EXPECT_EQ(h.max(), H::kMaxValue);
  EXPECT_EQ(h.mean(), static_cast<double>(H::kMaxValue));
  EXPECT_EQ(h.value_at_percentile(50.0), H::kMaxValue);
  const auto buckets = h.buckets();
  ASSERT_EQ(buckets.size(), 1u);
  EXPECT_EQ(buckets[0], (H::Bucket{H::kMaxValue, H::kMaxValue, 8}));

  h.record(7);
  EXPECT_EQ(h.min(), 7u);
  EXPECT_EQ(h.value_at_percentile(0.0), 7u);
}

TEST(LatencyHistogram, MeanIsExactPastSixtyFourBitSums) {
  H h;
  // The sum, 2^71 - 2^30, does not fit 64 bits.
  h.record_n(H::kMaxValue, uint64_t{1} << 30);
  h.record_n(H::kMaxValue - 1, uint64_t{1} << 30);
  EXPECT_EQ(h.mean(), static_cast<double>(H::kMaxValue) - 0.5);

  H small;
  for (uint64_t v : {7, 1'000'003, 123'456'789}) small.record(v);
  EXPECT_EQ(small.min(), 7u);
  EXPECT_EQ(small.max(), 123'456'789u);
  EXPECT_EQ(small.mean(), (7.0 + 1'000'003.0 + 123'456'789.0) / 3.0);
}

TEST(LatencyHistogram, MergeEqualsRecordingBoth) {
  std::mt19937_64 gen(42);
  const auto dists = distributions();
  H a, b, both;
  for (int i = 0; i < 50'000; ++i) {
    const uint64_t x = dists[2].draw(gen), y = dists[3].draw(gen);
    a.record(x);
    b.record(y);
    both.record(x);
    both.record(y);
  }
  b.record(H::kMaxValue + 9);
  both.record(H::kMaxValue + 9);
  ASSERT_NE(buckets_of(a), buckets_of(both));
  a.merge(b);
  expect_same(a, both);

  // Into and from an empty histogram.
  H empty, into_empty;
  into_empty.merge(both);
  expect_same(into_empty, both);
  into_empty.merge(empty);
  expect_same(into_empty, both);

  // With itself: every count doubles.
  H twice;
  twice.merge(both);
  twice.merge(both);
  H self = both;
  self.merge(self);
  expect_same(self, twice);
}

TEST(LatencyHistogram, ResetGivesAFreshHistogram) {
  H h;
  for (uint64_t v : {3, 300, 30'000, 3'000'000}) h.record(v);
  h.record(H::kMaxValue + 1);
  h.reset();
  expect_same(h, H{});
  h.record(500);
  EXPECT_EQ(h.count(), 1u);
  EXPECT_EQ(h.min(), 500u);
  EXPECT_EQ(h.max(), 500u);
  EXPECT_EQ(h.value_at_percentile(0.0), 500u);
}

TEST(LatencyHistogram, RecordNEqualsNRecords) {
  H bulk, single;
  const std::pair<uint64_t, uint64_t> samples[] = {{0, 3}, {255, 1}, {4'097, 17}, {987'654'321, 1'000}, {H::kMaxValue + 5, 2}};
  for (auto [v, n] : samples) {
    bulk.record_n(v, n);
    for (uint64_t i = 0; i < n; ++i) single.record(v);
  }
  expect_same(bulk, single);

  H none;
  none.record_n(12'345, 0);
  expect_same(none, H{});
  none.record(99);
  none.record_n(1, 0);
  EXPECT_EQ(none.min(), 99u) << "record_n with n = 0 must not move min";
}

}  // namespace
}  // namespace meshwire::perf
