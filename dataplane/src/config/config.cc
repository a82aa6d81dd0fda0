// parse_config: YAML text -> Config in two passes. The first reads each field
// and checks what can be checked on its own (types, ranges, formats); the
// second checks the rules between fields (roles, uniqueness, overlaps, key
// reuse). Either pass stops at the first error. The schema is documented in
// docs/config.md; keep the two in step.
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <string_view>
#include <tuple>
#include <unordered_map>

#include <meshwire/dp/config.h>

#include "config/expand.h"
#include "config/pod_devices.h"
#include "config/sa.h"
#include "config/yaml_fields.h"

extern char** environ;

namespace meshwire::dp {
namespace {

// A whole file as text (the config, the pod's annotations); the error
// names the file.
Result<std::string> read_text_file(const std::string& path) {
  const std::unique_ptr<FILE, int (*)(FILE*)> file(std::fopen(path.c_str(), "rb"), &std::fclose);
  if (!file) return make_error("cannot read " + path + ": " + std::strerror(errno));
  std::string text;
  char buf[4096];
  size_t n = 0;
  while ((n = std::fread(buf, 1, sizeof(buf), file.get())) > 0) text.append(buf, n);
  if (std::ferror(file.get())) return make_error("cannot read " + path + ": " + std::strerror(errno));
  return text;
}

constexpr uint64_t kMaxWorkers = 64;
constexpr uint64_t kMinMtu = 576;    // RFC 791 minimum reassembly size
constexpr uint64_t kMinMtuV6 = 1280; // RFC 8200 minimum link MTU
constexpr uint64_t kMaxMtu = 9000;
constexpr uint64_t kMinDescriptors = 64;
constexpr uint64_t kMaxDescriptors = 8192;
constexpr size_t kMaxPortName = 32;
constexpr size_t kMaxPeerName = 253;  // a Kubernetes node name (DNS subdomain)
constexpr size_t kMaxVdevName = 63;

Result<IpAddress> read_address(const YAML::Node& node, const std::string& path) {
  auto text = read_string(node, path);
  if (!text) return make_error(text.error());
  std::optional<IpAddress> address = parse_ip_address(*text);
  if (!address) return field_error(path, "not an IP address: '" + *text + "'");
  return *address;
}

Result<std::vector<IpPrefix>> read_prefixes(const YAML::Node& node, const std::string& path, size_t min_items = 1) {
  auto items = read_sequence(node, path, min_items);
  if (!items) return make_error(items.error());
  std::vector<IpPrefix> prefixes;
  for (size_t i = 0; i < items->size(); ++i) {
    const std::string item_path = index_path(path, i);
    auto text = read_string((*items)[i], item_path);
    if (!text) return make_error(text.error());
    auto prefix = parse_ip_prefix(*text);
    if (!prefix) return field_error(item_path, prefix.error());
    prefixes.push_back(*prefix);
  }
  return prefixes;
}

// Reads the optional integer `field` into `out`, which keeps its default
// when the field is absent.
template <typename T>
Status read_optional_uint(const FieldMap& fields, std::string_view field, uint64_t min, uint64_t max,
                          T& out) {
  if (!fields.has(field)) return Ok{};
  auto value = read_uint(fields.get(field), fields.path(field));
  if (!value) return make_error(value.error());
  if (*value < min || *value > max) {
    return field_error(fields.path(field), "must be " + std::to_string(min) + ".." + std::to_string(max) +
                                               ", got " + std::to_string(*value));
  }
  out = static_cast<T>(*value);
  return Ok{};
}

bool is_name(std::string_view name, size_t max_size, std::string_view extra) {
  if (name.empty() || name.size() > max_size) return false;
  return std::all_of(name.begin(), name.end(), [extra](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           extra.find(c) != std::string_view::npos;
  });
}

bool is_hex(std::string_view text, size_t size) {
  return text.size() == size && std::all_of(text.begin(), text.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
         });
}

// The device name an EAL port is known by, for uniqueness: PCI addresses in
// full lowercase form ("03:00.1" -> "0000:03:00.1"), vdev names as written
// (arguments after the first ',' excluded). nullopt when it is neither.
std::optional<std::string> device_identity(std::string_view device) {
  const std::string_view name = device.substr(0, device.find(','));
  if (device.find_first_of(" \t\r\n") != std::string_view::npos) return std::nullopt;
  std::string pci(name);
  if (pci.size() == 7) pci = "0000:" + pci;  // bb:dd.f
  if (pci.size() == 12 && is_hex(std::string_view(pci).substr(0, 4), 4) && pci[4] == ':' &&
      is_hex(std::string_view(pci).substr(5, 2), 2) && pci[7] == ':' &&
      is_hex(std::string_view(pci).substr(8, 2), 2) && pci[10] == '.' && pci[11] >= '0' && pci[11] <= '7') {
    std::transform(pci.begin(), pci.end(), pci.begin(), [](char c) { return static_cast<char>(std::tolower(c)); });
    return pci;
  }
  const bool starts_with_letter = !name.empty() && std::isalpha(static_cast<unsigned char>(name[0]));
  if (starts_with_letter && is_name(name, kMaxVdevName, "_")) return std::string(name);
  return std::nullopt;
}

bool prefixes_overlap(const IpPrefix& a, const IpPrefix& b) {
  if (a.address.family != b.address.family) return false;
  const unsigned length = std::min(a.length, b.length);
  for (unsigned bit = 0; bit < length; bit += 8) {
    const unsigned i = bit / 8;
    const uint8_t mask = length - bit >= 8 ? 0xff : static_cast<uint8_t>(0xff << (8 - (length - bit)));
    if ((a.address.bytes[i] & mask) != (b.address.bytes[i] & mask)) return false;
  }
  return true;
}

// What the sriov: and network: forms read from the pod: its environment, and
// its annotations file (read at most once, when first needed). Ports that
// name the same SR-IOV resource take its addresses in port order.
class PodContext {
 public:
  explicit PodContext(const LoadOptions& options) : options_(options) {}

  // The PCI address for "sriov:<resource>" at `path`.
  Result<std::string> sriov_device(std::string_view resource, const std::string& path) {
    const std::string form = "sriov:" + std::string(resource);
    const size_t slash = resource.find('/');
    if (slash == 0 || slash == std::string_view::npos || slash + 1 == resource.size() ||
        resource.find('/', slash + 1) != std::string_view::npos) {
      return field_error(path, form + ": expected the device plugin's resource as prefix/name "
                                      "(sriov:intel.com/intel_sriov_dpdk)");
    }
    const std::vector<std::string> names = sriov_variables(resource);
    const std::string* value = nullptr;
    std::string variable;
    for (const std::string& name : names) {
      const auto it = options_.env.find(name);
      if (it != options_.env.end() && !it->second.empty()) {
        value = &it->second;
        variable = name;
        break;
      }
    }
    if (!value) {
      return field_error(path, form + ": environment variable " + names[0] +
                                   " is not set (the SR-IOV device plugin sets it in a container that "
                                   "requests " + std::string(resource) + " in resources.limits)");
    }
    std::vector<std::string> addresses;
    std::string_view rest = *value;
    while (true) {
      const size_t comma = rest.find(',');
      std::string_view item = rest.substr(0, comma);
      while (!item.empty() && item.front() == ' ') item.remove_prefix(1);
      while (!item.empty() && item.back() == ' ') item.remove_suffix(1);
      auto pci = canonical_pci_address(item);
      if (!pci) {
        return field_error(path, form + ": " + variable + " holds '" + std::string(item) +
                                     "', which is not a PCI address (0000:03:00.1)");
      }
      addresses.push_back(*pci);
      if (comma == std::string_view::npos) break;
      rest.remove_prefix(comma + 1);
    }
    // A VF of the resource that Multus attached to one of the pod's networks
    // (its device-info in network-status) belongs to that network: a
    // "network:" port or the SR-IOV CNI uses it. Multus takes a resource's
    // VFs in the kubelet's order, which need not be this list's.
    const size_t listed = addresses.size();
    std::vector<std::string> attached;
    for (const std::string& claimed : attached_addresses()) {
      const auto it = std::find(addresses.begin(), addresses.end(), claimed);
      if (it == addresses.end()) continue;
      attached.push_back(claimed);
      addresses.erase(it);
    }
    size_t& taken = sriov_taken_[std::string(resource)];
    if (taken >= addresses.size()) {
      std::string message = form + ": " + variable + " lists " + std::to_string(listed) +
                            (listed == 1 ? " device" : " devices");
      if (!attached.empty()) {
        message += " (" + std::to_string(attached.size()) + " attached to the pod's networks by Multus:";
        for (const std::string& a : attached) message += " " + a;
        message += ")";
      }
      message += " and this is port " + std::to_string(taken + 1) + " to take one (request " +
                 std::to_string(taken + 1 + attached.size()) + " of " + std::string(resource) + ")";
      return field_error(path, message);
    }
    return addresses[taken++];
  }

  // The attachment of "network:<name>" at `path`.
  Result<const NetworkAttachment*> attachment(std::string_view name, const std::string& path) {
    const std::string form = "network:" + std::string(name);
    if (name.empty()) return field_error(path, "network: needs a network name (network:NAME or network:NAMESPACE/NAME)");
    if (options_.pod_annotations.empty()) {
      return field_error(path, form + " needs the pod's annotations: start meshwire-dataplane with "
                                      "--pod-annotations FILE (a downward API file of metadata.annotations)");
    }
    if (!attachments_) attachments_.emplace(read_attachments());
    if (!attachments_->ok()) return field_error(path, form + ": " + attachments_->error());
    auto found = find_attachment(attachments_->value(), name);
    if (!found) {
      return field_error(path, form + ": " + found.error() + " in " + std::string(kNetworkStatusAnnotation) +
                                   " of " + options_.pod_annotations);
    }
    return *found;
  }

  const std::string& annotations_path() const { return options_.pod_annotations; }

 private:
  // The PCI addresses network-status gives the pod's attachments; none
  // without an annotations file or a readable network-status there (only a
  // "network:" form needs them, and it says what is wrong).
  std::vector<std::string> attached_addresses() {
    std::vector<std::string> out;
    if (options_.pod_annotations.empty()) return out;
    if (!attachments_) attachments_.emplace(read_attachments());
    if (!attachments_->ok()) return out;
    for (const NetworkAttachment& a : attachments_->value()) {
      if (auto pci = canonical_pci_address(a.pci_address)) out.push_back(*pci);
    }
    return out;
  }

  Result<std::vector<NetworkAttachment>> read_attachments() const {
    const std::string& file = options_.pod_annotations;
    auto text = read_text_file(file);
    if (!text.ok()) return make_error(text.error());
    auto annotations = parse_downward_annotations(*text);
    if (!annotations) return make_error(file + ": " + annotations.error());
    const auto it = annotations->find(std::string(kNetworkStatusAnnotation));
    if (it == annotations->end()) {
      return make_error(file + " has no " + std::string(kNetworkStatusAnnotation) +
                        " annotation (does Multus attach the pod's networks?)");
    }
    auto status = parse_network_status(it->second);
    if (!status) return make_error(file + ": " + std::string(kNetworkStatusAnnotation) + ": " + status.error());
    return std::move(*status);
  }

  const LoadOptions& options_;
  std::map<std::string, size_t> sriov_taken_;
  std::optional<Result<std::vector<NetworkAttachment>>> attachments_;
};

constexpr std::string_view kSriovForm = "sriov:";
constexpr std::string_view kNetworkForm = "network:";

Status parse_node(const YAML::Node& node, const std::string& path, Config& config, PodContext& pod) {
  auto fields = FieldMap::open(node, path, {"name", "tunnel_address", "pod_cidrs", "gateway_v4", "gateway_v6"});
  if (!fields) return make_error(fields.error());

  if (fields->has("name")) {
    auto name = read_string(fields->get("name"), fields->path("name"));
    if (!name) return make_error(name.error());
    if (name->empty()) return field_error(fields->path("name"), "must not be empty");
    config.node_name = *name;
  } else {
    char host[256] = {};
    config.node_name = gethostname(host, sizeof(host) - 1) == 0 ? host : "";
  }

  if (!fields->has("tunnel_address")) return fields->missing("tunnel_address");
  auto tunnel_text = read_string(fields->get("tunnel_address"), fields->path("tunnel_address"));
  if (!tunnel_text) return make_error(tunnel_text.error());
  if (tunnel_text->rfind(kNetworkForm, 0) == 0) {
    // The first address Multus reports for the attachment.
    const std::string path = fields->path("tunnel_address");
    const std::string_view network = std::string_view(*tunnel_text).substr(kNetworkForm.size());
    auto attachment = pod.attachment(network, path);
    if (!attachment) return make_error(attachment.error());
    const NetworkAttachment& a = **attachment;
    if (a.ips.empty()) {
      return field_error(path, *tunnel_text + ": the attachment " + a.name + " has no ips in " +
                                   std::string(kNetworkStatusAnnotation) + " of " + pod.annotations_path() +
                                   " (does its IPAM assign an address?)");
    }
    std::optional<IpAddress> address = parse_ip_address(a.ips[0]);
    if (!address) {
      return field_error(path, *tunnel_text + ": the attachment " + a.name + "'s first IP '" + a.ips[0] +
                                   "' is not an IP address");
    }
    config.tunnel_address = *address;
  } else {
    auto tunnel = read_address(fields->get("tunnel_address"), fields->path("tunnel_address"));
    if (!tunnel) return make_error(tunnel.error());
    config.tunnel_address = *tunnel;
  }

  // Absent or empty: the node starts with no pods of its own, and the
  // controller's Apply gives them (the Node's spec.podCIDRs).
  if (fields->has("pod_cidrs")) {
    auto pod_cidrs = read_prefixes(fields->get("pod_cidrs"), fields->path("pod_cidrs"), 0);
    if (!pod_cidrs) return make_error(pod_cidrs.error());
    config.pod_cidrs = std::move(*pod_cidrs);
  }

  config.gateway_v4 = *parse_ip_address("169.254.1.1");
  config.gateway_v6 = *parse_ip_address("fe80::1");
  for (const auto& [field, family, target] : {std::tuple{"gateway_v4", 4, &config.gateway_v4},
                                              std::tuple{"gateway_v6", 6, &config.gateway_v6}}) {
    if (!fields->has(field)) continue;
    auto gateway = read_address(fields->get(field), fields->path(field));
    if (!gateway) return make_error(gateway.error());
    if (gateway->family != family) {
      return field_error(fields->path(field), "must be an IPv" + std::to_string(family) + " address, got " +
                                                  format_ip(*gateway));
    }
    *target = *gateway;
  }
  return Ok{};
}

Result<PortConfig> parse_port(const YAML::Node& node, const std::string& path, PodContext& pod) {
  auto fields = FieldMap::open(node, path, {"name", "device", "role", "mtu", "rx_descriptors", "tx_descriptors"});
  if (!fields) return make_error(fields.error());
  PortConfig port;

  if (!fields->has("name")) return fields->missing("name");
  auto name = read_string(fields->get("name"), fields->path("name"));
  if (!name) return make_error(name.error());
  if (!is_name(*name, kMaxPortName, "_-")) {
    return field_error(fields->path("name"), "must be 1..32 characters of A-Z a-z 0-9 _ -, got '" + *name + "'");
  }
  port.name = *name;

  if (!fields->has("device")) return fields->missing("device");
  auto device = read_string(fields->get("device"), fields->path("device"));
  if (!device) return make_error(device.error());
  if (device->rfind(kSriovForm, 0) == 0) {
    auto pci = pod.sriov_device(std::string_view(*device).substr(kSriovForm.size()), fields->path("device"));
    if (!pci) return make_error(pci.error());
    port.device_source = *device;
    *device = *pci;
  } else if (device->rfind(kNetworkForm, 0) == 0) {
    const std::string path_of_device = fields->path("device");
    auto attachment = pod.attachment(std::string_view(*device).substr(kNetworkForm.size()), path_of_device);
    if (!attachment) return make_error(attachment.error());
    const NetworkAttachment& a = **attachment;
    if (a.pci_address.empty()) {
      return field_error(path_of_device,
                         *device + ": the attachment " + a.name + " has no device-info.pci.pci-address in " +
                             std::string(kNetworkStatusAnnotation) + " of " + pod.annotations_path() +
                             " (an SR-IOV network whose CNI reports device info has one)");
    }
    auto pci = canonical_pci_address(a.pci_address);
    if (!pci) {
      return field_error(path_of_device, *device + ": the attachment " + a.name + "'s pci-address '" +
                                             a.pci_address + "' is not a PCI address");
    }
    port.device_source = *device;
    *device = *pci;
  }
  if (!device_identity(*device)) {
    return field_error(fields->path("device"),
                       "expected a PCI address (0000:03:00.1) or a vdev (net_af_packet0,iface=veth0), got '" +
                           *device + "'");
  }
  port.device = *device;

  if (!fields->has("role")) return fields->missing("role");
  auto role = read_string(fields->get("role"), fields->path("role"));
  if (!role) return make_error(role.error());
  if (*role == "local") {
    port.role = PortRole::kLocal;
  } else if (*role == "uplink") {
    port.role = PortRole::kUplink;
  } else {
    return field_error(fields->path("role"), "must be local or uplink, got '" + *role + "'");
  }

  if (auto s = read_optional_uint(*fields, "mtu", kMinMtu, kMaxMtu, port.mtu); !s) return make_error(s.error());
  for (const auto& [field, target] : {std::pair{"rx_descriptors", &port.rx_descriptors},
                                      std::pair{"tx_descriptors", &port.tx_descriptors}}) {
    auto s = read_optional_uint(*fields, field, kMinDescriptors, kMaxDescriptors, *target);
    if (!s) return make_error(s.error());
    if ((*target & (*target - 1)) != 0) {
      return field_error(fields->path(field), "must be a power of two, got " + std::to_string(*target));
    }
  }
  return port;
}

Status parse_sa_list(const YAML::Node& node, const std::string& path, size_t min_items, const std::string& base_dir,
                     std::vector<SaConfig>& out) {
  auto items = read_sequence(node, path, min_items);
  if (!items) return make_error(items.error());
  for (size_t i = 0; i < items->size(); ++i) {
    auto sa = parse_sa((*items)[i], index_path(path, i), base_dir);
    if (!sa) return make_error(sa.error());
    out.push_back(std::move(*sa));
  }
  return Ok{};
}

Result<PeerConfig> parse_peer(const YAML::Node& node, const std::string& path, unsigned workers,
                              const std::string& base_dir) {
  auto fields = FieldMap::open(node, path, {"name", "tunnel_address", "pod_cidrs", "sas"});
  if (!fields) return make_error(fields.error());
  PeerConfig peer;

  if (!fields->has("name")) return fields->missing("name");
  auto name = read_string(fields->get("name"), fields->path("name"));
  if (!name) return make_error(name.error());
  if (!is_name(*name, kMaxPeerName, "_-.")) {
    return field_error(fields->path("name"), "must be 1..253 characters of A-Z a-z 0-9 _ - ., got '" + *name + "'");
  }
  peer.name = *name;

  if (!fields->has("tunnel_address")) return fields->missing("tunnel_address");
  auto tunnel = read_address(fields->get("tunnel_address"), fields->path("tunnel_address"));
  if (!tunnel) return make_error(tunnel.error());
  peer.tunnel_address = *tunnel;

  if (!fields->has("pod_cidrs")) return fields->missing("pod_cidrs");
  auto pod_cidrs = read_prefixes(fields->get("pod_cidrs"), fields->path("pod_cidrs"));
  if (!pod_cidrs) return make_error(pod_cidrs.error());
  peer.pod_cidrs = std::move(*pod_cidrs);

  if (!fields->has("sas")) return fields->missing("sas");
  auto sas = FieldMap::open(fields->get("sas"), fields->path("sas"), {"outbound", "inbound"});
  if (!sas) return make_error(sas.error());
  if (!sas->has("outbound")) return sas->missing("outbound");
  auto s = parse_sa_list(sas->get("outbound"), sas->path("outbound"), 0, base_dir, peer.outbound);
  if (!s) return make_error(s.error());
  if (peer.outbound.size() != workers) {
    return field_error(sas->path("outbound"), "needs exactly " + std::to_string(workers) +
                                                  " entries, one per worker (workers: " + std::to_string(workers) +
                                                  "), got " + std::to_string(peer.outbound.size()));
  }
  if (!sas->has("inbound")) return sas->missing("inbound");
  s = parse_sa_list(sas->get("inbound"), sas->path("inbound"), 1, base_dir, peer.inbound);
  if (!s) return make_error(s.error());
  return peer;
}

// --- Second pass: rules between fields. Paths are rebuilt from indexes. ---

std::string port_path(size_t i) { return index_path("ports", i); }
std::string peer_path(size_t i) { return index_path("peers", i); }

// The path of the first IPv6 address or prefix in the config, or "".
std::string first_ipv6_use(const Config& config) {
  if (config.tunnel_address.is_v6()) return "node.tunnel_address";
  for (size_t i = 0; i < config.pod_cidrs.size(); ++i) {
    if (config.pod_cidrs[i].address.is_v6()) return index_path("node.pod_cidrs", i);
  }
  for (size_t p = 0; p < config.peers.size(); ++p) {
    for (size_t i = 0; i < config.peers[p].pod_cidrs.size(); ++i) {
      if (config.peers[p].pod_cidrs[i].address.is_v6()) return index_path(peer_path(p) + ".pod_cidrs", i);
    }
  }
  return "";
}

Status check_ports(const Config& config) {
  std::optional<size_t> uplink;
  bool any_local = false;
  std::map<std::string, size_t> names;
  std::map<std::string, size_t> devices;
  const std::string ipv6_use = first_ipv6_use(config);
  for (size_t i = 0; i < config.ports.size(); ++i) {
    const PortConfig& port = config.ports[i];
    if (auto [it, fresh] = names.emplace(port.name, i); !fresh) {
      return field_error(port_path(i) + ".name", "'" + port.name + "' already used by " + port_path(it->second));
    }
    if (auto [it, fresh] = devices.emplace(*device_identity(port.device), i); !fresh) {
      return field_error(port_path(i) + ".device", it->first + " already used by " + port_path(it->second));
    }
    if (port.role == PortRole::kLocal) {
      any_local = true;
    } else if (uplink) {
      return field_error(port_path(i) + ".role", "a second uplink (" + port_path(*uplink) +
                                                     " is one); exactly one port must be the uplink");
    } else {
      uplink = i;
    }
    if (!ipv6_use.empty() && port.mtu < kMinMtuV6) {
      return field_error(port_path(i) + ".mtu", "must be at least 1280 when IPv6 is in use (" + ipv6_use +
                                                    "), got " + std::to_string(port.mtu));
    }
  }
  if (!any_local) return field_error("ports", "no port with role local");
  if (!uplink) return field_error("ports", "no port with role uplink");
  return Ok{};
}

// Paths of errors are built only when there is an error: at thousands of
// peers, building them for every field that is fine cost more than the checks.

// `path(i)` names sas[i] ("peers[3].sas.inbound[1]"). Per peer there are a
// few inbound SAs and one outbound per worker: comparing pairs allocates
// nothing.
template <typename PathFn>
Status check_spis_unique(const std::vector<SaConfig>& sas, PathFn path) {
  for (size_t i = 1; i < sas.size(); ++i) {
    for (size_t j = 0; j < i; ++j) {
      if (sas[i].spi == sas[j].spi) {
        std::ostringstream spi;
        spi << "0x" << std::hex << sas[i].spi;
        return field_error(path(i) + ".spi", spi.str() + " already used by " + path(j));
      }
    }
  }
  return Ok{};
}

// AES-GCM's nonce is salt || IV and the IV is a per-SA counter, so two SAs
// with the same key and salt encrypt under the same nonces. That holds for an
// outbound and an inbound SA too: the peer encrypts with the inbound one.
Status check_keys_unique(const RoutingState& routing, const RoutingPaths& paths) {
  // key size || key (zero-padded to 32) || salt, and where the SA is, in
  // document order (peer, outbound before inbound, index). Fixed-size keys:
  // g++ 12 -O3 warns falsely (-Wstringop-overread) on comparing vectors.
  struct Use {
    std::array<uint8_t, 1 + 32 + 4> material;
    uint32_t peer;
    uint32_t direction;  // 0 outbound, 1 inbound
    uint32_t index;
    auto where() const { return std::tie(peer, direction, index); }
  };
  std::vector<Use> uses;
  for (size_t p = 0; p < routing.peers.size(); ++p) {
    const PeerConfig& peer = routing.peers[p];
    for (uint32_t d = 0; d < 2; ++d) {
      const std::vector<SaConfig>& sas = d == 0 ? peer.outbound : peer.inbound;
      for (size_t i = 0; i < sas.size(); ++i) {
        Use u{{static_cast<uint8_t>(sas[i].key.size())}, static_cast<uint32_t>(p), d, static_cast<uint32_t>(i)};
        std::copy_n(sas[i].key.begin(), std::min<size_t>(sas[i].key.size(), 32), u.material.begin() + 1);
        std::copy(sas[i].salt.begin(), sas[i].salt.end(), u.material.begin() + 1 + 32);
        uses.push_back(u);
      }
    }
  }
  std::sort(uses.begin(), uses.end(), [](const Use& a, const Use& b) {
    return std::tie(a.material, a.peer, a.direction, a.index) < std::tie(b.material, b.peer, b.direction, b.index);
  });
  // Of all repeats, report the one earliest in the document, naming the
  // first use of its key (what reading the document in order finds).
  const Use* repeat = nullptr;
  const Use* first = nullptr;
  for (size_t k = 1; k < uses.size(); ++k) {
    if (uses[k].material != uses[k - 1].material) continue;
    size_t f = k - 1;
    while (f > 0 && uses[f - 1].material == uses[k].material) --f;
    if (!repeat || uses[k].where() < repeat->where()) {
      repeat = &uses[k];
      first = &uses[f];
    }
  }
  if (!repeat) return Ok{};
  auto path = [&](const Use& u) {
    return index_path(peer_path(u.peer) + paths.sas + (u.direction == 0 ? "outbound" : "inbound"), u.index);
  };
  return field_error(path(*repeat), "same key and salt as " + path(*first) +
                                        ": AES-GCM would repeat nonces under one key, which exposes plaintext "
                                        "and allows forgeries; give every SA its own key");
}

// One SA on its own (the YAML reader checks the same while it reads; the API
// relies on this). `path()` names it.
template <typename PathFn>
Status check_sa(const SaConfig& sa, PathFn path) {
  if (sa.spi < kMinSpi) {
    return field_error(path() + ".spi",
                       "must be 256..0xffffffff (0..255 are reserved), got " + std::to_string(sa.spi));
  }
  const size_t want = sa.algorithm == AeadAlgorithm::kAes256Gcm ? 32 : 16;
  if (sa.key.size() != want) {
    return field_error(path() + ".key", "must be " + std::to_string(want) + " bytes for " +
                                            (want == 32 ? "aes-256-gcm" : "aes-128-gcm") + ", got " +
                                            std::to_string(sa.key.size()));
  }
  return Ok{};
}

Status check_peer(const PeerConfig& peer, size_t p, const IpAddress& tunnel_address, unsigned workers,
                  const RoutingPaths& paths) {
  auto path = [&] { return peer_path(p); };
  if (!is_name(peer.name, kMaxPeerName, "_-.")) {
    return field_error(path() + ".name", "must be 1..253 characters of A-Z a-z 0-9 _ - ., got '" + peer.name + "'");
  }
  if (peer.tunnel_address.family != tunnel_address.family) {
    return field_error(path() + ".tunnel_address",
                       format_ip(peer.tunnel_address) + " is IPv" + std::to_string(peer.tunnel_address.family) +
                           " but node.tunnel_address is IPv" + std::to_string(tunnel_address.family));
  }
  if (peer.tunnel_address == tunnel_address) {
    return field_error(path() + ".tunnel_address",
                       format_ip(peer.tunnel_address) + " is this node's own tunnel address");
  }
  if (peer.pod_cidrs.empty()) return field_error(path() + ".pod_cidrs", "must list at least one prefix");
  auto sas = [&](const char* direction) { return path() + paths.sas + direction; };
  if (peer.outbound.size() != workers) {
    return field_error(sas("outbound"), "needs exactly " + std::to_string(workers) +
                                            " entries, one per worker (workers: " + std::to_string(workers) +
                                            "), got " + std::to_string(peer.outbound.size()));
  }
  if (peer.inbound.empty()) return field_error(sas("inbound"), "needs at least one SA");
  auto outbound = [&](size_t i) { return index_path(sas("outbound"), i); };
  auto inbound = [&](size_t i) { return index_path(sas("inbound"), i); };
  for (size_t i = 0; i < peer.outbound.size(); ++i) {
    if (auto s = check_sa(peer.outbound[i], [&] { return outbound(i); }); !s) return s;
  }
  for (size_t i = 0; i < peer.inbound.size(); ++i) {
    if (auto s = check_sa(peer.inbound[i], [&] { return inbound(i); }); !s) return s;
  }
  if (auto s = check_spis_unique(peer.outbound, outbound); !s) return s;
  return check_spis_unique(peer.inbound, inbound);
}

}  // namespace

void wipe_keys(std::span<PeerConfig> peers) {
  for (PeerConfig& peer : peers) {
    for (auto* list : {&peer.outbound, &peer.inbound}) {
      for (SaConfig& sa : *list) {
        explicit_bzero(sa.key.data(), sa.key.size());
        explicit_bzero(sa.salt.data(), sa.salt.size());
      }
    }
  }
}

Status check_routing(const RoutingState& routing, const IpAddress& tunnel_address, unsigned workers,
                     const RoutingPaths& paths) {
  // Pod CIDRs must not overlap: sorted by family and address, any overlap is
  // between neighbours that the earlier one contains (n log n for thousands
  // of peers, where comparing every pair took seconds).
  constexpr uint32_t kNode = UINT32_MAX;
  struct Claim {
    IpPrefix prefix;
    uint32_t peer;  // kNode: the node's own
    uint32_t index;
  };
  auto claim_path = [&](const Claim& c) {
    return c.peer == kNode ? index_path(paths.pod_cidrs, c.index)
                           : index_path(peer_path(c.peer) + ".pod_cidrs", c.index);
  };
  std::vector<Claim> claims;
  for (size_t i = 0; i < routing.pod_cidrs.size(); ++i) {
    claims.push_back({routing.pod_cidrs[i], kNode, static_cast<uint32_t>(i)});
  }
  std::unordered_map<std::string_view, size_t> names;
  names.reserve(routing.peers.size());
  std::map<std::array<uint8_t, 17>, size_t> addresses;
  for (size_t p = 0; p < routing.peers.size(); ++p) {
    const PeerConfig& peer = routing.peers[p];
    if (auto s = check_peer(peer, p, tunnel_address, workers, paths); !s) return s;
    if (auto [it, fresh] = names.emplace(peer.name, p); !fresh) {
      return field_error(peer_path(p) + ".name", "'" + peer.name + "' already used by " + peer_path(it->second));
    }
    std::array<uint8_t, 17> key{peer.tunnel_address.family};
    std::copy(peer.tunnel_address.bytes.begin(), peer.tunnel_address.bytes.end(), key.begin() + 1);
    if (auto [it, fresh] = addresses.emplace(key, p); !fresh) {
      return field_error(peer_path(p) + ".tunnel_address",
                         format_ip(peer.tunnel_address) + " already used by " + peer_path(it->second));
    }
    for (size_t i = 0; i < peer.pod_cidrs.size(); ++i) {
      claims.push_back({peer.pod_cidrs[i], static_cast<uint32_t>(p), static_cast<uint32_t>(i)});
    }
  }
  std::vector<size_t> order(claims.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    const IpPrefix& x = claims[a].prefix;
    const IpPrefix& y = claims[b].prefix;
    return std::tie(x.address.family, x.address.bytes, x.length, a) <
           std::tie(y.address.family, y.address.bytes, y.length, b);
  });
  // A prefix overlaps a later one in this order only if it contains it; keep
  // the widest reach so far (containment is transitive along the order).
  std::optional<size_t> reach;
  for (size_t k = 0; k < order.size(); ++k) {
    const Claim& c = claims[order[k]];
    if (reach && prefixes_overlap(claims[*reach].prefix, c.prefix)) {
      // Report at the one that comes later in the document, naming the other.
      const Claim& first = order[k] > *reach ? claims[*reach] : c;
      const Claim& second = order[k] > *reach ? c : claims[*reach];
      return field_error(claim_path(second), format_prefix(second.prefix) + " overlaps " + claim_path(first) +
                                                 " (" + format_prefix(first.prefix) + ")");
    }
    if (!reach || !prefixes_overlap(claims[*reach].prefix, c.prefix)) reach = order[k];
  }
  return check_keys_unique(routing, paths);
}

namespace {

Status check_peers(const Config& config) { return check_routing(routing_of(config), config.tunnel_address, config.workers, kConfigPaths); }

Status parse_liveness(const YAML::Node& node, LivenessSettings& out) {
  auto fields = FieldMap::open(node, "liveness", {"interval_ms", "misses"});
  if (!fields) return make_error(fields.error());
  if (auto s = read_optional_uint(*fields, "interval_ms", 0, 60000, out.interval_ms); !s) return s;
  if (out.interval_ms != 0 && out.interval_ms < 10) {
    return field_error(fields->path("interval_ms"),
                       "must be 0 (no keepalives) or 10..60000, got " + std::to_string(out.interval_ms));
  }
  return read_optional_uint(*fields, "misses", 1, 100, out.misses);
}

Status parse_flow_logs(const YAML::Node& node, FlowLogSettings& out) {
  auto fields = FieldMap::open(node, "flow_logs", {"path", "sample", "max_per_second", "interval_s"});
  if (!fields) return make_error(fields.error());
  if (!fields->has("path")) return fields->missing("path");
  auto path = read_string(fields->get("path"), fields->path("path"));
  if (!path) return make_error(path.error());
  if (path->empty()) return field_error(fields->path("path"), "must name a file, or be \"-\" for standard output");
  out.path = *path;
  if (auto s = read_optional_uint(*fields, "sample", 1, 1u << 20, out.sample); !s) return s;
  if (auto s = read_optional_uint(*fields, "max_per_second", 1, 1'000'000, out.max_per_second); !s) return s;
  return read_optional_uint(*fields, "interval_s", 0, 86400, out.interval_s);
}

Result<Config> parse_document(const YAML::Node& root, const std::string& base_dir, const LoadOptions& options) {
  if (!root.IsDefined() || root.IsNull()) return field_error("", "empty document");
  if (auto s = expand_tree(root, options.env); !s) return make_error(s.error());
  PodContext pod(options);
  auto top = FieldMap::open(root, "", {"eal", "workers", "idle", "node", "ports", "peers", "services", "liveness",
                                       "flow_logs"});
  if (!top) return make_error(top.error());
  Config config;

  if (top->has("eal")) {
    auto items = read_sequence(top->get("eal"), "eal", 0);
    if (!items) return make_error(items.error());
    for (size_t i = 0; i < items->size(); ++i) {
      auto arg = read_string((*items)[i], index_path("eal", i));
      if (!arg) return make_error(arg.error());
      config.eal_args.push_back(*arg);
    }
  }

  if (auto s = read_optional_uint(*top, "workers", 1, kMaxWorkers, config.workers); !s) return make_error(s.error());

  if (top->has("idle")) {
    auto idle = read_string(top->get("idle"), "idle");
    if (!idle) return make_error(idle.error());
    if (*idle == "adaptive") {
      config.idle = IdleMode::kAdaptive;
    } else if (*idle == "busy") {
      config.idle = IdleMode::kBusyPoll;
    } else {
      return field_error("idle", "must be adaptive or busy, got '" + *idle + "'");
    }
  }

  if (top->has("services")) {
    auto svc = FieldMap::open(top->get("services"), "services",
                              {"conntrack_max", "tcp_syn_timeout_s", "tcp_established_timeout_s",
                               "tcp_closing_timeout_s", "udp_timeout_s", "sctp_timeout_s", "connect_timeout_ms",
                               "connect_attempts", "outlier_failures", "outlier_ejection_s"});
    if (!svc) return make_error(svc.error());
    ServicesSettings& ss = config.services;
    if (auto s = read_optional_uint(*svc, "conntrack_max", 1024, 16u << 20, ss.conntrack_max); !s) {
      return make_error(s.error());
    }
    for (const auto& [field, target] : {std::pair{"tcp_syn_timeout_s", &ss.tcp_syn_timeout_s},
                                        std::pair{"tcp_established_timeout_s", &ss.tcp_established_timeout_s},
                                        std::pair{"tcp_closing_timeout_s", &ss.tcp_closing_timeout_s},
                                        std::pair{"udp_timeout_s", &ss.udp_timeout_s},
                                        std::pair{"sctp_timeout_s", &ss.sctp_timeout_s}}) {
      // At most 20 days: the flow clock wraps after 49.
      if (auto s = read_optional_uint(*svc, field, 1, 20 * 86400, *target); !s) return make_error(s.error());
    }
    if (auto s = read_optional_uint(*svc, "connect_timeout_ms", 10, 60000, ss.connect_timeout_ms); !s) {
      return make_error(s.error());
    }
    if (auto s = read_optional_uint(*svc, "connect_attempts", 1, 16, ss.connect_attempts); !s) return make_error(s.error());
    if (auto s = read_optional_uint(*svc, "outlier_failures", 0, 1000, ss.outlier_failures); !s) return make_error(s.error());
    if (auto s = read_optional_uint(*svc, "outlier_ejection_s", 1, 86400, ss.outlier_ejection_s); !s) {
      return make_error(s.error());
    }
  }

  if (top->has("liveness")) {
    if (auto s = parse_liveness(top->get("liveness"), config.liveness); !s) return make_error(s.error());
  }

  if (top->has("flow_logs")) {
    if (auto s = parse_flow_logs(top->get("flow_logs"), config.flow_logs); !s) return make_error(s.error());
  }

  if (!top->has("node")) return top->missing("node");
  if (auto s = parse_node(top->get("node"), "node", config, pod); !s) return make_error(s.error());

  if (!top->has("ports")) return top->missing("ports");
  auto ports = read_sequence(top->get("ports"), "ports", 0);
  if (!ports) return make_error(ports.error());
  for (size_t i = 0; i < ports->size(); ++i) {
    auto port = parse_port((*ports)[i], port_path(i), pod);
    if (!port) return make_error(port.error());
    config.ports.push_back(std::move(*port));
  }

  if (top->has("peers")) {
    auto peers = read_sequence(top->get("peers"), "peers", 0);
    if (!peers) return make_error(peers.error());
    for (size_t i = 0; i < peers->size(); ++i) {
      auto peer = parse_peer((*peers)[i], peer_path(i), config.workers, base_dir);
      if (!peer) return make_error(peer.error());
      config.peers.push_back(std::move(*peer));
    }
  }

  if (auto s = check_ports(config); !s) return make_error(s.error());
  if (auto s = check_peers(config); !s) return make_error(s.error());
  return config;
}

std::string describe(const YAML::Exception& e) {
  if (e.mark.is_null()) return "yaml: " + e.msg;
  return "yaml: line " + std::to_string(e.mark.line + 1) + ", column " + std::to_string(e.mark.column + 1) + ": " +
         e.msg;
}

}  // namespace

Environment process_environment() {
  Environment env;
  for (char** e = environ; e && *e; ++e) {
    const std::string_view entry = *e;
    const size_t eq = entry.find('=');
    if (eq == std::string_view::npos) continue;
    env.emplace(std::string(entry.substr(0, eq)), std::string(entry.substr(eq + 1)));
  }
  return env;
}

Result<Config> parse_config(std::string_view yaml_text, const std::string& base_dir, const LoadOptions& options) {
  try {
    return parse_document(YAML::Load(std::string(yaml_text)), base_dir, options);
  } catch (const YAML::Exception& e) {
    return make_error(describe(e));
  } catch (const std::exception& e) {
    return make_error(std::string("config: ") + e.what());
  }
}

Result<Config> load_config(const std::string& path, const LoadOptions& options) {
  auto text = read_text_file(path);
  if (!text.ok()) return make_error(text.error());
  return parse_config(*text, std::filesystem::path(path).parent_path().string(), options);
}

}  // namespace meshwire::dp
