// Cost of LatencyHistogram::record() on the generator's receive path: a
// stream of pseudo-random latencies spread over many buckets (log-uniform
// from 1 ns to ~1 ms), so that the bucket index and the
// counter's address change on every call.
//
//   histogram_bench --benchmark_filter=Histogram --benchmark_repetitions=3
//
// The values are drawn before the timed loop; the stream (64 Ki values,
// 512 KiB) is read sequentially and the histogram (~34 KiB) stays in L1/L2,
// as it would on a polling lcore.
#include <benchmark/benchmark.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "gen/histogram.h"

namespace meshwire::perf {
namespace {

std::vector<uint64_t> latency_stream() {
  constexpr size_t kValues = size_t{1} << 16;
  std::mt19937_64 gen(0x6869737467);
  std::uniform_real_distribution<double> octaves(0.0, 20.0);
  std::vector<uint64_t> values(kValues);
  for (uint64_t& v : values) v = static_cast<uint64_t>(std::exp2(octaves(gen)));
  return values;
}

void BM_HistogramRecord(benchmark::State& state) {
  const std::vector<uint64_t> values = latency_stream();
  LatencyHistogram h;
  size_t i = 0;
  for (auto _ : state) {
    h.record(values[i]);
    i = (i + 1) & (values.size() - 1);
  }
  benchmark::DoNotOptimize(h.count());
  benchmark::DoNotOptimize(h.value_at_percentile(99.0));
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_HistogramRecord);

}  // namespace
}  // namespace meshwire::perf
