#include "net/checksum.h"

#include "net/parse.h"

namespace meshwire::dp::net {

uint64_t checksum_partial(const uint8_t* data, size_t len, uint64_t sum) {
  // Summing 32-bit big-endian words is the 16-bit sum modulo 0xFFFF, since
  // 2^16 == 1 (mod 0xFFFF); the 64-bit accumulator cannot overflow for any
  // buffer that fits in memory.
  while (len >= 8) {
    sum += load_be32(data);
    sum += load_be32(data + 4);
    data += 8;
    len -= 8;
  }
  if (len >= 4) {
    sum += load_be32(data);
    data += 4;
    len -= 4;
  }
  if (len >= 2) {
    sum += load_be16(data);
    data += 2;
    len -= 2;
  }
  if (len != 0) sum += static_cast<uint32_t>(data[0]) << 8;
  return sum;
}

uint16_t checksum_fold(uint64_t sum) {
  while ((sum >> 16) != 0) sum = (sum & 0xFFFF) + (sum >> 16);
  return static_cast<uint16_t>(~sum);
}

uint16_t internet_checksum(const uint8_t* data, size_t len) {
  return checksum_fold(checksum_partial(data, len, 0));
}

uint16_t ipv4_header_checksum(const uint8_t* hdr, size_t len) { return internet_checksum(hdr, len); }

uint16_t l4_checksum_v4(const uint8_t* ip_hdr, const uint8_t* l4, size_t l4_len, uint8_t proto) {
  uint64_t sum = checksum_partial(ip_hdr + 12, 8, 0);  // source and destination
  sum += proto;
  sum += l4_len;
  return checksum_fold(checksum_partial(l4, l4_len, sum));
}

uint16_t l4_checksum_v6(const uint8_t* ip6_hdr, const uint8_t* l4, size_t l4_len, uint8_t proto) {
  uint64_t sum = checksum_partial(ip6_hdr + 8, 32, 0);
  sum += proto;
  sum += l4_len;  // 32-bit upper-layer length: congruent to its two 16-bit halves
  return checksum_fold(checksum_partial(l4, l4_len, sum));
}

bool ip_decrement_ttl(uint8_t* ip_packet, size_t len) {
  if (ip_packet == nullptr || len < 1) return false;
  const size_t need = (ip_packet[0] >> 4) == 6 ? kIpv6HdrLen : kIpv4HdrLen;
  if (len < need) return false;
  return ip_decrement_ttl(ip_packet);
}

}  // namespace meshwire::dp::net
