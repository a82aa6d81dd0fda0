#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include <meshwire/dp/config.h>

#include "config_test_util.h"

namespace meshwire::dp {
namespace {

IpAddress ip(const char* text) { return *parse_ip_address(text); }
IpPrefix prefix(const char* text) { return *parse_ip_prefix(text); }

// Every field set, most to a non-default value.
constexpr std::string_view kFull = R"(
eal: ["--no-huge", "-m", "512", "--no-pci", "--file-prefix", "mw-n1"]
workers: 2
idle: busy
node:
  tunnel_address: 2001:db8::1
  pod_cidrs: [10.11.0.0/24, "fd00:11::/64"]
  gateway_v4: 169.254.9.9
  gateway_v6: fe80::9
ports:
  - name: pods
    device: net_af_packet0,iface=n1-pods
    role: local
    mtu: 1400
    rx_descriptors: 512
    tx_descriptors: 2048
  - name: fabric_0
    device: "0000:03:00.1"
    role: uplink
    mtu: 9000
    rx_descriptors: 8192
    tx_descriptors: 64
peers:
  - name: node2.example
    tunnel_address: 2001:db8::2
    pod_cidrs: [10.12.0.0/24, "fd00:12::/64"]
    sas:
      outbound:
        - spi: 0x1001
          algorithm: aes-128-gcm
          key: 000102030405060708090a0b0c0d0e0f
          salt: deadbeef
        - spi: "4098"
          algorithm: aes-256-gcm
          key: "0x10:11:12:13:14:15:16:17:18:19:1A:1B:1C:1D:1E:1F 20 21 22 23 24 25 26 27 28 29 2a 2b 2c 2d 2e 2f"
          salt: "0xcafef00d"
      inbound:
        - spi: "0x2001"
          key: 303132333435363738393a3b3c3d3e3f
          salt: 01020304
  - name: node3
    tunnel_address: 2001:db8::3
    pod_cidrs: [10.13.0.0/16]
    sas:
      outbound:
        - {spi: 0x3001, key: 404142434445464748494a4b4c4d4e4f, salt: 11111111}
        - {spi: 0x3002, key: 505152535455565758595a5b5c5d5e5f, salt: 22222222}
      inbound:
        - {spi: 0xffffffff, key: 606162636465666768696a6b6c6d6e6f, salt: 33333333}
        - {spi: 256, key: 707172737475767778797a7b7c7d7e7f, salt: 44444444}
)";

std::vector<uint8_t> bytes_from(uint8_t first, size_t count) {
  std::vector<uint8_t> bytes(count);
  for (size_t i = 0; i < count; ++i) bytes[i] = static_cast<uint8_t>(first + i);
  return bytes;
}

TEST(ConfigTest, ReadsEveryField) {
  const Result<Config> parsed = parse_config(kFull, "");
  ASSERT_TRUE(parsed.ok()) << parsed.error();
  const Config& c = *parsed;

  EXPECT_EQ(c.eal_args, (std::vector<std::string>{"--no-huge", "-m", "512", "--no-pci", "--file-prefix", "mw-n1"}));
  EXPECT_EQ(c.workers, 2u);
  EXPECT_EQ(c.idle, IdleMode::kBusyPoll);
  EXPECT_EQ(c.tunnel_address, ip("2001:db8::1"));
  EXPECT_EQ(c.pod_cidrs, (std::vector<IpPrefix>{prefix("10.11.0.0/24"), prefix("fd00:11::/64")}));
  EXPECT_EQ(c.gateway_v4, ip("169.254.9.9"));
  EXPECT_EQ(c.gateway_v6, ip("fe80::9"));

  ASSERT_EQ(c.ports.size(), 2u);
  EXPECT_EQ(c.ports[0].name, "pods");
  EXPECT_EQ(c.ports[0].device, "net_af_packet0,iface=n1-pods");
  EXPECT_EQ(c.ports[0].role, PortRole::kLocal);
  EXPECT_EQ(c.ports[0].mtu, 1400);
  EXPECT_EQ(c.ports[0].rx_descriptors, 512);
  EXPECT_EQ(c.ports[0].tx_descriptors, 2048);
  EXPECT_EQ(c.ports[1].name, "fabric_0");
  EXPECT_EQ(c.ports[1].device, "0000:03:00.1");
  EXPECT_EQ(c.ports[1].role, PortRole::kUplink);
  EXPECT_EQ(c.ports[1].mtu, 9000);
  EXPECT_EQ(c.ports[1].rx_descriptors, 8192);
  EXPECT_EQ(c.ports[1].tx_descriptors, 64);

  ASSERT_EQ(c.peers.size(), 2u);
  const PeerConfig& n2 = c.peers[0];
  EXPECT_EQ(n2.name, "node2.example");
  EXPECT_EQ(n2.tunnel_address, ip("2001:db8::2"));
  EXPECT_EQ(n2.pod_cidrs, (std::vector<IpPrefix>{prefix("10.12.0.0/24"), prefix("fd00:12::/64")}));
  ASSERT_EQ(n2.outbound.size(), 2u);
  EXPECT_EQ(n2.outbound[0].spi, 0x1001u);
  EXPECT_EQ(n2.outbound[0].algorithm, AeadAlgorithm::kAes128Gcm);
  EXPECT_EQ(n2.outbound[0].key, bytes_from(0x00, 16));
  EXPECT_EQ(n2.outbound[0].salt, (std::array<uint8_t, 4>{0xde, 0xad, 0xbe, 0xef}));
  EXPECT_EQ(n2.outbound[1].spi, 4098u);
  EXPECT_EQ(n2.outbound[1].algorithm, AeadAlgorithm::kAes256Gcm);
  EXPECT_EQ(n2.outbound[1].key, bytes_from(0x10, 32));
  EXPECT_EQ(n2.outbound[1].salt, (std::array<uint8_t, 4>{0xca, 0xfe, 0xf0, 0x0d}));
  ASSERT_EQ(n2.inbound.size(), 1u);
  EXPECT_EQ(n2.inbound[0].spi, 0x2001u);
  EXPECT_EQ(n2.inbound[0].key, bytes_from(0x30, 16));
  EXPECT_EQ(n2.inbound[0].salt, (std::array<uint8_t, 4>{1, 2, 3, 4}));

  const PeerConfig& n3 = c.peers[1];
  EXPECT_EQ(n3.name, "node3");
  EXPECT_EQ(n3.pod_cidrs, (std::vector<IpPrefix>{prefix("10.13.0.0/16")}));
  ASSERT_EQ(n3.outbound.size(), 2u);
  EXPECT_EQ(n3.outbound[1].spi, 0x3002u);
  EXPECT_EQ(n3.outbound[1].key, bytes_from(0x50, 16));
  ASSERT_EQ(n3.inbound.size(), 2u);
  EXPECT_EQ(n3.inbound[0].spi, 0xffffffffu);
  EXPECT_EQ(n3.inbound[1].spi, 256u);
  EXPECT_EQ(n3.inbound[1].salt, (std::array<uint8_t, 4>{0x44, 0x44, 0x44, 0x44}));
}

TEST(ConfigTest, AppliesDefaults) {
  const Result<Config> parsed = parse_config(kMinimal, "");
  ASSERT_TRUE(parsed.ok()) << parsed.error();
  const Config& c = *parsed;
  EXPECT_TRUE(c.eal_args.empty());
  EXPECT_EQ(c.workers, 1u);
  EXPECT_EQ(c.idle, IdleMode::kAdaptive);
  EXPECT_EQ(c.gateway_v4, ip("169.254.1.1"));
  EXPECT_EQ(c.gateway_v6, ip("fe80::1"));
  for (const PortConfig& port : c.ports) {
    EXPECT_EQ(port.mtu, 1500);
    EXPECT_EQ(port.rx_descriptors, 1024);
    EXPECT_EQ(port.tx_descriptors, 1024);
  }
  ASSERT_EQ(c.peers.size(), 1u);
  EXPECT_EQ(c.peers[0].outbound[0].algorithm, AeadAlgorithm::kAes128Gcm);
}

TEST(ConfigTest, ReadsLiveness) {
  const Result<Config> defaults = parse_config(kMinimal, "");
  ASSERT_TRUE(defaults.ok()) << defaults.error();
  EXPECT_EQ(defaults->liveness.interval_ms, 100u);
  EXPECT_EQ(defaults->liveness.misses, 3u);

  const Result<Config> set = parse_edited([](YAML::Node& d) {
    d["liveness"]["interval_ms"] = 250;
    d["liveness"]["misses"] = 5;
  });
  ASSERT_TRUE(set.ok()) << set.error();
  EXPECT_EQ(set->liveness, (LivenessSettings{250, 5}));

  // 0: no keepalives and no detection; the other field keeps its default.
  const Result<Config> off = parse_edited([](YAML::Node& d) { d["liveness"]["interval_ms"] = 0; });
  ASSERT_TRUE(off.ok()) << off.error();
  EXPECT_EQ(off->liveness, (LivenessSettings{0, 3}));

  const Result<Config> empty = parse_edited([](YAML::Node& d) { d["liveness"] = YAML::Load("{}"); });
  ASSERT_TRUE(empty.ok()) << empty.error();
  EXPECT_EQ(empty->liveness, LivenessSettings{});
}

TEST(ConfigTest, ReadsFlowLogsAndTheNodeName) {
  const Result<Config> defaults = parse_config(kMinimal, "");
  ASSERT_TRUE(defaults.ok()) << defaults.error();
  EXPECT_FALSE(defaults->flow_logs.enabled());
  char host[256] = {};
  ASSERT_EQ(gethostname(host, sizeof(host) - 1), 0);
  EXPECT_EQ(defaults->node_name, host);

  const Result<Config> set = parse_edited([](YAML::Node& d) {
    d["node"]["name"] = "edge-7";
    d["flow_logs"]["path"] = "/var/log/meshwire/flows.jsonl";
    d["flow_logs"]["sample"] = 10;
    d["flow_logs"]["max_per_second"] = 50;
    d["flow_logs"]["interval_s"] = 0;
  });
  ASSERT_TRUE(set.ok()) << set.error();
  EXPECT_EQ(set->node_name, "edge-7");
  EXPECT_EQ(set->flow_logs, (FlowLogSettings{"/var/log/meshwire/flows.jsonl", 10, 50, 0}));

  const Result<Config> only_path = parse_edited([](YAML::Node& d) { d["flow_logs"]["path"] = "-"; });
  ASSERT_TRUE(only_path.ok()) << only_path.error();
  EXPECT_EQ(only_path->flow_logs, (FlowLogSettings{"-", 1, 1000, 60}));
  EXPECT_TRUE(only_path->flow_logs.enabled());
}

TEST(ConfigTest, PeersAndNullsAreOptional) {
  const Result<Config> no_peers = parse_edited([](YAML::Node& d) { d.remove("peers"); });
  ASSERT_TRUE(no_peers.ok()) << no_peers.error();
  EXPECT_TRUE(no_peers->peers.empty());

  // `workers:` with no value is the same as leaving it out.
  const Result<Config> null_workers = parse_edited([](YAML::Node& d) { d["workers"] = YAML::Node(); });
  ASSERT_TRUE(null_workers.ok()) << null_workers.error();
  EXPECT_EQ(null_workers->workers, 1u);
}

TEST(ConfigTest, AcceptsShortPciAndSameSpiInBothDirections) {
  const Result<Config> parsed = parse_edited([](YAML::Node& d) {
    d["ports"][1]["device"] = "03:00.1";
    d["peers"][0]["sas"]["inbound"][0]["spi"] = "0x1001";
  });
  ASSERT_TRUE(parsed.ok()) << parsed.error();
  EXPECT_EQ(parsed->ports[1].device, "03:00.1");
}

struct ErrorCase {
  const char* name;
  Edit edit;
  const char* error;  // the expected start of the message
  friend void PrintTo(const ErrorCase& c, std::ostream* os) { *os << c.name; }
};

class ConfigErrorTest : public testing::TestWithParam<ErrorCase> {};

TEST_P(ConfigErrorTest, NamesTheField) {
  const ErrorCase& c = GetParam();
  const Result<Config> parsed = parse_edited(c.edit);
  ASSERT_FALSE(parsed.ok()) << "expected: " << c.error;
  EXPECT_PRED2(starts_with, parsed.error(), c.error);
  for (std::string_view secret : {kKey1, kKey2, kSalt1, kSalt2}) {
    EXPECT_EQ(parsed.error().find(secret), std::string::npos) << parsed.error();
  }
}

YAML::Node port(const char* name, const char* device, const char* role) {
  YAML::Node p;
  p["name"] = name;
  p["device"] = device;
  p["role"] = role;
  return p;
}

// A second peer that is valid next to kMinimal's first one.
YAML::Node second_peer() {
  return YAML::Load(R"(
name: node3
tunnel_address: 192.0.2.3
pod_cidrs: [10.13.0.0/24]
sas:
  outbound: [{spi: 0x1001, key: 00000000000000000000000000000003, salt: 00000003}]
  inbound: [{spi: 0x2001, key: 10000000000000000000000000000003, salt: 10000003}]
)");
}

// clang-format off
const ErrorCase kErrorCases[] = {
  // Top level.
  {"UnknownTopField", [](YAML::Node& d) { d["wrokers"] = 2; }, "wrokers: unknown field (did you mean workers?)"},
  {"UnknownFarField", [](YAML::Node& d) { d["colour"] = 2; }, "colour: unknown field"},
  {"EalNotList", [](YAML::Node& d) { d["eal"] = "--no-huge"; }, "eal: expected a list, got a scalar"},
  {"EalItemNotString", [](YAML::Node& d) { d["eal"].push_back("-m"); d["eal"].push_back(YAML::Load("[1]")); },
   "eal[1]: expected a string, got a list"},
  {"WorkersZero", [](YAML::Node& d) { d["workers"] = 0; }, "workers: must be 1..64, got 0"},
  {"WorkersTooMany", [](YAML::Node& d) { d["workers"] = 65; }, "workers: must be 1..64, got 65"},
  {"WorkersNegative", [](YAML::Node& d) { d["workers"] = -1; }, "workers: expected an integer, got '-1'"},
  {"WorkersText", [](YAML::Node& d) { d["workers"] = "two"; }, "workers: expected an integer, got 'two'"},
  {"WorkersHuge", [](YAML::Node& d) { d["workers"] = "99999999999999999999999"; }, "workers: integer too large"},
  {"IdleUnknown", [](YAML::Node& d) { d["idle"] = "lazy"; }, "idle: must be adaptive or busy, got 'lazy'"},
  // flow_logs, node.name.
  {"FlowLogsWithoutPath", [](YAML::Node& d) { d["flow_logs"]["sample"] = 2; }, "flow_logs.path: required field missing"},
  {"FlowLogsEmptyPath", [](YAML::Node& d) { d["flow_logs"]["path"] = ""; },
   "flow_logs.path: must name a file, or be \"-\" for standard output"},
  {"FlowLogsSampleZero", [](YAML::Node& d) {
     d["flow_logs"]["path"] = "-";
     d["flow_logs"]["sample"] = 0;
   },
   "flow_logs.sample: must be 1..1048576, got 0"},
  {"FlowLogsRateZero", [](YAML::Node& d) {
     d["flow_logs"]["path"] = "-";
     d["flow_logs"]["max_per_second"] = 0;
   },
   "flow_logs.max_per_second: must be 1..1000000, got 0"},
  {"FlowLogsUnknownField", [](YAML::Node& d) {
     d["flow_logs"]["path"] = "-";
     d["flow_logs"]["samples"] = 2;
   },
   "flow_logs.samples: unknown field (did you mean sample?)"},
  {"NodeNameEmpty", [](YAML::Node& d) { d["node"]["name"] = ""; }, "node.name: must not be empty"},
  // liveness.
  {"LivenessNotMap", [](YAML::Node& d) { d["liveness"] = 100; }, "liveness: expected a mapping of fields, got a scalar"},
  {"LivenessUnknownField", [](YAML::Node& d) { d["liveness"]["interval_ns"] = 100; },
   "liveness.interval_ns: unknown field (did you mean interval_ms?)"},
  {"LivenessIntervalTooShort", [](YAML::Node& d) { d["liveness"]["interval_ms"] = 5; },
   "liveness.interval_ms: must be 0 (no keepalives) or 10..60000, got 5"},
  {"LivenessIntervalTooLong", [](YAML::Node& d) { d["liveness"]["interval_ms"] = 60001; },
   "liveness.interval_ms: must be 0..60000, got 60001"},
  {"LivenessIntervalText", [](YAML::Node& d) { d["liveness"]["interval_ms"] = "fast"; },
   "liveness.interval_ms: expected an integer, got 'fast'"},
  {"LivenessMissesZero", [](YAML::Node& d) { d["liveness"]["misses"] = 0; }, "liveness.misses: must be 1..100, got 0"},
  {"LivenessMissesTooMany", [](YAML::Node& d) { d["liveness"]["misses"] = 101; },
   "liveness.misses: must be 1..100, got 101"},
  // node.
  {"NodeMissing", [](YAML::Node& d) { d.remove("node"); }, "node: required field missing"},
  {"NodeNotMap", [](YAML::Node& d) { d["node"] = "n1"; }, "node: expected a mapping of fields, got a scalar"},
  {"NodeUnknownField", [](YAML::Node& d) { d["node"]["tunnel_adress"] = "192.0.2.1"; },
   "node.tunnel_adress: unknown field (did you mean tunnel_address?)"},
  {"TunnelMissing", [](YAML::Node& d) { d["node"].remove("tunnel_address"); }, "node.tunnel_address: required field missing"},
  {"TunnelBad", [](YAML::Node& d) { d["node"]["tunnel_address"] = "192.0.2.300"; },
   "node.tunnel_address: not an IP address: '192.0.2.300'"},
  {"PodCidrsNotList", [](YAML::Node& d) { d["node"]["pod_cidrs"] = "10.11.0.0/24"; },
   "node.pod_cidrs: expected a list, got a scalar"},
  {"PodCidrHostBits", [](YAML::Node& d) { d["node"]["pod_cidrs"].push_back("10.1.0.1/24"); },
   "node.pod_cidrs[1]: host bits set in 10.1.0.1/24"},
  {"PodCidrNoSlash", [](YAML::Node& d) { d["node"]["pod_cidrs"][0] = "10.11.0.0"; },
   "node.pod_cidrs[0]: expected address/length, got '10.11.0.0'"},
  {"PodCidrBadLength", [](YAML::Node& d) { d["node"]["pod_cidrs"][0] = "10.11.0.0/40"; },
   "node.pod_cidrs[0]: prefix length must be 0..32, got '40'"},
  {"PodCidrsOverlapEachOther", [](YAML::Node& d) { d["node"]["pod_cidrs"].push_back("10.11.0.128/25"); },
   "node.pod_cidrs[1]: 10.11.0.128/25 overlaps node.pod_cidrs[0] (10.11.0.0/24)"},
  {"GatewayV4IsV6", [](YAML::Node& d) { d["node"]["gateway_v4"] = "fe80::2"; },
   "node.gateway_v4: must be an IPv4 address, got fe80::2"},
  {"GatewayV6IsV4", [](YAML::Node& d) { d["node"]["gateway_v6"] = "169.254.1.1"; },
   "node.gateway_v6: must be an IPv6 address, got 169.254.1.1"},
  // ports.
  {"PortsMissing", [](YAML::Node& d) { d.remove("ports"); }, "ports: required field missing"},
  {"PortsNotList", [](YAML::Node& d) { d["ports"] = port("a", "net_null0", "local"); }, "ports: expected a list, got a mapping"},
  {"PortsEmpty", [](YAML::Node& d) { d["ports"] = YAML::Load("[]"); }, "ports: no port with role local"},
  {"PortUnknownField", [](YAML::Node& d) { d["ports"][1]["rol"] = "uplink"; }, "ports[1].rol: unknown field (did you mean role?)"},
  {"NoUplink", [](YAML::Node& d) { d["ports"][1]["role"] = "local"; }, "ports: no port with role uplink"},
  {"BothUplink", [](YAML::Node& d) { d["ports"][0]["role"] = "uplink"; d["ports"][1]["role"] = "uplink"; },
   "ports[1].role: a second uplink (ports[0] is one)"},
  {"OnlyUplink", [](YAML::Node& d) { d["ports"] = YAML::Node(YAML::NodeType::Sequence); d["ports"].push_back(port("u", "net_null0", "uplink")); },
   "ports: no port with role local"},
  {"TwoUplinks", [](YAML::Node& d) { d["ports"].push_back(port("up2", "net_null0", "uplink")); },
   "ports[2].role: a second uplink (ports[1] is one); exactly one port must be the uplink"},
  {"PortNameMissing", [](YAML::Node& d) { d["ports"][0].remove("name"); }, "ports[0].name: required field missing"},
  {"PortNameBad", [](YAML::Node& d) { d["ports"][0]["name"] = "my pods"; },
   "ports[0].name: must be 1..32 characters of A-Z a-z 0-9 _ -, got 'my pods'"},
  {"PortNameTooLong", [](YAML::Node& d) { d["ports"][0]["name"] = std::string(33, 'p'); }, "ports[0].name: must be 1..32"},
  {"PortNameDuplicate", [](YAML::Node& d) { d["ports"][1]["name"] = "pods"; }, "ports[1].name: 'pods' already used by ports[0]"},
  {"DeviceMissing", [](YAML::Node& d) { d["ports"][1].remove("device"); }, "ports[1].device: required field missing"},
  {"DeviceBad", [](YAML::Node& d) { d["ports"][0]["device"] = "eth 0"; }, "ports[0].device: expected a PCI address"},
  {"DeviceBadPci", [](YAML::Node& d) { d["ports"][0]["device"] = "0000:03:00.9"; }, "ports[0].device: expected a PCI address"},
  {"DeviceDuplicate", [](YAML::Node& d) { d["ports"][1]["device"] = "net_af_packet0,iface=other"; },
   "ports[1].device: net_af_packet0 already used by ports[0]"},
  {"DevicePciDuplicate", [](YAML::Node& d) { d["ports"][0]["device"] = "0000:03:00.1"; d["ports"][1]["device"] = "03:00.1"; },
   "ports[1].device: 0000:03:00.1 already used by ports[0]"},
  {"RoleMissing", [](YAML::Node& d) { d["ports"][0].remove("role"); }, "ports[0].role: required field missing"},
  {"RoleBad", [](YAML::Node& d) { d["ports"][0]["role"] = "downlink"; }, "ports[0].role: must be local or uplink, got 'downlink'"},
  {"MtuTooSmall", [](YAML::Node& d) { d["ports"][0]["mtu"] = 575; }, "ports[0].mtu: must be 576..9000, got 575"},
  {"MtuTooLarge", [](YAML::Node& d) { d["ports"][1]["mtu"] = 9001; }, "ports[1].mtu: must be 576..9000, got 9001"},
  {"MtuTooSmallForV6Pods", [](YAML::Node& d) { d["ports"][1]["mtu"] = 1279; d["peers"][0]["pod_cidrs"].push_back("fd00:12::/64"); },
   "ports[1].mtu: must be at least 1280 when IPv6 is in use (peers[0].pod_cidrs[1]), got 1279"},
  {"MtuTooSmallForV6Tunnel", [](YAML::Node& d) {
     d["ports"][0]["mtu"] = 1000; d["node"]["tunnel_address"] = "2001:db8::1"; d["peers"][0]["tunnel_address"] = "2001:db8::2"; },
   "ports[0].mtu: must be at least 1280 when IPv6 is in use (node.tunnel_address)"},
  {"RxDescriptorsNotPow2", [](YAML::Node& d) { d["ports"][0]["rx_descriptors"] = 1000; },
   "ports[0].rx_descriptors: must be a power of two, got 1000"},
  {"RxDescriptorsTooFew", [](YAML::Node& d) { d["ports"][0]["rx_descriptors"] = 32; }, "ports[0].rx_descriptors: must be 64..8192, got 32"},
  {"TxDescriptorsTooMany", [](YAML::Node& d) { d["ports"][1]["tx_descriptors"] = 16384; },
   "ports[1].tx_descriptors: must be 64..8192, got 16384"},
  // peers.
  {"PeersNotList", [](YAML::Node& d) { d["peers"] = "node2"; }, "peers: expected a list, got a scalar"},
  {"PeerUnknownField", [](YAML::Node& d) { d["peers"][0]["pod_cidr"] = "10.0.0.0/8"; },
   "peers[0].pod_cidr: unknown field (did you mean pod_cidrs?)"},
  {"PeerNameMissing", [](YAML::Node& d) { d["peers"][0].remove("name"); }, "peers[0].name: required field missing"},
  {"PeerNameBad", [](YAML::Node& d) { d["peers"][0]["name"] = "node/2"; }, "peers[0].name: must be 1..253 characters"},
  {"PeerNameDuplicate", [](YAML::Node& d) { YAML::Node p = second_peer(); p["name"] = "node2"; d["peers"].push_back(p); },
   "peers[1].name: 'node2' already used by peers[0]"},
  {"PeerTunnelMissing", [](YAML::Node& d) { d["peers"][0].remove("tunnel_address"); }, "peers[0].tunnel_address: required field missing"},
  {"PeerTunnelOtherFamily", [](YAML::Node& d) { d["peers"][0]["tunnel_address"] = "2001:db8::2"; },
   "peers[0].tunnel_address: 2001:db8::2 is IPv6 but node.tunnel_address is IPv4"},
  {"PeerTunnelIsNode", [](YAML::Node& d) { d["peers"][0]["tunnel_address"] = "192.0.2.1"; },
   "peers[0].tunnel_address: 192.0.2.1 is this node's own tunnel address"},
  {"PeerTunnelDuplicate", [](YAML::Node& d) { YAML::Node p = second_peer(); p["tunnel_address"] = "192.0.2.2"; d["peers"].push_back(p); },
   "peers[1].tunnel_address: 192.0.2.2 already used by peers[0]"},
  {"PeerPodCidrsEmpty", [](YAML::Node& d) { d["peers"][0]["pod_cidrs"] = YAML::Load("[]"); }, "peers[0].pod_cidrs: needs at least 1 entry"},
  {"PeerPodCidrOverlapsNode", [](YAML::Node& d) { d["peers"][0]["pod_cidrs"].push_back("10.0.0.0/8"); },
   "peers[0].pod_cidrs[1]: 10.0.0.0/8 overlaps node.pod_cidrs[0] (10.11.0.0/24)"},
  {"PeerPodCidrOverlapsPeer", [](YAML::Node& d) { YAML::Node p = second_peer(); p["pod_cidrs"][0] = "10.12.0.64/26"; d["peers"].push_back(p); },
   "peers[1].pod_cidrs[0]: 10.12.0.64/26 overlaps peers[0].pod_cidrs[0] (10.12.0.0/24)"},
  {"SasMissing", [](YAML::Node& d) { d["peers"][0].remove("sas"); }, "peers[0].sas: required field missing"},
  {"SasUnknownField", [](YAML::Node& d) { d["peers"][0]["sas"]["outbond"] = YAML::Load("[]"); },
   "peers[0].sas.outbond: unknown field (did you mean outbound?)"},
  {"OutboundMissing", [](YAML::Node& d) { d["peers"][0]["sas"].remove("outbound"); }, "peers[0].sas.outbound: required field missing"},
  {"OutboundFewerThanWorkers", [](YAML::Node& d) { d["workers"] = 2; },
   "peers[0].sas.outbound: needs exactly 2 entries, one per worker (workers: 2), got 1"},
  {"InboundMissing", [](YAML::Node& d) { d["peers"][0]["sas"].remove("inbound"); }, "peers[0].sas.inbound: required field missing"},
  {"InboundEmpty", [](YAML::Node& d) { d["peers"][0]["sas"]["inbound"] = YAML::Load("[]"); },
   "peers[0].sas.inbound: needs at least 1 entry, got 0"},
  // Whole-config key reuse (the per-SA rules are in sa_test.cc).
  {"KeyReusedByTwoOutbound", [](YAML::Node& d) {
     YAML::Node p = second_peer(); p["sas"]["outbound"][0]["key"] = std::string(kKey1); p["sas"]["outbound"][0]["salt"] = std::string(kSalt1);
     d["peers"].push_back(p); },
   "peers[1].sas.outbound[0]: same key and salt as peers[0].sas.outbound[0]: AES-GCM would repeat nonces"},
  {"KeyReusedOutboundInbound", [](YAML::Node& d) {
     d["peers"][0]["sas"]["inbound"][0]["key"] = std::string(kKey1); d["peers"][0]["sas"]["inbound"][0]["salt"] = std::string(kSalt1); },
   "peers[0].sas.inbound[0]: same key and salt as peers[0].sas.outbound[0]"},
};
// clang-format on

INSTANTIATE_TEST_SUITE_P(Table, ConfigErrorTest, testing::ValuesIn(kErrorCases),
                         [](const testing::TestParamInfo<ErrorCase>& info) { return info.param.name; });

TEST(ConfigTest, SameKeyWithOtherSaltIsAllowed) {
  const Result<Config> parsed = parse_edited([](YAML::Node& d) {
    d["peers"][0]["sas"]["inbound"][0]["key"] = std::string(kKey1);
  });
  EXPECT_TRUE(parsed.ok()) << parsed.error();
}

TEST(ConfigTest, RejectsFieldGivenTwice) {
  std::string text(kMinimal);
  text += "workers: 1\nworkers: 2\n";
  const Result<Config> parsed = parse_config(text, "");
  ASSERT_FALSE(parsed.ok());
  EXPECT_EQ(parsed.error(), "workers: field given twice");
}

TEST(ConfigTest, MalformedYamlNamesLineAndColumn) {
  const Result<Config> parsed = parse_config("node:\n  tunnel_address: [192.0.2.1\nports: []\n", "");
  ASSERT_FALSE(parsed.ok());
  EXPECT_PRED2(starts_with, parsed.error(), "yaml: line ") << parsed.error();
  EXPECT_NE(parsed.error().find(", column "), std::string::npos) << parsed.error();

  const Result<Config> tab = parse_config("node:\n\t tunnel_address: 1\n", "");
  ASSERT_FALSE(tab.ok());
  EXPECT_PRED2(starts_with, tab.error(), "yaml: line ") << tab.error();
}

TEST(ConfigTest, RejectsEmptyAndNonMappingDocuments) {
  const Result<Config> empty = parse_config("", "");
  ASSERT_FALSE(empty.ok());
  EXPECT_EQ(empty.error(), "config: empty document");

  const Result<Config> list = parse_config("- a\n- b\n", "");
  ASSERT_FALSE(list.ok());
  EXPECT_EQ(list.error(), "config: expected a mapping of fields, got a list");
}

TEST(ConfigTest, LoadConfigReadsFileAndResolvesKeyFilesBesideIt) {
  char dir_template[] = "/tmp/meshwire-config-test-XXXXXX";
  ASSERT_NE(mkdtemp(dir_template), nullptr);
  const std::filesystem::path dir = dir_template;
  std::filesystem::create_directory(dir / "keys");
  std::ofstream(dir / "keys" / "n1-n2.key") << kKey1 << "\n";
  std::string text(kMinimal);
  text.replace(text.find("key: " + std::string(kKey1)), 5 + kKey1.size(), "key_file: keys/n1-n2.key");
  std::ofstream(dir / "meshwire.yaml") << text;

  const Result<Config> loaded = load_config((dir / "meshwire.yaml").string());
  const Result<Config> missing = load_config((dir / "absent.yaml").string());
  std::filesystem::remove_all(dir);

  ASSERT_TRUE(loaded.ok()) << loaded.error();
  EXPECT_EQ(loaded->peers[0].outbound[0].key, (*parse_config(kMinimal, "")).peers[0].outbound[0].key);
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error(), "cannot read " + (dir / "absent.yaml").string() + ": No such file or directory");
}

}  // namespace
}  // namespace meshwire::dp
