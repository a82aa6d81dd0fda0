#include "config/pod_devices.h"

#include <algorithm>
#include <cctype>

#include <nlohmann/json.hpp>

namespace meshwire::dp {
namespace {

bool is_hex_digits(std::string_view text) {
  return !text.empty() && std::all_of(text.begin(), text.end(), [](char c) { return std::isxdigit(static_cast<unsigned char>(c)); });
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  return std::tolower(static_cast<unsigned char>(c)) - 'a' + 10;
}

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xc0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xe0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  } else {
    out += static_cast<char>(0xf0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3f));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  }
}

std::string upper_with_underscores(std::string_view text, std::string_view replaced) {
  std::string out(text);
  for (char& c : out) {
    if (replaced.find(c) != std::string_view::npos) c = '_';
    c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  }
  return out;
}

}  // namespace

std::vector<std::string> sriov_variables(std::string_view resource) {
  // The resource is "prefix/name"; the plugin joins prefix and name with '_'.
  std::string joined(resource);
  std::replace(joined.begin(), joined.end(), '/', '_');
  std::vector<std::string> names{"PCIDEVICE_" + upper_with_underscores(joined, ".")};
  if (joined.find('-') != std::string::npos) names.push_back("PCIDEVICE_" + upper_with_underscores(joined, ".-"));
  return names;
}

std::optional<std::string> canonical_pci_address(std::string_view text) {
  // dddd:bb:dd.f
  if (text.size() != 12 || text[4] != ':' || text[7] != ':' || text[10] != '.') return std::nullopt;
  if (!is_hex_digits(text.substr(0, 4)) || !is_hex_digits(text.substr(5, 2)) || !is_hex_digits(text.substr(8, 2))) {
    return std::nullopt;
  }
  if (text[11] < '0' || text[11] > '7') return std::nullopt;
  std::string out(text);
  std::transform(out.begin(), out.end(), out.begin(), [](char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

std::optional<std::string> unquote_go_string(std::string_view q) {
  if (q.size() < 2 || q.front() != '"' || q.back() != '"') return std::nullopt;
  q = q.substr(1, q.size() - 2);
  std::string out;
  out.reserve(q.size());
  for (size_t i = 0; i < q.size(); ++i) {
    const char c = q[i];
    if (c == '"' || c == '\n') return std::nullopt;  // unescaped: not one literal
    if (c != '\\') {
      out += c;
      continue;
    }
    if (++i == q.size()) return std::nullopt;
    const char e = q[i];
    switch (e) {
      case 'a': out += '\a'; break;
      case 'b': out += '\b'; break;
      case 'f': out += '\f'; break;
      case 'n': out += '\n'; break;
      case 'r': out += '\r'; break;
      case 't': out += '\t'; break;
      case 'v': out += '\v'; break;
      case '\\': out += '\\'; break;
      case '"': out += '"'; break;
      case '\'': out += '\''; break;
      case 'x': {
        const std::string_view digits = q.substr(i + 1, 2);
        if (digits.size() != 2 || !is_hex_digits(digits)) return std::nullopt;
        out += static_cast<char>(hex_value(digits[0]) * 16 + hex_value(digits[1]));
        i += 2;
        break;
      }
      case 'u':
      case 'U': {
        const size_t n = e == 'u' ? 4 : 8;
        const std::string_view digits = q.substr(i + 1, n);
        if (digits.size() != n || !is_hex_digits(digits)) return std::nullopt;
        uint32_t cp = 0;
        for (char d : digits) cp = cp * 16 + static_cast<uint32_t>(hex_value(d));
        if (cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return std::nullopt;
        append_utf8(out, cp);
        i += n;
        break;
      }
      default: {
        if (e < '0' || e > '7') return std::nullopt;
        const std::string_view digits = q.substr(i, 3);
        if (digits.size() != 3 || !std::all_of(digits.begin(), digits.end(), [](char d) { return d >= '0' && d <= '7'; })) {
          return std::nullopt;
        }
        const int v = (digits[0] - '0') * 64 + (digits[1] - '0') * 8 + (digits[2] - '0');
        if (v > 255) return std::nullopt;
        out += static_cast<char>(v);
        i += 2;
      }
    }
  }
  return out;
}

Result<std::map<std::string, std::string>> parse_downward_annotations(std::string_view text) {
  std::map<std::string, std::string> out;
  size_t line_no = 0;
  while (!text.empty()) {
    const size_t end = text.find('\n');
    std::string_view line = text.substr(0, end);
    text = end == std::string_view::npos ? std::string_view() : text.substr(end + 1);
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty()) continue;
    const size_t eq = line.find('=');
    if (eq == std::string_view::npos || eq == 0) {
      return make_error("line " + std::to_string(line_no) + ": expected key=\"value\"");
    }
    auto value = unquote_go_string(line.substr(eq + 1));
    if (!value) {
      return make_error("line " + std::to_string(line_no) + " (" + std::string(line.substr(0, eq)) +
                        "): the value is not a quoted string");
    }
    out[std::string(line.substr(0, eq))] = std::move(*value);
  }
  return out;
}

Result<std::vector<NetworkAttachment>> parse_network_status(std::string_view text) {
  const nlohmann::json doc = nlohmann::json::parse(text, nullptr, false);
  if (doc.is_discarded()) return make_error("not valid JSON");
  if (!doc.is_array()) return make_error("expected a JSON list of attachments");
  std::vector<NetworkAttachment> out;
  for (size_t i = 0; i < doc.size(); ++i) {
    const nlohmann::json& entry = doc[i];
    const std::string where = "entry " + std::to_string(i);
    if (!entry.is_object()) return make_error(where + ": expected an object");
    NetworkAttachment a;
    if (!entry.contains("name") || !entry["name"].is_string()) return make_error(where + ": no name");
    a.name = entry["name"].get<std::string>();
    if (entry.contains("interface") && entry["interface"].is_string()) a.interface = entry["interface"].get<std::string>();
    if (entry.contains("ips")) {
      if (!entry["ips"].is_array()) return make_error(where + " (" + a.name + "): ips is not a list");
      for (const auto& ip : entry["ips"]) {
        if (!ip.is_string()) return make_error(where + " (" + a.name + "): ips has a non-string item");
        a.ips.push_back(ip.get<std::string>());
      }
    }
    if (entry.contains("device-info")) {
      const nlohmann::json& info = entry["device-info"];
      if (!info.is_object()) return make_error(where + " (" + a.name + "): device-info is not an object");
      if (info.contains("type") && info["type"].is_string()) a.device_type = info["type"].get<std::string>();
      if (info.contains("pci") && info["pci"].is_object() && info["pci"].contains("pci-address") &&
          info["pci"]["pci-address"].is_string()) {
        a.pci_address = info["pci"]["pci-address"].get<std::string>();
      }
    }
    out.push_back(std::move(a));
  }
  return out;
}

Result<const NetworkAttachment*> find_attachment(const std::vector<NetworkAttachment>& attachments,
                                                 std::string_view name) {
  const bool qualified = name.find('/') != std::string_view::npos;
  // Appended piece by piece: GCC 12 warns (-Wrestrict, wrongly) about
  // "'" + std::string(...) here.
  std::string quoted;
  quoted.append(1, '\'').append(name).append(1, '\'');
  const NetworkAttachment* found = nullptr;
  for (const NetworkAttachment& a : attachments) {
    const std::string_view entry = a.name;
    bool match = entry == name;
    if (!qualified && !match) {
      const size_t slash = entry.rfind('/');
      match = slash != std::string_view::npos && entry.substr(slash + 1) == name;
    }
    if (!match) continue;
    if (found) {
      return make_error(quoted + " matches both " + found->name + " and " + a.name + ": write namespace/name");
    }
    found = &a;
  }
  if (found) return found;
  std::string names;
  for (const NetworkAttachment& a : attachments) names += (names.empty() ? "" : ", ") + a.name;
  return make_error("no network " + quoted + " (the pod has: " + (names.empty() ? "none" : names) + ")");
}

}  // namespace meshwire::dp
