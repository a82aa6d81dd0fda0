#include "config/sa.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>

#include "config/yaml_fields.h"

namespace meshwire::dp {
namespace {

constexpr size_t kSaltSize = 4;       // RFC 4106 salt
constexpr size_t kMaxKeyFileSize = 4096;

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool is_blank(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

std::string_view algorithm_name(AeadAlgorithm algorithm) {
  return algorithm == AeadAlgorithm::kAes256Gcm ? "aes-256-gcm" : "aes-128-gcm";
}

size_t key_size(AeadAlgorithm algorithm) { return algorithm == AeadAlgorithm::kAes256Gcm ? 32 : 16; }

// Reads a small text file whole. The error names the resolved path and the
// reason; the caller puts the field path in front.
Result<std::string> read_secret_file(const std::filesystem::path& path) {
  const std::unique_ptr<FILE, int (*)(FILE*)> file(std::fopen(path.c_str(), "rb"), &std::fclose);
  if (!file) return make_error("cannot read " + path.string() + ": " + std::strerror(errno));
  std::string text(kMaxKeyFileSize + 1, '\0');
  const size_t n = std::fread(text.data(), 1, text.size(), file.get());
  if (std::ferror(file.get())) return make_error("cannot read " + path.string() + ": " + std::strerror(errno));
  if (n > kMaxKeyFileSize) {
    return make_error(path.string() + ": larger than " + std::to_string(kMaxKeyFileSize) +
                      " bytes, not a key file");
  }
  text.resize(n);
  return text;
}

// The bytes of `field` (inline hex) or `field`_file (a file holding the hex):
// exactly one of the two must be present.
Result<std::vector<uint8_t>> read_secret(const FieldMap& sa, std::string_view field,
                                         std::string_view file_field, size_t size,
                                         std::string_view what, const std::string& base_dir) {
  const bool inline_given = sa.has(field);
  const bool file_given = sa.has(file_field);
  if (inline_given == file_given) {
    return field_error(sa.path(), "needs exactly one of " + std::string(field) + " and " +
                                      std::string(file_field));
  }
  if (inline_given) {
    const std::string path = sa.path(field);
    auto text = read_string(sa.get(field), path);
    if (!text) return make_error(text.error());
    auto bytes = parse_hex_secret(*text, size, what);
    if (!bytes) return field_error(path, bytes.error());
    return bytes;
  }
  const std::string path = sa.path(file_field);
  auto name = read_string(sa.get(file_field), path);
  if (!name) return make_error(name.error());
  if (name->empty()) return field_error(path, "must not be empty");
  std::filesystem::path file(*name);
  if (file.is_relative() && !base_dir.empty()) file = std::filesystem::path(base_dir) / file;
  auto text = read_secret_file(file);
  if (!text) return field_error(path, text.error());
  auto bytes = parse_hex_secret(*text, size, what);
  if (!bytes) return field_error(path, file.string() + ": " + bytes.error());
  return bytes;
}

}  // namespace

Result<std::vector<uint8_t>> parse_hex_secret(std::string_view text, size_t size, std::string_view what) {
  size_t start = 0;
  while (start < text.size() && is_blank(text[start])) ++start;
  if (text.size() - start >= 2 && text[start] == '0' && (text[start + 1] == 'x' || text[start + 1] == 'X')) {
    start += 2;
  }

  std::vector<uint8_t> bytes;
  bytes.reserve(size);
  size_t digits = 0;
  int high = 0;
  for (size_t i = start; i < text.size(); ++i) {
    const char c = text[i];
    if (c == ':' || is_blank(c)) continue;
    const int value = hex_value(c);
    if (value < 0) {
      return make_error("character " + std::to_string(i + 1) +
                        " is not a hex digit (allowed: 0-9 a-f A-F, ':' and blanks)");
    }
    if (digits % 2 == 0) {
      high = value;
    } else if (bytes.size() < size) {
      bytes.push_back(static_cast<uint8_t>(high << 4 | value));
    }
    ++digits;
  }
  if (digits != size * 2) {
    // Appended piecewise: g++ 12 -O3 warns falsely (-Wrestrict) on
    // "literal" + std::string&& here.
    std::string message = "expected ";
    message += std::to_string(size * 2);
    message += " hex digits";
    if (!what.empty()) message.append(" ").append(what);
    message += ", got ";
    message += std::to_string(digits);
    return make_error(std::move(message));
  }
  return bytes;
}

Result<SaConfig> parse_sa(const YAML::Node& node, const std::string& path, const std::string& base_dir) {
  auto sa = FieldMap::open(node, path, {"spi", "algorithm", "key", "key_file", "salt", "salt_file"});
  if (!sa) return make_error(sa.error());

  SaConfig config;
  if (!sa->has("spi")) return sa->missing("spi");
  auto spi = read_uint(sa->get("spi"), sa->path("spi"));
  if (!spi) return make_error(spi.error());
  if (*spi < kMinSpi || *spi > UINT32_MAX) {
    return field_error(sa->path("spi"), "must be 256..0xffffffff (0..255 are reserved), got " +
                                            sa->get("spi").Scalar());
  }
  config.spi = static_cast<uint32_t>(*spi);

  if (sa->has("algorithm")) {
    auto name = read_string(sa->get("algorithm"), sa->path("algorithm"));
    if (!name) return make_error(name.error());
    if (*name == "aes-128-gcm") {
      config.algorithm = AeadAlgorithm::kAes128Gcm;
    } else if (*name == "aes-256-gcm") {
      config.algorithm = AeadAlgorithm::kAes256Gcm;
    } else {
      return field_error(sa->path("algorithm"), "must be aes-128-gcm or aes-256-gcm, got '" + *name + "'");
    }
  }

  const std::string for_algorithm = "for " + std::string(algorithm_name(config.algorithm));
  auto key = read_secret(*sa, "key", "key_file", key_size(config.algorithm), for_algorithm, base_dir);
  if (!key) return make_error(key.error());
  config.key = std::move(*key);

  auto salt = read_secret(*sa, "salt", "salt_file", kSaltSize, "", base_dir);
  if (!salt) return make_error(salt.error());
  std::copy(salt->begin(), salt->end(), config.salt.begin());
  return config;
}

}  // namespace meshwire::dp
