// Internet checksum (RFC 1071) and its incremental update (RFC 1624) over
// plain bytes at any alignment. Pure functions, MT-safe.
//
// Convention, as DPDK's rte_ipv4_cksum: every function sums the bytes as they
// are, checksum field included. To fill a checksum, zero the field, compute,
// store the result; to verify, compute over the received bytes: a correct
// packet gives 0. (UDP senders must put 0xFFFF on the wire in place of a
// computed 0: RFC 768.)
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>

namespace meshwire::dp::net {

// One's complement sum of data[0..len) as big-endian 16-bit words (an odd
// last byte is padded with zero), added to sum. Not folded: the result is only
// meaningful through checksum_fold(). To checksum data in pieces, every piece
// but the last must have even length.
uint64_t checksum_partial(const uint8_t* data, size_t len, uint64_t sum);

// Folds a partial sum to 16 bits and complements it: the value for the wire.
uint16_t checksum_fold(uint64_t sum);

// checksum_fold(checksum_partial(data, len, 0)).
uint16_t internet_checksum(const uint8_t* data, size_t len);

// IPv4 header checksum over hdr[0..len) (len = IHL * 4).
uint16_t ipv4_header_checksum(const uint8_t* hdr, size_t len);

// TCP/UDP/ICMPv6-style checksum of the L4 segment l4[0..l4_len) with the
// pseudo-header built from the addresses of the IPv4 header at ip_hdr
// (bytes 12..19) and proto.
uint16_t l4_checksum_v4(const uint8_t* ip_hdr, const uint8_t* l4, size_t l4_len, uint8_t proto);

// Same with the IPv6 pseudo-header (RFC 8200 8.1) from the fixed IPv6 header
// at ip6_hdr (bytes 8..39). With a routing header the final destination would
// be needed instead; meshwire never builds or answers such packets.
uint16_t l4_checksum_v6(const uint8_t* ip6_hdr, const uint8_t* l4, size_t l4_len, uint8_t proto);

// RFC 1624 eqn. 3: the checksum after one 16-bit word at an even offset of the
// checksummed data changed from old_word to new_word. All three in the same
// byte order (e.g. as read with load_be16).
// Inline: it runs per packet on both fast paths (TTL, MSS, NAT).
inline uint16_t checksum_adjust16(uint16_t csum, uint16_t old_word, uint16_t new_word) {
  // HC' = ~(~HC + ~m + m')
  uint32_t sum = static_cast<uint16_t>(~csum);
  sum += static_cast<uint16_t>(~old_word);
  sum += new_word;
  sum = (sum & 0xFFFF) + (sum >> 16);
  sum = (sum & 0xFFFF) + (sum >> 16);
  return static_cast<uint16_t>(~sum);
}

// Decrements the IPv4 TTL (fixing the header checksum incrementally) or the
// IPv6 hop limit of the IP packet that starts at ip_packet. Returns false and
// leaves the packet unchanged if the result would be 0, or if the version is
// neither 4 nor 6. Precondition: 20 (IPv4) / 40 (IPv6) bytes are readable and
// writable at ip_packet; the overload with len checks that itself.
// The first inline: it runs once per forwarded packet on both fast paths.
inline bool ip_decrement_ttl(uint8_t* ip_packet) {
  switch (ip_packet[0] >> 4) {
    case 4: {
      if (ip_packet[8] <= 1) return false;
      ip_packet[8]--;
      // RFC 1624 on native words (the sum is byte-order blind): the word
      // TTL | protocol loses 1 in the TTL's byte, so ~m + m' is constant.
      constexpr uint32_t kNotOldPlusNew = std::endian::native == std::endian::little ? 0xFFFE : 0xFEFF;
      uint16_t csum;
      std::memcpy(&csum, ip_packet + 10, 2);
      uint32_t sum = static_cast<uint16_t>(~csum) + kNotOldPlusNew;
      sum = (sum & 0xFFFF) + (sum >> 16);
      sum = (sum & 0xFFFF) + (sum >> 16);
      csum = static_cast<uint16_t>(~sum);
      std::memcpy(ip_packet + 10, &csum, 2);
      return true;
    }
    case 6:
      if (ip_packet[7] <= 1) return false;
      ip_packet[7]--;
      return true;
    default:
      return false;
  }
}
bool ip_decrement_ttl(uint8_t* ip_packet, size_t len);

}  // namespace meshwire::dp::net
