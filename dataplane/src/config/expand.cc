#include "config/expand.h"

#include <algorithm>

#include "config/yaml_fields.h"

namespace meshwire::dp {
namespace {

bool is_name_start(char c) { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_'; }
bool is_name_char(char c) { return is_name_start(c) || (c >= '0' && c <= '9'); }

Status expand_node(YAML::Node node, const std::string& path, const Environment& env) {
  switch (node.Type()) {
    case YAML::NodeType::Scalar: {
      const std::string& text = node.Scalar();
      if (text.find('$') == std::string::npos) return Ok{};
      auto expanded = expand_variables(text, env, path);
      if (!expanded) return make_error(expanded.error());
      node = *expanded;
      return Ok{};
    }
    case YAML::NodeType::Sequence: {
      size_t i = 0;
      for (YAML::Node item : node) {
        if (auto s = expand_node(item, index_path(path, i++), env); !s) return s;
      }
      return Ok{};
    }
    case YAML::NodeType::Map:
      for (auto entry : node) {
        // A non-scalar key is reported by the reader (FieldMap::open).
        const std::string key = entry.first.IsScalar() ? entry.first.Scalar() : "?";
        if (auto s = expand_node(entry.second, field_path(path, key), env); !s) return s;
      }
      return Ok{};
    default:
      return Ok{};
  }
}

}  // namespace

Result<std::string> expand_variables(std::string_view text, const Environment& env, const std::string& path) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c != '$' || i + 1 == text.size()) {
      out += c;
      continue;
    }
    if (text[i + 1] == '$') {  // $$: a literal $
      out += '$';
      ++i;
      continue;
    }
    if (text[i + 1] != '{') {
      out += c;
      continue;
    }
    const size_t close = text.find('}', i + 2);
    if (close == std::string_view::npos) {
      return field_error(path, "'${' at character " + std::to_string(i + 1) +
                                   " has no closing '}' (write $$ for a literal $)");
    }
    const std::string_view name = text.substr(i + 2, close - i - 2);
    if (name.empty() || !is_name_start(name[0]) ||
        !std::all_of(name.begin(), name.end(), [](char n) { return is_name_char(n); })) {
      return field_error(path, "'${" + std::string(name) +
                                   "}' is not a variable name (letters, digits and _, not starting with a digit)");
    }
    const auto it = env.find(std::string(name));
    if (it == env.end()) return field_error(path, "environment variable " + std::string(name) + " is not set");
    if (it->second.empty()) return field_error(path, "environment variable " + std::string(name) + " is empty");
    out += it->second;
    i = close;
  }
  return out;
}

Status expand_tree(YAML::Node root, const Environment& env) { return expand_node(root, "", env); }

}  // namespace meshwire::dp
