// Text <-> IpAddress/IpPrefix. inet_pton/inet_ntop do the address syntax, so
// what we accept is exactly what the C library accepts (no zone ids, no
// leading/trailing blanks, no shortened IPv4 like "10.1").
#include <cstring>
#include <arpa/inet.h>

#include <charconv>
#include <string>

#include <meshwire/dp/config.h>

namespace meshwire::dp {

std::optional<IpAddress> parse_ip_address(std::string_view text) {
  // inet_pton wants a NUL-terminated string; the longest valid text is
  // INET6_ADDRSTRLEN - 1 characters, so anything longer cannot be an address.
  if (text.empty() || text.size() >= INET6_ADDRSTRLEN) return std::nullopt;
  const std::string cstr(text);
  IpAddress address;
  if (inet_pton(AF_INET, cstr.c_str(), address.bytes.data()) == 1) {
    address.family = 4;
    return address;
  }
  if (inet_pton(AF_INET6, cstr.c_str(), address.bytes.data()) == 1) {
    address.family = 6;
    return address;
  }
  return std::nullopt;
}

Result<IpPrefix> parse_ip_prefix(std::string_view text) {
  const size_t slash = text.find('/');
  if (slash == std::string_view::npos) {
    return make_error("expected address/length, got '" + std::string(text) + "'");
  }
  const std::string_view address_text = text.substr(0, slash);
  const std::string_view length_text = text.substr(slash + 1);

  const std::optional<IpAddress> address = parse_ip_address(address_text);
  if (!address) return make_error("not an IP address: '" + std::string(address_text) + "'");

  const unsigned max_length = address->is_v4() ? 32 : 128;
  unsigned length = 0;
  const char* first = length_text.data();
  const char* last = first + length_text.size();
  const auto [end, ec] = std::from_chars(first, last, length);
  if (length_text.empty() || ec != std::errc() || end != last || length > max_length) {
    return make_error("prefix length must be 0.." + std::to_string(max_length) + ", got '" +
                      std::string(length_text) + "'");
  }

  IpPrefix prefix{*address, static_cast<uint8_t>(length)};
  const unsigned total_bytes = address->is_v4() ? 4 : 16;
  for (unsigned i = 0; i < total_bytes; ++i) {
    const unsigned bit = i * 8;
    uint8_t mask = 0xff;  // bits of this byte that must be zero
    if (bit + 8 <= length) {
      mask = 0;
    } else if (bit < length) {
      mask = static_cast<uint8_t>(0xff >> (length - bit));
    }
    prefix.address.bytes[i] &= static_cast<uint8_t>(~mask);
  }
  if (prefix.address != *address) {
    return make_error("host bits set in " + std::string(text) + " (did you mean " +
                      format_prefix(prefix) + "?)");
  }
  return prefix;
}

std::string format_ip(const IpAddress& address) {
  char buf[INET6_ADDRSTRLEN] = {};
  const int af = address.is_v4() ? AF_INET : address.is_v6() ? AF_INET6 : AF_UNSPEC;
  if (af == AF_UNSPEC || inet_ntop(af, address.bytes.data(), buf, sizeof(buf)) == nullptr) {
    return "(none)";
  }
  return buf;
}

std::string format_prefix(const IpPrefix& prefix) {
  return format_ip(prefix.address) + "/" + std::to_string(prefix.length);
}

std::string format_endpoint(uint8_t family, const uint8_t* addr, uint16_t port) {
  IpAddress a;
  a.family = family;
  std::memcpy(a.bytes.data(), addr, family == 6 ? 16 : 4);
  const std::string ip = format_ip(a);
  return (family == 6 ? "[" + ip + "]" : ip) + ":" + std::to_string(port);
}

}  // namespace meshwire::dp
