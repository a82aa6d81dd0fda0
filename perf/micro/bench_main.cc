// Entry point of dp_micro_bench: a small EAL (no hugepages, no PCI, no
// shared config) so that stage benchmarks can use real mbufs, then Google
// Benchmark.
#include <benchmark/benchmark.h>
#include <rte_eal.h>

#include <cstdio>
#include <iterator>

int main(int argc, char** argv) {
  const char* eal_argv[] = {"dp_micro_bench", "--no-huge", "-m", "1024", "--no-pci", "--no-shconf",
                            "--no-telemetry", "-l", "0", "--log-level", "lib.*:error"};
  if (rte_eal_init(static_cast<int>(std::size(eal_argv)), const_cast<char**>(eal_argv)) < 0) {
    std::fprintf(stderr, "dp_micro_bench: rte_eal_init failed\n");
    return 2;
  }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  rte_eal_cleanup();
  return 0;
}
