// IPv6 Neighbor Discovery (RFC 4861): parse Neighbor Solicitations and
// Advertisements, build the ones the data plane sends (proxy answers on the
// local port, resolution of next hops). Pure functions over plain bytes,
// MT-safe.
#pragma once

#include <cstddef>
#include <cstdint>

#include "net/parse.h"

namespace meshwire::dp::net {

inline constexpr uint8_t kNdNeighborSolicitation = 135;
inline constexpr uint8_t kNdNeighborAdvertisement = 136;
// Ethernet + IPv6 + NS/NA (24) + one link-layer address option (8).
inline constexpr size_t kNdFrameLen = kEtherHdrLen + kIpv6HdrLen + 24 + 8;

struct NdInfo {
  uint8_t type;          // kNdNeighborSolicitation or kNdNeighborAdvertisement
  uint8_t src_ip[16];
  uint8_t dst_ip[16];
  uint8_t target[16];
  bool has_lladdr;
  uint8_t lladdr[6];     // source link-layer address for NS, target link-layer address for NA
  bool router;           // NA flags (false for NS)
  bool solicited;
  bool override_flag;
};

// Validates and parses an NS or NA in frame, with info from parse_frame() on
// the same frame (re-checked against len, not trusted). Applies RFC 4861
// 7.1.1/7.1.2: hop limit 255, ICMPv6 code 0, correct ICMPv6 checksum, not
// fragmented, message >= 24 bytes, target not multicast, every option with
// non-zero length and inside the message; for NS from the unspecified address
// a solicited-node multicast destination and no source link-layer option; for
// NA to a multicast destination the S flag clear. False for anything else.
// Link-layer options other than 6 bytes (8-byte option) are ignored.
bool parse_nd(const uint8_t* frame, size_t len, const PacketInfo& info, NdInfo* nd);

// Builds a Neighbor Advertisement for target from src_ip (our_mac) to dst_ip
// (dst_mac), hop limit 255, flags R/S as given and O (override_flag), with a
// target link-layer address option carrying our_mac. Returns kNdFrameLen or 0
// if cap is smaller.
size_t build_na(const uint8_t our_mac[6], const uint8_t dst_mac[6], const uint8_t src_ip[16],
                const uint8_t dst_ip[16], const uint8_t target[16], bool solicited, bool router, uint8_t* out,
                size_t cap, bool override_flag = true);

// Builds a Neighbor Solicitation for target to its solicited-node multicast
// address (ff02::1:ffXX:XXXX, MAC 33:33:ff:XX:XX:XX), hop limit 255, with a
// source link-layer address option (src_mac) unless src_ip is the unspecified
// address (duplicate address detection, RFC 4861 7.2.2). Returns the frame
// length (kNdFrameLen, or 8 less without the option) or 0 if cap is smaller.
size_t build_ns(const uint8_t src_mac[6], const uint8_t src_ip[16], const uint8_t target[16], uint8_t* out,
                size_t cap);

// ff02::1:ff00:0/104.
bool is_solicited_node_multicast(const uint8_t ip[16]);
// The solicited-node multicast address of ip.
void solicited_node_multicast(const uint8_t ip[16], uint8_t out[16]);
// 33:33 followed by the low 32 bits of a multicast IPv6 address (RFC 2464 7).
void ipv6_multicast_mac(const uint8_t ip[16], uint8_t mac[6]);

}  // namespace meshwire::dp::net
