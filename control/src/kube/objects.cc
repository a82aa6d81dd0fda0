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

  std::vector<std::string> cidrs;
  if (const json* list = path(object, {"spec", "podCIDRs"}); list && !list->is_null()) {
    if (!list->is_array()) return make_error(what + "spec.podCIDRs: must be a list");
    for (size_t i = 0; i < list->size(); ++i) {
      if (!(*list)[i].is_string()) return make_error(what + "spec.podCIDRs[" + std::to_string(i) + "]: must be a string");
      cidrs.push_back((*list)[i].get<std::string>());
    }
  } else {
    auto one = string_at(object, {"spec", "podCIDR"}, "spec.podCIDR");
    if (!one.ok()) return make_error(what + one.error());
    if (!one->empty()) cidrs.push_back(*one);
  }
  for (size_t i = 0; i < cidrs.size(); ++i) {
    auto p = dp::parse_ip_prefix(cidrs[i]);
    if (!p.ok()) return make_error(what + "spec.podCIDRs[" + std::to_string(i) + "]: " + p.error());
    n.pod_cidrs.push_back(*p);
  }
  return n;
}

}  // namespace meshwire::control
