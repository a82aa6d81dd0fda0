// Service NAT rewriting: puts another address and port in a TCP, UDP or SCTP
// packet, or in the packet an ICMP error quotes, and fixes every checksum.
// Pure functions over plain bytes (no mbuf, no DPDK state): no allocation,
// MT-safe on distinct packets. Choosing the new address (the VIP's backend,
// or the VIP for a reply) is the caller's business.
//
// Conventions shared by every function here, as clamp_tcp_mss() (mss.h):
//  - frame[0..len) is the buffer the caller parsed into info with
//    parse_frame() (an Ethernet frame, l3_offset 14) or parse_ip() (a bare IP
//    packet, l3_offset 0); info's offsets are relative to frame. info is
//    re-checked against len (info_fits), not trusted: a PacketInfo that does
//    not describe frame can make the result wrong but never makes a read or
//    write leave frame[l3_offset, l3_offset + l3_len).
//  - Addresses are in network order, 4 bytes for IPv4 and 16 for IPv6: the
//    family of the packet (info.ether_type). Ports are in host order.
//  - Checksums are updated incrementally (RFC 1624 eqn. 3), never recomputed
//    (except SCTP's CRC32c, see below): a packet that arrived with a wrong
//    checksum leaves with a wrong checksum, so the receiver still drops it.
//  - false means nothing was written.
//  - Fragments. A first fragment carrying the L4 header is rewritten as a
//    whole packet would be (its checksum covers the whole datagram and an
//    incremental update stays right). Later fragments have no ports: mapping
//    them to their flow (reassembly, or a fragment-ID table) is the caller's
//    job; rewrite_dst/src() refuse them (has_l4 is false), and
//    rewrite_outer_*_addr() gives them the same new address as their first
//    fragment got (the L4 checksum, in the first fragment, then already
//    matches). SCTP in a first fragment is refused: its CRC32c covers the
//    whole datagram and cannot be updated without the bytes that follow.
//  - A packet still source-routed (an IPv4 LSRR/SSRR option or an IPv6
//    routing header with segments left) has its final destination, which the
//    L4 pseudo-header uses, elsewhere than in the destination field: the
//    destination rewrites refuse it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "net/parse.h"

namespace meshwire::dp::net {

// Destination (rewrite_dst) or source (rewrite_src) address and L4 port of a
// TCP, UDP or SCTP packet, IPv4 or IPv6 (including a first fragment, except
// SCTP). Fixes the IPv4 header checksum and the TCP/UDP checksum (pseudo-
// header and port); an IPv4 UDP checksum of 0 (none) stays 0, a UDP checksum
// that comes out 0 is sent as 0xFFFF (RFC 768, RFC 8200 8.1). SCTP has no
// pseudo-header: an address change leaves its CRC32c alone; a port change
// updates it over the whole SCTP packet (one pass; a wrong CRC stays wrong
// by the same error, as Open vSwitch does, rather than being made valid).
// Returns false when has_l4 is false (later fragment, L4 header cut), the
// protocol is not TCP/UDP/SCTP, the packet is SCTP in a fragment, or
// (rewrite_dst) it is still source-routed.
inline bool rewrite_dst(uint8_t* frame, size_t len, const PacketInfo& info, const uint8_t* addr, uint16_t port);
inline bool rewrite_src(uint8_t* frame, size_t len, const PacketInfo& info, const uint8_t* addr, uint16_t port);

// Destination or source address only, of the IP header at info.l3_offset.
// Fixes the IPv4 header checksum, and the L4 checksum whose pseudo-header
// holds the address when this packet carries it: TCP, UDP (an IPv4 zero
// stays zero), ICMPv6. ICMPv4 and SCTP checksums do not cover addresses;
// later fragments carry no L4 checksum. Returns false for a first fragment
// whose TCP/UDP/ICMPv6 header is cut (its checksum cannot be fixed), a
// family other than IPv4/IPv6, and (dst) a packet still source-routed.
// For the outer header of an ICMP error (its source, when the backend sent
// it, becomes the VIP) and for later fragments of a NATed flow.
inline bool rewrite_outer_dst_addr(uint8_t* frame, size_t len, const PacketInfo& info, const uint8_t* addr);
inline bool rewrite_outer_src_addr(uint8_t* frame, size_t len, const PacketInfo& info, const uint8_t* addr);

// The packet an ICMP error quotes: ICMPv4 destination unreachable (3), time
// exceeded (11), parameter problem (12); ICMPv6 destination unreachable (1),
// packet too big (2), time exceeded (3), parameter problem (4).
struct InnerView {
  uint16_t ether_type = 0;  // family of the quoted packet (that of the error)
  uint8_t proto = 0;        // kProtoTcp, kProtoUdp or kProtoSctp
  uint16_t ip_offset = 0;   // quoted IP header, from the start of frame
  uint16_t l4_offset = 0;   // quoted L4 header, from the start of frame
  uint16_t l4_avail = 0;    // quoted bytes from l4_offset to the end of the error's IP packet, >= 8
  uint8_t src[16] = {};     // network order; IPv4 in the first 4 bytes, the rest zero
  uint8_t dst[16] = {};
  uint16_t sport = 0;       // host order
  uint16_t dport = 0;
};

// Parses the quoted packet of the ICMP error at info (from parse_frame() /
// parse_ip() on frame[0..len)) into *out, never reading past the error's IP
// packet. True only for an unfragmented ICMP error of the packet's own
// family whose quote holds a whole IP header (IPv4 options, IPv6 extension
// headers walked as parse_ip() does) and at least the first 8 bytes of a
// TCP, UDP or SCTP header, and which is not a non-first fragment nor still
// source-routed. Otherwise false, *out zeroed.
bool icmp_error_inner(const uint8_t* frame, size_t len, const PacketInfo& info, InnerView* out);

// Rewrites the quoted packet's destination (inner_dst) or source (inner_src)
// address and port, e.g. for an error a backend (or a router on the way)
// sends about a packet client -> backend: the quoted destination backend:port
// becomes VIP:port (and the outer source, if it is the backend, becomes the
// VIP with rewrite_outer_src_addr()). Fixes the quoted IPv4 header checksum,
// the quoted UDP checksum (always quoted; zero stays zero for IPv4) and TCP
// checksum (when the quote reaches it, 18 bytes), and the ICMP/ICMPv6
// checksum. A quoted SCTP CRC32c covers bytes that are not quoted and is left
// as is (SCTP matches ICMP errors by verification tag, RFC 9260 10). Returns
// false, nothing written, when icmp_error_inner() would.
bool rewrite_icmp_error_inner_dst(uint8_t* frame, size_t len, const PacketInfo& info, const uint8_t* addr,
                                  uint16_t port);
bool rewrite_icmp_error_inner_src(uint8_t* frame, size_t len, const PacketInfo& info, const uint8_t* addr,
                                  uint16_t port);

// CRC32c (Castagnoli, reflected; RFC 9260 appendix A): initial ~0, final
// complement; crc32c("123456789") == 0xE3069283. SSE4.2 instruction when
// compiled for it, else a table; crc32c_sw() is always the table (tests).
// An SCTP packet carries the CRC32c of itself with the checksum field zeroed,
// least significant byte first.
uint32_t crc32c(const uint8_t* data, size_t len);
uint32_t crc32c_sw(const uint8_t* data, size_t len);

// What replacing one endpoint (address, port) by another changes in a
// packet's checksums, folded to 16 bits (one's complement sums): `ip` for the
// IPv4 header checksum (0 for IPv6), `l4` for the TCP/UDP checksum (the
// pseudo-header's address and the port). Fixed per connection, so worked out
// once when its backend is chosen; packed() into 32 bits to be kept in a
// flow record.
struct NatDeltas {
  uint16_t ip = 0;
  uint16_t l4 = 0;
  uint32_t packed() const { return uint32_t{ip} << 16 | l4; }
  static NatDeltas unpack(uint32_t v) { return {static_cast<uint16_t>(v >> 16), static_cast<uint16_t>(v)}; }
};
NatDeltas nat_deltas(bool v6, const uint8_t* from_addr, uint16_t from_port, const uint8_t* to_addr, uint16_t to_port);

// rewrite_dst() of a packet whose info parse_frame() made from this very
// frame, with the deltas of nat_deltas(v6, its destination, its port, addr,
// port): IPv4 TCP/UDP without options and IPv6 TCP/UDP without extension
// headers (nearly all service traffic) write the address and port and add
// the deltas; the rest take rewrite_dst(). The same bytes as rewrite_dst().
inline bool rewrite_dst_with(uint8_t* frame, size_t len, const PacketInfo& info, const uint8_t* addr, uint16_t port,
                             NatDeltas d);

// Inline definitions: the rewrites run per packet of every NATed flow.
namespace nat_detail {

// Out of line, in nat.cc.
// True if the IPv4 header (with options) or IPv6 header chain ip[0..hdr_len)
// has a source route still to follow.
bool route_pending(const uint8_t* ip, size_t hdr_len, bool v6);
// Updates the CRC32c of the SCTP packet sctp[0..len) (>= 12) whose ports
// were old_ports (source << 16 | destination) and are now those in sctp.
void sctp_ports_changed(uint8_t* sctp, size_t len, uint32_t old_ports);

// One's complement sum of the change from old to new of n bytes (a multiple
// of 4, at an even offset of the checksummed data), unfolded: 32-bit words
// sum to their 16-bit halves modulo 0xFFFF, since 2^16 == 1.
inline uint64_t delta(const uint8_t* old_bytes, const uint8_t* new_bytes, size_t n) {
  uint64_t d = 0;
  for (size_t i = 0; i < n; i += 4) {
    d += static_cast<uint32_t>(~load_be32(old_bytes + i));
    d += load_be32(new_bytes + i);
  }
  return d;
}
inline uint64_t delta16(uint16_t old_word, uint16_t new_word) {
  return static_cast<uint16_t>(~old_word) + static_cast<uint64_t>(new_word);
}

// RFC 1624 eqn. 3 with a delta from the functions above: HC' = ~(~HC + delta).
inline uint16_t adjust(uint16_t csum, uint64_t d) {
  uint64_t s = static_cast<uint16_t>(~csum) + d;
  s = (s & 0xFFFFFFFF) + (s >> 32);
  s = (s & 0xFFFF) + (s >> 16);
  s = (s & 0xFFFF) + (s >> 16);
  s = (s & 0xFFFF) + (s >> 16);
  return static_cast<uint16_t>(~s);
}

// Offset of the address in the IP header.
inline size_t addr_offset(bool v6, bool dst) { return v6 ? (dst ? 24 : 8) : (dst ? 16 : 12); }

// Checks shared by every rewrite of the outer header: info fits, the family
// is IPv4 or IPv6 and the IP header is long enough for it.
inline bool ip_ok(const uint8_t* frame, size_t len, const PacketInfo& info, bool* v6) {
  if (frame == nullptr || !info_fits(info, len)) return false;
  const size_t hdr_len = static_cast<size_t>(info.l4_offset - info.l3_offset);
  *v6 = info.ether_type == kEtherTypeIpv6;
  if (*v6) return hdr_len >= kIpv6HdrLen;
  return info.ether_type == kEtherTypeIpv4 && hdr_len >= kIpv4HdrLen;
}

// Replaces the address and returns its delta; fixes the IPv4 header checksum.
inline uint64_t replace_addr(uint8_t* ip, bool v6, bool dst, const uint8_t* addr) {
  uint8_t* a = ip + addr_offset(v6, dst);
  const size_t n = v6 ? 16 : 4;
  const uint64_t d = delta(a, addr, n);
  std::memmove(a, addr, n);
  if (!v6) store_be16(ip + 10, adjust(load_be16(ip + 10), d));
  return d;
}

// A TCP/UDP checksum after a change of delta d (the IPv4 UDP zero and the UDP
// all-ones rule applied).
inline uint16_t adjust_l4(uint16_t csum, uint64_t d, bool udp, bool v6) {
  if (udp && !v6 && csum == 0) return 0;
  const uint16_t c = adjust(csum, d);
  return udp && c == 0 ? 0xFFFF : c;
}

template <bool kDst>
inline bool rewrite_endpoint(uint8_t* frame, size_t len, const PacketInfo& info, const uint8_t* addr,
                             uint16_t port) {
  bool v6 = false;
  if (!info.has_l4 || !ip_ok(frame, len, info, &v6)) return false;
  size_t csum_off = 0;
  size_t need = 0;
  switch (info.l4_proto) {
    case kProtoTcp: csum_off = 16; need = kTcpHdrLen; break;
    case kProtoUdp: csum_off = 6; need = kUdpHdrLen; break;
    case kProtoSctp:
      if (info.is_fragment) return false;
      need = kSctpHdrLen;
      break;
    default: return false;
  }
  if (info.l4_len < need) return false;
  uint8_t* ip = frame + info.l3_offset;
  const size_t hdr_len = static_cast<size_t>(info.l4_offset - info.l3_offset);
  if (kDst && hdr_len != (v6 ? kIpv6HdrLen : kIpv4HdrLen) && route_pending(ip, hdr_len, v6)) return false;

  uint8_t* l4 = frame + info.l4_offset;
  const uint32_t old_ports = load_be32(l4);
  uint64_t d = replace_addr(ip, v6, kDst, addr);
  const uint16_t old_port = load_be16(l4 + (kDst ? 2 : 0));
  store_be16(l4 + (kDst ? 2 : 0), port);
  if (info.l4_proto == kProtoSctp) {
    if (old_port != port) sctp_ports_changed(l4, info.l4_len, old_ports);
    return true;
  }
  d += delta16(old_port, port);
  store_be16(l4 + csum_off, adjust_l4(load_be16(l4 + csum_off), d, info.l4_proto == kProtoUdp, v6));
  return true;
}

template <bool kDst>
inline bool rewrite_addr(uint8_t* frame, size_t len, const PacketInfo& info, const uint8_t* addr) {
  bool v6 = false;
  if (!ip_ok(frame, len, info, &v6)) return false;
  size_t csum_off = 0;  // 0: no L4 checksum to fix in this packet
  if (!info.later_fragment) {
    switch (info.l4_proto) {
      case kProtoTcp: csum_off = 16; break;
      case kProtoUdp: csum_off = 6; break;
      case kProtoIcmpv6: csum_off = v6 ? 2 : 0; break;
      default: break;
    }
    if (csum_off != 0 && !info.has_l4) return false;
  }
  uint8_t* ip = frame + info.l3_offset;
  const size_t hdr_len = static_cast<size_t>(info.l4_offset - info.l3_offset);
  if (kDst && hdr_len != (v6 ? kIpv6HdrLen : kIpv4HdrLen) && route_pending(ip, hdr_len, v6)) return false;
  const uint64_t d = replace_addr(ip, v6, kDst, addr);
  if (csum_off != 0) {
    uint8_t* c = frame + info.l4_offset + csum_off;
    store_be16(c, adjust_l4(load_be16(c), d, info.l4_proto == kProtoUdp, v6));
  }
  return true;
}

// The rewrite of an IPv4 TCP or UDP packet without IP options, whose info
// parse_frame() made from this frame (so it fits, and has_l4 means the L4
// header is whole): nearly all service traffic, without the general path's
// checks and protocol switch.
template <bool kDst>
inline void rewrite_endpoint_v4(uint8_t* frame, const PacketInfo& info, const uint8_t* addr, uint16_t port) {
  uint8_t* ip = frame + info.l3_offset;
  uint8_t* l4 = ip + kIpv4HdrLen;
  uint8_t* a = ip + addr_offset(false, kDst);
  uint8_t* p = l4 + (kDst ? 2 : 0);
  const uint64_t d_ip = static_cast<uint32_t>(~load_be32(a)) + static_cast<uint64_t>(load_be32(addr));
  const uint64_t d = d_ip + delta16(load_be16(p), port);
  std::memcpy(a, addr, 4);
  store_be16(p, port);
  store_be16(ip + 10, adjust(load_be16(ip + 10), d_ip));
  uint8_t* c = l4 + (info.l4_proto == kProtoTcp ? 16 : 6);
  store_be16(c, adjust_l4(load_be16(c), d, info.l4_proto == kProtoUdp, false));
}

template <bool kDst>
inline bool rewrite_parsed(uint8_t* frame, size_t len, const PacketInfo& info, const uint8_t* addr, uint16_t port) {
  if (info.ether_type == kEtherTypeIpv4 && info.has_l4 && info.l4_offset - info.l3_offset == kIpv4HdrLen &&
      (info.l4_proto == kProtoTcp || info.l4_proto == kProtoUdp)) {
    rewrite_endpoint_v4<kDst>(frame, info, addr, port);
    return true;
  }
  return rewrite_endpoint<kDst>(frame, len, info, addr, port);
}

// ~(~csum + d) for a 16-bit folded delta: two folds suffice.
inline uint16_t add_delta16(uint16_t csum, uint16_t d) {
  uint32_t s = static_cast<uint32_t>(static_cast<uint16_t>(~csum)) + d;
  s = (s & 0xFFFF) + (s >> 16);
  return static_cast<uint16_t>(~s);
}

}  // namespace nat_detail

inline bool rewrite_dst_with(uint8_t* frame, size_t len, const PacketInfo& info, const uint8_t* addr, uint16_t port,
                             NatDeltas d) {
  const bool tcp = info.l4_proto == kProtoTcp;
  if (!info.has_l4 || !(tcp || info.l4_proto == kProtoUdp)) return rewrite_dst(frame, len, info, addr, port);
  const size_t hdr_len = static_cast<size_t>(info.l4_offset - info.l3_offset);
  uint8_t* ip = frame + info.l3_offset;
  if (info.ether_type == kEtherTypeIpv4 && hdr_len == kIpv4HdrLen) {
    std::memcpy(ip + 16, addr, 4);
    store_be16(ip + 10, nat_detail::add_delta16(load_be16(ip + 10), d.ip));
  } else if (info.ether_type == kEtherTypeIpv6 && hdr_len == kIpv6HdrLen) {
    std::memcpy(ip + 24, addr, 16);
  } else {
    return rewrite_dst(frame, len, info, addr, port);
  }
  uint8_t* l4 = frame + info.l4_offset;
  store_be16(l4 + 2, port);
  uint8_t* c = l4 + (tcp ? 16 : 6);
  const uint16_t old = load_be16(c);
  if (tcp) {
    store_be16(c, nat_detail::add_delta16(old, d.l4));
  } else if (old != 0 || info.ether_type == kEtherTypeIpv6) {  // IPv4 UDP without a checksum stays without
    const uint16_t sum = nat_detail::add_delta16(old, d.l4);
    store_be16(c, sum == 0 ? 0xFFFF : sum);
  }
  return true;
}

// rewrite_src() for a packet whose info parse_frame() made from this very
// frame (the service stage's replies): the same result, with a short path
// for IPv4 TCP and UDP without options. (Its deltas are not kept per
// connection as the DNAT's are: a reply may race with a connect retry that
// moves the connection to another backend, and the packet's own source is
// what its checksums hold.)
inline bool rewrite_src_parsed(uint8_t* frame, size_t len, const PacketInfo& info, const uint8_t* addr, uint16_t port) {
  return nat_detail::rewrite_parsed<false>(frame, len, info, addr, port);
}

inline bool rewrite_dst(uint8_t* frame, size_t len, const PacketInfo& info, const uint8_t* addr, uint16_t port) {
  return nat_detail::rewrite_endpoint<true>(frame, len, info, addr, port);
}
inline bool rewrite_src(uint8_t* frame, size_t len, const PacketInfo& info, const uint8_t* addr, uint16_t port) {
  return nat_detail::rewrite_endpoint<false>(frame, len, info, addr, port);
}
inline bool rewrite_outer_dst_addr(uint8_t* frame, size_t len, const PacketInfo& info, const uint8_t* addr) {
  return nat_detail::rewrite_addr<true>(frame, len, info, addr);
}
inline bool rewrite_outer_src_addr(uint8_t* frame, size_t len, const PacketInfo& info, const uint8_t* addr) {
  return nat_detail::rewrite_addr<false>(frame, len, info, addr);
}

}  // namespace meshwire::dp::net
