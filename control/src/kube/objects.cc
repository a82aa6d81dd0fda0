#include "kube/objects.h"

namespace meshwire::control {
namespace {

using nlohmann::json;
using dp::make_error;

// object[a][b]... or nullptr when any step is missing or not an object.
const json* path(const json& object, std::initializer_list<const char*> keys) {
  const json* j = &object;
  for (const char* k : keys) {
    if (!j->is_object()) return nullptr;
    auto it = j->find(k);
    if (it == j->end()) return nullptr;
    j = &*it;
  }
  return j;
}

Result<std::string> string_at(const json& object, std::initializer_list<const char*> keys, const std::string& field) {
  const json* j = path(object, keys);
  if (!j || j->is_null()) return std::string();
  if (!j->is_string()) return make_error(field + ": must be a string");
  return j->get<std::string>();
}

// spec.<plural> (a list of strings) or, where it is absent, the older
// single spec.<singular>: podCIDRs/podCIDR, clusterIPs/clusterIP.
Result<std::vector<std::string>> plural_or_single(const json& object, const char* plural, const char* singular) {
  std::vector<std::string> out;
  const std::string field = std::string("spec.") + plural;
  if (const json* list = path(object, {"spec", plural}); list && !list->is_null()) {
    if (!list->is_array()) return make_error(field + ": must be a list");
    for (size_t i = 0; i < list->size(); ++i) {
      if (!(*list)[i].is_string()) return make_error(field + "[" + std::to_string(i) + "]: must be a string");
      out.push_back((*list)[i].get<std::string>());
    }
    return out;
  }
  auto one = string_at(object, {"spec", singular}, std::string("spec.") + singular);
  if (!one.ok()) return make_error(one.error());
  if (!one->empty()) out.push_back(*one);
  return out;
}

}  // namespace

std::string describe(const json& object, size_t index) {
  const json* kind = path(object, {"kind"});
  const json* name = path(object, {"metadata", "name"});
  if (kind && kind->is_string() && name && name->is_string()) {
    return kind->get<std::string>() + " " + name->get<std::string>();
  }
  return "object #" + std::to_string(index);
}

Result<std::vector<json>> objects_of(const json& document) {
  std::vector<json> out;
  if (document.is_null()) return out;  // an empty YAML document
  if (!document.is_object()) return make_error("not an object (a Kubernetes object or List)");
  const json* kind = path(document, {"kind"});
  if (!kind || !kind->is_string()) return make_error("kind: missing");
  const std::string k = kind->get<std::string>();
  if (k == "List" || (k.size() > 4 && k.compare(k.size() - 4, 4, "List") == 0)) {
    const json* items = path(document, {"items"});
    if (!items || items->is_null()) return out;
    if (!items->is_array()) return make_error(k + ".items: must be a list");
    // A typed list (NodeList) leaves kind out of its items.
    const std::string item_kind = k == "List" ? "" : k.substr(0, k.size() - 4);
    for (size_t i = 0; i < items->size(); ++i) {
      json item = (*items)[i];
      if (!item.is_object()) return make_error(k + ".items[" + std::to_string(i) + "]: not an object");
      if (!item.contains("kind") && !item_kind.empty()) item["kind"] = item_kind;
      if (!item.contains("kind")) return make_error(k + ".items[" + std::to_string(i) + "].kind: missing");
      out.push_back(std::move(item));
    }
    return out;
  }
  out.push_back(document);
  return out;
}

Result<NodeObject> parse_node(const json& object) {
  NodeObject n;
  auto name = string_at(object, {"metadata", "name"}, "metadata.name");
  if (!name.ok()) return make_error("Node: " + name.error());
  if (name->empty()) return make_error("Node: metadata.name: missing");
  n.name = *name;
  const std::string what = "Node " + n.name + ": ";
  auto rv = string_at(object, {"metadata", "resourceVersion"}, "metadata.resourceVersion");
  if (!rv.ok()) return make_error(what + rv.error());
  n.resource_version = *rv;

  if (const json* ann = path(object, {"metadata", "annotations"}); ann && !ann->is_null()) {
    if (!ann->is_object()) return make_error(what + "metadata.annotations: must be a map");
    for (const auto& [k, v] : ann->items()) {
      if (!v.is_string()) return make_error(what + "metadata.annotations." + k + ": must be a string");
      n.annotations[k] = v.get<std::string>();
    }
  }

  if (const json* addrs = path(object, {"status", "addresses"}); addrs && !addrs->is_null()) {
    if (!addrs->is_array()) return make_error(what + "status.addresses: must be a list");
    for (size_t i = 0; i < addrs->size(); ++i) {
      const std::string field = "status.addresses[" + std::to_string(i) + "]";
      auto type = string_at((*addrs)[i], {"type"}, field + ".type");
      auto address = string_at((*addrs)[i], {"address"}, field + ".address");
      if (!type.ok()) return make_error(what + type.error());
      if (!address.ok()) return make_error(what + address.error());
      if (*type != "InternalIP") continue;
      auto ip = dp::parse_ip_address(*address);
      if (!ip) return make_error(what + field + ".address: not an IP address: '" + *address + "'");
      n.internal_ips.push_back(*ip);
    }
  }

  auto listed = plural_or_single(object, "podCIDRs", "podCIDR");
  if (!listed.ok()) return make_error(what + listed.error());
  const std::vector<std::string>& cidrs = *listed;
  for (size_t i = 0; i < cidrs.size(); ++i) {
    auto p = dp::parse_ip_prefix(cidrs[i]);
    if (!p.ok()) return make_error(what + "spec.podCIDRs[" + std::to_string(i) + "]: " + p.error());
    n.pod_cidrs.push_back(*p);
  }
  return n;
}

}  // namespace meshwire::control

namespace meshwire::control {
namespace {

Result<uint8_t> protocol_at(const json& object, const std::string& field) {
  auto p = string_at(object, {"protocol"}, field + ".protocol");
  if (!p.ok()) return make_error(p.error());
  if (p->empty() || *p == "TCP") return kProtoTcp;  // the API's default
  if (*p == "UDP") return kProtoUdp;
  if (*p == "SCTP") return kProtoSctp;
  return make_error(field + ".protocol: must be TCP, UDP or SCTP, got '" + *p + "'");
}

Result<uint16_t> port_at(const json& object, const char* key, const std::string& field, bool required) {
  const json* j = path(object, {key});
  if (!j || j->is_null()) {
    if (required) return make_error(field + "." + key + ": missing");
    return uint16_t{0};
  }
  if (!j->is_number_integer() || j->get<int64_t>() < 1 || j->get<int64_t>() > 65535) {
    return make_error(field + "." + key + ": must be a port number 1..65535, got " + j->dump());
  }
  return static_cast<uint16_t>(j->get<int64_t>());
}

Result<bool> bool_at(const json& object, std::initializer_list<const char*> keys, const std::string& field,
                     bool unset) {
  const json* j = path(object, keys);
  if (!j || j->is_null()) return unset;
  if (!j->is_boolean()) return make_error(field + ": must be true or false");
  return j->get<bool>();
}

// "Kind ns/name: " for errors, and the two names.
struct Named {
  std::string ns, name, what;
};
Result<Named> named(const json& object, const char* kind) {
  auto name = string_at(object, {"metadata", "name"}, "metadata.name");
  if (!name.ok()) return make_error(std::string(kind) + ": " + name.error());
  if (name->empty()) return make_error(std::string(kind) + ": metadata.name: missing");
  auto ns = string_at(object, {"metadata", "namespace"}, "metadata.namespace");
  if (!ns.ok()) return make_error(std::string(kind) + " " + *name + ": " + ns.error());
  Named n{ns->empty() ? "default" : *ns, *name, ""};
  n.what = std::string(kind) + " " + n.ns + "/" + n.name + ": ";
  return n;
}

std::string label(const json& object, const char* key) {
  const json* j = path(object, {"metadata", "labels", key});
  return j && j->is_string() ? j->get<std::string>() : std::string();
}

}  // namespace

Result<ServiceObject> parse_service(const json& object) {
  auto n = named(object, "Service");
  if (!n.ok()) return make_error(n.error());
  ServiceObject s;
  s.ns = n->ns;
  s.name = n->name;
  const std::string& what = n->what;
  auto rv = string_at(object, {"metadata", "resourceVersion"}, "metadata.resourceVersion");
  if (!rv.ok()) return make_error(what + rv.error());
  s.resource_version = *rv;
  s.proxy_name = label(object, kServiceProxyNameLabel);
  auto type = string_at(object, {"spec", "type"}, "spec.type");
  if (!type.ok()) return make_error(what + type.error());
  if (!type->empty()) s.type = *type;
  if (s.type != "ClusterIP" && s.type != "NodePort" && s.type != "LoadBalancer" && s.type != "ExternalName") {
    return make_error(what + "spec.type: must be ClusterIP, NodePort, LoadBalancer or ExternalName, got '" + s.type +
                      "'");
  }

  auto listed = plural_or_single(object, "clusterIPs", "clusterIP");
  if (!listed.ok()) return make_error(what + listed.error());
  const std::vector<std::string>& ips = *listed;
  for (size_t i = 0; i < ips.size(); ++i) {
    if (ips[i] == "None") {
      s.headless = true;
      continue;
    }
    auto ip = dp::parse_ip_address(ips[i]);
    if (!ip) return make_error(what + "spec.clusterIPs[" + std::to_string(i) + "]: not an IP address: '" + ips[i] + "'");
    s.cluster_ips.push_back(*ip);
  }
  if (s.headless) s.cluster_ips.clear();

  if (const json* ports = path(object, {"spec", "ports"}); ports && !ports->is_null()) {
    if (!ports->is_array()) return make_error(what + "spec.ports: must be a list");
    for (size_t i = 0; i < ports->size(); ++i) {
      const std::string field = "spec.ports[" + std::to_string(i) + "]";
      const json& p = (*ports)[i];
      if (!p.is_object()) return make_error(what + field + ": must be a map");
      ServicePort sp;
      auto name = string_at(p, {"name"}, field + ".name");
      if (!name.ok()) return make_error(what + name.error());
      sp.name = *name;
      auto proto = protocol_at(p, field);
      if (!proto.ok()) return make_error(what + proto.error());
      sp.protocol = *proto;
      auto port = port_at(p, "port", field, true);
      if (!port.ok()) return make_error(what + port.error());
      sp.port = *port;
      s.ports.push_back(sp);
    }
  }

  auto itp = string_at(object, {"spec", "internalTrafficPolicy"}, "spec.internalTrafficPolicy");
  if (!itp.ok()) return make_error(what + itp.error());
  if (!itp->empty() && *itp != "Cluster" && *itp != "Local") {
    return make_error(what + "spec.internalTrafficPolicy: must be Cluster or Local, got '" + *itp + "'");
  }
  s.internal_traffic_local = *itp == "Local";
  auto affinity = string_at(object, {"spec", "sessionAffinity"}, "spec.sessionAffinity");
  if (!affinity.ok()) return make_error(what + affinity.error());
  if (!affinity->empty() && *affinity != "None" && *affinity != "ClientIP") {
    return make_error(what + "spec.sessionAffinity: must be None or ClientIP, got '" + *affinity + "'");
  }
  s.affinity_client_ip = *affinity == "ClientIP";
  if (const json* t = path(object, {"spec", "sessionAffinityConfig", "clientIP", "timeoutSeconds"});
      t && !t->is_null()) {
    if (!t->is_number_integer() || t->get<int64_t>() < 1 || t->get<int64_t>() > 86400) {
      return make_error(what + "spec.sessionAffinityConfig.clientIP.timeoutSeconds: must be 1..86400, got " +
                        t->dump());
    }
    s.affinity_timeout_s = static_cast<uint32_t>(t->get<int64_t>());
  }
  return s;
}

Result<EndpointSliceObject> parse_endpoint_slice(const json& object) {
  auto n = named(object, "EndpointSlice");
  if (!n.ok()) return make_error(n.error());
  EndpointSliceObject e;
  e.ns = n->ns;
  e.name = n->name;
  const std::string& what = n->what;
  auto rv = string_at(object, {"metadata", "resourceVersion"}, "metadata.resourceVersion");
  if (!rv.ok()) return make_error(what + rv.error());
  e.resource_version = *rv;
  e.service = label(object, kServiceNameLabel);
  auto type = string_at(object, {"addressType"}, "addressType");
  if (!type.ok()) return make_error(what + type.error());
  if (*type == "IPv4") {
    e.family = 4;
  } else if (*type == "IPv6") {
    e.family = 6;
  } else if (*type == "FQDN") {
    e.family = 0;
  } else {
    return make_error(what + "addressType: must be IPv4, IPv6 or FQDN, got '" + *type + "'");
  }

  if (const json* ports = path(object, {"ports"}); ports && !ports->is_null()) {
    if (!ports->is_array()) return make_error(what + "ports: must be a list");
    for (size_t i = 0; i < ports->size(); ++i) {
      const std::string field = "ports[" + std::to_string(i) + "]";
      const json& p = (*ports)[i];
      if (!p.is_object()) return make_error(what + field + ": must be a map");
      EndpointPort ep;
      auto name = string_at(p, {"name"}, field + ".name");
      if (!name.ok()) return make_error(what + name.error());
      ep.name = *name;
      auto proto = protocol_at(p, field);
      if (!proto.ok()) return make_error(what + proto.error());
      ep.protocol = *proto;
      auto port = port_at(p, "port", field, false);  // unset: all ports (not load balanced)
      if (!port.ok()) return make_error(what + port.error());
      ep.port = *port;
      e.ports.push_back(ep);
    }
  }

  if (const json* eps = path(object, {"endpoints"}); eps && !eps->is_null()) {
    if (!eps->is_array()) return make_error(what + "endpoints: must be a list");
    for (size_t i = 0; i < eps->size(); ++i) {
      const std::string field = "endpoints[" + std::to_string(i) + "]";
      const json& j = (*eps)[i];
      if (!j.is_object()) return make_error(what + field + ": must be a map");
      Endpoint ep;
      const json* addrs = path(j, {"addresses"});
      if (!addrs || !addrs->is_array()) return make_error(what + field + ".addresses: must be a list");
      for (size_t a = 0; a < addrs->size(); ++a) {
        const std::string af = field + ".addresses[" + std::to_string(a) + "]";
        if (!(*addrs)[a].is_string()) return make_error(what + af + ": must be a string");
        if (e.family == 0) continue;  // FQDN: names, not load balanced
        const std::string text = (*addrs)[a].get<std::string>();
        auto ip = dp::parse_ip_address(text);
        if (!ip || ip->family != e.family) {
          return make_error(what + af + ": not an IPv" + std::to_string(e.family) + " address: '" + text + "'");
        }
        ep.addresses.push_back(*ip);
      }
      auto ready = bool_at(j, {"conditions", "ready"}, field + ".conditions.ready", true);
      if (!ready.ok()) return make_error(what + ready.error());
      ep.ready = *ready;
      auto serving = bool_at(j, {"conditions", "serving"}, field + ".conditions.serving", ep.ready);
      if (!serving.ok()) return make_error(what + serving.error());
      ep.serving = *serving;
      auto terminating = bool_at(j, {"conditions", "terminating"}, field + ".conditions.terminating", false);
      if (!terminating.ok()) return make_error(what + terminating.error());
      ep.terminating = *terminating;
      auto node = string_at(j, {"nodeName"}, field + ".nodeName");
      if (!node.ok()) return make_error(what + node.error());
      ep.node_name = *node;
      if (const json* ref = path(j, {"targetRef"}); ref && !ref->is_null()) {
        if (!ref->is_object()) return make_error(what + field + ".targetRef: must be a map");
        auto ref_name = string_at(*ref, {"name"}, field + ".targetRef.name");
        if (!ref_name.ok()) return make_error(what + ref_name.error());
        auto ref_ns = string_at(*ref, {"namespace"}, field + ".targetRef.namespace");
        if (!ref_ns.ok()) return make_error(what + ref_ns.error());
        if (!ref_name->empty()) ep.target = (ref_ns->empty() ? e.ns : *ref_ns) + "/" + *ref_name;
      }
      e.endpoints.push_back(std::move(ep));
    }
  }
  return e;
}

Result<IpAddress> fabric_address(const NodeObject& n, uint8_t family) {
  if (auto a = n.annotations.find(kTunnelAddressAnnotation); a != n.annotations.end()) {
    auto ip = dp::parse_ip_address(a->second);
    if (!ip) return make_error(std::string(kTunnelAddressAnnotation) + ": not an IP address: '" + a->second + "'");
    if (ip->family != family) {
      return make_error(std::string(kTunnelAddressAnnotation) + ": " + a->second + " is IPv" +
                        std::to_string(ip->family) + ", the fabric IPv" + std::to_string(family));
    }
    return *ip;
  }
  for (const IpAddress& a : n.internal_ips) {
    if (a.family == family) return a;
  }
  return make_error("no InternalIP of the fabric's family (IPv" + std::to_string(family) + ") and no " +
                    kTunnelAddressAnnotation);
}

}  // namespace meshwire::control
