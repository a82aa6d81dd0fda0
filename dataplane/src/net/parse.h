// Packet parsing over plain bytes (no mbuf, no DPDK state): the same code
// serves the workers, the control thread and the fuzzer. Never reads outside
// [data, data + len); never writes. All functions are pure and MT-safe.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>

namespace meshwire::dp::net {

inline constexpr uint16_t kEtherTypeIpv4 = 0x0800;
inline constexpr uint16_t kEtherTypeIpv6 = 0x86DD;
inline constexpr uint16_t kEtherTypeArp = 0x0806;
inline constexpr uint16_t kEtherTypeVlan = 0x8100;
inline constexpr uint16_t kEtherTypeQinQ = 0x88A8;

inline constexpr uint8_t kProtoHopByHop = 0;
inline constexpr uint8_t kProtoIcmp = 1;
inline constexpr uint8_t kProtoIpInIp = 4;
inline constexpr uint8_t kProtoTcp = 6;
inline constexpr uint8_t kProtoUdp = 17;
inline constexpr uint8_t kProtoIpv6 = 41;
inline constexpr uint8_t kProtoRouting = 43;
inline constexpr uint8_t kProtoFragment = 44;
inline constexpr uint8_t kProtoEsp = 50;
inline constexpr uint8_t kProtoAh = 51;
inline constexpr uint8_t kProtoIcmpv6 = 58;
inline constexpr uint8_t kProtoNoNext = 59;
inline constexpr uint8_t kProtoDestOpts = 60;
inline constexpr uint8_t kProtoSctp = 132;

inline constexpr uint16_t kEspInUdpPort = 4500;

inline constexpr size_t kEtherHdrLen = 14;
inline constexpr size_t kVlanTagLen = 4;
inline constexpr size_t kEtherMinFrame = 60;  // without FCS
inline constexpr size_t kArpLen = 28;          // Ethernet/IPv4 ARP body
inline constexpr size_t kIpv4HdrLen = 20;      // without options
inline constexpr size_t kIpv6HdrLen = 40;
inline constexpr size_t kUdpHdrLen = 8;
inline constexpr size_t kTcpHdrLen = 20;       // without options
inline constexpr size_t kSctpHdrLen = 12;      // common header: ports, verification tag, CRC32c
inline constexpr size_t kIcmpHdrLen = 8;
inline constexpr size_t kIcmpv6HdrLen = 4;
// Extension headers walked before parse_ip() gives up with kUnsupported.
inline constexpr int kMaxIpv6ExtHeaders = 8;

enum class ParseResult : uint8_t {
  kOk,
  kTruncated,    // a header runs past the end of the buffer, or past the end of the
                 // IP packet as its length field delimits it
  kBadHeader,    // inconsistent fields: IP version, IHL < 5, total length < IHL,
                 // TCP data offset < 5, UDP length < 8 or past the IP packet,
                 // hop-by-hop header not first
  kUnsupported,  // VLAN-tagged (parsed, see below), QinQ, non-IP/ARP EtherType,
                 // non-Ethernet/IPv4 ARP, IPv6 jumbograms, more than
                 // kMaxIpv6ExtHeaders extension headers, IPv6 extension headers we
                 // do not walk (Mobility, HIP, Shim6, experimental 253/254),
                 // packets whose offsets do not fit the 16-bit fields below
};

// What parse_frame() learned. Offsets are from the start of the buffer.
struct PacketInfo {
  uint16_t ether_type = 0;  // after any VLAN tag: ARP, IPv4 or IPv6
  uint16_t l3_offset = 0;
  uint16_t l4_offset = 0;   // first byte after IPv4 options / IPv6 extension headers
  uint16_t l3_len = 0;      // IPv4 total length / 40 + IPv6 payload length (bytes of the IP packet); 28 for ARP
  uint16_t l4_len = 0;      // l3_offset + l3_len - l4_offset: L4 header and payload in this packet
  uint8_t l4_proto = 0;     // final next header / protocol
  uint8_t ttl = 0;          // TTL or hop limit
  bool is_fragment = false; // IPv4 MF or offset != 0, or an IPv6 fragment header (L4 not parsed past the first fragment)
  bool later_fragment = false;  // a fragment other than the first (fragment offset != 0)
  bool has_l4 = false;      // L4 header (TCP with options / UDP 8 / SCTP 12 / ICMP 8 / ICMPv6 4) wholly inside the IP packet
  bool has_vlan = false;    // a single 802.1Q tag was present (result is then kUnsupported)
  uint16_t vlan_tci = 0;    // host order, valid if has_vlan
};

// Parses Ethernet, then ARP (28-byte Ethernet/IPv4 ARP only), IPv4 (IHL >= 5,
// total length <= buffer, options skipped, header checksum NOT verified here)
// or IPv6 (walks hop-by-hop, routing, destination options, AH and fragment
// headers), then the L4 header (TCP, UDP, SCTP common header, ICMP, ICMPv6;
// other protocols give kOk with has_l4 false; SCTP chunks and the CRC32c are
// not looked at). Trailing bytes after the IP packet (Ethernet
// padding) are allowed. A non-first fragment gives kOk with has_l4 false; a
// first fragment too short for its L4 header gives kOk with has_l4 false.
//
// A single 802.1Q tag is parsed through (every field is filled in as for an
// untagged frame, has_vlan set) but the result is kUnsupported unless a worse
// error came first: meshwire does not forward tagged frames yet.
// On any other result, fields describe the headers parsed before the failure
// and the rest are zero. For ARP, l4_offset is the end of the ARP body and
// l4_len 0.
ParseResult parse_frame(const uint8_t* data, size_t len, PacketInfo* info);

// Same, starting at an IP header (no Ethernet): used on decrypted inner packets.
// ether_type is set from the IP version; l3_offset is 0.
inline ParseResult parse_ip(const uint8_t* data, size_t len, PacketInfo* info);

// ESP-in-UDP (RFC 3948) view of a UDP payload.
struct EspView {
  uint32_t spi = 0;          // host order
  uint32_t seq_low = 0;      // host order
  uint16_t esp_offset = 0;   // offset of the ESP header from the frame start
  uint16_t esp_len = 0;      // ESP header .. ICV inclusive
};
enum class EspClass : uint8_t {
  kEsp,          // SPI != 0 and long enough for header + IV + minimal trailer + ICV
  kKeepalive,    // NAT-T keepalive (single 0xFF byte)
  kNonEsp,       // non-ESP marker (SPI 0): IKE, not ours
  kTruncated,    // too short for ESP with AES-GCM (8 hdr + 8 IV + 2 trailer + 16 ICV),
                 // or the UDP header / length field runs past len
};
inline constexpr size_t kEspMinLen = 8 + 8 + 2 + 16;

// udp_offset: offset of the UDP header in the frame; the UDP length field is
// checked against the buffer and delimits the payload (so Ethernet padding is
// ignored). Pass len = l3_offset + l3_len to also bound it by the IP packet.
inline EspClass classify_esp_in_udp(const uint8_t* frame, size_t len, uint16_t udp_offset, EspView* view);

// Network byte order at any alignment: one memory access and a byte swap
// (the compiler did not always merge byte-by-byte accesses: 74 instructions
// per packet on the encrypt path).
inline uint16_t to_be16(uint16_t v) { return std::endian::native == std::endian::little ? __builtin_bswap16(v) : v; }
inline uint32_t to_be32(uint32_t v) { return std::endian::native == std::endian::little ? __builtin_bswap32(v) : v; }
inline uint16_t load_be16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return to_be16(v);
}
inline uint32_t load_be32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return to_be32(v);
}
inline void store_be16(uint8_t* p, uint16_t v) {
  const uint16_t be = to_be16(v);
  std::memcpy(p, &be, 2);
}
inline void store_be32(uint8_t* p, uint32_t v) {
  const uint32_t be = to_be32(v);
  std::memcpy(p, &be, 4);
}

// True if info's offsets describe an IP (or ARP) packet wholly inside a
// buffer of len bytes: lets functions that take a PacketInfo from their
// caller re-check it cheaply instead of trusting it.
inline bool info_fits(const PacketInfo& info, size_t len) {
  const size_t l3_end = static_cast<size_t>(info.l3_offset) + info.l3_len;
  return l3_end <= len && info.l4_offset >= info.l3_offset && info.l4_offset <= l3_end &&
         static_cast<size_t>(info.l4_offset) + info.l4_len == l3_end;
}

// Inline definitions. parse_ip() and classify_esp_in_udp() run once per
// packet on the decrypt path, where a call and a PacketInfo written to memory
// and read back cost more than the checks themselves; parse_frame() inlines
// the same IPv4 and L4 walk. parse_l4(), parse_ipv4() and parse_ipv6() are
// their steps: call parse_frame() or parse_ip() instead.

// L4 header at p with avail bytes up to the end of the IP packet. In a first
// fragment the L4 header may be cut short legitimately: that is kOk without
// has_l4, not an error.
inline ParseResult parse_l4(const uint8_t* p, size_t avail, uint8_t proto, bool fragment, PacketInfo* info) {
  size_t need = 0;
  switch (proto) {
    case kProtoTcp: need = kTcpHdrLen; break;
    case kProtoUdp: need = kUdpHdrLen; break;
    case kProtoIcmp: need = kIcmpHdrLen; break;
    case kProtoIcmpv6: need = kIcmpv6HdrLen; break;
    case kProtoSctp: need = kSctpHdrLen; break;
    default: return ParseResult::kOk;  // ESP, IP-in-IP, ...: no L4 view
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

inline ParseResult parse_ipv4(const uint8_t* d, size_t len, size_t off, PacketInfo* info) {
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

// Out of line, in parse.cc.
ParseResult parse_ipv6(const uint8_t* d, size_t len, size_t off, PacketInfo* info);

inline ParseResult parse_ip(const uint8_t* data, size_t len, PacketInfo* info) {
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

inline EspClass classify_esp_in_udp(const uint8_t* frame, size_t len, uint16_t udp_offset, EspView* view) {
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
