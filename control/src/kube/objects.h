// The parts of Kubernetes objects the controller programs the data plane
// from, read from JSON as the API server (or `kubectl get -o json|yaml`)
// gives them. Errors name the object and the field ("Node node2:
// status.addresses[0].address: not an IP address: 'x'"). Pure: any thread.
#pragma once

#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <meshwire/dp/config.h>
#include <meshwire/dp/result.h>

namespace meshwire::control {

using dp::IpAddress;
using dp::IpPrefix;
using dp::Result;
using dp::Status;

inline constexpr const char* kPublicKeyAnnotation = "meshwire.io/public-key";
inline constexpr const char* kKeyEpochAnnotation = "meshwire.io/key-epoch";
inline constexpr const char* kWorkersAnnotation = "meshwire.io/workers";
// The node's sending epoch when its data plane last came up fresh.
inline constexpr const char* kBootEpochAnnotation = "meshwire.io/boot-epoch";

struct NodeObject {
  std::string name;
  std::vector<IpAddress> internal_ips;  // status.addresses of type InternalIP, in order
  std::vector<IpPrefix> pod_cidrs;      // spec.podCIDRs (or the older spec.podCIDR)
  std::map<std::string, std::string> annotations;
  std::string resource_version;
};

// Reads a Node; the name is required, the rest may be missing (a node that
// has no InternalIP or pod CIDR yet is not routed to).
Result<NodeObject> parse_node(const nlohmann::json& object);

// "Kind name" for errors: "Node node2", or "object #3" without a name.
std::string describe(const nlohmann::json& object, size_t index);

// Every object of a document: a List's items, or the object itself.
// Objects without a kind are an error naming them.
Result<std::vector<nlohmann::json>> objects_of(const nlohmann::json& document);

}  // namespace meshwire::control
