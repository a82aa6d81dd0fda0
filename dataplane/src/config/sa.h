// One security association of the config (peers[i].sas.outbound[j] or
// .inbound[j]) and the hex key material it carries. Key bytes never appear in
// an error message: errors say what is wrong with the text (its length, the
// position of a bad character), never what it holds. Private to
// dataplane/src/config.
#pragma once

#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <meshwire/dp/config.h>
#include <meshwire/dp/result.h>

namespace meshwire::dp {

inline constexpr uint32_t kMinSpi = 256;  // RFC 4303: 1..255 reserved by IANA, 0 local use

// Reads spi, algorithm, key or key_file and salt or salt_file. Relative
// key_file/salt_file paths resolve against base_dir (the config's folder).
// Per-SA rules only; uniqueness across SAs is the caller's.
Result<SaConfig> parse_sa(const YAML::Node& node, const std::string& path, const std::string& base_dir);

// Hex text to exactly `size` bytes. Accepts an optional 0x prefix and ':' or
// whitespace between digits. `what` ends the length error, e.g. "for
// aes-128-gcm" gives "expected 32 hex digits for aes-128-gcm, got 30".
Result<std::vector<uint8_t>> parse_hex_secret(std::string_view text, size_t size, std::string_view what);

}  // namespace meshwire::dp
