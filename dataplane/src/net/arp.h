// ARP (RFC 826) for Ethernet/IPv4: parse a request or reply, build the
// frames the data plane sends (proxy replies on the local port, requests when
// resolving a next hop). Pure functions over plain bytes, MT-safe.
#pragma once

#include <cstddef>
#include <cstdint>

namespace meshwire::dp::net {

inline constexpr uint16_t kArpOpRequest = 1;
inline constexpr uint16_t kArpOpReply = 2;

struct ArpInfo {
  uint16_t op;          // kArpOpRequest or kArpOpReply, host order
  uint8_t sha[6];
  uint32_t spa_be;      // network order, as on the wire
  uint8_t tha[6];
  uint32_t tpa_be;
};

// Parses the 28-byte ARP body at l3_offset (as found by parse_frame()). False
// unless it lies inside [frame, frame + len), is Ethernet/IPv4 (htype 1,
// ptype 0x0800, hlen 6, plen 4) and op is 1 or 2.
bool parse_arp(const uint8_t* frame, size_t len, uint16_t l3_offset, ArpInfo* arp);

// Builds "request.tpa is at our_mac" to the requester (Ethernet destination and
// tha = request.sha, tpa = request.spa). Returns the frame length (60: padded
// to the Ethernet minimum with zeros) or 0 if cap < 60.
size_t build_arp_reply(const ArpInfo& request, const uint8_t our_mac[6], uint8_t* out, size_t cap);

// Builds a broadcast "who has target_ip? tell src_ip" (tha zero). Returns 60
// or 0 if cap < 60.
size_t build_arp_request(const uint8_t src_mac[6], uint32_t src_ip_be, uint32_t target_ip_be, uint8_t* out,
                         size_t cap);

}  // namespace meshwire::dp::net
