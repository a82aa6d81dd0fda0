#include "config/yaml_fields.h"

#include <algorithm>
#include <charconv>
#include <set>

namespace meshwire::dp {
namespace {

const char* kind_name(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Sequence: return "a list";
    case YAML::NodeType::Map: return "a mapping";
    case YAML::NodeType::Scalar: return "a scalar";
    default: return "an empty value";
  }
}

size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

}  // namespace

std::string field_path(const std::string& parent, std::string_view field) {
  if (parent.empty()) return std::string(field);
  return parent + "." + std::string(field);
}

std::string index_path(const std::string& parent, size_t index) {
  return parent + "[" + std::to_string(index) + "]";
}

Error field_error(const std::string& path, std::string_view message) {
  return make_error((path.empty() ? std::string("config") : path) + ": " + std::string(message));
}

std::string_view closest_match(std::string_view word,
                               std::initializer_list<std::string_view> candidates) {
  std::string_view best;
  size_t best_distance = 3;  // suggest only within two edits
  for (std::string_view candidate : candidates) {
    const size_t distance = edit_distance(word, candidate);
    if (distance < best_distance && distance < candidate.size()) {
      best = candidate;
      best_distance = distance;
    }
  }
  return best;
}

Result<FieldMap> FieldMap::open(const YAML::Node& node, const std::string& path,
                                std::initializer_list<std::string_view> known) {
  if (!node.IsMap()) {
    return field_error(path, std::string("expected a mapping of fields, got ") + kind_name(node));
  }
  std::set<std::string, std::less<>> seen;
  for (const auto& entry : node) {
    if (!entry.first.IsScalar()) return field_error(path, "field names must be plain strings");
    const std::string& name = entry.first.Scalar();
    if (std::find(known.begin(), known.end(), name) == known.end()) {
      std::string message = "unknown field";
      if (const std::string_view hint = closest_match(name, known); !hint.empty()) {
        message += " (did you mean " + std::string(hint) + "?)";
      }
      return field_error(field_path(path, name), message);
    }
    if (!seen.insert(name).second) return field_error(field_path(path, name), "field given twice");
  }
  return FieldMap(node, path);
}

bool FieldMap::has(std::string_view field) const {
  const YAML::Node value = get(field);
  return value.IsDefined() && !value.IsNull();
}

YAML::Node FieldMap::get(std::string_view field) const {
  // Through a const node: operator[] on a mutable one would insert the key.
  const YAML::Node& node = node_;
  return node[std::string(field)];
}

Error FieldMap::missing(std::string_view field) const {
  return field_error(path(field), "required field missing");
}

Result<std::string> read_string(const YAML::Node& node, const std::string& path) {
  if (!node.IsScalar()) return field_error(path, std::string("expected a string, got ") + kind_name(node));
  return node.Scalar();
}

Result<uint64_t> read_uint(const YAML::Node& node, const std::string& path) {
  if (!node.IsScalar()) {
    return field_error(path, std::string("expected an integer, got ") + kind_name(node));
  }
  const std::string& text = node.Scalar();
  std::string_view digits = text;
  int base = 10;
  if (digits.size() > 2 && digits[0] == '0' && (digits[1] == 'x' || digits[1] == 'X')) {
    digits.remove_prefix(2);
    base = 16;
  }
  uint64_t value = 0;
  const char* last = digits.data() + digits.size();
  const auto [end, ec] = std::from_chars(digits.data(), last, value, base);
  if (ec == std::errc::result_out_of_range) return field_error(path, "integer too large: " + text);
  if (digits.empty() || ec != std::errc() || end != last) {
    return field_error(path, "expected an integer, got '" + text + "'");
  }
  return value;
}

Result<std::vector<YAML::Node>> read_sequence(const YAML::Node& node, const std::string& path,
                                              size_t min_items) {
  if (!node.IsSequence()) return field_error(path, std::string("expected a list, got ") + kind_name(node));
  std::vector<YAML::Node> items(node.begin(), node.end());
  if (items.size() < min_items) {
    return field_error(path, "needs at least " + std::to_string(min_items) +
                                 (min_items == 1 ? " entry" : " entries") + ", got " +
                                 std::to_string(items.size()));
  }
  return items;
}

}  // namespace meshwire::dp
