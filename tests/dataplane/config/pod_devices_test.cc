#include "config/pod_devices.h"

#include <gtest/gtest.h>

namespace meshwire::dp {
namespace {

TEST(SriovVariablesTest, AsTheDevicePluginNamesThem) {
  EXPECT_EQ(sriov_variables("intel.com/intel_sriov_dpdk"),
            (std::vector<std::string>{"PCIDEVICE_INTEL_COM_INTEL_SRIOV_DPDK"}));
  EXPECT_EQ(sriov_variables("openshift.io/mlx5_vf"), (std::vector<std::string>{"PCIDEVICE_OPENSHIFT_IO_MLX5_VF"}));
  // The plugin keeps a '-'; the all-underscore spelling is tried second.
  EXPECT_EQ(sriov_variables("example.org/fab-net"),
            (std::vector<std::string>{"PCIDEVICE_EXAMPLE_ORG_FAB-NET", "PCIDEVICE_EXAMPLE_ORG_FAB_NET"}));
}

TEST(PciAddressTest, CanonicalFormOnly) {
  EXPECT_EQ(canonical_pci_address("0000:3B:02.1"), "0000:3b:02.1");
  EXPECT_EQ(canonical_pci_address("0000:18:02.7"), "0000:18:02.7");
  EXPECT_FALSE(canonical_pci_address("18:02.1"));
  EXPECT_FALSE(canonical_pci_address("0000:18:02.8"));
  EXPECT_FALSE(canonical_pci_address("0000-18:02.1"));
  EXPECT_FALSE(canonical_pci_address("0000:1g:02.1"));
  EXPECT_FALSE(canonical_pci_address("net_tap0"));
  EXPECT_FALSE(canonical_pci_address(""));
}

TEST(GoUnquoteTest, StrconvQuoteEscapes) {
  EXPECT_EQ(unquote_go_string(R"("plain")"), "plain");
  EXPECT_EQ(unquote_go_string(R"("")"), "");
  EXPECT_EQ(unquote_go_string(R"("[{\"name\": \"a\"}]")"), R"([{"name": "a"}])");
  EXPECT_EQ(unquote_go_string(R"("a\nb\tc\\d")"), "a\nb\tc\\d");
  EXPECT_EQ(unquote_go_string(R"("\a\b\f\r\v")"), "\a\b\f\r\v");
  EXPECT_EQ(unquote_go_string(R"("\x41\x7e\101")"), "A~A");
  EXPECT_EQ(unquote_go_string(R"("\u00e9\U0001F600")"), "\xc3\xa9\xf0\x9f\x98\x80");
  EXPECT_EQ(unquote_go_string("\"caf\xc3\xa9\""), "caf\xc3\xa9");  // printable UTF-8 stays as it is
}

TEST(GoUnquoteTest, RejectsWhatIsNotOneLiteral) {
  for (const char* bad : {"plain", "\"open", "open\"", "\"a\"b\"", "\"\\q\"", "\"\\x4\"", "\"\\u12\"",
                          "\"\\uD800\"", "\"\\400\"", "\"trailing\\\"", "\""}) {
    EXPECT_FALSE(unquote_go_string(bad)) << bad;
  }
}

TEST(DownwardAnnotationsTest, ParsesTheKubeletsFormat) {
  auto a = parse_downward_annotations(
      "k8s.v1.cni.cncf.io/network-status=\"[{\\\"name\\\": \\\"x\\\"}]\"\n"
      "kubernetes.io/config.seen=\"2026-12-01T04:00:00Z\"\n"
      "note=\"a=b\\n\"");  // no newline at the end: the kubelet trims it
  ASSERT_TRUE(a.ok()) << a.error();
  EXPECT_EQ(a->size(), 3u);
  EXPECT_EQ(a->at("k8s.v1.cni.cncf.io/network-status"), "[{\"name\": \"x\"}]");
  EXPECT_EQ(a->at("note"), "a=b\n");
  EXPECT_TRUE(parse_downward_annotations("").ok());
}

TEST(DownwardAnnotationsTest, ErrorsSayTheLine) {
  EXPECT_EQ(parse_downward_annotations("a=\"1\"\nno equals sign\n").error(), "line 2: expected key=\"value\"");
  EXPECT_EQ(parse_downward_annotations("a=unquoted\n").error(), "line 1 (a): the value is not a quoted string");
  EXPECT_EQ(parse_downward_annotations("=\"x\"\n").error(), "line 1: expected key=\"value\"");
}

constexpr std::string_view kStatus = R"([
  {"name": "cbr0", "interface": "eth0", "ips": ["10.244.1.5"], "mac": "0a:58:0a:f4:01:05", "default": true, "dns": {}},
  {"name": "meshwire-system/fabric", "interface": "net1", "ips": ["198.51.100.7", "2001:db8:f::7"],
   "mac": "ce:4f:10:22:33:44", "dns": {},
   "device-info": {"type": "pci", "version": "1.1.0", "pci": {"pci-address": "0000:18:02.5", "pf-pci-address": "0000:18:00.0"}}},
  {"name": "meshwire-system/pods", "interface": "net2", "ips": [], "dns": {},
   "device-info": {"type": "pci", "version": "1.1.0", "pci": {"pci-address": "0000:18:02.6"}}},
  {"name": "other/pods", "interface": "net3"}
])";

TEST(NetworkStatusTest, ParsesAttachments) {
  auto s = parse_network_status(kStatus);
  ASSERT_TRUE(s.ok()) << s.error();
  ASSERT_EQ(s->size(), 4u);
  EXPECT_EQ((*s)[1].name, "meshwire-system/fabric");
  EXPECT_EQ((*s)[1].interface, "net1");
  EXPECT_EQ((*s)[1].ips, (std::vector<std::string>{"198.51.100.7", "2001:db8:f::7"}));
  EXPECT_EQ((*s)[1].pci_address, "0000:18:02.5");
  EXPECT_EQ((*s)[1].device_type, "pci");
  EXPECT_EQ((*s)[0].pci_address, "");
  EXPECT_TRUE((*s)[3].ips.empty());
}

TEST(NetworkStatusTest, Malformed) {
  EXPECT_EQ(parse_network_status("{").error(), "not valid JSON");
  EXPECT_EQ(parse_network_status("{}").error(), "expected a JSON list of attachments");
  EXPECT_EQ(parse_network_status("[1]").error(), "entry 0: expected an object");
  EXPECT_EQ(parse_network_status(R"([{"interface": "net1"}])").error(), "entry 0: no name");
  EXPECT_EQ(parse_network_status(R"([{"name": "a", "ips": "1.2.3.4"}])").error(), "entry 0 (a): ips is not a list");
  EXPECT_EQ(parse_network_status(R"([{"name": "a", "device-info": 3}])").error(),
            "entry 0 (a): device-info is not an object");
}

TEST(NetworkStatusTest, FindsByQualifiedOrBareName) {
  const auto s = *parse_network_status(kStatus);
  EXPECT_EQ((*find_attachment(s, "fabric"))->interface, "net1");
  EXPECT_EQ((*find_attachment(s, "meshwire-system/fabric"))->interface, "net1");
  EXPECT_EQ((*find_attachment(s, "cbr0"))->interface, "eth0");
  EXPECT_EQ((*find_attachment(s, "other/pods"))->interface, "net3");
  EXPECT_EQ(find_attachment(s, "pods").error(),
            "'pods' matches both meshwire-system/pods and other/pods: write namespace/name");
  EXPECT_EQ(find_attachment(s, "other/fabric").error(),
            "no network 'other/fabric' (the pod has: cbr0, meshwire-system/fabric, meshwire-system/pods, other/pods)");
  EXPECT_EQ(find_attachment({}, "x").error(), "no network 'x' (the pod has: none)");
}

}  // namespace
}  // namespace meshwire::dp
