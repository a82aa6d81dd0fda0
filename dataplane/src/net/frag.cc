#include "net/frag.h"

#include <cstring>

#include "net/checksum.h"
#include "net/parse.h"

namespace meshwire::dp::net {
namespace {

constexpr uint16_t kMoreFragments = 0x2000;
constexpr uint16_t kOffsetMask = 0x1FFF;

struct Layout {
  size_t header_len;  // of the original (and of the first fragment)
  size_t total_len;   // the IPv4 total length
  size_t chunk;       // payload bytes per fragment, a multiple of 8
};

bool layout(const uint8_t* ip, size_t len, size_t max_len, Layout* l) {
  if (len < 20 || (ip[0] >> 4) != 4) return false;
  l->header_len = static_cast<size_t>(ip[0] & 0x0F) * 4;
  l->total_len = load_be16(ip + 2);
  if (l->header_len < 20 || l->total_len < l->header_len || l->total_len > len) return false;
  // Later fragments' headers are never longer than the first's, so sizing
  // every chunk by the first header keeps all of them within max_len.
  if (max_len < l->header_len + 8) return false;
  l->chunk = (max_len - l->header_len) & ~size_t{7};
  return true;
}

// The options of a non-first fragment: those with the copied flag (RFC 791).
size_t copied_options(const uint8_t* opts, size_t len, uint8_t* out) {
  size_t n = 0;
  for (size_t i = 0; i < len;) {
    const uint8_t type = opts[i];
    if (type == 0) break;  // end of options
    if (type == 1) {       // no-operation
      ++i;
      continue;
    }
    if (i + 1 >= len || opts[i + 1] < 2 || i + opts[i + 1] > len) break;  // malformed: stop copying
    const size_t olen = opts[i + 1];
    if (type & 0x80) {
      std::memcpy(out + n, opts + i, olen);
      n += olen;
    }
    i += olen;
  }
  while (n % 4 != 0) out[n++] = 0;
  return n;
}

}  // namespace

size_t ipv4_fragment_count(const uint8_t* ip, size_t len, size_t max_len) {
  Layout l;
  if (!layout(ip, len, max_len, &l)) return 0;
  if (l.total_len <= max_len) return 1;
  const size_t payload = l.total_len - l.header_len;
  return (payload + l.chunk - 1) / l.chunk;
}

size_t ipv4_build_fragment(const uint8_t* ip, size_t len, size_t max_len, size_t k, uint8_t* out, size_t cap) {
  Layout l;
  if (!layout(ip, len, max_len, &l)) return 0;
  const size_t payload = l.total_len - l.header_len;
  const size_t count = l.total_len <= max_len ? 1 : (payload + l.chunk - 1) / l.chunk;
  if (k >= count) return 0;
  const size_t begin = k * l.chunk;
  const size_t size = begin + l.chunk < payload ? l.chunk : payload - begin;

  uint8_t header[60];
  size_t header_len = 20;
  std::memcpy(header, ip, 20);
  if (k == 0) {
    std::memcpy(header + 20, ip + 20, l.header_len - 20);
    header_len = l.header_len;
  } else {
    header_len += copied_options(ip + 20, l.header_len - 20, header + 20);
  }
  if (header_len + size > cap) return 0;

  const uint16_t frag = load_be16(ip + 6);
  const size_t offset = static_cast<size_t>(frag & kOffsetMask) * 8 + begin;
  if (offset / 8 > kOffsetMask) return 0;  // past the largest offset IPv4 can carry
  const bool more = k + 1 < count || (frag & kMoreFragments);
  header[0] = static_cast<uint8_t>(0x40 | (header_len / 4));
  store_be16(header + 2, static_cast<uint16_t>(header_len + size));
  store_be16(header + 6, static_cast<uint16_t>((frag & 0x4000) | (more ? kMoreFragments : 0) | (offset / 8)));
  header[10] = header[11] = 0;
  store_be16(header + 10, ipv4_header_checksum(header, header_len));
  std::memcpy(out, header, header_len);
  std::memcpy(out + header_len, ip + l.header_len + begin, size);
  return header_len + size;
}

}  // namespace meshwire::dp::net
