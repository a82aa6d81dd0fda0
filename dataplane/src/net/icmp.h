// ICMP replies and errors the data plane originates: echo replies for pings
// to the node, and errors (fragmentation needed / packet too big, time
// exceeded, no route, host unreachable) about packets it cannot forward. Pure functions over
// plain bytes, MT-safe.
#pragma once

#include <cstddef>
#include <cstdint>

#include "net/parse.h"

namespace meshwire::dp::net {

// Largest IP packet an ICMP error may be (RFC 1812 4.3.2.3, RFC 4443 2.4(c)).
inline constexpr size_t kIcmpv4ErrorMaxIpLen = 576;
inline constexpr size_t kIcmpv6ErrorMaxIpLen = 1280;
// TTL (IPv4) / hop limit (IPv6) of the packets built here.
inline constexpr uint8_t kIcmpTtl = 64;
inline constexpr uint8_t kIcmpHopLimit = 255;

// Builds the reply to an ICMPv4 echo request (type 8) or ICMPv6 echo request
// (128), code 0, with info from parse_frame() on the same frame (re-checked,
// not trusted). The reply keeps the L2 header (MACs swapped; a VLAN tag is
// kept), gets a fresh IP header (addresses swapped, no options or extension
// headers, kIcmpTtl / kIcmpHopLimit, IPv4 ID and TOS / IPv6 traffic class and
// flow label kept) and the same id, sequence and payload with type 0 / 129
// and a correct checksum. Returns the frame length (padded with zeros to 60
// bytes) or 0 if: not an echo request, fragmented, bad ICMP checksum, source
// unspecified/multicast/broadcast, destination multicast/broadcast (answer
// those from a unicast address yourself), or cap too small.
// out may be frame itself (answer in place) but must not overlap it otherwise.
size_t build_echo_reply(const uint8_t* frame, size_t len, const PacketInfo& info, uint8_t* out, size_t cap);

enum class IcmpError : uint8_t {
  kFragNeeded,     // v4: type 3 code 4 with next-hop MTU; v6: Packet Too Big (type 2) with MTU
  kTimeExceeded,   // v4: 11/0; v6: 3/0
  kNoRoute,        // v4: 3/1 host unreachable; v6: 1/0 no route to destination
  kHostUnreachable,  // v4: 3/1 host unreachable; v6: 1/3 address unreachable (the node is down)
};

// Builds an Ethernet frame (src_mac -> dst_mac) carrying an ICMP error about
// the IP packet offending_ip[0..offending_len): fresh IP header from src_ip
// (4 or 16 bytes, the offending packet's family) to the offending packet's
// source, kIcmpTtl / kIcmpHopLimit (IPv4: DF set, TOS 0xC0), quoting as much
// of the offending packet (up to its own length field) as keeps the IP packet
// within 576 (IPv4) / 1280 (IPv6) bytes. mtu is ignored except for
// kFragNeeded (IPv4 carries at most 65535). Checksums are correct.
// Returns the frame length (padded to 60) or 0 when no error may be sent or
// it does not fit cap: the offending packet does not parse with parse_ip();
// it is an ICMP error itself (or an ICMP message too short to tell); it is a
// non-first fragment; its source is unspecified, loopback, multicast,
// broadcast or IPv4 class E; its destination is not unicast (IPv6: a
// multicast destination is allowed for kFragNeeded, RFC 4443 2.4(e)).
// out must not overlap offending_ip.
size_t build_icmp_error(IcmpError kind, uint32_t mtu, const uint8_t* offending_ip, size_t offending_len,
                        const uint8_t* src_ip, const uint8_t src_mac[6], const uint8_t dst_mac[6], uint8_t* out,
                        size_t cap);

// Address classes used above; ip in network order.
bool ipv4_is_unicast(const uint8_t ip[4]);   // not 0/8, 127/8, 224/4, 240/4 (incl. 255.255.255.255)
bool ipv6_is_unicast(const uint8_t ip[16]);  // not ::, ::1, ff00::/8

}  // namespace meshwire::dp::net
