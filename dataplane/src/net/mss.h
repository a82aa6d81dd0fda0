// TCP MSS clamping: lowers the MSS a SYN announces so that the peer's
// segments still fit the path MTU once wrapped in ESP-in-UDP. Pure function
// over plain bytes, MT-safe.
#pragma once

#include <cstddef>
#include <cstdint>

#include "net/parse.h"

namespace meshwire::dp::net {

// If ip_packet[0..len) holds a TCP segment with SYN set (SYN or SYN-ACK)
// whose MSS option (kind 2, length 4) exceeds max_mss, rewrites it to max_mss
// and updates the TCP checksum incrementally (RFC 1624; an MSS value at an
// odd offset is handled). info comes from parse_ip() on this packet (or
// parse_frame() on a frame, offsets being relative to the buffer given); it
// is re-checked against len, not trusted. Options are walked within the TCP
// header only: EOL ends the walk, NOP is skipped, and an option with length
// < 2 or running past the header stops it without a change after that point.
// Every MSS option in the header is clamped. Returns true if anything changed.
bool clamp_tcp_mss(uint8_t* ip_packet, size_t len, const PacketInfo& info, uint16_t max_mss);

}  // namespace meshwire::dp::net
