// Entry point of dp_micro_bench: plain Google Benchmark, no EAL.
#include <benchmark/benchmark.h>

BENCHMARK_MAIN();
