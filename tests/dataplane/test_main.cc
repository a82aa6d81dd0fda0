// GoogleTest entry point for the data plane tests: a small EAL (in memory,
// no hugepages, no PCI, no vdevs) so that tests can build real mbufs.
#include <gtest/gtest.h>
#include <rte_eal.h>
#include <rte_log.h>

#include <cstdio>

int main(int argc, char** argv) {
  testing::InitGoogleTest(&argc, argv);
  const char* eal_argv[] = {"dataplane_tests", "--no-huge", "-m", "1024", "--no-pci", "--no-shconf",
                            "--no-telemetry", "-l", "0", "--log-level", "lib.*:error"};
  if (rte_eal_init(static_cast<int>(std::size(eal_argv)), const_cast<char**>(eal_argv)) < 0) {
    std::fprintf(stderr, "dataplane_tests: rte_eal_init failed\n");
    return 2;
  }
  const int rc = RUN_ALL_TESTS();
  rte_eal_cleanup();
  return rc;
}
