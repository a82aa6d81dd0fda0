#include "reconcile/services.h"

#include <algorithm>
#include <map>
#include <tuple>

namespace meshwire::control {
namespace {

bool backend_less(const ServiceBackend& a, const ServiceBackend& b) {
  return std::tie(a.address.family, a.address.bytes, a.port) < std::tie(b.address.family, b.address.bytes, b.port);
}

bool same_endpoint(const ServiceBackend& a, const ServiceBackend& b) {
  return a.address == b.address && a.port == b.port;
}

using SliceIndex = std::map<std::string, std::vector<const EndpointSliceObject*>>;  // "ns/service" -> slices

// The backends of one frontend: ready endpoints, else serving-terminating ones.
std::vector<ServiceBackend> backends_of(const SliceIndex& slices, const ServiceObject& svc, const std::string& key,
                                        const ServicePort& sp, uint8_t family, const std::string& self_node) {
  std::vector<ServiceBackend> ready, terminating;
  auto mine = slices.find(key);
  if (mine == slices.end()) return {};
  for (const EndpointSliceObject* s : mine->second) {
    const EndpointSliceObject& slice = *s;
    if (slice.family != family) continue;
    auto port = std::find_if(slice.ports.begin(), slice.ports.end(), [&](const EndpointPort& p) {
      return p.name == sp.name && p.protocol == sp.protocol;
    });
    if (port == slice.ports.end() || port->port == 0) continue;
    for (const Endpoint& ep : slice.endpoints) {
      if (ep.addresses.empty()) continue;
      if (svc.internal_traffic_local && ep.node_name != self_node) continue;
      ServiceBackend b{ep.addresses.front(), port->port, ep.node_name, false};
      if (ep.ready) {
        ready.push_back(std::move(b));
      } else if (ep.serving && ep.terminating) {
        b.terminating = true;
        terminating.push_back(std::move(b));
      }
    }
  }
  std::vector<ServiceBackend>& chosen = ready.empty() ? terminating : ready;
  std::sort(chosen.begin(), chosen.end(), backend_less);
  chosen.erase(std::unique(chosen.begin(), chosen.end(), same_endpoint), chosen.end());
  return std::move(chosen);
}

}  // namespace

DesiredServices desired_services(const ClusterObjects& cluster, const std::string& self_node,
                                 std::string_view proxy_name) {
  DesiredServices out;
  SliceIndex slices;
  for (const auto& [key, slice] : cluster.endpoint_slices) {
    if (!slice->service.empty()) slices[slice->ns + "/" + slice->service].push_back(slice.get());
  }
  for (const auto& [key, svc_ptr] : cluster.services) {  // sorted by namespace/name
    const ServiceObject& svc = *svc_ptr;
    if (!svc.proxy_name.empty() && svc.proxy_name != proxy_name) {
      out.skipped.push_back(key + ": handled by proxy '" + svc.proxy_name + "'");
      continue;
    }
    if (svc.type == "ExternalName") continue;  // a DNS name, no VIP
    if (svc.headless || svc.cluster_ips.empty()) continue;  // no VIP: clients reach the pods directly
    std::vector<ServiceFrontend> mine;
    for (const IpAddress& vip : svc.cluster_ips) {
      for (const ServicePort& sp : svc.ports) {
        ServiceFrontend f;
        f.service = key;
        f.port_name = sp.name;
        f.protocol = sp.protocol;
        f.vip = vip;
        f.port = sp.port;
        f.affinity_client_ip = svc.affinity_client_ip;
        f.affinity_timeout_s = svc.affinity_client_ip ? svc.affinity_timeout_s : 0;
        f.backends = backends_of(slices, svc, key, sp, vip.family, self_node);
        mine.push_back(std::move(f));
      }
    }
    std::sort(mine.begin(), mine.end(), [](const ServiceFrontend& a, const ServiceFrontend& b) {
      return std::tie(a.vip.family, a.vip.bytes, a.protocol, a.port) <
             std::tie(b.vip.family, b.vip.bytes, b.protocol, b.port);
    });
    for (ServiceFrontend& f : mine) out.frontends.push_back(std::move(f));
  }
  return out;
}

}  // namespace meshwire::control
