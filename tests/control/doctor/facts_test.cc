// The pure parts of doctor's gathering: EAL arguments, cpulists, Node
// annotations, the controller's Prometheus text, and sysfs under a fake root.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "doctor/gather.h"

namespace meshwire::control {
namespace {

dp::Config with_eal(std::vector<std::string> eal, unsigned workers = 2) {
  dp::Config c;
  c.eal_args = std::move(eal);
  c.workers = workers;
  c.gateway_v4 = *dp::parse_ip_address("169.254.1.1");
  c.gateway_v6 = *dp::parse_ip_address("fe80::1");
  return c;
}

TEST(DoctorFacts, Cpulists) {
  EXPECT_EQ(parse_cpulist("0-3,8,10-11\n"), (std::vector<unsigned>{0, 1, 2, 3, 8, 10, 11}));
  EXPECT_EQ(parse_cpulist("\n"), std::vector<unsigned>{});
  EXPECT_EQ(parse_cpulist("3-1"), std::nullopt);
  EXPECT_EQ(parse_cpulist("a"), std::nullopt);
}

TEST(DoctorFacts, LcoresAndMemoryFromTheEalArguments) {
  auto f = config_facts(with_eal({"-l", "2-4", "-m", "1024", "--no-pci"}), "n.yaml");
  EXPECT_EQ(f.main_cpu, 2u);
  EXPECT_EQ(f.worker_cpus, (std::vector<unsigned>{3, 4}));
  EXPECT_EQ(f.memory_mb, 1024u);
  EXPECT_FALSE(f.no_huge);
  f = config_facts(with_eal({"--lcores=0@8,1@9,2@10", "--socket-mem", "512,256", "--no-huge"}), "n.yaml");
  EXPECT_EQ(f.main_cpu, 8u);
  EXPECT_EQ(f.worker_cpus, (std::vector<unsigned>{9, 10}));
  EXPECT_EQ(f.socket_mem_mb, (std::vector<uint64_t>{512, 256}));
  EXPECT_TRUE(f.no_huge);
  f = config_facts(with_eal({"-l5,6,7", "--main-lcore", "7"}), "n.yaml");
  EXPECT_EQ(f.main_cpu, 7u);
  EXPECT_EQ(f.worker_cpus, (std::vector<unsigned>{5, 6}));
  f = config_facts(with_eal({"--no-pci"}), "n.yaml");
  EXPECT_FALSE(f.worker_cpus);
  EXPECT_NE(f.lcores_note.find("names no lcores"), std::string::npos);
  f = config_facts(with_eal({"--lcores", "(0-1)@(2-3)"}), "n.yaml");
  EXPECT_FALSE(f.worker_cpus);
  EXPECT_NE(f.lcores_note.find("cannot read --lcores"), std::string::npos);
}

TEST(DoctorFacts, NodeAnnotations) {
  NodeObject n;
  n.name = "node2";
  n.internal_ips = {*dp::parse_ip_address("192.0.2.2")};
  n.annotations = {{"meshwire.io/public-key", "3p7bfXt9wbTTW2HC7OQ1Nz+DQ8hbeGdNrfx+FG+IK08="},
                   {"meshwire.io/key-epoch", "12"},
                   {"meshwire.io/tunnel-address", "198.51.100.2"}};
  NodeObject bare;
  bare.name = "node3";
  bare.annotations = {{"meshwire.io/public-key", "short"}, {"meshwire.io/key-epoch", "x"}};
  const auto facts = node_facts({{"node2", n}, {"node3", bare}});
  ASSERT_EQ(facts.size(), 2u);
  EXPECT_TRUE(facts[0].public_key_valid);
  EXPECT_EQ(facts[0].key_epoch, 12u);
  EXPECT_EQ(facts[0].internal_ips, std::vector<std::string>{"192.0.2.2"});
  EXPECT_EQ(facts[0].tunnel_address, "198.51.100.2");
  EXPECT_FALSE(facts[1].tunnel_address);
  EXPECT_FALSE(facts[1].public_key_valid);
  EXPECT_FALSE(facts[1].key_epoch);
}

TEST(DoctorFacts, ControllerMetricsText) {
  const auto m = parse_controller_metrics("u", R"(# HELP meshwire_dataplane_up 1 when ...
# TYPE meshwire_dataplane_up gauge
meshwire_dataplane_up 1
meshwire_controller_applies_total 3
meshwire_controller_apply_failures_total 0
meshwire_controller_applied_generation 9
meshwire_controller_key_epoch 5
meshwire_controller_peer_key_epoch{peer="node2"} 4
meshwire_controller_peer_key_epoch{peer="node3"} 17 1700000000000
meshwire_peer_up{peer="node2"} 1
)");
  EXPECT_EQ(m.dataplane_up, 1.0);
  EXPECT_EQ(m.applied_generation, 9.0);
  EXPECT_EQ(m.key_epoch, 5.0);
  EXPECT_EQ(m.peer_key_epoch, (std::map<std::string, double>{{"node2", 4}, {"node3", 17}}));
}

TEST(DoctorFacts, RemotePodAddresses) {
  v1::ListPeersResponse peers;
  auto* p = peers.add_peers();
  p->set_name("node2");
  p->add_pod_cidrs("10.12.0.0/24");
  p->add_pod_cidrs("fd00:12::/64");
  p->add_pod_cidrs("10.99.0.7/32");
  const auto r = remote_pod_addresses(peers);
  ASSERT_EQ(r.size(), 3u);
  EXPECT_EQ(r[0].dst, "10.12.0.1");
  EXPECT_EQ(r[1].dst, "fd00:12::1");
  EXPECT_EQ(r[2].dst, "10.99.0.7");
  EXPECT_EQ(r[1].peer, "node2");
}

class DoctorSysroot : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = std::filesystem::temp_directory_path() /
            ("doctor-sysroot-" + std::to_string(::testing::UnitTest::GetInstance()->random_seed()) + "-" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(root_);
  }
  void TearDown() override { std::filesystem::remove_all(root_); }
  void write(const std::string& rel, const std::string& text) {
    const auto path = root_ / rel;
    std::filesystem::create_directories(path.parent_path());
    std::ofstream(path) << text;
  }
  std::filesystem::path root_;
};

TEST_F(DoctorSysroot, HugepagesCpusAndDevices) {
  write("sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages", "512\n");
  write("sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages", "100\n");
  write("sys/devices/system/node/node1/hugepages/hugepages-2048kB/nr_hugepages", "256\n");
  write("sys/devices/system/node/node1/hugepages/hugepages-2048kB/free_hugepages", "6\n");
  write("proc/mounts", "nodev /dev/hugepages hugetlbfs rw,relatime,pagesize=2M 0 0\n");
  write("sys/devices/system/cpu/isolated", "2-3\n");
  write("sys/bus/pci/devices/0000:03:00.1/iommu_group/x", "");
  write("sys/bus/pci/drivers/vfio-pci/x", "");
  std::filesystem::create_directory_symlink(root_ / "sys/bus/pci/drivers/vfio-pci",
                                            root_ / "sys/bus/pci/devices/0000:03:00.1/driver");
  const auto h = read_hugepages(root_.string());
  ASSERT_EQ(h.pools.size(), 2u);
  EXPECT_TRUE(h.hugetlbfs_mounted);
  for (const auto& p : h.pools) {
    EXPECT_EQ(p.size_kb, 2048u);
    EXPECT_EQ(p.total, p.numa_node == -1 ? 512u : 256u);
    EXPECT_EQ(p.free, p.numa_node == -1 ? 100u : 6u);
  }
  const auto c = read_cpus(root_.string());
  EXPECT_EQ(c.isolated, (std::vector<unsigned>{2, 3}));
  EXPECT_FALSE(c.nohz_full);
  ConfigFacts config;
  config.ports = {{"fabric", "03:00.1", true, 1500}, {"pods", "0000:03:00.2", false, 1500},
                  {"tap", "net_af_packet0,iface=nope0,qpairs=2", false, 1500}};
  const auto d = read_devices(root_.string(), config);
  ASSERT_EQ(d.size(), 3u);
  EXPECT_TRUE(d[0].pci && d[0].present && d[0].iommu_group);
  EXPECT_EQ(d[0].device, "0000:03:00.1");
  EXPECT_EQ(d[0].driver, "vfio-pci");
  EXPECT_TRUE(d[1].pci);
  EXPECT_FALSE(d[1].present);
  EXPECT_FALSE(d[2].pci);
  EXPECT_EQ(d[2].iface, "nope0");
  EXPECT_FALSE(d[2].iface_present);
}

}  // namespace
}  // namespace meshwire::control
