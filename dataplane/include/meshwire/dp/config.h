// The data plane's startup configuration: what meshwire-dataplane reads from
// its YAML file before it initialises DPDK. parse_config() validates the whole
// document and either returns a complete Config or one error that names the
// offending field (e.g. "peers[1].sas.outbound[0].key: ..."); there is no
// partially valid result. Pure code: no DPDK, callable from any thread.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <meshwire/dp/result.h>

namespace meshwire::dp {

enum class PortRole : uint8_t { kLocal, kUplink };
enum class IdleMode : uint8_t { kBusyPoll, kAdaptive };
enum class AeadAlgorithm : uint8_t { kAes128Gcm, kAes256Gcm };

// An IPv4 or IPv6 address. IPv4 lives in bytes[0..3], the rest is zero.
struct IpAddress {
  uint8_t family = 0;  // 4 or 6; 0 only in a default-constructed value
  std::array<uint8_t, 16> bytes{};

  bool is_v4() const { return family == 4; }
  bool is_v6() const { return family == 6; }
  friend bool operator==(const IpAddress&, const IpAddress&) = default;
};

struct IpPrefix {
  IpAddress address;  // host bits are zero (the parser rejects them set)
  uint8_t length = 0;
  friend bool operator==(const IpPrefix&, const IpPrefix&) = default;
};

// Parses "192.0.2.1" / "2001:db8::1". nullopt when it is neither.
std::optional<IpAddress> parse_ip_address(std::string_view text);
// Parses "10.0.0.0/24" / "fd00::/64". Error text says what is wrong.
Result<IpPrefix> parse_ip_prefix(std::string_view text);
std::string format_ip(const IpAddress& address);
std::string format_prefix(const IpPrefix& prefix);
// "addr:port", "[v6]:port"; addr holds 4 or 16 bytes as family says.
std::string format_endpoint(uint8_t family, const uint8_t* addr, uint16_t port);

struct PortConfig {
  std::string name;    // operator's name, used in counters and errors
  std::string device;  // PCI address ("0000:03:00.1") or vdev ("net_af_packet0,iface=veth0")
  // How the config named the device when the pod's environment resolved it
  // ("sriov:intel.com/intel_sriov_dpdk", "network:sriov-a"); "" when the
  // config gave the device itself.
  std::string device_source;
  PortRole role = PortRole::kLocal;
  uint16_t mtu = 1500;       // IP MTU of the link (payload of one Ethernet frame)
  uint16_t rx_descriptors = 1024;
  uint16_t tx_descriptors = 1024;
};

struct SaConfig {
  uint32_t spi = 0;  // never 0..255 (RFC 4303 reserves them)
  AeadAlgorithm algorithm = AeadAlgorithm::kAes128Gcm;
  std::vector<uint8_t> key;  // 16 bytes (AES-128-GCM) or 32 bytes (AES-256-GCM)
  std::array<uint8_t, 4> salt{};
};

struct PeerConfig {
  std::string name;
  IpAddress tunnel_address;          // same family as the node's tunnel address
  std::vector<IpPrefix> pod_cidrs;   // routed to this peer; inner sources from it must be in here
  std::vector<SaConfig> outbound;    // exactly one per worker of this node: worker i uses outbound[i]
  std::vector<SaConfig> inbound;     // one per sending worker of the peer (at least one)
};

// Service load balancing: the connection table and its timeouts (the
// startup config's `services:` section).
struct ServicesSettings {
  uint32_t conntrack_max = 262144;             // connections tracked at once (each ~200 bytes)
  uint32_t tcp_syn_timeout_s = 60;             // a connection not yet answered
  uint32_t tcp_established_timeout_s = 21600;  // idle established TCP (6 h)
  uint32_t tcp_closing_timeout_s = 30;         // after FIN or RST
  uint32_t udp_timeout_s = 60;
  uint32_t sctp_timeout_s = 21600;
  // L4 connect retries: a new connection (TCP SYN, SCTP INIT) that its
  // backend refuses (RST, ABORT, ICMP unreachable) or leaves unanswered for
  // connect_timeout_ms is sent to the next backend, up to connect_attempts
  // backends in all (1: no retries).
  uint32_t connect_timeout_ms = 500;
  uint32_t connect_attempts = 3;
  // Passive outlier detection: a backend with outlier_failures failed
  // connects in a row takes no new connections for outlier_ejection_s
  // (0 failures: never ejected).
  uint32_t outlier_failures = 5;
  uint32_t outlier_ejection_s = 30;
  friend bool operator==(const ServicesSettings&, const ServicesSettings&) = default;
};

// Node liveness (the startup config's `liveness:` section): every
// interval_ms the data plane sends each peer an encrypted keepalive, and a
// peer it has heard from (any authenticated ESP) but not for more than
// misses * interval_ms is down until it is heard again. A peer never heard
// from is neither up nor down. interval_ms 0: no keepalives, no detection.
// Every node of a cluster should use the same values: a peer that sends no
// keepalives (interval 0) and no traffic looks down to one that expects them.
struct LivenessSettings {
  uint32_t interval_ms = 100;  // 0, or 10..60000
  uint32_t misses = 3;         // 1..100
  friend bool operator==(const LivenessSettings&, const LivenessSettings&) = default;
};

// Flow logs (the startup config's `flow_logs:` section): a JSON line per
// service connection when it ends, and every interval_s while it lasts,
// written by the control thread. path empty: off (and no per-connection
// counting on the workers).
struct FlowLogSettings {
  std::string path;              // a file (appended to), or "-" for standard output
  uint32_t sample = 1;           // log 1 connection in `sample` (by hash of its tuple)
  uint32_t max_per_second = 1000;  // records beyond are dropped, counted (flow_log_rate_limited)
  uint32_t interval_s = 60;      // an interim record of a connection this long after its last; 0: at the end only
  bool enabled() const { return !path.empty(); }
  friend bool operator==(const FlowLogSettings&, const FlowLogSettings&) = default;
};

struct Config {
  std::vector<std::string> eal_args;  // passed to rte_eal_init after argv[0]
  unsigned workers = 1;               // worker lcores (the main lcore is extra)
  IdleMode idle = IdleMode::kAdaptive;
  std::vector<PortConfig> ports;      // at least one local and exactly one uplink
  IpAddress tunnel_address;           // this node's address on the fabric
  std::vector<IpPrefix> pod_cidrs;    // this node's pods; may be empty (the controller's Apply gives them)
  IpAddress gateway_v4;               // source of ARP requests/ICMP errors towards pods (default 169.254.1.1)
  IpAddress gateway_v6;               // likewise for ND/ICMPv6 (default fe80::1)
  std::vector<PeerConfig> peers;
  ServicesSettings services;
  LivenessSettings liveness;
  FlowLogSettings flow_logs;
  std::string node_name;  // node.name; default: the host name
};

// What the control API applies (and the startup config's node.pod_cidrs and
// peers are): this node's pods, and its peers with their SAs.
struct RoutingState {
  std::vector<IpPrefix> pod_cidrs;
  std::vector<PeerConfig> peers;
};
inline RoutingState routing_of(const Config& config) { return RoutingState{config.pod_cidrs, config.peers}; }

// How a routing state's fields are named in errors: the config file's
// layout ("node.pod_cidrs[0]", "peers[1].sas.outbound[0].spi") or the API's
// ("pod_cidrs[0]", "peers[1].outbound[0].spi").
struct RoutingPaths {
  std::string pod_cidrs = "node.pod_cidrs";
  std::string sas = ".sas.";  // between "peers[i]" and "outbound"/"inbound"
};
inline const RoutingPaths kConfigPaths{};
inline const RoutingPaths kApiPaths{"pod_cidrs", "."};

// Every rule a routing state must satisfy for a node with this tunnel
// address and this many workers, per field (names, SPIs, key and salt sizes,
// one outbound SA per worker, address families) and between fields (pod
// CIDRs that overlap, names, addresses, SPIs or keys used twice). The first
// error names its field. Pure: any thread.
// Overwrites every SA's key and salt bytes (once they are expanded into
// tables, the raw copies need not stay in memory).
void wipe_keys(std::span<PeerConfig> peers);

Status check_routing(const RoutingState& routing, const IpAddress& tunnel_address, unsigned workers,
                     const RoutingPaths& paths);

// Environment variables by name: what ${VAR} and "sriov:" read.
using Environment = std::map<std::string, std::string>;
// This process's environment (environ). For main() and tools; the parser
// itself reads only what LoadOptions gives it.
Environment process_environment();

// What the config may take from the pod it runs in.
struct LoadOptions {
  Environment env;
  // A downward API file with the pod's annotations (one key="value" per
  // line), where "network:NAME" finds Multus's network-status. "": none (a
  // "network:" form is then an error saying so).
  std::string pod_annotations;
};

// base_dir resolves relative key_file/salt_file paths. Before any field is
// read, ${VAR} in every string value is replaced from options.env ($$: a
// literal $); then "sriov:RESOURCE" and "network:NAME" devices and a
// "network:NAME" tunnel address are resolved (see README, "Running in a
// pod"). Errors name the field, and the variable or file at fault.
Result<Config> parse_config(std::string_view yaml_text, const std::string& base_dir,
                            const LoadOptions& options = {});
Result<Config> load_config(const std::string& path, const LoadOptions& options = {});

}  // namespace meshwire::dp
