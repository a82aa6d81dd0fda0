#include "gen/histogram.h"

#include <cfloat>
#include <cmath>

namespace meshwire::perf {

LatencyHistogram::LatencyHistogram() : counts_(kBucketCount, 0) {}

void LatencyHistogram::reset() {
  std::fill(counts_.begin(), counts_.end(), 0);
  total_ = 0;
  saturated_ = 0;
  min_ = UINT64_MAX;
  max_ = 0;
  sum_ = 0;
}

void LatencyHistogram::merge(const LatencyHistogram& other) {
  for (uint32_t i = 0; i < kBucketCount; ++i) counts_[i] += other.counts_[i];
  total_ += other.total_;
  saturated_ += other.saturated_;
  min_ = std::min(min_, other.min_);
  max_ = std::max(max_, other.max_);
  sum_ += other.sum_;
}

double LatencyHistogram::mean() const {
  return total_ == 0 ? 0.0 : static_cast<double>(sum_) / static_cast<double>(total_);
}

uint64_t LatencyHistogram::value_at_percentile(double p) const {
  if (total_ == 0) return 0;
  if (!(p > 0.0)) p = 0.0;  // also NaN
  if (p > 100.0) p = 100.0;
  // p / 100 * total_ carries the rounding of p itself (99.9 is not exact)
  // and of two operations: take a few ulps off before rounding up, so that
  // an exact integer rank is not pushed to the next one.
  const double x = p / 100.0 * static_cast<double>(total_);
  const double rank_real = std::ceil(x - x * (4 * DBL_EPSILON));
  // Compared as doubles first: a total_ near 2^64 rounds up to 2^64, which
  // does not convert back.
  const uint64_t rank =
      rank_real >= static_cast<double>(total_) ? total_ : std::max<uint64_t>(static_cast<uint64_t>(rank_real), 1);

  uint64_t seen = 0;
  for (uint32_t i = 0; i < kBucketCount; ++i) {
    seen += counts_[i];
    if (seen >= rank) return std::min(bucket_highest(i), max_);
  }
  return max_;  // not reached: the counts add up to total_
}

std::vector<LatencyHistogram::Bucket> LatencyHistogram::buckets() const {
  std::vector<Bucket> out;
  for_each_bucket([&out](const Bucket& b) { out.push_back(b); });
  return out;
}

}  // namespace meshwire::perf
