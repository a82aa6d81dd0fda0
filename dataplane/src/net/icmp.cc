#include "net/icmp.h"

#include <algorithm>
#include <cstring>

#include "net/checksum.h"

namespace meshwire::dp::net {
namespace {

constexpr uint8_t kIcmpEchoReply = 0;
constexpr uint8_t kIcmpEchoRequest = 8;
constexpr uint8_t kIcmpv6EchoRequest = 128;
constexpr uint8_t kIcmpv6EchoReply = 129;

// ICMPv4 types that are not errors: echo, router advertisement/solicitation,
// timestamp, information and address mask request/reply.
bool icmpv4_is_informational(uint8_t type) {
  switch (type) {
    case 0: case 8: case 9: case 10: case 13: case 14: case 15: case 16: case 17: case 18:
      return true;
    default:
      return false;
  }
}

size_t pad_frame(uint8_t* out, size_t frame_len) {
  if (frame_len < kEtherMinFrame) {
    std::memset(out + frame_len, 0, kEtherMinFrame - frame_len);
    return kEtherMinFrame;
  }
  return frame_len;
}

}  // namespace

bool ipv4_is_unicast(const uint8_t ip[4]) {
  return ip[0] != 0 && ip[0] != 127 && ip[0] < 224;
}

bool ipv6_is_unicast(const uint8_t ip[16]) {
  static constexpr uint8_t kZero[15] = {};
  if (ip[0] == 0xFF) return false;
  return !(std::memcmp(ip, kZero, 15) == 0 && (ip[15] == 0 || ip[15] == 1));
}

size_t build_echo_reply(const uint8_t* frame, size_t len, const PacketInfo& info, uint8_t* out, size_t cap) {
  if (frame == nullptr || out == nullptr || !info_fits(info, len)) return 0;
  if (info.is_fragment || !info.has_l4 || info.l3_offset < kEtherHdrLen) return 0;
  const uint8_t* ip = frame + info.l3_offset;
  const uint8_t* icmp = frame + info.l4_offset;
  const size_t icmp_len = info.l4_len;
  if (icmp_len < kIcmpHdrLen || icmp[1] != 0) return 0;

  const bool v6 = info.ether_type == kEtherTypeIpv6;
  size_t ip_hdr_len = 0;
  uint8_t reply_type = 0;
  if (!v6) {
    if (info.ether_type != kEtherTypeIpv4 || info.l4_proto != kProtoIcmp || icmp[0] != kIcmpEchoRequest) return 0;
    if (info.l4_offset < info.l3_offset + kIpv4HdrLen || (ip[0] >> 4) != 4) return 0;
    if (!ipv4_is_unicast(ip + 12) || !ipv4_is_unicast(ip + 16)) return 0;
    if (internet_checksum(icmp, icmp_len) != 0) return 0;
    ip_hdr_len = kIpv4HdrLen;
    reply_type = kIcmpEchoReply;
  } else {
    if (info.l4_proto != kProtoIcmpv6 || icmp[0] != kIcmpv6EchoRequest) return 0;
    if (info.l4_offset < info.l3_offset + kIpv6HdrLen || (ip[0] >> 4) != 6) return 0;
    if (!ipv6_is_unicast(ip + 8) || !ipv6_is_unicast(ip + 24)) return 0;
    if (l4_checksum_v6(ip, icmp, icmp_len, kProtoIcmpv6) != 0) return 0;
    ip_hdr_len = kIpv6HdrLen;
    reply_type = kIcmpv6EchoReply;
  }
  const size_t l2_len = info.l3_offset;
  const size_t frame_len = l2_len + ip_hdr_len + icmp_len;
  if (cap < std::max(frame_len, kEtherMinFrame)) return 0;

  // Everything read from frame is copied out first: out may be frame.
  uint8_t macs[12];
  uint8_t src[16], dst[16];
  uint8_t first_word[4];  // IPv4 version..total length / IPv6 version, class, flow label
  uint8_t ipv4_id[2];
  const size_t addr_len = v6 ? 16 : 4;
  std::memcpy(macs, frame, 12);
  std::memcpy(src, ip + (v6 ? 8 : 12), addr_len);
  std::memcpy(dst, ip + (v6 ? 24 : 16), addr_len);
  std::memcpy(first_word, ip, 4);
  std::memcpy(ipv4_id, ip + 4, 2);
  const uint16_t old_type_code = load_be16(icmp);
  const uint16_t old_csum = load_be16(icmp + 2);

  if (out != frame) std::memcpy(out + 12, frame + 12, l2_len - 12);  // EtherType, VLAN tag
  std::memcpy(out, macs + 6, 6);
  std::memcpy(out + 6, macs, 6);
  uint8_t* oip = out + l2_len;
  uint8_t* oicmp = oip + ip_hdr_len;
  std::memmove(oicmp, icmp, icmp_len);  // backwards over dropped options / extension headers, if any

  if (!v6) {
    oip[0] = 0x45;
    oip[1] = first_word[1];
    store_be16(oip + 2, static_cast<uint16_t>(ip_hdr_len + icmp_len));
    std::memcpy(oip + 4, ipv4_id, 2);
    store_be16(oip + 6, 0);
    oip[8] = kIcmpTtl;
    oip[9] = kProtoIcmp;
    store_be16(oip + 10, 0);
    std::memcpy(oip + 12, dst, 4);
    std::memcpy(oip + 16, src, 4);
    store_be16(oip + 10, ipv4_header_checksum(oip, kIpv4HdrLen));
  } else {
    std::memcpy(oip, first_word, 4);
    store_be16(oip + 4, static_cast<uint16_t>(icmp_len));
    oip[6] = kProtoIcmpv6;
    oip[7] = kIcmpHopLimit;
    std::memcpy(oip + 8, dst, 16);
    std::memcpy(oip + 24, src, 16);
  }
  // Swapping the addresses leaves the pseudo-header sum as it was: only the
  // type changes, and the request's checksum was verified above.
  oicmp[0] = reply_type;
  const uint16_t new_type_code = load_be16(oicmp);
  store_be16(oicmp + 2, checksum_adjust16(old_csum, old_type_code, new_type_code));
  return pad_frame(out, frame_len);
}

size_t build_icmp_error(IcmpError kind, uint32_t mtu, const uint8_t* offending_ip, size_t offending_len,
                        const uint8_t* src_ip, const uint8_t src_mac[6], const uint8_t dst_mac[6], uint8_t* out,
                        size_t cap) {
  if (offending_ip == nullptr || src_ip == nullptr || out == nullptr) return 0;
  PacketInfo pi;
  if (parse_ip(offending_ip, offending_len, &pi) != ParseResult::kOk || pi.later_fragment) return 0;
  const bool v6 = pi.ether_type == kEtherTypeIpv6;
  const uint8_t* l4 = offending_ip + pi.l4_offset;

  uint8_t type = 0;
  uint8_t code = 0;
  size_t ip_hdr_len = 0;
  size_t max_ip_len = 0;
  if (!v6) {
    if (!ipv4_is_unicast(offending_ip + 12) || !ipv4_is_unicast(offending_ip + 16)) return 0;
    if (pi.l4_proto == kProtoIcmp && (!pi.has_l4 || !icmpv4_is_informational(l4[0]))) return 0;
    switch (kind) {
      case IcmpError::kFragNeeded: type = 3; code = 4; break;
      case IcmpError::kTimeExceeded: type = 11; code = 0; break;
      case IcmpError::kNoRoute: type = 3; code = 1; break;
      case IcmpError::kHostUnreachable: type = 3; code = 1; break;
    }
    ip_hdr_len = kIpv4HdrLen;
    max_ip_len = kIcmpv4ErrorMaxIpLen;
  } else {
    const uint8_t* dst = offending_ip + 24;
    if (!ipv6_is_unicast(offending_ip + 8)) return 0;
    if (!ipv6_is_unicast(dst) && !(kind == IcmpError::kFragNeeded && dst[0] == 0xFF)) return 0;
    if (pi.l4_proto == kProtoIcmpv6 && (!pi.has_l4 || l4[0] < 128)) return 0;
    switch (kind) {
      case IcmpError::kFragNeeded: type = 2; code = 0; break;
      case IcmpError::kTimeExceeded: type = 3; code = 0; break;
      case IcmpError::kNoRoute: type = 1; code = 0; break;
      case IcmpError::kHostUnreachable: type = 1; code = 3; break;
    }
    ip_hdr_len = kIpv6HdrLen;
    max_ip_len = kIcmpv6ErrorMaxIpLen;
  }
  const size_t quote_len = std::min<size_t>(pi.l3_len, max_ip_len - ip_hdr_len - kIcmpHdrLen);
  const size_t icmp_len = kIcmpHdrLen + quote_len;
  const size_t frame_len = kEtherHdrLen + ip_hdr_len + icmp_len;
  if (cap < std::max(frame_len, kEtherMinFrame)) return 0;

  std::memcpy(out, dst_mac, 6);
  std::memcpy(out + 6, src_mac, 6);
  store_be16(out + 12, v6 ? kEtherTypeIpv6 : kEtherTypeIpv4);
  uint8_t* ip = out + kEtherHdrLen;
  uint8_t* icmp = ip + ip_hdr_len;
  icmp[0] = type;
  icmp[1] = code;
  store_be16(icmp + 2, 0);
  store_be32(icmp + 4, 0);
  if (kind == IcmpError::kFragNeeded) {
    if (v6) {
      store_be32(icmp + 4, mtu);
    } else {
      store_be16(icmp + 6, static_cast<uint16_t>(std::min<uint32_t>(mtu, 0xFFFF)));
    }
  }
  std::memcpy(icmp + kIcmpHdrLen, offending_ip, quote_len);

  if (!v6) {
    ip[0] = 0x45;
    ip[1] = 0xC0;  // internetwork control
    store_be16(ip + 2, static_cast<uint16_t>(kIpv4HdrLen + icmp_len));
    store_be16(ip + 4, 0);
    store_be16(ip + 6, 0x4000);  // DF: the ID need not be unique (RFC 6864)
    ip[8] = kIcmpTtl;
    ip[9] = kProtoIcmp;
    store_be16(ip + 10, 0);
    std::memcpy(ip + 12, src_ip, 4);
    std::memcpy(ip + 16, offending_ip + 12, 4);
    store_be16(ip + 10, ipv4_header_checksum(ip, kIpv4HdrLen));
    store_be16(icmp + 2, internet_checksum(icmp, icmp_len));
  } else {
    store_be32(ip, 0x60000000);
    store_be16(ip + 4, static_cast<uint16_t>(icmp_len));
    ip[6] = kProtoIcmpv6;
    ip[7] = kIcmpHopLimit;
    std::memcpy(ip + 8, src_ip, 16);
    std::memcpy(ip + 24, offending_ip + 8, 16);
    store_be16(icmp + 2, l4_checksum_v6(ip, icmp, icmp_len, kProtoIcmpv6));
  }
  return pad_frame(out, frame_len);
}

}  // namespace meshwire::dp::net
