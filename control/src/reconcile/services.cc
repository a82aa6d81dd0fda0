#include "reconcile/services.h"

#include <algorithm>
#include <array>
#include <map>
#include <tuple>

namespace meshwire::control {
namespace {

bool backend_less(const ServiceBackend& a, const ServiceBackend& b) {
  return std::tie(a.address.family, a.address.bytes, a.port) < std::tie(b.address.family, b.address.bytes, b.port);
}

// An endpoint's listing, most usable first: where one endpoint is listed
// several times (slices of one Service overlap while they are rewritten),
// the lowest rank is kept.
enum class Rank : uint8_t { kReady, kServingTerminating, kTerminating, kNotReady };

Rank rank_of(const Endpoint& ep) {
  if (ep.ready) return Rank::kReady;
  if (ep.terminating) return ep.serving ? Rank::kServingTerminating : Rank::kTerminating;
  return Rank::kNotReady;
}

using SliceIndex = std::map<std::string, std::vector<const EndpointSliceObject*>>;  // "ns/service" -> slices

// The backends of one frontend: ready endpoints active (else the
// serving-terminating ones), every other endpoint draining.
std::vector<ServiceBackend> backends_of(const SliceIndex& slices, const ServiceObject& svc, const std::string& key,
                                        const ServicePort& sp, uint8_t family, const std::string& self_node) {
  auto mine = slices.find(key);
  if (mine == slices.end()) return {};
  std::vector<std::pair<ServiceBackend, Rank>> listed;
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
      ServiceBackend b;
      b.address = ep.addresses.front();
      b.port = port->port;
      b.node = ep.node_name;
      b.target = ep.target;
      b.terminating = ep.terminating && !ep.ready;
      listed.emplace_back(std::move(b), rank_of(ep));
    }
  }
  // By endpoint, most usable listing first; then one per endpoint.
  std::stable_sort(listed.begin(), listed.end(), [](const auto& a, const auto& b) {
    if (backend_less(a.first, b.first)) return true;
    if (backend_less(b.first, a.first)) return false;
    return a.second < b.second;
  });
  listed.erase(std::unique(listed.begin(), listed.end(),
                           [](const auto& a, const auto& b) {
                             return a.first.address == b.first.address && a.first.port == b.first.port;
                           }),
               listed.end());
  const bool any_ready =
      std::any_of(listed.begin(), listed.end(), [](const auto& l) { return l.second == Rank::kReady; });
  const Rank active = any_ready ? Rank::kReady : Rank::kServingTerminating;
  std::vector<ServiceBackend> out;
  out.reserve(listed.size());
  for (auto& [b, rank] : listed) {
    if (rank != active) {
      b.use = BackendUse::kDraining;
      b.reason = rank == Rank::kNotReady ? DrainReason::kNotReady : DrainReason::kTerminating;
    }
    out.push_back(std::move(b));
  }
  return out;
}

std::string describe_frontend(const ServiceFrontend& f) {
  const char* proto = f.protocol == kProtoUdp ? "UDP" : f.protocol == kProtoSctp ? "SCTP" : "TCP";
  std::string out = dp::format_ip(f.vip);
  out += " port ";
  out += std::to_string(f.port);
  out += "/";
  out += proto;
  return out;
}

}  // namespace

const char* drain_reason_name(DrainReason r) {
  switch (r) {
    case DrainReason::kTerminating: return "terminating";
    case DrainReason::kNotReady: return "not ready";
    case DrainReason::kNone: break;
  }
  return "";
}

DesiredServices desired_services(const ClusterObjects& cluster, const std::string& self_node,
                                 std::string_view proxy_name) {
  DesiredServices out;
  // The Service that has each frontend (VIP, protocol, port).
  std::map<std::tuple<uint8_t, std::array<uint8_t, 16>, uint8_t, uint16_t>, std::string> owners;
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
    for (ServiceFrontend& f : mine) {
      auto [owner, fresh] = owners.try_emplace(std::make_tuple(f.vip.family, f.vip.bytes, f.protocol, f.port), key);
      if (!fresh) {
        out.skipped.push_back(key + ": " + describe_frontend(f) + " is " + owner->second + "'s already");
        continue;
      }
      out.frontends.push_back(std::move(f));
    }
  }
  return out;
}

}  // namespace meshwire::control
