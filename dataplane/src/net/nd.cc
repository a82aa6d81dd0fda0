#include "net/nd.h"

#include <cstring>

#include "net/checksum.h"

namespace meshwire::dp::net {
namespace {

constexpr uint8_t kOptSourceLladdr = 1;
constexpr uint8_t kOptTargetLladdr = 2;
constexpr size_t kNdMsgLen = 24;  // type, code, checksum, flags/reserved, target

bool is_unspecified(const uint8_t ip[16]) {
  static constexpr uint8_t kZero[16] = {};
  return std::memcmp(ip, kZero, 16) == 0;
}

// Ethernet + IPv6 header + ICMPv6 message of icmp_len bytes whose first 24
// bytes and option are written by the caller; fills in the checksum last.
void write_eth_ipv6(const uint8_t src_mac[6], const uint8_t dst_mac[6], const uint8_t src_ip[16],
                    const uint8_t dst_ip[16], size_t icmp_len, uint8_t* out) {
  std::memcpy(out, dst_mac, 6);
  std::memcpy(out + 6, src_mac, 6);
  store_be16(out + 12, kEtherTypeIpv6);
  uint8_t* ip = out + kEtherHdrLen;
  store_be32(ip, 0x60000000);
  store_be16(ip + 4, static_cast<uint16_t>(icmp_len));
  ip[6] = kProtoIcmpv6;
  ip[7] = 255;
  std::memcpy(ip + 8, src_ip, 16);
  std::memcpy(ip + 24, dst_ip, 16);
}

void finish_icmpv6_checksum(uint8_t* frame, size_t icmp_len) {
  uint8_t* ip = frame + kEtherHdrLen;
  uint8_t* icmp = ip + kIpv6HdrLen;
  store_be16(icmp + 2, 0);
  store_be16(icmp + 2, l4_checksum_v6(ip, icmp, icmp_len, kProtoIcmpv6));
}

}  // namespace

bool is_solicited_node_multicast(const uint8_t ip[16]) {
  static constexpr uint8_t kPrefix[13] = {0xFF, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0xFF};
  return std::memcmp(ip, kPrefix, sizeof(kPrefix)) == 0;
}

void solicited_node_multicast(const uint8_t ip[16], uint8_t out[16]) {
  static constexpr uint8_t kPrefix[13] = {0xFF, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0xFF};
  uint8_t low[3];
  std::memcpy(low, ip + 13, 3);  // ip may alias out
  std::memcpy(out, kPrefix, sizeof(kPrefix));
  std::memcpy(out + 13, low, 3);
}

void ipv6_multicast_mac(const uint8_t ip[16], uint8_t mac[6]) {
  mac[0] = 0x33;
  mac[1] = 0x33;
  std::memcpy(mac + 2, ip + 12, 4);
}

bool parse_nd(const uint8_t* frame, size_t len, const PacketInfo& info, NdInfo* nd) {
  if (frame == nullptr || !info_fits(info, len)) return false;
  if (info.ether_type != kEtherTypeIpv6 || info.l4_proto != kProtoIcmpv6 || !info.has_l4 || info.is_fragment) {
    return false;
  }
  if (info.l4_offset < static_cast<size_t>(info.l3_offset) + kIpv6HdrLen) return false;
  const uint8_t* ip = frame + info.l3_offset;
  if ((ip[0] >> 4) != 6 || ip[7] != 255) return false;  // off-link senders cannot forge hop limit 255
  const uint8_t* icmp = frame + info.l4_offset;
  const size_t icmp_len = info.l4_len;
  if (icmp_len < kNdMsgLen) return false;
  const uint8_t type = icmp[0];
  if ((type != kNdNeighborSolicitation && type != kNdNeighborAdvertisement) || icmp[1] != 0) return false;
  if (l4_checksum_v6(ip, icmp, icmp_len, kProtoIcmpv6) != 0) return false;
  if (icmp[8] == 0xFF) return false;  // target must not be multicast

  NdInfo r{};
  r.type = type;
  std::memcpy(r.src_ip, ip + 8, 16);
  std::memcpy(r.dst_ip, ip + 24, 16);
  std::memcpy(r.target, icmp + 8, 16);
  if (type == kNdNeighborAdvertisement) {
    r.router = (icmp[4] & 0x80) != 0;
    r.solicited = (icmp[4] & 0x40) != 0;
    r.override_flag = (icmp[4] & 0x20) != 0;
    if (r.dst_ip[0] == 0xFF && r.solicited) return false;
  }

  const uint8_t wanted = type == kNdNeighborSolicitation ? kOptSourceLladdr : kOptTargetLladdr;
  bool has_source_option = false;
  for (size_t pos = kNdMsgLen; pos < icmp_len;) {
    if (icmp_len - pos < 2) return false;
    const size_t opt_len = static_cast<size_t>(icmp[pos + 1]) * 8;
    if (opt_len == 0 || opt_len > icmp_len - pos) return false;
    if (icmp[pos] == kOptSourceLladdr) has_source_option = true;
    if (icmp[pos] == wanted && opt_len == 8 && !r.has_lladdr) {
      r.has_lladdr = true;
      std::memcpy(r.lladdr, icmp + pos + 2, 6);
    }
    pos += opt_len;
  }
  if (type == kNdNeighborSolicitation && is_unspecified(r.src_ip) &&
      (!is_solicited_node_multicast(r.dst_ip) || has_source_option)) {
    return false;
  }
  *nd = r;
  return true;
}

size_t build_na(const uint8_t our_mac[6], const uint8_t dst_mac[6], const uint8_t src_ip[16],
                const uint8_t dst_ip[16], const uint8_t target[16], bool solicited, bool router, uint8_t* out,
                size_t cap, bool override_flag) {
  if (out == nullptr || cap < kNdFrameLen) return 0;
  const size_t icmp_len = kNdMsgLen + 8;
  uint8_t tgt[16];
  std::memcpy(tgt, target, 16);  // the arguments may point into out (answering in place)
  uint8_t src[16], dst[16], smac[6], dmac[6];
  std::memcpy(src, src_ip, 16);
  std::memcpy(dst, dst_ip, 16);
  std::memcpy(smac, our_mac, 6);
  std::memcpy(dmac, dst_mac, 6);
  write_eth_ipv6(smac, dmac, src, dst, icmp_len, out);
  uint8_t* icmp = out + kEtherHdrLen + kIpv6HdrLen;
  icmp[0] = kNdNeighborAdvertisement;
  icmp[1] = 0;
  store_be32(icmp + 4, (router ? 0x80000000u : 0) | (solicited ? 0x40000000u : 0) |
                           (override_flag ? 0x20000000u : 0));
  std::memcpy(icmp + 8, tgt, 16);
  icmp[24] = kOptTargetLladdr;
  icmp[25] = 1;
  std::memcpy(icmp + 26, smac, 6);
  finish_icmpv6_checksum(out, icmp_len);
  return kNdFrameLen;
}

size_t build_ns(const uint8_t src_mac[6], const uint8_t src_ip[16], const uint8_t target[16], uint8_t* out,
                size_t cap) {
  const bool with_option = !is_unspecified(src_ip);
  const size_t icmp_len = kNdMsgLen + (with_option ? 8 : 0);
  const size_t frame_len = kEtherHdrLen + kIpv6HdrLen + icmp_len;
  if (out == nullptr || cap < frame_len) return 0;
  uint8_t src[16], tgt[16], dst[16], smac[6], dmac[6];
  std::memcpy(src, src_ip, 16);
  std::memcpy(tgt, target, 16);
  std::memcpy(smac, src_mac, 6);
  solicited_node_multicast(tgt, dst);
  ipv6_multicast_mac(dst, dmac);
  write_eth_ipv6(smac, dmac, src, dst, icmp_len, out);
  uint8_t* icmp = out + kEtherHdrLen + kIpv6HdrLen;
  icmp[0] = kNdNeighborSolicitation;
  icmp[1] = 0;
  store_be32(icmp + 4, 0);
  std::memcpy(icmp + 8, tgt, 16);
  if (with_option) {
    icmp[24] = kOptSourceLladdr;
    icmp[25] = 1;
    std::memcpy(icmp + 26, smac, 6);
  }
  finish_icmpv6_checksum(out, icmp_len);
  return frame_len;
}

}  // namespace meshwire::dp::net
