// Shared by the config tests: a minimal valid config and a way to parse a
// variant of it. A variant is a function that edits the YAML tree, so each
// table row states only what it changes.
#pragma once

#include <yaml-cpp/yaml.h>

#include <functional>
#include <string>
#include <string_view>

#include <meshwire/dp/config.h>

namespace meshwire::dp {

inline constexpr std::string_view kKey1 = "0f1e2d3c4b5a69788796a5b4c3d2e1f0";
inline constexpr std::string_view kKey2 = "a1a2a3a4a5a6a7a8a9aaabacadaeafb0";
inline constexpr std::string_view kSalt1 = "c0ffee01";
inline constexpr std::string_view kSalt2 = "c0ffee02";

// One local port, one uplink, one peer with one SA each way; IPv4 only.
inline constexpr std::string_view kMinimal = R"(
node:
  tunnel_address: 192.0.2.1
  pod_cidrs: [10.11.0.0/24]
ports:
  - name: pods
    device: net_af_packet0,iface=n1-pods
    role: local
  - name: fabric
    device: net_af_packet1,iface=n1-fabric
    role: uplink
peers:
  - name: node2
    tunnel_address: 192.0.2.2
    pod_cidrs: [10.12.0.0/24]
    sas:
      outbound:
        - spi: 0x1001
          key: 0f1e2d3c4b5a69788796a5b4c3d2e1f0
          salt: c0ffee01
      inbound:
        - spi: 0x2001
          key: a1a2a3a4a5a6a7a8a9aaabacadaeafb0
          salt: c0ffee02
)";

using Edit = std::function<void(YAML::Node&)>;

// kMinimal with `edit` applied, emitted and parsed again.
inline Result<Config> parse_edited(const Edit& edit, const std::string& base_dir = "") {
  YAML::Node doc = YAML::Load(std::string(kMinimal));
  edit(doc);
  return parse_config(YAML::Dump(doc), base_dir);
}

inline bool starts_with(const std::string& text, std::string_view prefix) {
  return std::string_view(text).substr(0, prefix.size()) == prefix;
}

}  // namespace meshwire::dp
