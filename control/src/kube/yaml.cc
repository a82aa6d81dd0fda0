#include "kube/yaml.h"

#include <cctype>
#include <cerrno>
#include <cstdlib>

#include <yaml-cpp/yaml.h>

namespace meshwire::control {
namespace {

using nlohmann::json;

json to_json(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Null:
    case YAML::NodeType::Undefined: return nullptr;
    case YAML::NodeType::Sequence: {
      json a = json::array();
      for (const auto& item : node) a.push_back(to_json(item));
      return a;
    }
    case YAML::NodeType::Map: {
      json o = json::object();
      for (const auto& kv : node) o[kv.first.as<std::string>()] = to_json(kv.second);
      return o;
    }
    case YAML::NodeType::Scalar: break;
  }
  const std::string& s = node.Scalar();
  if (node.Tag() == "!") return s;  // quoted
  if (s == "null" || s == "~" || s.empty()) return nullptr;
  if (s == "true") return true;
  if (s == "false") return false;
  if (std::isdigit(static_cast<unsigned char>(s[0])) || s[0] == '-') {
    char* end = nullptr;
    errno = 0;
    const long long v = std::strtoll(s.c_str(), &end, 10);
    if (*end == '\0' && errno == 0) return v;
    const double d = std::strtod(s.c_str(), &end);
    if (*end == '\0') return d;
  }
  return s;
}

}  // namespace

dp::Result<std::vector<json>> parse_yaml_documents(const std::string& text) {
  std::vector<json> docs;
  try {
    for (const YAML::Node& d : YAML::LoadAll(text)) docs.push_back(to_json(d));
  } catch (const YAML::Exception& e) {
    return dp::make_error("yaml: line " + std::to_string(e.mark.line + 1) + ": " + e.msg);
  }
  return docs;
}

}  // namespace meshwire::control
