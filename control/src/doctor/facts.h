// What `meshwirectl doctor` gathers before it judges: plain structs, filled
// by doctor/gather.cc from the data plane's API, its config file, sysfs and
// procfs, Node objects, the controller's /metrics and `ip route` in pod
// network namespaces, and by the unit tests by hand. An input that was not
// given is absent (std::nullopt): its checks say "skipped: needs --X".
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <meshwire/dp/config.h>

#include "dataplane.pb.h"
#include "kube/objects.h"

namespace meshwire::control {

// From the data plane's config file (--config): what it was started with.
struct ConfigFacts {
  std::string path;
  bool no_huge = false;                 // eal --no-huge
  uint64_t memory_mb = 0;               // eal -m (0: not given)
  std::vector<uint64_t> socket_mem_mb;  // eal --socket-mem, per NUMA node
  // CPUs of the main lcore and the workers, from eal -l/--lcores; nullopt
  // when the config names none (the data plane then takes its CPU affinity)
  // or they could not be read (lcores_note says why).
  std::optional<unsigned> main_cpu;
  std::optional<std::vector<unsigned>> worker_cpus;
  std::string lcores_note;
  unsigned workers = 1;
  bool busy_poll = false;
  struct Port {
    std::string name;
    std::string device;  // PCI address or vdev string, as configured
    bool uplink = false;
    uint16_t mtu = 1500;
  };
  std::vector<Port> ports;
  std::string gateway_v4 = "169.254.1.1";
  std::string gateway_v6 = "fe80::1";
};

// Builds ConfigFacts from a parsed config (pure: reads the EAL arguments).
ConfigFacts config_facts(const dp::Config& config, const std::string& path);
// A Linux cpulist ("0-3,8,10-11"); nullopt when it is not one. "" is empty.
std::optional<std::vector<unsigned>> parse_cpulist(const std::string& text);

// /sys/kernel/mm/hugepages and /sys/devices/system/node/node*/hugepages.
struct HugepagePool {
  uint64_t size_kb = 0;
  int numa_node = -1;  // -1: the system-wide pool
  uint64_t total = 0;
  uint64_t free = 0;
};
struct HugepageFacts {
  std::vector<HugepagePool> pools;
  bool hugetlbfs_mounted = false;  // a hugetlbfs in /proc/mounts
};

// /sys/devices/system/cpu/{isolated,nohz_full}.
struct CpuFacts {
  std::vector<unsigned> isolated;
  std::optional<std::vector<unsigned>> nohz_full;  // nullopt: no such file
};

// One configured port's device, as sysfs shows it.
struct DeviceFact {
  std::string port;
  std::string device;
  bool pci = false;           // a PCI address; else a vdev
  bool present = false;       // pci: /sys/bus/pci/devices/ADDR exists
  std::string driver;         // pci: the bound driver's name ("" when none)
  bool iommu_group = false;   // pci: has an IOMMU group (vfio-pci needs one)
  std::string physfn;         // pci: the PF's address when it is a VF
  std::string iface;          // vdev: the kernel interface it opens (net_af_packet iface=), "" if none
  bool iface_present = false; // vdev: /sys/class/net/IFACE exists
};

// A Node object as doctor reads it.
struct NodeFact {
  std::string name;
  std::vector<std::string> internal_ips;
  std::optional<std::string> tunnel_address;  // meshwire.io/tunnel-address
  std::optional<std::string> public_key;  // meshwire.io/public-key
  bool public_key_valid = false;          // 32 bytes in canonical base64
  std::optional<uint64_t> key_epoch;      // meshwire.io/key-epoch, when it is a number
};

// The controller's /metrics (--controller URL).
struct ControllerMetrics {
  std::string url;
  std::string error;  // why it could not be read ("" when it was)
  std::optional<double> dataplane_up;
  std::optional<double> apply_failures;
  std::optional<double> applies;
  std::optional<double> applied_generation;
  std::optional<double> key_epoch;
  std::map<std::string, double> peer_key_epoch;  // by peer
};

// A route the kernel chose (`ip route get`).
struct RouteFact {
  std::string peer;     // whose pod CIDR
  std::string cidr;     // the remote pod CIDR dst is in
  std::string dst;
  std::string dev;      // "" when there is no route
  std::string gateway;  // "" when on-link
  std::string error;    // `ip`'s complaint when there is no route
};

// A pod's network namespace (--pod-netns).
struct PodNetnsFact {
  std::string netns;
  std::string error;               // it could not be inspected
  std::string dataplane_dev;       // the device of its route via the data plane's gateway ("" when none)
  uint32_t dataplane_dev_mtu = 0;  // that device's MTU
  std::vector<RouteFact> routes;   // to an address of each remote pod CIDR
};

// The host side: routes of this network namespace to the remote pod CIDRs,
// and the kernel interfaces that face the fabric.
struct HostRouteFacts {
  std::vector<std::string> fabric_ifaces;
  std::vector<RouteFact> routes;
};

// The data plane as its API shows it (--socket).
struct DataplaneFacts {
  v1::GetGenerationResponse generation;
  v1::ListInterfacesResponse interfaces;
  v1::ListPeersResponse peers;
  v1::ListSasResponse sas;
  v1::ListRoutesResponse routes;
};

// Node objects (by name) as doctor reads them (pure).
std::vector<NodeFact> node_facts(const std::map<std::string, NodeObject>& nodes);
// The series doctor reads from the controller's /metrics text (pure).
ControllerMetrics parse_controller_metrics(const std::string& url, const std::string& text);

struct Facts {
  uint64_t now_ms = 0;                  // wall clock
  std::string dataplane_error;          // the API could not be read ("" when it was)
  std::optional<DataplaneFacts> dataplane;
  std::optional<ConfigFacts> config;
  std::string config_error;             // --config given but not valid
  std::optional<HugepageFacts> hugepages;
  std::optional<CpuFacts> cpus;
  std::vector<DeviceFact> devices;      // with config
  std::optional<std::vector<NodeFact>> nodes;
  std::string nodes_error;              // the Node objects could not be read
  std::string self_node;                // this node's Node name ("" : found by tunnel address)
  std::optional<ControllerMetrics> controller;
  std::vector<PodNetnsFact> pods;       // --pod-netns given
  std::optional<HostRouteFacts> host_routes;
};

}  // namespace meshwire::control
