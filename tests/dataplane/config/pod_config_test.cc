// The config forms for running in a pod, through parse_config: ${VAR} from an
// injected environment, "sriov:RESOURCE" devices from PCIDEVICE_*, and
// "network:NAME" devices and tunnel address from an annotations file in a
// temporary folder; and node.pod_cidrs left to the controller.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>

#include <meshwire/dp/config.h>

#include "config_test_util.h"

namespace meshwire::dp {
namespace {

namespace fs = std::filesystem;

Result<Config> parse_with(const Edit& edit, const LoadOptions& options) {
  YAML::Node doc = YAML::Load(std::string(kMinimal));
  edit(doc);
  return parse_config(YAML::Dump(doc), "", options);
}

// A downward API annotations file (as the kubelet writes it) in a fresh
// temporary folder, removed with the fixture.
class PodConfigTest : public testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "mw-podcfg-XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    options_.pod_annotations = (dir_ / "annotations").string();
  }
  void TearDown() override { fs::remove_all(dir_); }

  // Writes `status` as the network-status annotation, Go-quoted, beside
  // another annotation.
  void write_status(std::string_view status) {
    std::string quoted = "\"";
    for (char c : status) {
      if (c == '"' || c == '\\') quoted += '\\';
      if (c == '\n') {
        quoted += "\\n";
        continue;
      }
      quoted += c;
    }
    quoted += "\"";
    std::ofstream(options_.pod_annotations) << "k8s.v1.cni.cncf.io/network-status=" << quoted
                                            << "\nkubernetes.io/config.source=\"api\"";
  }

  fs::path dir_;
  LoadOptions options_;
};

constexpr std::string_view kStatus = R"([{
    "name": "cbr0", "interface": "eth0", "ips": ["10.244.1.5"], "default": true, "dns": {}
},{
    "name": "meshwire-system/fabric", "interface": "net1", "ips": ["198.51.100.7"], "mac": "ce:4f:10:22:33:44",
    "dns": {}, "device-info": {"type": "pci", "version": "1.1.0", "pci": {"pci-address": "0000:18:02.5"}}
},{
    "name": "meshwire-system/pods", "interface": "net2", "ips": ["10.11.0.1"], "dns": {},
    "device-info": {"type": "pci", "version": "1.1.0", "pci": {"pci-address": "0000:18:0A.6"}}
},{
    "name": "meshwire-system/noip", "interface": "net3", "ips": [],
    "device-info": {"type": "pci", "version": "1.1.0", "pci": {"pci-address": "0000:18:02.7"}}
},{
    "name": "meshwire-system/badip", "interface": "net4", "ips": ["not-an-ip"]
},{
    "name": "meshwire-system/badpci", "interface": "net5",
    "device-info": {"type": "pci", "version": "1.1.0", "pci": {"pci-address": "18:02.1"}}
}])";

TEST_F(PodConfigTest, VariablesInAnyStringField) {
  options_.env = {{"NODE_NAME", "worker-3"}, {"HOST_IP", "192.0.2.9"}, {"UPLINK_IF", "eth1"},
                  {"WORKERS", "1"}, {"PREFIX", "mw-w3"}};
  const Result<Config> c = parse_with([](YAML::Node& d) {
    d["node"]["name"] = "${NODE_NAME}";
    d["node"]["tunnel_address"] = "${HOST_IP}";
    d["ports"][1]["device"] = "net_af_packet1,iface=${UPLINK_IF}";
    d["workers"] = "${WORKERS}";
    d["eal"] = YAML::Load(R"(["--file-prefix", "${PREFIX}", "--log-level", "pmd.$$x:debug"])");
  }, options_);
  ASSERT_TRUE(c.ok()) << c.error();
  EXPECT_EQ(c->node_name, "worker-3");
  EXPECT_EQ(format_ip(c->tunnel_address), "192.0.2.9");
  EXPECT_EQ(c->ports[1].device, "net_af_packet1,iface=eth1");
  EXPECT_EQ(c->ports[1].device_source, "");
  EXPECT_EQ(c->workers, 1u);
  EXPECT_EQ(c->eal_args, (std::vector<std::string>{"--file-prefix", "mw-w3", "--log-level", "pmd.$x:debug"}));
}

TEST_F(PodConfigTest, VariableErrorsNameFieldAndVariable) {
  options_.env = {{"EMPTY", ""}};
  auto error = [&](const Edit& e) {
    const Result<Config> c = parse_with(e, options_);
    return c.ok() ? std::string("parsed") : c.error();
  };
  EXPECT_EQ(error([](YAML::Node& d) { d["node"]["name"] = "${NODE_NAME}"; }),
            "node.name: environment variable NODE_NAME is not set");
  EXPECT_EQ(error([](YAML::Node& d) { d["node"]["tunnel_address"] = "${EMPTY}"; }),
            "node.tunnel_address: environment variable EMPTY is empty");
  EXPECT_EQ(error([](YAML::Node& d) { d["ports"][1]["device"] = "net_af_packet1,iface=${IF"; }),
            "ports[1].device: '${' at character 22 has no closing '}' (write $$ for a literal $)");
  // Key material: the error names the field and the variable, never a value.
  EXPECT_EQ(error([](YAML::Node& d) { d["peers"][0]["sas"]["outbound"][0]["key"] = "${KEY}"; }),
            "peers[0].sas.outbound[0].key: environment variable KEY is not set");
  // Without an environment given, a ${VAR} is an error too.
  const Result<Config> none = parse_with([](YAML::Node& d) { d["node"]["name"] = "${NODE_NAME}"; }, {});
  EXPECT_EQ(none.error(), "node.name: environment variable NODE_NAME is not set");
}

TEST_F(PodConfigTest, KeyFromVariableIsNotShownWhenWrong) {
  options_.env = {{"KEY", "0f1e2d3c4b5a6978zz96a5b4c3d2e1f0"}};
  const Result<Config> c =
      parse_with([](YAML::Node& d) { d["peers"][0]["sas"]["outbound"][0]["key"] = "${KEY}"; }, options_);
  ASSERT_FALSE(c.ok());
  EXPECT_TRUE(starts_with(c.error(), "peers[0].sas.outbound[0].key: ")) << c.error();
  EXPECT_EQ(c.error().find("0f1e2d3c"), std::string::npos) << c.error();
}

TEST_F(PodConfigTest, SriovResourcesGiveAddressesInPortOrder) {
  options_.env = {{"PCIDEVICE_INTEL_COM_INTEL_SRIOV_DPDK", "0000:3b:02.1, 0000:3B:02.2"},
                  {"PCIDEVICE_INTEL_COM_FABRIC", "0000:5e:00.3"}};
  const Result<Config> c = parse_with([](YAML::Node& d) {
    d["ports"][0]["device"] = "sriov:intel.com/intel_sriov_dpdk";
    d["ports"][1]["device"] = "sriov:intel.com/fabric";
    d["ports"].push_back(YAML::Load("{name: pods2, device: 'sriov:intel.com/intel_sriov_dpdk', role: local}"));
  }, options_);
  ASSERT_TRUE(c.ok()) << c.error();
  EXPECT_EQ(c->ports[0].device, "0000:3b:02.1");
  EXPECT_EQ(c->ports[0].device_source, "sriov:intel.com/intel_sriov_dpdk");
  EXPECT_EQ(c->ports[1].device, "0000:5e:00.3");
  EXPECT_EQ(c->ports[2].device, "0000:3b:02.2");
}

TEST_F(PodConfigTest, SriovDashedResourceTakesEitherSpelling) {
  options_.env = {{"PCIDEVICE_EXAMPLE_ORG_FAB_NET", "0000:5e:00.3"}};
  const Result<Config> c =
      parse_with([](YAML::Node& d) { d["ports"][1]["device"] = "sriov:example.org/fab-net"; }, options_);
  ASSERT_TRUE(c.ok()) << c.error();
  EXPECT_EQ(c->ports[1].device, "0000:5e:00.3");
}

TEST_F(PodConfigTest, SriovErrors) {
  options_.env = {{"PCIDEVICE_INTEL_COM_ONE", "0000:3b:02.1"}, {"PCIDEVICE_INTEL_COM_BAD", "0000:3b:02.1,net_tap0"}};
  auto error = [&](const Edit& e) {
    const Result<Config> c = parse_with(e, options_);
    return c.ok() ? std::string("parsed") : c.error();
  };
  EXPECT_EQ(error([](YAML::Node& d) { d["ports"][1]["device"] = "sriov:intel.com/missing"; }),
            "ports[1].device: sriov:intel.com/missing: environment variable PCIDEVICE_INTEL_COM_MISSING is not set "
            "(the SR-IOV device plugin sets it in a container that requests intel.com/missing in resources.limits)");
  EXPECT_EQ(error([](YAML::Node& d) {
              d["ports"][0]["device"] = "sriov:intel.com/one";
              d["ports"][1]["device"] = "sriov:intel.com/one";
            }),
            "ports[1].device: sriov:intel.com/one: PCIDEVICE_INTEL_COM_ONE lists 1 device and this is port 2 to "
            "take one (request 2 of intel.com/one)");
  EXPECT_EQ(error([](YAML::Node& d) { d["ports"][1]["device"] = "sriov:intel.com/bad"; }),
            "ports[1].device: sriov:intel.com/bad: PCIDEVICE_INTEL_COM_BAD holds 'net_tap0', which is not a PCI "
            "address (0000:03:00.1)");
  EXPECT_EQ(error([](YAML::Node& d) { d["ports"][1]["device"] = "sriov:one"; }),
            "ports[1].device: sriov:one: expected the device plugin's resource as prefix/name "
            "(sriov:intel.com/intel_sriov_dpdk)");
  // The same VF twice (two resources listing one address) is caught as any
  // device used twice.
  options_.env["PCIDEVICE_INTEL_COM_TWO"] = "0000:3B:02.1";
  EXPECT_EQ(error([](YAML::Node& d) {
              d["ports"][0]["device"] = "sriov:intel.com/one";
              d["ports"][1]["device"] = "sriov:intel.com/two";
            }),
            "ports[1].device: 0000:3b:02.1 already used by ports[0]");
}

TEST_F(PodConfigTest, SriovSkipsTheVfsMultusAttached) {
  // One resource for both ports: Multus attached 0000:18:02.5 to the fabric
  // network (whatever its place in the list); the sriov: port takes another.
  write_status(kStatus);
  options_.env = {{"PCIDEVICE_INTEL_COM_VFS", "0000:18:02.5,0000:18:02.1"}};
  const Result<Config> c = parse_with([](YAML::Node& d) {
    d["ports"][0]["device"] = "sriov:intel.com/vfs";
    d["ports"][1]["device"] = "network:fabric";
  }, options_);
  ASSERT_TRUE(c.ok()) << c.error();
  EXPECT_EQ(c->ports[0].device, "0000:18:02.1");
  EXPECT_EQ(c->ports[1].device, "0000:18:02.5");
  // Two sriov: ports and an attachment need three VFs.
  const Result<Config> short_one = parse_with([](YAML::Node& d) {
    d["ports"][0]["device"] = "sriov:intel.com/vfs";
    d["ports"][1]["device"] = "sriov:intel.com/vfs";
  }, options_);
  EXPECT_EQ(short_one.error(),
            "ports[1].device: sriov:intel.com/vfs: PCIDEVICE_INTEL_COM_VFS lists 2 devices (1 attached to the "
            "pod's networks by Multus: 0000:18:02.5) and this is port 2 to take one (request 3 of intel.com/vfs)");
  // Without an annotations file, or with one that has no network-status,
  // every listed VF is the sriov: ports'.
  std::ofstream(options_.pod_annotations) << "kubernetes.io/config.source=\"api\"\n";
  const Result<Config> plain = parse_with([](YAML::Node& d) {
    d["ports"][0]["device"] = "sriov:intel.com/vfs";
    d["ports"][1]["device"] = "sriov:intel.com/vfs";
  }, options_);
  ASSERT_TRUE(plain.ok()) << plain.error();
  EXPECT_EQ(plain->ports[0].device, "0000:18:02.5");
  EXPECT_EQ(plain->ports[1].device, "0000:18:02.1");
}

TEST_F(PodConfigTest, NetworkDevicesAndTunnelAddress) {
  write_status(kStatus);
  const Result<Config> c = parse_with([](YAML::Node& d) {
    d["node"]["tunnel_address"] = "network:fabric";
    d["ports"][0]["device"] = "network:meshwire-system/pods";
    d["ports"][1]["device"] = "network:fabric";
    d["peers"][0]["tunnel_address"] = "198.51.100.8";
  }, options_);
  ASSERT_TRUE(c.ok()) << c.error();
  EXPECT_EQ(format_ip(c->tunnel_address), "198.51.100.7");
  EXPECT_EQ(c->ports[0].device, "0000:18:0a.6");
  EXPECT_EQ(c->ports[0].device_source, "network:meshwire-system/pods");
  EXPECT_EQ(c->ports[1].device, "0000:18:02.5");
}

TEST_F(PodConfigTest, NetworkErrors) {
  write_status(kStatus);
  const std::string file = options_.pod_annotations;
  auto error = [&](const Edit& e, const LoadOptions& o) {
    const Result<Config> c = parse_with(e, o);
    return c.ok() ? std::string("parsed") : c.error();
  };
  EXPECT_EQ(error([](YAML::Node& d) { d["ports"][1]["device"] = "network:nope"; }, options_),
            "ports[1].device: network:nope: no network 'nope' (the pod has: cbr0, meshwire-system/fabric, "
            "meshwire-system/pods, meshwire-system/noip, meshwire-system/badip, meshwire-system/badpci) in "
            "k8s.v1.cni.cncf.io/network-status of " + file);
  EXPECT_EQ(error([](YAML::Node& d) { d["ports"][1]["device"] = "network:cbr0"; }, options_),
            "ports[1].device: network:cbr0: the attachment cbr0 has no device-info.pci.pci-address in "
            "k8s.v1.cni.cncf.io/network-status of " + file +
                " (an SR-IOV network whose CNI reports device info has one)");
  EXPECT_EQ(error([](YAML::Node& d) { d["ports"][1]["device"] = "network:badpci"; }, options_),
            "ports[1].device: network:badpci: the attachment meshwire-system/badpci's pci-address '18:02.1' is not "
            "a PCI address");
  EXPECT_EQ(error([](YAML::Node& d) { d["node"]["tunnel_address"] = "network:noip"; }, options_),
            "node.tunnel_address: network:noip: the attachment meshwire-system/noip has no ips in "
            "k8s.v1.cni.cncf.io/network-status of " + file + " (does its IPAM assign an address?)");
  EXPECT_EQ(error([](YAML::Node& d) { d["node"]["tunnel_address"] = "network:badip"; }, options_),
            "node.tunnel_address: network:badip: the attachment meshwire-system/badip's first IP 'not-an-ip' is "
            "not an IP address");
  EXPECT_EQ(error([](YAML::Node& d) { d["node"]["tunnel_address"] = "network:"; }, options_),
            "node.tunnel_address: network: needs a network name (network:NAME or network:NAMESPACE/NAME)");
  // No annotations file given.
  EXPECT_EQ(error([](YAML::Node& d) { d["ports"][1]["device"] = "network:fabric"; }, {}),
            "ports[1].device: network:fabric needs the pod's annotations: start meshwire-dataplane with "
            "--pod-annotations FILE (a downward API file of metadata.annotations)");
  // A file that is not there, one without the annotation, one with a broken one.
  LoadOptions absent;
  absent.pod_annotations = (dir_ / "absent").string();
  EXPECT_EQ(error([](YAML::Node& d) { d["ports"][1]["device"] = "network:fabric"; }, absent),
            "ports[1].device: network:fabric: cannot read " + absent.pod_annotations + ": No such file or directory");
  std::ofstream(file) << "kubernetes.io/config.source=\"api\"\n";
  EXPECT_EQ(error([](YAML::Node& d) { d["node"]["tunnel_address"] = "network:fabric"; }, options_),
            "node.tunnel_address: network:fabric: " + file +
                " has no k8s.v1.cni.cncf.io/network-status annotation (does Multus attach the pod's networks?)");
  std::ofstream(file) << "k8s.v1.cni.cncf.io/network-status=\"[{\"\n";
  EXPECT_EQ(error([](YAML::Node& d) { d["node"]["tunnel_address"] = "network:fabric"; }, options_),
            "node.tunnel_address: network:fabric: " + file + ": k8s.v1.cni.cncf.io/network-status: not valid JSON");
  std::ofstream(file) << "k8s.v1.cni.cncf.io/network-status=[]\n";
  EXPECT_EQ(error([](YAML::Node& d) { d["node"]["tunnel_address"] = "network:fabric"; }, options_),
            "node.tunnel_address: network:fabric: " + file +
                ": line 1 (k8s.v1.cni.cncf.io/network-status): the value is not a quoted string");
}

TEST_F(PodConfigTest, PodCidrsMayBeAbsentOrEmpty) {
  for (const Edit& edit : {Edit([](YAML::Node& d) { d["node"].remove("pod_cidrs"); }),
                           Edit([](YAML::Node& d) { d["node"]["pod_cidrs"] = YAML::Load("[]"); })}) {
    const Result<Config> c = parse_with(edit, options_);
    ASSERT_TRUE(c.ok()) << c.error();
    EXPECT_TRUE(c->pod_cidrs.empty());
    EXPECT_EQ(c->peers.size(), 1u);
  }
  // IPv6 rules still follow what is there: a peer's IPv6 prefix needs 1280.
  const Result<Config> v6 = parse_with([](YAML::Node& d) {
    d["node"].remove("pod_cidrs");
    d["peers"][0]["pod_cidrs"].push_back("fd00:12::/64");
    d["ports"][0]["mtu"] = 1200;
  }, options_);
  EXPECT_EQ(v6.error(), "ports[0].mtu: must be at least 1280 when IPv6 is in use (peers[0].pod_cidrs[1]), got 1200");
}

}  // namespace
}  // namespace meshwire::dp
