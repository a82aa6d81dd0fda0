// Path-aware readers over yaml-cpp nodes for the config parser. Every error
// they return begins with the full field path ("ports[1].mtu: ..."). They
// never throw on their own; yaml-cpp may, so callers sit under parse_config's
// try/catch. Private to dataplane/src/config.
#pragma once

#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <meshwire/dp/result.h>

namespace meshwire::dp {

// "peers" + "name" -> "peers.name"; "" + "workers" -> "workers".
std::string field_path(const std::string& parent, std::string_view field);
// "ports" + 2 -> "ports[2]".
std::string index_path(const std::string& parent, size_t index);
// "<path>: <message>"; the root path "" is shown as "config".
Error field_error(const std::string& path, std::string_view message);
// The candidate closest to `word` within two edits, or "" when none is.
std::string_view closest_match(std::string_view word, std::initializer_list<std::string_view> candidates);

// One YAML mapping whose keys have been checked against the schema: open()
// fails on a non-mapping, a key outside `known` (with a did-you-mean) or a
// repeated key. A key set to null (`workers:` or `workers: ~`) counts as absent.
class FieldMap {
 public:
  static Result<FieldMap> open(const YAML::Node& node, const std::string& path,
                               std::initializer_list<std::string_view> known);

  bool has(std::string_view field) const;
  // The node of `field`; undefined (test with has()) when absent.
  YAML::Node get(std::string_view field) const;
  std::string path(std::string_view field) const { return field_path(path_, field); }
  const std::string& path() const { return path_; }
  // "<path>.<field>: required field missing"
  Error missing(std::string_view field) const;

 private:
  FieldMap(YAML::Node node, std::string path) : node_(std::move(node)), path_(std::move(path)) {}

  YAML::Node node_;
  std::string path_;
};

// A scalar's text. Quoted or not, YAML scalars are text to yaml-cpp.
Result<std::string> read_string(const YAML::Node& node, const std::string& path);
// A non-negative integer: decimal ("4097") or hexadecimal ("0x1001"); no
// octal guessing, no sign, no blanks. Range checks are the caller's.
Result<uint64_t> read_uint(const YAML::Node& node, const std::string& path);
// The items of a sequence, failing when it has fewer than min_items.
Result<std::vector<YAML::Node>> read_sequence(const YAML::Node& node, const std::string& path,
                                              size_t min_items);

}  // namespace meshwire::dp
