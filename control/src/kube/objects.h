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
// The node's data plane tunnel address when it differs from the Node's
// InternalIP (an SR-IOV VF with its own address on a data network).
inline constexpr const char* kTunnelAddressAnnotation = "meshwire.io/tunnel-address";

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

// Where peers send a node's ESP: its meshwire.io/tunnel-address annotation
// when it has one, else its first InternalIP of the fabric's family (4 or
// 6). Errors say why there is none (for the controller's skipped list).
Result<IpAddress> fabric_address(const NodeObject& n, uint8_t family);

// IP protocol numbers of Service and EndpointSlice ports.
inline constexpr uint8_t kProtoTcp = 6;
inline constexpr uint8_t kProtoUdp = 17;
inline constexpr uint8_t kProtoSctp = 132;

inline constexpr const char* kServiceNameLabel = "kubernetes.io/service-name";
inline constexpr const char* kServiceProxyNameLabel = "service.kubernetes.io/service-proxy-name";

struct ServicePort {
  std::string name;        // may be empty when the Service has one port
  uint8_t protocol = kProtoTcp;
  uint16_t port = 0;
};

// What a Service says about load balancing, as kube-proxy reads it.
struct ServiceObject {
  std::string ns, name;
  std::string type = "ClusterIP";      // ClusterIP, NodePort, LoadBalancer, ExternalName
  std::vector<IpAddress> cluster_ips;  // spec.clusterIPs (or spec.clusterIP); empty when headless
  bool headless = false;               // clusterIP: None
  std::vector<ServicePort> ports;
  std::string proxy_name;              // label service.kubernetes.io/service-proxy-name
  bool internal_traffic_local = false;  // spec.internalTrafficPolicy: Local
  bool affinity_client_ip = false;      // spec.sessionAffinity: ClientIP
  uint32_t affinity_timeout_s = 10800;  // ...sessionAffinityConfig.clientIP.timeoutSeconds
  std::string resource_version;
};

struct EndpointPort {
  std::string name;
  uint8_t protocol = kProtoTcp;
  uint16_t port = 0;
};

struct Endpoint {
  std::vector<IpAddress> addresses;
  // conditions, with the API's defaults for unset ones: ready true,
  // serving = ready, terminating false.
  bool ready = true;
  bool serving = true;
  bool terminating = false;
  std::string node_name;
  std::string target;  // targetRef as "namespace/name" (its namespace defaults to the slice's); "" when unset
};

struct EndpointSliceObject {
  std::string ns, name;
  std::string service;     // label kubernetes.io/service-name ("" : belongs to no Service)
  uint8_t family = 0;      // addressType IPv4 (4) or IPv6 (6); 0 for FQDN (not load balanced)
  std::vector<EndpointPort> ports;
  std::vector<Endpoint> endpoints;
  std::string resource_version;
};

// Errors name the object and the field ("Service default/web:
// spec.ports[1].protocol: must be TCP, UDP or SCTP, got 'ICMP'").
Result<ServiceObject> parse_service(const nlohmann::json& object);
Result<EndpointSliceObject> parse_endpoint_slice(const nlohmann::json& object);

// "Kind name" for errors: "Node node2", or "object #3" without a name.
std::string describe(const nlohmann::json& object, size_t index);

// Every object of a document: a List's items, or the object itself.
// Objects without a kind are an error naming them.
Result<std::vector<nlohmann::json>> objects_of(const nlohmann::json& document);

}  // namespace meshwire::control
