// What ESP-in-UDP encapsulation costs a pod's packet on the fabric (README,
// "Wire format"): outer IPv4 (20) or IPv6 (40), UDP 8, ESP header 8, IV 8,
// padding to a 4-byte boundary with the 2-byte trailer, ICV 16. Pure: the
// data plane sizes its "fragmentation needed" answers and MSS clamp from it,
// meshwirectl doctor its MTU advice.
#pragma once

#include <cstdint>

namespace meshwire::dp {

// Largest inner IP packet that still fits an uplink MTU once encapsulated:
// outer IP + UDP 8 + ESP 8 + IV 8 + roundup4(inner + 2) + ICV 16 <= mtu.
// (1438 for a 1500-byte IPv4 fabric, 1418 over IPv6.)
inline uint16_t inner_mtu_for(uint16_t uplink_mtu, bool outer_v6) {
  const int avail = uplink_mtu - (outer_v6 ? 40 : 20) - 8 - 8 - 8 - 16;
  return static_cast<uint16_t>((avail & ~3) - 2);
}

// Smallest uplink MTU whose inner_mtu_for() is at least `inner` (what the
// fabric must carry for pods of that MTU): 1562 for 1500-byte pods over IPv4.
inline uint32_t uplink_mtu_for(uint32_t inner, bool outer_v6) {
  const uint32_t padded = (inner + 2 + 3) & ~3u;  // payload, trailer, padding
  return padded + (outer_v6 ? 40 : 20) + 8 + 8 + 8 + 16;
}

}  // namespace meshwire::dp
