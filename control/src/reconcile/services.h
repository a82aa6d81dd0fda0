// Which service frontends (ClusterIP, port, protocol) the data plane should
// balance, and across which backends, from Services and EndpointSlices, as
// kube-proxy reads them. A pure function, pinned by tests; the data plane's
// load balancing (Maglev, connection tracking) is built on it.
//
// What counts, as kube-proxy has it:
//  * Services of type ClusterIP, NodePort and LoadBalancer with a cluster IP
//    (one frontend per cluster IP, so dual-stack Services have two);
//    headless and ExternalName Services have no VIP and are left out.
//  * A Service labelled service.kubernetes.io/service-proxy-name is another
//    proxy's, unless the label names this one.
//  * Backends come from every EndpointSlice of the Service's namespace
//    labelled kubernetes.io/service-name with its name, of the VIP's address
//    family, through the slice port with the Service port's name and
//    protocol (its number is the backend's port). An endpoint's first
//    address is the one used.
//  * Ready endpoints; when there is none, the serving ones that are
//    terminating (so that connections still land while a rollout ends).
//  * internalTrafficPolicy: Local keeps this node's endpoints only (none:
//    no backend, the traffic is dropped, as kube-proxy does).
//  * sessionAffinity: ClientIP, with its timeout, is carried to the frontend.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "source/folder.h"

namespace meshwire::control {

inline constexpr const char* kProxyName = "meshwire";

struct ServiceBackend {
  IpAddress address;
  uint16_t port = 0;
  std::string node;          // the endpoint's nodeName ("" when unset)
  bool terminating = false;  // a serving-but-terminating fallback

  friend bool operator==(const ServiceBackend&, const ServiceBackend&) = default;
};

struct ServiceFrontend {
  std::string service;    // "namespace/name"
  std::string port_name;  // the Service port's name
  uint8_t protocol = kProtoTcp;
  IpAddress vip;
  uint16_t port = 0;
  bool affinity_client_ip = false;
  uint32_t affinity_timeout_s = 0;
  std::vector<ServiceBackend> backends;  // sorted by address and port, no duplicates
};

struct DesiredServices {
  std::vector<ServiceFrontend> frontends;  // sorted by service, VIP, protocol, port
  std::vector<std::string> skipped;        // Services left out, each with why
};

DesiredServices desired_services(const ClusterObjects& cluster, const std::string& self_node,
                                 std::string_view proxy_name = kProxyName);

}  // namespace meshwire::control
