#include "telemetry/telemetry.h"

#include <atomic>
#include <cstdlib>
#include <string>
#include <utility>

#include <rte_telemetry.h>

#include "app/node.h"
#include "worker/liveness.h"

namespace meshwire::dp {
namespace {

std::atomic<Node*> g_node{nullptr};

uint64_t load(const uint64_t& v) { return read_counter(v); }

// Sum of one counter field over every worker's (and the control thread's) block.
template <typename Field>
uint64_t sum(const Node& node, Field field) {
  uint64_t total = 0;
  for (unsigned b = 0; b < node.counter_blocks(); ++b) total += load(field(node.counters()[b]));
  return total;
}

const char* algorithm_name(const esp::GcmKey& key) { return key.key_len == 32 ? "aes-256-gcm" : "aes-128-gcm"; }

int cmd_counters(const char*, const char* params, rte_tel_data* d) {
  const Node* node = g_node.load();
  if (!node) return -1;
  // Optional parameter: a worker index to show that worker alone.
  int only = -1;
  if (params && *params) {
    char* end = nullptr;
    only = static_cast<int>(std::strtol(params, &end, 10));
    if (*end != '\0' || only < 0 || only >= static_cast<int>(node->counter_blocks())) return -1;
  }
  auto value = [&](auto field) -> uint64_t {
    if (only >= 0) return load(field(node->counters()[only]));
    return sum(*node, field);
  };
  rte_tel_data_start_dict(d);
  for (const ScalarCounter& sc : kAllScalarCounters) {
    const std::string name(sc.name);
    const auto member = sc.member;
    rte_tel_data_add_dict_u64(d, name.c_str(), value([member](const WorkerCounters& c) -> const uint64_t& { return c.*member; }));
  }
  rte_tel_data* drops = rte_tel_data_alloc();
  if (!drops) return -1;
  rte_tel_data_start_dict(drops);
  for (size_t r = 0; r < kDropReasons.size(); ++r) {
    const std::string name(kDropReasons[r].name);
    rte_tel_data_add_dict_u64(drops, name.c_str(), value([r](const WorkerCounters& c) -> const uint64_t& { return c.drops[r]; }));
  }
  rte_tel_data_add_dict_container(d, "drops", drops, 0);
  return 0;
}

int cmd_drop_reasons(const char*, const char*, rte_tel_data* d) {
  rte_tel_data_start_dict(d);
  for (const DropReasonInfo& r : kDropReasons) {
    rte_tel_data_add_dict_string(d, std::string(r.name).c_str(), std::string(r.help).c_str());
  }
  return 0;
}

int cmd_ports(const char*, const char*, rte_tel_data* d) {
  const Node* node = g_node.load();
  if (!node) return -1;
  rte_tel_data_start_dict(d);
  const auto& ports = node->runtime().ports;
  for (size_t p = 0; p < ports.size(); ++p) {
    rte_tel_data* c = rte_tel_data_alloc();
    if (!c) return -1;
    rte_tel_data_start_dict(c);
    rte_tel_data_add_dict_int(c, "port_id", ports[p].port_id);
    rte_tel_data_add_dict_string(c, "role", ports[p].role == PortRole::kUplink ? "uplink" : "local");
    rte_tel_data_add_dict_string(c, "mac", format_mac(ports[p].mac).c_str());
    rte_tel_data_add_dict_int(c, "mtu", ports[p].mtu);
    rte_tel_data_add_dict_u64(c, "rx_packets", sum(*node, [p](const WorkerCounters& w) -> const uint64_t& { return w.ports[p].rx_packets; }));
    rte_tel_data_add_dict_u64(c, "rx_bytes", sum(*node, [p](const WorkerCounters& w) -> const uint64_t& { return w.ports[p].rx_bytes; }));
    rte_tel_data_add_dict_u64(c, "tx_packets", sum(*node, [p](const WorkerCounters& w) -> const uint64_t& { return w.ports[p].tx_packets; }));
    rte_tel_data_add_dict_u64(c, "tx_bytes", sum(*node, [p](const WorkerCounters& w) -> const uint64_t& { return w.ports[p].tx_bytes; }));
    rte_tel_data_add_dict_string(c, "ipv4_cksum_offload", ports[p].offload_ipv4_cksum ? "on" : "off");
    rte_tel_data_add_dict_string(c, "udp_cksum_offload", ports[p].offload_udp_cksum ? "on" : "off");
    rte_tel_data_add_dict_container(d, ports[p].name.c_str(), c, 0);
  }
  return 0;
}

int peers_into(const Node* node, rte_tel_data* d) {
  rte_tel_data_start_dict(d);
  for (const PeerRuntime* p : node->tables().peers) {
    rte_tel_data* c = rte_tel_data_alloc();
    if (!c) return -1;
    rte_tel_data_start_dict(c);
    rte_tel_data_add_dict_string(c, "tunnel_address", format_ip(p->tunnel_address).c_str());
    const uint64_t mac = p->link->fabric_mac.load(std::memory_order_relaxed);
    uint8_t bytes[6];
    unpack_mac(mac, bytes);
    rte_tel_data_add_dict_string(c, "mac", mac ? format_mac(bytes).c_str() : "");
    rte_tel_data_add_dict_string(c, "resolved", mac ? "true" : "false");
    rte_tel_data_add_dict_string(c, "liveness", liveness_name(p->link->liveness));
    rte_tel_data_add_dict_u64(c, "last_heard_ms_ago", heard_ms_ago(*p->link, lb::flow_clock_ms()));
    const PeerTraffic traffic = peer_traffic(*p->link);
    rte_tel_data_add_dict_u64(c, "tx_packets", traffic.tx_packets);
    rte_tel_data_add_dict_u64(c, "tx_bytes", traffic.tx_bytes);
    rte_tel_data_add_dict_u64(c, "rx_packets", traffic.rx_packets);
    rte_tel_data_add_dict_u64(c, "rx_bytes", traffic.rx_bytes);
    rte_tel_data_add_dict_u64(c, "keepalive_rtt_us", p->link->clock.rtt_us.load(std::memory_order_relaxed));
    std::string cidrs;
    for (const IpPrefix& pfx : p->pod_cidrs) {
      if (!cidrs.empty()) cidrs += ',';
      cidrs += format_prefix(pfx);
    }
    rte_tel_data_add_dict_string(c, "pod_cidrs", cidrs.c_str());
    rte_tel_data_add_dict_container(d, p->name.c_str(), c, 0);
  }
  return 0;
}

// Never shows key bytes.
int sas_into(const Node* node, rte_tel_data* d) {
  const Tables& t = node->tables();
  rte_tel_data_start_dict(d);
  for (size_t p = 0; p < t.outbound.size(); ++p) {
    for (size_t w = 0; w < t.outbound[p].size(); ++w) {
      const esp::OutboundSa* sa = t.outbound[p][w];
      rte_tel_data* c = rte_tel_data_alloc();
      if (!c) return -1;
      rte_tel_data_start_dict(c);
      rte_tel_data_add_dict_string(c, "direction", "outbound");
      rte_tel_data_add_dict_string(c, "peer", t.peers[p]->name.c_str());
      rte_tel_data_add_dict_int(c, "worker", static_cast<int>(w));
      rte_tel_data_add_dict_u64(c, "spi", sa->spi);
      rte_tel_data_add_dict_string(c, "algorithm", algorithm_name(sa->key));
      rte_tel_data_add_dict_u64(c, "seq", load(sa->seq));
      const std::string key = "out/" + t.peers[p]->name + "/" + std::to_string(w);
      rte_tel_data_add_dict_container(d, key.c_str(), c, 0);
    }
  }
  for (const InboundEntry& e : t.inbound_list) {
    const esp::InboundSa* sa = e.sa;
    rte_tel_data* c = rte_tel_data_alloc();
    if (!c) return -1;
    rte_tel_data_start_dict(c);
    rte_tel_data_add_dict_string(c, "direction", "inbound");
    rte_tel_data_add_dict_string(c, "peer", t.peers[e.peer]->name.c_str());
    rte_tel_data_add_dict_u64(c, "spi", sa->spi);
    rte_tel_data_add_dict_string(c, "algorithm", algorithm_name(sa->key));
    rte_tel_data_add_dict_u64(c, "window_top", sa->window.top());
    const std::string key = "in/" + t.peers[e.peer]->name + "/" + std::to_string(sa->spi);
    rte_tel_data_add_dict_container(d, key.c_str(), c, 0);
  }
  return 0;
}

// The tables are the control thread's to read: a generation may be freed
// under any other thread.
int on_control(int (*fn)(const Node*, rte_tel_data*), rte_tel_data* d) {
  Node* node = g_node.load();
  if (!node) return -1;
  int rc = -1;
  if (!node->tasks().run([&] { rc = fn(node, d); })) return -1;
  return rc;
}

int cmd_peers(const char*, const char*, rte_tel_data* d) { return on_control(peers_into, d); }
int cmd_sas(const char*, const char*, rte_tel_data* d) { return on_control(sas_into, d); }

}  // namespace

void telemetry_register(Node* node) {
  g_node.store(node);
  static bool registered = false;
  if (registered) return;
  registered = true;
  rte_telemetry_register_cmd("/meshwire/counters", cmd_counters,
                             "Packet counters and drops by reason, summed over workers. Param: worker index (optional)");
  rte_telemetry_register_cmd("/meshwire/drop_reasons", cmd_drop_reasons, "Every drop reason with its meaning");
  rte_telemetry_register_cmd("/meshwire/ports", cmd_ports, "Ports: role, MAC, MTU, offloads, packets and bytes");
  rte_telemetry_register_cmd("/meshwire/peers", cmd_peers, "Peers: tunnel address, fabric MAC, pod CIDRs, liveness");
  rte_telemetry_register_cmd("/meshwire/sas", cmd_sas, "Security associations (never key bytes): SPI, algorithm, sequence, window");
}

void telemetry_unregister() { g_node.store(nullptr); }

}  // namespace meshwire::dp
