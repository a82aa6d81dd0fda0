// Latency histogram for the benchmark generator: HdrHistogram's log-linear
// bucket layout, fixed range and precision, no dependency.
//
// Precision: every power-of-two range [2^e, 2^(e+1)) above 255 is split into
// kSubBuckets (128) equal sub-buckets, so a bucket holding values >= v is at
// most v/128 wide: any value reported stands for a recorded value x with
// x <= reported < x * (1 + 1/128) (relative error below 0.79 %). Values
// 0..255 have a bucket each and are exact.
//
// Range: 0..kMaxValue (2^40 ns, about 18 minutes). A larger value is
// recorded as kMaxValue everywhere (bucket, min, max, mean) and counted in
// saturated(); saturated() != 0 means max() and the top percentiles are
// lower bounds.
//
// Storage: kBucketCount counters (about 34 KiB), allocated once by the
// constructor; nothing allocates afterwards except buckets().
//
// Threading: single writer, not thread-safe. Give each lcore its own
// histogram, and merge() them once the writers have stopped (or after a
// barrier); reading while another thread records is a data race.
#pragma once

#include <algorithm>
#include <bit>
#include <cstdint>
#include <vector>

namespace meshwire::perf {

class LatencyHistogram {
 public:
  static constexpr unsigned kSubBucketBits = 7;
  static constexpr uint64_t kSubBuckets = uint64_t{1} << kSubBucketBits;  // per power of two
  static constexpr uint64_t kExactLimit = 2 * kSubBuckets;                // 0..255 exact
  static constexpr unsigned kMaxValueBits = 40;
  static constexpr uint64_t kMaxValue = uint64_t{1} << kMaxValueBits;
  // 256 exact buckets, 128 per power of two from 2^8 to 2^39, one for 2^40.
  static constexpr uint32_t kBucketCount = (kMaxValueBits - kSubBucketBits - 1) * kSubBuckets + kExactLimit + 1;

  // Index of the bucket that holds v; v must be <= kMaxValue.
  static constexpr uint32_t bucket_index(uint64_t v) {
    // shift is 0 below kExactLimit, else how far v's top 8 bits are from bit 0.
    const unsigned shift = static_cast<unsigned>(std::bit_width(v | (kExactLimit - 1))) - (kSubBucketBits + 1);
    return static_cast<uint32_t>((uint64_t{shift} << kSubBucketBits) + (v >> shift));
  }
  // Smallest and largest value that share v's bucket (the largest is not
  // clamped to kMaxValue). Like HdrHistogram's lowestEquivalentValue and
  // highestEquivalentValue.
  static constexpr uint64_t lowest_equivalent(uint64_t v) { return bucket_lowest(bucket_index(v)); }
  static constexpr uint64_t highest_equivalent(uint64_t v) { return bucket_highest(bucket_index(v)); }

  LatencyHistogram();

  // O(1), no allocation, no branch: meant for the polling loop, once per
  // received packet.
  void record(uint64_t v) {
    saturated_ += v > kMaxValue;
    v = std::min(v, kMaxValue);
    counts_[bucket_index(v)] += 1;
    total_ += 1;
    sum_ += v;
    min_ = std::min(min_, v);
    max_ = std::max(max_, v);
  }
  // Same as n calls of record(v); n == 0 records nothing.
  void record_n(uint64_t v, uint64_t n) {
    if (n == 0) return;
    saturated_ += (v > kMaxValue) ? n : 0;
    v = std::min(v, kMaxValue);
    counts_[bucket_index(v)] += n;
    total_ += n;
    sum_ += static_cast<Sum>(v) * n;
    min_ = std::min(min_, v);
    max_ = std::max(max_, v);
  }

  // Back to the state of a new histogram, keeping the storage.
  void reset();
  // Adds other's samples, as if they had been recorded here. other may be
  // *this (doubles every count).
  void merge(const LatencyHistogram& other);

  uint64_t count() const { return total_; }
  // Samples recorded above kMaxValue (and counted as kMaxValue).
  uint64_t saturated() const { return saturated_; }
  // Exact smallest and largest recorded value; 0 when empty.
  uint64_t min() const { return total_ == 0 ? 0 : min_; }
  uint64_t max() const { return max_; }
  // Exact sum of the recorded values divided by count(); 0 when empty.
  double mean() const;

  // The value below or at which p percent of the samples fall: the sample of
  // rank ceil(p / 100 * count()) (at least 1) in ascending order is found,
  // and the highest value of its bucket is returned, clamped to max(). So
  // the result is never below that sample and exceeds it by less than
  // 1/128 of it; p = 100 gives max(). p is clamped to [0, 100] (NaN counts
  // as 0); a p / 100 * count() within a few ulps above an integer counts as
  // that integer, so that 99.9 % of 1000 samples is rank 999, not 1000.
  // 0 when empty. O(kBucketCount): not for the polling loop.
  uint64_t value_at_percentile(double p) const;

  struct Bucket {
    uint64_t lowest;   // smallest value the bucket stands for
    uint64_t highest;  // largest, clamped to kMaxValue
    uint64_t count;
    bool operator==(const Bucket&) const = default;
  };
  // Calls f(const Bucket&) for every non-empty bucket, lowest values first.
  template <class F>
  void for_each_bucket(F f) const {
    for (uint32_t i = 0; i < kBucketCount; ++i) {
      if (counts_[i] != 0) f(Bucket{bucket_lowest(i), std::min(bucket_highest(i), kMaxValue), counts_[i]});
    }
  }
  // The non-empty buckets, lowest values first (allocates: for export).
  std::vector<Bucket> buckets() const;

  // Same samples (bucket counts, min, max, sum, saturated).
  bool operator==(const LatencyHistogram&) const = default;

 private:
  // Exact for any count of values up to kMaxValue (2^40 * 2^64 < 2^128).
  __extension__ using Sum = unsigned __int128;

  static constexpr uint64_t bucket_lowest(uint32_t i) {
    // Buckets 0..255 are single values; above, 128 buckets per shift.
    const unsigned shift = i < kExactLimit ? 0 : (i >> kSubBucketBits) - 1;
    return (uint64_t{i} - (uint64_t{shift} << kSubBucketBits)) << shift;
  }
  static constexpr uint64_t bucket_highest(uint32_t i) {
    const unsigned shift = i < kExactLimit ? 0 : (i >> kSubBucketBits) - 1;
    return bucket_lowest(i) + (uint64_t{1} << shift) - 1;
  }

  std::vector<uint64_t> counts_;  // kBucketCount entries
  uint64_t total_ = 0;
  uint64_t saturated_ = 0;
  uint64_t min_ = UINT64_MAX;  // UINT64_MAX while empty
  uint64_t max_ = 0;
  Sum sum_ = 0;
};

static_assert(LatencyHistogram::kBucketCount == LatencyHistogram::bucket_index(LatencyHistogram::kMaxValue) + 1);
static_assert(LatencyHistogram::bucket_index(255) == 255 && LatencyHistogram::bucket_index(256) == 256);
static_assert(LatencyHistogram::lowest_equivalent(LatencyHistogram::kMaxValue) == LatencyHistogram::kMaxValue);

}  // namespace meshwire::perf
