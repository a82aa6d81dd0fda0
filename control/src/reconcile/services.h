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
//  * Ready endpoints take new connections; when there is none, the serving
//    ones that are terminating do (so that connections still land while a
//    rollout ends).
//  * Every other endpoint that is still listed is a draining backend: it
//    takes no new connection, but the data plane keeps the established
//    ones on it (kube-proxy leaves them to conntrack) until it goes from
//    the slices. Its reason: "terminating", or "not ready".
//  * An endpoint listed in several slices is one backend, the one of its
//    listings that is most usable (ready, then serving-terminating, then
//    terminating, then not ready), as kube-proxy merges them.
//  * internalTrafficPolicy: Local keeps this node's endpoints only (none:
//    no backend, the traffic is dropped, as kube-proxy does).
//  * sessionAffinity: ClientIP, with its timeout, is carried to the frontend.
//  * Two Services cannot share a frontend (cluster IP, port, protocol): the
//    API server refuses it, a folder of files may not. The first by name
//    keeps it; the other's is left out and said so in `skipped`.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "source/folder.h"

namespace meshwire::control {

inline constexpr const char* kProxyName = "meshwire";

enum class BackendUse : uint8_t {
  kActive,    // takes new connections
  kDraining,  // keeps its established connections, takes no new ones
};

// Why a backend is draining.
enum class DrainReason : uint8_t {
  kNone,         // active
  kTerminating,  // conditions.terminating, and not taken as the fallback
  kNotReady,     // not ready, not terminating
};

// "terminating", "not ready" ("" for kNone): what the data plane and
// meshwirectl show.
const char* drain_reason_name(DrainReason r);

struct ServiceBackend {
  IpAddress address;
  uint16_t port = 0;
  std::string node;          // the endpoint's nodeName ("" when unset)
  std::string target;        // its targetRef, "namespace/pod" ("" when unset)
  bool terminating = false;  // the endpoint is terminating (when active: the serving fallback)
  BackendUse use = BackendUse::kActive;
  DrainReason reason = DrainReason::kNone;

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
  // Active and draining, sorted by address and port, no two the same.
  std::vector<ServiceBackend> backends;

  friend bool operator==(const ServiceFrontend&, const ServiceFrontend&) = default;
};

struct DesiredServices {
  std::vector<ServiceFrontend> frontends;  // sorted by service, VIP, protocol, port
  std::vector<std::string> skipped;        // Services (or frontends) left out, each with why
};

DesiredServices desired_services(const ClusterObjects& cluster, const std::string& self_node,
                                 std::string_view proxy_name = kProxyName);

}  // namespace meshwire::control
