// What a pod learns about its devices from Kubernetes, for the config forms
// "sriov:RESOURCE" and "network:NAME": the SR-IOV device plugin's
// PCIDEVICE_* variables and Multus's network-status annotation (read from a
// downward API file). Pure code, private to dataplane/src/config.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <meshwire/dp/config.h>
#include <meshwire/dp/result.h>

namespace meshwire::dp {

// The variables the SR-IOV network device plugin may have set for an
// extended resource "PREFIX/NAME", the plugin's own spelling first:
// "PCIDEVICE_" + PREFIX + "_" + NAME with every '.' turned into '_', then
// uppercased (k8snetworkplumbingwg/sriov-network-device-plugin,
// pkg/resources/server.go, resourceServer.getEnvs: it formats
// "%s_%s_%s" of "PCIDEVICE", the prefix and the name, replaces "." with
// "_" and uppercases; a '-' is kept). Second, when the name has a '-', the
// same with '-' turned into '_' too (what shells and some operators write).
// intel.com/intel_sriov_dpdk -> PCIDEVICE_INTEL_COM_INTEL_SRIOV_DPDK.
std::vector<std::string> sriov_variables(std::string_view resource);

// "0000:03:00.1" (domain:bus:device.function, hexadecimal, function 0..7)
// in lowercase; nullopt when `text` is not one.
std::optional<std::string> canonical_pci_address(std::string_view text);

// A Go string literal as strconv.Quote writes it (the downward API's
// format): "..." with \a \b \f \n \r \t \v \\ \" \xNN \NNN \uNNNN \UNNNNNNNN.
// nullopt when it is not one.
std::optional<std::string> unquote_go_string(std::string_view quoted);

// A downward API annotations file (kubernetes pkg/fieldpath FormatMap: one
// `key="Go-quoted value"` per line, keys sorted). Errors say which line is
// malformed.
Result<std::map<std::string, std::string>> parse_downward_annotations(std::string_view text);

// The annotation Multus writes the pod's attachments into.
inline constexpr std::string_view kNetworkStatusAnnotation = "k8s.v1.cni.cncf.io/network-status";

// One attachment of network-status (a JSON list of {name, interface, ips,
// mac, default, device-info: {type, version, pci: {pci-address, ...}}}).
struct NetworkAttachment {
  std::string name;  // as Multus writes it: "namespace/name" ("cbr0" for the default network)
  std::string interface;
  std::vector<std::string> ips;
  std::string pci_address;  // device-info.pci.pci-address; "" without device info
  std::string device_type;  // device-info.type; "" without device info
};

// Parses the network-status JSON. Errors say what is malformed.
Result<std::vector<NetworkAttachment>> parse_network_status(std::string_view json);

// The attachment named `name`: "namespace/name" exactly, or a bare "name"
// matching an entry of that name in any namespace (and an entry written
// without a namespace). Errors: none matches (the names there are listed),
// or a bare name matches in several namespaces.
Result<const NetworkAttachment*> find_attachment(const std::vector<NetworkAttachment>& attachments,
                                                 std::string_view name);

}  // namespace meshwire::dp
