// Header walk for parse_frame() / parse_ip(). Every read is preceded by a
// bounds check against the end of the buffer or of the IP packet; the IP
// packet's own length field bounds everything after the IP header.
#include "net/parse.h"

namespace meshwire::dp::net {
namespace {

// L4 header at p with avail bytes up to the end of the IP packet. In a first
// fragment the L4 header may be cut short legitimately: that is kOk without
// has_l4, not an error.
ParseResult parse_l4(const uint8_t* p, size_t avail, uint8_t proto, bool fragment, PacketInfo* info) {
  size_t need = 0;
  switch (proto) {
    case kProtoTcp: need = kTcpHdrLen; break;
    case kProtoUdp: need = kUdpHdrLen; break;
    case kProtoIcmp: need = kIcmpHdrLen; break;
    case kProtoIcmpv6: need = kIcmpv6HdrLen; break;
    default: return ParseResult::kOk;  // ESP, IP-in-IP, SCTP, ...: no L4 view
  }
  if (avail < need) return fragment ? ParseResult::kOk : ParseResult::kTruncated;
  if (proto == kProtoTcp) {
    const size_t doff = static_cast<size_t>(p[12] >> 4) * 4;
    if (doff < kTcpHdrLen) return ParseResult::kBadHeader;
    if (doff > avail) return fragment ? ParseResult::kOk : ParseResult::kTruncated;
  } else if (proto == kProtoUdp && !fragment) {
    // The UDP length covers the whole datagram, so only whole datagrams are checked.
    const size_t ulen = load_be16(p + 4);
    if (ulen < kUdpHdrLen || ulen > avail) return ParseResult::kBadHeader;
  }
  info->has_l4 = true;
  return ParseResult::kOk;
}

ParseResult parse_ipv4(const uint8_t* d, size_t len, size_t off, PacketInfo* info) {
  const size_t avail = len - off;
  if (avail < kIpv4HdrLen) return ParseResult::kTruncated;
  const uint8_t* ip = d + off;
  if ((ip[0] >> 4) != 4) return ParseResult::kBadHeader;
  const size_t ihl = static_cast<size_t>(ip[0] & 0x0F) * 4;
  if (ihl < kIpv4HdrLen) return ParseResult::kBadHeader;
  if (ihl > avail) return ParseResult::kTruncated;
  const size_t total = load_be16(ip + 2);
  if (total < ihl) return ParseResult::kBadHeader;
  if (total > avail) return ParseResult::kTruncated;

  const uint16_t frag = load_be16(ip + 6);
  const bool more_fragments = (frag & 0x2000) != 0;
  const uint16_t frag_offset = frag & 0x1FFF;
  // off <= 18 and ihl <= 60: every offset below fits 16 bits.
  info->l3_len = static_cast<uint16_t>(total);
  info->ttl = ip[8];
  info->l4_proto = ip[9];
  info->l4_offset = static_cast<uint16_t>(off + ihl);
  info->l4_len = static_cast<uint16_t>(total - ihl);
  info->is_fragment = more_fragments || frag_offset != 0;
  info->later_fragment = frag_offset != 0;
  if (frag_offset != 0) return ParseResult::kOk;
  return parse_l4(ip + ihl, total - ihl, ip[9], info->is_fragment, info);
}

bool is_unwalked_ext_header(uint8_t nh) {
  // RFC 7045 extension headers we do not parse: Mobility, HIP, Shim6, experimental.
  return nh == 135 || nh == 139 || nh == 140 || nh == 253 || nh == 254;
}

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

ParseResult parse_ip(const uint8_t* data, size_t len, PacketInfo* info) {
  *info = PacketInfo{};
  if (data == nullptr || len < 1) return ParseResult::kTruncated;
  switch (data[0] >> 4) {
    case 4:
      info->ether_type = kEtherTypeIpv4;
      return parse_ipv4(data, len, 0, info);
    case 6:
      info->ether_type = kEtherTypeIpv6;
      return parse_ipv6(data, len, 0, info);
    default:
      return ParseResult::kBadHeader;
  }
}

EspClass classify_esp_in_udp(const uint8_t* frame, size_t len, uint16_t udp_offset, EspView* view) {
  *view = EspView{};
  if (frame == nullptr || udp_offset > len || len - udp_offset < kUdpHdrLen) return EspClass::kTruncated;
  const size_t udp_len = load_be16(frame + udp_offset + 4);
  if (udp_len < kUdpHdrLen || udp_len > len - udp_offset) return EspClass::kTruncated;
  const size_t esp_offset = static_cast<size_t>(udp_offset) + kUdpHdrLen;
  const size_t esp_len = udp_len - kUdpHdrLen;
  const uint8_t* esp = frame + esp_offset;
  if (esp_len == 1 && esp[0] == 0xFF) return EspClass::kKeepalive;
  if (esp_len < 4) return EspClass::kTruncated;
  const uint32_t spi = load_be32(esp);
  if (spi == 0) return EspClass::kNonEsp;
  if (esp_len < kEspMinLen || esp_offset > 0xFFFF) return EspClass::kTruncated;
  view->spi = spi;
  view->seq_low = load_be32(esp + 4);
  view->esp_offset = static_cast<uint16_t>(esp_offset);
  view->esp_len = static_cast<uint16_t>(esp_len);
  return EspClass::kEsp;
}

}  // namespace meshwire::dp::net
