// Header walk for parse_frame() / parse_ip(): Ethernet, ARP and IPv6 here,
// IPv4 and L4 inline in parse.h. Every read is preceded by a bounds check
// against the end of the buffer or of the IP packet; the IP packet's own
// length field bounds everything after the IP header.
#include "net/parse.h"

namespace meshwire::dp::net {
namespace {

bool is_unwalked_ext_header(uint8_t nh) {
  // RFC 7045 extension headers we do not parse: Mobility, HIP, Shim6, experimental.
  return nh == 135 || nh == 139 || nh == 140 || nh == 253 || nh == 254;
}

ParseResult parse_arp_body(const uint8_t* d, size_t len, size_t off, PacketInfo* info) {
  if (len - off < kArpLen) return ParseResult::kTruncated;
  const uint8_t* a = d + off;
  if (load_be16(a) != 1 || load_be16(a + 2) != kEtherTypeIpv4 || a[4] != 6 || a[5] != 4) {
    return ParseResult::kUnsupported;
  }
  info->l3_len = kArpLen;
  info->l4_offset = static_cast<uint16_t>(off + kArpLen);
  return ParseResult::kOk;
}

}  // namespace

// Out of line: the extension-header walk is long.
ParseResult parse_ipv6(const uint8_t* d, size_t len, size_t off, PacketInfo* info) {
  const size_t avail = len - off;
  if (avail < kIpv6HdrLen) return ParseResult::kTruncated;
  const uint8_t* ip = d + off;
  if ((ip[0] >> 4) != 6) return ParseResult::kBadHeader;
  const size_t payload = load_be16(ip + 4);
  uint8_t nh = ip[6];
  if (payload == 0 && nh == kProtoHopByHop) return ParseResult::kUnsupported;  // jumbogram
  const size_t total = kIpv6HdrLen + payload;
  if (total > avail) return ParseResult::kTruncated;
  if (off + total > 0xFFFF) return ParseResult::kUnsupported;  // offsets would not fit PacketInfo
  info->l3_len = static_cast<uint16_t>(total);
  info->ttl = ip[7];

  const size_t end = off + total;
  size_t pos = off + kIpv6HdrLen;
  bool first_fragment = true;
  for (int count = 0;; ++count) {
    size_t hdr_len = 0;
    if (nh == kProtoHopByHop || nh == kProtoRouting || nh == kProtoDestOpts || nh == kProtoAh) {
      if (nh == kProtoHopByHop && count != 0) return ParseResult::kBadHeader;  // RFC 8200 4.1
      if (end - pos < 2) return ParseResult::kTruncated;
      hdr_len = nh == kProtoAh ? (static_cast<size_t>(d[pos + 1]) + 2) * 4
                               : (static_cast<size_t>(d[pos + 1]) + 1) * 8;
    } else if (nh == kProtoFragment) {
      hdr_len = 8;
    } else if (is_unwalked_ext_header(nh)) {
      return ParseResult::kUnsupported;
    } else {
      break;  // upper layer (or No Next Header, ESP)
    }
    if (count >= kMaxIpv6ExtHeaders) return ParseResult::kUnsupported;
    if (end - pos < hdr_len) return ParseResult::kTruncated;
    if (nh == kProtoFragment) {
      info->is_fragment = true;
      if ((load_be16(d + pos + 2) & 0xFFF8) != 0) first_fragment = false;
    }
    nh = d[pos];
    pos += hdr_len;
    if (!first_fragment) break;  // what follows is the middle of someone's payload
  }
  info->l4_proto = nh;
  info->l4_offset = static_cast<uint16_t>(pos);
  info->l4_len = static_cast<uint16_t>(end - pos);
  info->later_fragment = !first_fragment;
  if (!first_fragment) return ParseResult::kOk;
  return parse_l4(d + pos, end - pos, nh, info->is_fragment, info);
}

ParseResult parse_frame(const uint8_t* data, size_t len, PacketInfo* info) {
  *info = PacketInfo{};
  if (data == nullptr || len < kEtherHdrLen) return ParseResult::kTruncated;
  uint16_t ether_type = load_be16(data + 12);
  size_t off = kEtherHdrLen;
  if (ether_type == kEtherTypeVlan) {
    if (len < kEtherHdrLen + kVlanTagLen) return ParseResult::kTruncated;
    info->has_vlan = true;
    info->vlan_tci = load_be16(data + 14);
    ether_type = load_be16(data + 16);
    off += kVlanTagLen;
    if (ether_type == kEtherTypeVlan || ether_type == kEtherTypeQinQ) return ParseResult::kUnsupported;
  } else if (ether_type == kEtherTypeQinQ) {
    return ParseResult::kUnsupported;
  }
  info->ether_type = ether_type;
  info->l3_offset = static_cast<uint16_t>(off);

  ParseResult r = ParseResult::kUnsupported;
  switch (ether_type) {
    case kEtherTypeIpv4: r = parse_ipv4(data, len, off, info); break;
    case kEtherTypeIpv6: r = parse_ipv6(data, len, off, info); break;
    case kEtherTypeArp: r = parse_arp_body(data, len, off, info); break;
    default: break;
  }
  if (r == ParseResult::kOk && info->has_vlan) return ParseResult::kUnsupported;
  return r;
}

}  // namespace meshwire::dp::net
