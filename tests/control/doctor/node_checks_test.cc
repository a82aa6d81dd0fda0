// The node's checks of meshwirectl doctor on fabricated facts: each broken
// state gives its finding, with the numbers, and a healthy one gives none.
#include <gtest/gtest.h>

#include "doctor/checks.h"
#include "findings_test_util.h"

namespace meshwire::control {
namespace {

DataplaneFacts dataplane(uint32_t uplink_mtu, uint32_t local_mtu, const std::string& tunnel = "192.0.2.1") {
  DataplaneFacts d;
  d.generation.set_live_generation(3);
  d.generation.set_source("api");
  d.generation.set_workers(1);
  d.generation.set_tunnel_address(tunnel);
  auto* up = d.interfaces.add_interfaces();
  up->set_name("fabric");
  up->set_role("uplink");
  up->set_mtu(uplink_mtu);
  auto* local = d.interfaces.add_interfaces();
  local->set_name("pods");
  local->set_role("local");
  local->set_mtu(local_mtu);
  d.routes.add_routes()->set_prefix("10.11.0.0/24");
  return d;
}

ConfigFacts config(std::vector<unsigned> workers, unsigned main = 0) {
  ConfigFacts c;
  c.path = "node.yaml";
  c.main_cpu = main;
  c.worker_cpus = workers;
  c.workers = static_cast<unsigned>(workers.size());
  c.ports = {{"pods", "0000:03:00.2", false, 1500}, {"fabric", "0000:03:00.1", true, 1500}};
  return c;
}

TEST(DoctorHugepages, NoHugeIsSaidNotFailed) {
  Facts f;
  f.config = config({1});
  f.config->no_huge = true;
  const auto out = check_hugepages(f);
  EXPECT_TRUE(has(out, Severity::kOk, "hugepages", "--no-huge")) << dump(out);
}

TEST(DoctorHugepages, TooFewFreePagesForWhatTheConfigAsks) {
  Facts f;
  f.config = config({1});
  f.config->memory_mb = 1024;
  f.hugepages = HugepageFacts{{{2048, -1, 512, 100}}, true};  // 1 GB in all, 200 MB free
  const auto out = check_hugepages(f);
  EXPECT_TRUE(has(out, Severity::kError, "hugepages", "asks for 1024 MB of hugepages; 200 MB free")) << dump(out);
  EXPECT_TRUE(has(out, Severity::kError, "hugepages", "add 412 2 MB pages")) << dump(out);
  // With the data plane running, the pages it holds are its own: the total counts.
  f.dataplane = dataplane(1500, 1500);
  const auto running = check_hugepages(f);
  EXPECT_FALSE(any_of(running, Severity::kError)) << dump(running);
}

TEST(DoctorHugepages, NoneAtAllAndNotMounted) {
  Facts f;
  f.config = config({1});
  f.hugepages = HugepageFacts{{{2048, -1, 0, 0}}, false};
  EXPECT_TRUE(has(check_hugepages(f), Severity::kError, "hugepages", "no hugepages"));
  f.hugepages = HugepageFacts{{{2048, -1, 512, 512}}, false};
  EXPECT_TRUE(has(check_hugepages(f), Severity::kError, "hugepages", "mount -t hugetlbfs"));
  f.hugepages->hugetlbfs_mounted = true;
  EXPECT_FALSE(any_of(check_hugepages(f), Severity::kError));
}

TEST(DoctorHugepages, SocketMemPerNumaNode) {
  Facts f;
  f.config = config({1});
  f.config->socket_mem_mb = {512, 512};
  f.hugepages = HugepageFacts{{{2048, -1, 1024, 1024}, {2048, 0, 1024, 1024}, {2048, 1, 0, 0}}, true};
  const auto out = check_hugepages(f);
  EXPECT_TRUE(has(out, Severity::kError, "hugepages", "512 MB on NUMA node 1; it has 0 MB")) << dump(out);
  EXPECT_FALSE(has(out, Severity::kError, "hugepages", "NUMA node 0")) << dump(out);
}

TEST(DoctorHugepages, SkippedWithoutConfigWhenThereArePages) {
  Facts f;
  f.hugepages = HugepageFacts{{{2048, -1, 512, 512}}, true};
  EXPECT_TRUE(has(check_hugepages(f), Severity::kSkipped, "hugepages", "needs --config"));
}

TEST(DoctorIsolatedCores, WorkersOutsideTheIsolatedSet) {
  Facts f;
  f.config = config({2, 3});
  f.cpus = CpuFacts{{3}, std::nullopt};
  auto out = check_isolated_cores(f);
  EXPECT_TRUE(has(out, Severity::kWarning, "isolated-cores", "not isolated: 2 (isolated: 3)")) << dump(out);
  EXPECT_TRUE(has(out, Severity::kWarning, "isolated-cores", "isolcpus=2")) << dump(out);
  f.config->busy_poll = true;  // polling without pause beside other work: an error
  EXPECT_TRUE(has(check_isolated_cores(f), Severity::kError, "isolated-cores", "busy"));
  f.cpus = CpuFacts{{2, 3}, std::vector<unsigned>{2, 3}};
  out = check_isolated_cores(f);
  EXPECT_TRUE(has(out, Severity::kOk, "isolated-cores", "worker CPU(s) 2-3, all isolated")) << dump(out);
  EXPECT_FALSE(any_of(out, Severity::kWarning)) << dump(out);
  f.cpus = CpuFacts{{2, 3}, std::vector<unsigned>{3}};
  EXPECT_TRUE(has(check_isolated_cores(f), Severity::kWarning, "isolated-cores", "not nohz_full"));
}

TEST(DoctorIsolatedCores, SkippedWhenTheLcoresAreNotNamed) {
  Facts f;
  EXPECT_TRUE(has(check_isolated_cores(f), Severity::kSkipped, "isolated-cores", "needs --config"));
  f.config = config({1});
  f.config->worker_cpus.reset();
  f.config->lcores_note = "the config names no lcores";
  EXPECT_TRUE(has(check_isolated_cores(f), Severity::kSkipped, "isolated-cores", "names no lcores"));
}

TEST(DoctorDevices, EachWayAPciDeviceCanBeWrong) {
  Facts f;
  f.config = config({1});
  DeviceFact ok{"fabric", "0000:03:00.1", true, true, "vfio-pci", true, "0000:03:00.0"};
  DeviceFact missing{"pods", "0000:03:00.2", true, false};
  DeviceFact unbound{"a", "0000:03:00.3", true, true, ""};
  DeviceFact kernel{"b", "0000:03:00.4", true, true, "iavf", true};
  DeviceFact no_iommu{"c", "0000:03:00.5", true, true, "vfio-pci", false};
  DeviceFact mlx{"d", "0000:04:00.1", true, true, "mlx5_core", false};
  f.devices = {ok, missing, unbound, kernel, no_iommu, mlx};
  const auto out = check_devices(f);
  EXPECT_TRUE(has(out, Severity::kOk, "devices", "port fabric (0000:03:00.1) (a VF of 0000:03:00.0): present, bound to vfio-pci"))
      << dump(out);
  EXPECT_TRUE(has(out, Severity::kError, "devices", "0000:03:00.2): no such PCI device")) << dump(out);
  EXPECT_TRUE(has(out, Severity::kError, "devices", "bound to no driver fix: dpdk-devbind.py -b vfio-pci 0000:03:00.3"))
      << dump(out);
  EXPECT_TRUE(has(out, Severity::kError, "devices", "bound to iavf, a kernel driver")) << dump(out);
  EXPECT_TRUE(has(out, Severity::kError, "devices", "in no IOMMU group")) << dump(out);
  EXPECT_TRUE(has(out, Severity::kOk, "devices", "bound to mlx5_core")) << dump(out);
}

TEST(DoctorDevices, VdevsAreReportedAsSuch) {
  Facts f;
  f.config = config({1});
  DeviceFact memif{"fabric", "net_memif0,role=client", false};
  DeviceFact tap{"pods", "net_af_packet0,iface=veth0", false, false, "", false, "", "veth0", true};
  DeviceFact gone{"x", "net_af_packet1,iface=gone0", false, false, "", false, "", "gone0", false};
  f.devices = {memif, tap, gone};
  const auto out = check_devices(f);
  EXPECT_TRUE(has(out, Severity::kOk, "devices", "a vdev, no PCI device to check")) << dump(out);
  EXPECT_TRUE(has(out, Severity::kOk, "devices", "on interface veth0, present")) << dump(out);
  EXPECT_TRUE(has(out, Severity::kError, "devices", "interface gone0, which does not exist")) << dump(out);
}

TEST(DoctorMtu, TheEncapsulationOverheadInNumbers) {
  Facts f;
  f.dataplane = dataplane(1500, 1500);
  auto out = check_mtu(f);
  EXPECT_TRUE(has(out, Severity::kWarning, "mtu",
                  "uplink fabric MTU 1500 leaves 1438 for pods (ESP-in-UDP over IPv4 adds 62); the local port pods "
                  "carries 1500"))
      << dump(out);
  EXPECT_TRUE(has(out, Severity::kWarning, "mtu", "lower the pod MTU (and the local port's mtu) to 1438 or raise the "
                                                  "fabric MTU (the uplink's mtu) to 1564"))
      << dump(out);
  f.dataplane = dataplane(1500, 1500, "2001:db8::1");
  EXPECT_TRUE(has(check_mtu(f), Severity::kWarning, "mtu", "leaves 1418 for pods (ESP-in-UDP over IPv6 adds 82)"));
  f.dataplane = dataplane(1564, 1500);
  out = check_mtu(f);
  EXPECT_TRUE(has(out, Severity::kOk, "mtu", "uplink fabric MTU 1564 leaves 1502")) << dump(out);
  EXPECT_FALSE(any_of(out, Severity::kWarning)) << dump(out);
}

TEST(DoctorMtu, APodAboveTheLocalPortIsAnError) {
  Facts f;
  f.dataplane = dataplane(9000, 1500);
  PodNetnsFact pod;
  pod.netns = "pod-a";
  pod.dataplane_dev = "eth0";
  pod.dataplane_dev_mtu = 9000;
  f.pods = {pod};
  const auto out = check_mtu(f);
  EXPECT_TRUE(has(out, Severity::kError, "mtu", "pod netns pod-a eth0 MTU 9000 is above the data plane's local port "
                                                "MTU 1500"))
      << dump(out);
  EXPECT_TRUE(has(out, Severity::kError, "mtu", "ip -n pod-a link set eth0 mtu 1500")) << dump(out);
  // Within the local port's MTU: no error.
  f.pods[0].dataplane_dev_mtu = 1500;
  EXPECT_FALSE(any_of(check_mtu(f), Severity::kError));
}

TEST(DoctorMtu, Ipv6PodsNeed1280) {
  Facts f;
  f.dataplane = dataplane(1320, 1200);
  f.dataplane->routes.add_routes()->set_prefix("fd00:11::/64");
  EXPECT_TRUE(has(check_mtu(f), Severity::kError, "mtu", "IPv6 pods need 1280 fix: raise the fabric MTU to 1344"));
}

TEST(DoctorDataplane, UnreachableIsAnErrorAndSkipsWhatNeedsIt) {
  Facts f;
  f.dataplane_error = "/run/meshwire/api.sock: No such file or directory";
  const auto all = run_checks(f);
  EXPECT_TRUE(has(all, Severity::kError, "dataplane", "No such file or directory"));
  EXPECT_TRUE(has(all, Severity::kSkipped, "mtu", "needs the data plane's API"));
  EXPECT_EQ(doctor_exit_status(all), 1);
  f.config_error = "node.yaml: ports[1].rol: unknown field";
  EXPECT_TRUE(has(run_checks(f), Severity::kError, "config", "ports[1].rol"));
}

TEST(DoctorReport, TextAndJsonSayTheSame) {
  const std::vector<Finding> fs = {{Severity::kError, "mtu", "too big", "lower it"},
                                   {Severity::kOk, "devices", "fine", ""},
                                   {Severity::kSkipped, "bypass", "skipped: needs --pod-netns", ""}};
  EXPECT_EQ(format_findings(fs),
            "error     mtu      too big\n"
            "                   fix: lower it\n"
            "ok        devices  fine\n"
            "skipped   bypass   skipped: needs --pod-netns\n"
            "1 error(s), 0 warning(s), 1 ok, 1 skipped\n");
  EXPECT_EQ(findings_json(fs).find(R"("check": "mtu")") != std::string::npos, true) << findings_json(fs);
  EXPECT_NE(findings_json(fs).find(R"("errors": 1)"), std::string::npos) << findings_json(fs);
  EXPECT_EQ(doctor_exit_status(fs), 1);
  EXPECT_EQ(doctor_exit_status({fs[1], fs[2], {Severity::kWarning, "x", "y", ""}}), 0);
}

}  // namespace
}  // namespace meshwire::control
