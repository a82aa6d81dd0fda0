// The cold parts of service NAT: ICMP errors, source-route checks and
// SCTP's CRC32c. The per-packet rewrites are inline in nat.h.
#include "net/nat.h"

#include <array>

#if defined(__SSE4_2__) && defined(__x86_64__)
#include <nmmintrin.h>
#define MESHWIRE_CRC32C_SSE42 1
#endif

namespace meshwire::dp::net {

NatDeltas nat_deltas(bool v6, const uint8_t* from_addr, uint16_t from_port, const uint8_t* to_addr, uint16_t to_port) {
  const size_t n = v6 ? 16 : 4;
  const uint64_t addr = nat_detail::delta(from_addr, to_addr, n);
  auto fold = [](uint64_t s) {
    s = (s & 0xFFFFFFFF) + (s >> 32);
    s = (s & 0xFFFF) + (s >> 16);
    s = (s & 0xFFFF) + (s >> 16);
    s = (s & 0xFFFF) + (s >> 16);
    return static_cast<uint16_t>(s);
  };
  NatDeltas d;
  d.ip = v6 ? 0 : fold(addr);
  d.l4 = fold(addr + nat_detail::delta16(from_port, to_port));
  return d;
}
namespace {

constexpr uint8_t kIpOptEol = 0;
constexpr uint8_t kIpOptNop = 1;
constexpr uint8_t kIpOptLsrr = 131;
constexpr uint8_t kIpOptSsrr = 137;

constexpr uint32_t kCrc32cPoly = 0x82F63B78;  // Castagnoli, reflected

constexpr std::array<uint32_t, 256> make_crc32c_table() {
  std::array<uint32_t, 256> t{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) != 0 ? (c >> 1) ^ kCrc32cPoly : c >> 1;
    t[i] = c;
  }
  return t;
}
constexpr std::array<uint32_t, 256> kCrc32cTable = make_crc32c_table();

// CRC register updates: no initial value, no final complement.
uint32_t crc_update_sw(uint32_t c, const uint8_t* p, size_t n) {
  for (size_t i = 0; i < n; ++i) c = (c >> 8) ^ kCrc32cTable[(c ^ p[i]) & 0xFF];
  return c;
}

#ifdef MESHWIRE_CRC32C_SSE42
uint32_t crc_update(uint32_t c, const uint8_t* p, size_t n) {
  uint64_t c64 = c;
  for (; n >= 8; p += 8, n -= 8) {
    uint64_t w;
    std::memcpy(&w, p, 8);  // little-endian: the instruction takes the first byte first
    c64 = _mm_crc32_u64(c64, w);
  }
  c = static_cast<uint32_t>(c64);
  for (; n > 0; ++p, --n) c = _mm_crc32_u8(c, *p);
  return c;
}

// Two registers over the same bytes: two independent dependency chains, so
// the second costs little more than the first (the instruction's latency is
// 3 cycles, its throughput 1).
void crc_update2(uint32_t* a, uint32_t* b, const uint8_t* p, size_t n) {
  uint64_t ca = *a;
  uint64_t cb = *b;
  for (; n >= 8; p += 8, n -= 8) {
    uint64_t w;
    std::memcpy(&w, p, 8);
    ca = _mm_crc32_u64(ca, w);
    cb = _mm_crc32_u64(cb, w);
  }
  uint32_t ra = static_cast<uint32_t>(ca);
  uint32_t rb = static_cast<uint32_t>(cb);
  for (; n > 0; ++p, --n) {
    ra = _mm_crc32_u8(ra, *p);
    rb = _mm_crc32_u8(rb, *p);
  }
  *a = ra;
  *b = rb;
}
#else
uint32_t crc_update(uint32_t c, const uint8_t* p, size_t n) { return crc_update_sw(c, p, n); }

void crc_update2(uint32_t* a, uint32_t* b, const uint8_t* p, size_t n) {
  uint32_t ra = *a;
  uint32_t rb = *b;
  for (size_t i = 0; i < n; ++i) {
    ra = (ra >> 8) ^ kCrc32cTable[(ra ^ p[i]) & 0xFF];
    rb = (rb >> 8) ^ kCrc32cTable[(rb ^ p[i]) & 0xFF];
  }
  *a = ra;
  *b = rb;
}
#endif

bool is_icmp_error(bool v6, uint8_t type) {
  return v6 ? type >= 1 && type <= 4 : type == 3 || type == 11 || type == 12;
}

bool is_nat_proto(uint8_t proto) { return proto == kProtoTcp || proto == kProtoUdp || proto == kProtoSctp; }

// IPv6 extension headers of ip[0..avail) after the fixed header, as
// parse_ipv6() walks them. Sets *hdr_len to the offset of the upper layer
// (or of what follows the fragment header of a non-first fragment, where the
// walk stops, *later set) and *proto to its number. False when a header runs
// past avail, there are too many, or a routing header has segments left.
bool walk_ipv6_chain(const uint8_t* ip, size_t avail, size_t* hdr_len, uint8_t* proto, bool* later) {
  *later = false;
  uint8_t nh = ip[6];
  size_t pos = kIpv6HdrLen;
  for (int count = 0;; ++count) {
    size_t ext_len = 0;
    if (nh == kProtoHopByHop || nh == kProtoRouting || nh == kProtoDestOpts || nh == kProtoAh) {
      if (avail - pos < 2) return false;
      ext_len = nh == kProtoAh ? (static_cast<size_t>(ip[pos + 1]) + 2) * 4 : (static_cast<size_t>(ip[pos + 1]) + 1) * 8;
    } else if (nh == kProtoFragment) {
      ext_len = 8;
    } else {
      break;
    }
    if (count >= kMaxIpv6ExtHeaders || avail - pos < ext_len) return false;
    if (nh == kProtoRouting && ip[pos + 3] != 0) return false;  // segments left
    if (nh == kProtoFragment && (load_be16(ip + pos + 2) & 0xFFF8) != 0) *later = true;
    nh = ip[pos];
    pos += ext_len;
    if (*later) break;  // the rest is the middle of someone's payload
  }
  *hdr_len = pos;
  *proto = nh;
  return true;
}

template <bool kDst>
bool rewrite_inner(uint8_t* frame, size_t len, const PacketInfo& info, const uint8_t* addr, uint16_t port) {
  InnerView v;
  if (!icmp_error_inner(frame, len, info, &v)) return false;
  const bool v6 = v.ether_type == kEtherTypeIpv6;
  uint8_t* q = frame + v.ip_offset;
  uint8_t* l4 = frame + v.l4_offset;
  // Every word changed inside the quote also changes the ICMP checksum.
  uint64_t icmp_delta = 0;

  uint8_t* a = q + nat_detail::addr_offset(v6, kDst);
  const size_t n = v6 ? 16 : 4;
  const uint64_t addr_delta = nat_detail::delta(a, addr, n);
  std::memmove(a, addr, n);
  icmp_delta += addr_delta;
  if (!v6) {
    const uint16_t old_csum = load_be16(q + 10);
    const uint16_t new_csum = nat_detail::adjust(old_csum, addr_delta);
    store_be16(q + 10, new_csum);
    icmp_delta += nat_detail::delta16(old_csum, new_csum);
  }

  uint8_t* p = l4 + (kDst ? 2 : 0);
  const uint64_t port_delta = nat_detail::delta16(load_be16(p), port);
  store_be16(p, port);
  icmp_delta += port_delta;

  size_t csum_off = 0;  // 0: not quoted, or SCTP
  if (v.proto == kProtoUdp) csum_off = 6;
  if (v.proto == kProtoTcp && v.l4_avail >= 18) csum_off = 16;
  if (csum_off != 0) {
    const uint16_t old_csum = load_be16(l4 + csum_off);
    const uint16_t new_csum =
        nat_detail::adjust_l4(old_csum, addr_delta + port_delta, v.proto == kProtoUdp, v6);
    store_be16(l4 + csum_off, new_csum);
    icmp_delta += nat_detail::delta16(old_csum, new_csum);
  }

  uint8_t* icmp_csum = frame + info.l4_offset + 2;
  store_be16(icmp_csum, nat_detail::adjust(load_be16(icmp_csum), icmp_delta));
  return true;
}

}  // namespace

namespace nat_detail {

bool route_pending(const uint8_t* ip, size_t hdr_len, bool v6) {
  if (v6) {
    size_t walked = 0;
    uint8_t proto = 0;
    bool later = false;
    // Over the headers alone, the walk stops at hdr_len; anything else (a
    // cut header, segments left) counts as pending.
    return !walk_ipv6_chain(ip, hdr_len, &walked, &proto, &later) || walked != hdr_len;
  }
  size_t pos = kIpv4HdrLen;
  while (pos < hdr_len) {
    const uint8_t type = ip[pos];
    if (type == kIpOptEol) break;
    if (type == kIpOptNop) {
      ++pos;
      continue;
    }
    if (hdr_len - pos < 2) return true;  // malformed: do not guess
    const size_t opt_len = ip[pos + 1];
    if (opt_len < 2 || opt_len > hdr_len - pos) return true;
    if (type == kIpOptLsrr || type == kIpOptSsrr) {
      // The pointer (1-based) passes the length once the route is used up.
      if (opt_len < 3 || ip[pos + 2] <= opt_len) return true;
    }
    pos += opt_len;
  }
  return false;
}

void sctp_ports_changed(uint8_t* sctp, size_t len, uint32_t old_ports) {
  // CRC32c is linear: over equal lengths, crc(old) ^ crc(new) depends on the
  // changed bytes only. Computing both over the packet (checksum field as
  // zero) and xoring their difference into the field keeps a correct CRC
  // correct and a wrong one wrong by the same error. (~x ^ ~y == x ^ y: the
  // final complements cancel.)
  uint8_t hdr_new[kSctpHdrLen] = {};
  std::memcpy(hdr_new, sctp, 8);
  uint8_t hdr_old[kSctpHdrLen] = {};
  std::memcpy(hdr_old + 4, sctp + 4, 4);
  store_be32(hdr_old, old_ports);
  uint32_t crc_old = crc_update(~0u, hdr_old, kSctpHdrLen);
  uint32_t crc_new = crc_update(~0u, hdr_new, kSctpHdrLen);
  crc_update2(&crc_old, &crc_new, sctp + kSctpHdrLen, len - kSctpHdrLen);
  const uint32_t diff = crc_old ^ crc_new;
  for (int i = 0; i < 4; ++i) sctp[8 + i] ^= static_cast<uint8_t>(diff >> (8 * i));  // least significant first
}

}  // namespace nat_detail

uint32_t crc32c(const uint8_t* data, size_t len) { return ~crc_update(~0u, data, len); }
uint32_t crc32c_sw(const uint8_t* data, size_t len) { return ~crc_update_sw(~0u, data, len); }

bool icmp_error_inner(const uint8_t* frame, size_t len, const PacketInfo& info, InnerView* out) {
  *out = InnerView{};
  if (frame == nullptr || !info_fits(info, len) || !info.has_l4 || info.is_fragment) return false;
  const bool v6 = info.ether_type == kEtherTypeIpv6;
  if (v6 ? info.l4_proto != kProtoIcmpv6 : info.ether_type != kEtherTypeIpv4 || info.l4_proto != kProtoIcmp) {
    return false;
  }
  if (info.l4_len < kIcmpHdrLen || !is_icmp_error(v6, frame[info.l4_offset])) return false;

  const size_t ip_offset = static_cast<size_t>(info.l4_offset) + kIcmpHdrLen;
  const uint8_t* q = frame + ip_offset;
  const size_t avail = info.l4_len - kIcmpHdrLen;
  size_t hdr_len = 0;
  uint8_t proto = 0;
  if (v6) {
    if (avail < kIpv6HdrLen || (q[0] >> 4) != 6) return false;
    bool later = false;
    if (!walk_ipv6_chain(q, avail, &hdr_len, &proto, &later) || later) return false;
  } else {
    if (avail < kIpv4HdrLen || (q[0] >> 4) != 4) return false;
    hdr_len = static_cast<size_t>(q[0] & 0x0F) * 4;
    if (hdr_len < kIpv4HdrLen || hdr_len > avail) return false;
    if ((load_be16(q + 6) & 0x1FFF) != 0) return false;  // a later fragment: no ports
    if (hdr_len != kIpv4HdrLen && nat_detail::route_pending(q, hdr_len, false)) return false;
    proto = q[9];
  }
  if (!is_nat_proto(proto) || avail - hdr_len < 8 || ip_offset + hdr_len > 0xFFFF) return false;

  const uint8_t* l4 = q + hdr_len;
  out->ether_type = info.ether_type;
  out->proto = proto;
  out->ip_offset = static_cast<uint16_t>(ip_offset);
  out->l4_offset = static_cast<uint16_t>(ip_offset + hdr_len);
  out->l4_avail = static_cast<uint16_t>(avail - hdr_len);
  const size_t n = v6 ? 16 : 4;
  std::memcpy(out->src, q + nat_detail::addr_offset(v6, false), n);
  std::memcpy(out->dst, q + nat_detail::addr_offset(v6, true), n);
  out->sport = load_be16(l4);
  out->dport = load_be16(l4 + 2);
  return true;
}

bool rewrite_icmp_error_inner_dst(uint8_t* frame, size_t len, const PacketInfo& info, const uint8_t* addr,
                                  uint16_t port) {
  return rewrite_inner<true>(frame, len, info, addr, port);
}

bool rewrite_icmp_error_inner_src(uint8_t* frame, size_t len, const PacketInfo& info, const uint8_t* addr,
                                  uint16_t port) {
  return rewrite_inner<false>(frame, len, info, addr, port);
}

}  // namespace meshwire::dp::net
