// A small fluent builder for test packets: Ethernet, optional 802.1Q tags,
// IPv4 (options, fragments) / IPv6 (extension headers, fragments) / ARP, then
// UDP / TCP (options) / ICMP / ICMPv6 and a raw payload. Lengths and checksums
// are computed on build() unless a test overrides them to make the packet
// wrong on purpose. Checksums are computed here with a deliberately naive
// 16-bit loop, independent of dataplane/src/net/checksum.cc.
//
//   Bytes frame = PacketBuilder()
//                     .eth(mac("02:00:00:00:00:01"), mac("02:00:00:00:00:02"))
//                     .ipv4(ip4("10.0.0.1"), ip4("10.0.0.2")).ttl(9)
//                     .tcp(1234, 80, kTcpSyn).tcp_mss(1460)
//                     .payload("hello")
//                     .build();
//
// Without eth() build() returns the bare IP packet (parse_ip(), inner packets
// of a tunnel: payload(inner.build())). Layers are set by calling their
// method; modifiers apply to the layer of their name in any order, except
// that IPv6 extension headers (ext_header(), fragment() after ipv6()) are
// chained in call order.
#pragma once

#include <arpa/inet.h>

#include <array>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string_view>
#include <vector>

namespace meshwire::test {

using Bytes = std::vector<uint8_t>;
using Mac = std::array<uint8_t, 6>;
using Ip4 = std::array<uint8_t, 4>;
using Ip6 = std::array<uint8_t, 16>;

inline constexpr uint8_t kTcpFin = 0x01;
inline constexpr uint8_t kTcpSyn = 0x02;
inline constexpr uint8_t kTcpRst = 0x04;
inline constexpr uint8_t kTcpPsh = 0x08;
inline constexpr uint8_t kTcpAck = 0x10;

// Parsers for literals in tests; abort on a typo rather than build garbage.
inline Mac mac(const char* text) {
  Mac m{};
  unsigned v[6];
  if (std::sscanf(text, "%x:%x:%x:%x:%x:%x", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5]) != 6) std::abort();
  for (int i = 0; i < 6; ++i) m[i] = static_cast<uint8_t>(v[i]);
  return m;
}
inline Ip4 ip4(const char* text) {
  Ip4 a{};
  if (inet_pton(AF_INET, text, a.data()) != 1) std::abort();
  return a;
}
inline Ip6 ip6(const char* text) {
  Ip6 a{};
  if (inet_pton(AF_INET6, text, a.data()) != 1) std::abort();
  return a;
}
// The address in network order as a uint32_t in memory (ArpInfo::spa_be etc.).
inline uint32_t ip4_be(const char* text) {
  const Ip4 a = ip4(text);
  uint32_t v;
  std::memcpy(&v, a.data(), 4);
  return v;
}
inline Bytes bytes(std::string_view s) { return Bytes(s.begin(), s.end()); }

// Naive RFC 1071 sum: 16-bit big-endian words, one at a time.
inline uint32_t naive_sum(const uint8_t* p, size_t n, uint32_t sum = 0) {
  for (size_t i = 0; i + 1 < n; i += 2) sum += static_cast<uint32_t>(p[i] << 8 | p[i + 1]);
  if (n % 2 != 0) sum += static_cast<uint32_t>(p[n - 1] << 8);
  return sum;
}
inline uint16_t naive_fold(uint32_t sum) {
  while (sum >> 16) sum = (sum & 0xFFFF) + (sum >> 16);
  return static_cast<uint16_t>(~sum);
}

class PacketBuilder {
 public:
  // --- L2
  PacketBuilder& eth(Mac src, Mac dst) {
    eth_ = Eth{src, dst};
    return *this;
  }
  // Adds an 802.1Q (or, with tpid 0x88A8, 802.1ad) tag; call twice for QinQ.
  PacketBuilder& vlan(uint16_t tci, uint16_t tpid = 0x8100) {
    vlans_.push_back({tpid, tci});
    return *this;
  }
  // EtherType of the innermost L2 header; default from the L3 layer.
  PacketBuilder& ether_type(uint16_t type) {
    ether_type_ = type;
    return *this;
  }

  // --- L3
  PacketBuilder& ipv4(Ip4 src, Ip4 dst) {
    l3_ = L3::kIpv4;
    std::memcpy(src_.data(), src.data(), 4);
    std::memcpy(dst_.data(), dst.data(), 4);
    return *this;
  }
  PacketBuilder& ipv6(Ip6 src, Ip6 dst) {
    l3_ = L3::kIpv6;
    src_ = src;
    dst_ = dst;
    return *this;
  }
  PacketBuilder& arp(uint16_t op, Mac sha, Ip4 spa, Mac tha, Ip4 tpa) {
    l3_ = L3::kArp;
    arp_.assign({0, 1, 0x08, 0x00, 6, 4, static_cast<uint8_t>(op >> 8), static_cast<uint8_t>(op)});
    arp_.insert(arp_.end(), sha.begin(), sha.end());
    arp_.insert(arp_.end(), spa.begin(), spa.end());
    arp_.insert(arp_.end(), tha.begin(), tha.end());
    arp_.insert(arp_.end(), tpa.begin(), tpa.end());
    return *this;
  }
  // TTL or hop limit (default 64).
  PacketBuilder& ttl(uint8_t v) {
    ttl_ = v;
    return *this;
  }
  // IPv4 TOS or IPv6 traffic class.
  PacketBuilder& tos(uint8_t v) {
    tos_ = v;
    return *this;
  }
  PacketBuilder& flow_label(uint32_t v) {
    flow_label_ = v & 0xFFFFF;
    return *this;
  }
  PacketBuilder& ip_id(uint16_t v) {
    ip_id_ = v;
    return *this;
  }
  PacketBuilder& dont_fragment(bool v = true) {
    df_ = v;
    return *this;
  }
  // IPv4: sets offset (bytes, multiple of 8) and MF. IPv6: appends a fragment
  // header to the extension chain at this point (call after ipv6()).
  PacketBuilder& fragment(uint16_t offset_bytes, bool more, uint32_t id = 0x1234) {
    if (l3_ == L3::kIpv6) {
      Bytes h(8, 0);
      const uint16_t word = static_cast<uint16_t>((offset_bytes & 0xFFF8) | (more ? 1 : 0));
      h[2] = static_cast<uint8_t>(word >> 8);
      h[3] = static_cast<uint8_t>(word);
      for (int i = 0; i < 4; ++i) h[4 + i] = static_cast<uint8_t>(id >> (24 - 8 * i));
      ext_.push_back({44, h});
    } else {
      frag_offset_ = offset_bytes;
      more_fragments_ = more;
    }
    return *this;
  }
  // IPv4 options, zero-padded to a multiple of 4.
  PacketBuilder& ipv4_options(Bytes opts) {
    while (opts.size() % 4 != 0) opts.push_back(0);
    ip_options_ = std::move(opts);
    return *this;
  }
  // IPv6 extension header (0 hop-by-hop, 43 routing, 60 destination options:
  // body zero-padded so the header is a multiple of 8; 51 AH: multiple of 4).
  // Next-header and length bytes are filled in.
  PacketBuilder& ext_header(uint8_t type, Bytes body = {}) {
    const size_t unit = type == 51 ? 4 : 8;
    Bytes h{0, 0};
    h.insert(h.end(), body.begin(), body.end());
    while (h.size() % unit != 0 || h.size() < 8) h.push_back(0);
    h[1] = static_cast<uint8_t>(type == 51 ? h.size() / 4 - 2 : h.size() / 8 - 1);
    ext_.push_back({type, h});
    return *this;
  }
  // Extension header taken as is except its next-header byte (for bad lengths).
  PacketBuilder& ext_header_raw(uint8_t type, Bytes whole) {
    if (whole.empty()) whole.push_back(0);
    ext_.push_back({type, whole});
    return *this;
  }
  // IPv4 protocol / final IPv6 next header; default from the L4 layer, else 59
  // (IPv6) or 255 (IPv4).
  PacketBuilder& ip_proto(uint8_t v) {
    ip_proto_ = v;
    return *this;
  }
  // Overrides, to make a packet wrong on purpose.
  PacketBuilder& ihl(uint8_t words) {
    ihl_ = words;
    return *this;
  }
  PacketBuilder& ip_version(uint8_t v) {
    version_ = v;
    return *this;
  }
  PacketBuilder& total_length(uint16_t v) {  // IPv4 total length or IPv6 payload length
    ip_len_ = v;
    return *this;
  }
  PacketBuilder& ip_checksum(uint16_t v) {
    ip_csum_ = v;
    return *this;
  }

  // --- L4
  PacketBuilder& udp(uint16_t sport, uint16_t dport) {
    l4_ = L4::kUdp;
    sport_ = sport;
    dport_ = dport;
    return *this;
  }
  PacketBuilder& udp_length(uint16_t v) {
    udp_len_ = v;
    return *this;
  }
  PacketBuilder& tcp(uint16_t sport, uint16_t dport, uint8_t flags, uint32_t seq = 1000, uint32_t ack = 0) {
    l4_ = L4::kTcp;
    sport_ = sport;
    dport_ = dport;
    tcp_flags_ = flags;
    seq_ = seq;
    ack_ = ack;
    return *this;
  }
  // Raw option bytes appended to the TCP header; the whole option block is
  // zero-padded (EOL) to a multiple of 4 on build().
  PacketBuilder& tcp_options(const Bytes& opts) {
    tcp_opts_.insert(tcp_opts_.end(), opts.begin(), opts.end());
    return *this;
  }
  PacketBuilder& tcp_mss(uint16_t mss) {
    return tcp_options({2, 4, static_cast<uint8_t>(mss >> 8), static_cast<uint8_t>(mss)});
  }
  PacketBuilder& tcp_data_offset(uint8_t words) {
    tcp_doff_ = words;
    return *this;
  }
  // ICMPv4; id and sequence fill bytes 4..7 (the "rest of header").
  PacketBuilder& icmp(uint8_t type, uint8_t code, uint16_t id = 0, uint16_t seq = 0) {
    l4_ = L4::kIcmp;
    icmp_type_ = type;
    icmp_code_ = code;
    icmp_rest_ = static_cast<uint32_t>(id) << 16 | seq;
    return *this;
  }
  // ICMPv6 with a 4-byte rest of header (echo id/seq, MTU, ND flags, ...).
  PacketBuilder& icmp6(uint8_t type, uint8_t code, uint32_t rest = 0) {
    l4_ = L4::kIcmp6;
    icmp_type_ = type;
    icmp_code_ = code;
    icmp_rest_ = rest;
    return *this;
  }
  PacketBuilder& l4_checksum(uint16_t v) {
    l4_csum_ = v;
    return *this;
  }

  // --- payload and padding
  PacketBuilder& payload(const Bytes& p) {
    payload_.insert(payload_.end(), p.begin(), p.end());
    return *this;
  }
  PacketBuilder& payload(std::string_view p) { return payload(bytes(p)); }
  // n bytes counting 0, 1, 2, ...
  PacketBuilder& payload_size(size_t n) {
    for (size_t i = 0; i < n; ++i) payload_.push_back(static_cast<uint8_t>(i));
    return *this;
  }
  // Zero bytes after everything else until the frame is at least n bytes.
  PacketBuilder& pad_to(size_t n) {
    pad_to_ = n;
    return *this;
  }

  Bytes build() const {
    const Bytes l4 = build_l4();
    Bytes l3;
    uint16_t default_type = 0;
    switch (l3_) {
      case L3::kNone: l3 = l4; break;
      case L3::kArp:
        l3 = arp_;
        l3.insert(l3.end(), l4.begin(), l4.end());
        default_type = 0x0806;
        break;
      case L3::kIpv4: l3 = build_ipv4(l4); default_type = 0x0800; break;
      case L3::kIpv6: l3 = build_ipv6(l4); default_type = 0x86DD; break;
    }
    Bytes out;
    if (eth_) {
      out.insert(out.end(), eth_->dst.begin(), eth_->dst.end());
      out.insert(out.end(), eth_->src.begin(), eth_->src.end());
      for (const Vlan& v : vlans_) {
        put16(out, v.tpid);
        put16(out, v.tci);
      }
      put16(out, ether_type_.value_or(default_type));
    }
    out.insert(out.end(), l3.begin(), l3.end());
    if (out.size() < pad_to_) out.resize(pad_to_, 0);
    return out;
  }

 private:
  enum class L3 { kNone, kIpv4, kIpv6, kArp };
  enum class L4 { kNone, kUdp, kTcp, kIcmp, kIcmp6 };
  struct Eth {
    Mac src, dst;
  };
  struct Vlan {
    uint16_t tpid, tci;
  };
  struct Ext {
    uint8_t type;
    Bytes bytes;
  };

  static void put16(Bytes& b, uint16_t v) {
    b.push_back(static_cast<uint8_t>(v >> 8));
    b.push_back(static_cast<uint8_t>(v));
  }
  static void put32(Bytes& b, uint32_t v) {
    put16(b, static_cast<uint16_t>(v >> 16));
    put16(b, static_cast<uint16_t>(v));
  }
  static void set16(Bytes& b, size_t off, uint16_t v) {
    b[off] = static_cast<uint8_t>(v >> 8);
    b[off + 1] = static_cast<uint8_t>(v);
  }

  uint8_t l4_proto() const {
    if (ip_proto_) return *ip_proto_;
    switch (l4_) {
      case L4::kUdp: return 17;
      case L4::kTcp: return 6;
      case L4::kIcmp: return 1;
      case L4::kIcmp6: return 58;
      case L4::kNone: break;
    }
    return l3_ == L3::kIpv6 ? 59 : 255;
  }

  // L4 header + payload, checksum left zero (filled once addresses are known).
  Bytes build_l4() const {
    Bytes b;
    switch (l4_) {
      case L4::kNone: break;
      case L4::kUdp:
        put16(b, sport_);
        put16(b, dport_);
        put16(b, udp_len_.value_or(static_cast<uint16_t>(8 + payload_.size())));
        put16(b, 0);
        break;
      case L4::kTcp: {
        Bytes opts = tcp_opts_;
        while (opts.size() % 4 != 0) opts.push_back(0);
        put16(b, sport_);
        put16(b, dport_);
        put32(b, seq_);
        put32(b, ack_);
        const uint8_t doff = tcp_doff_.value_or(static_cast<uint8_t>((20 + opts.size()) / 4));
        b.push_back(static_cast<uint8_t>(doff << 4));
        b.push_back(tcp_flags_);
        put16(b, 65535);  // window
        put16(b, 0);      // checksum
        put16(b, 0);      // urgent pointer
        b.insert(b.end(), opts.begin(), opts.end());
        break;
      }
      case L4::kIcmp:
      case L4::kIcmp6:
        b.push_back(icmp_type_);
        b.push_back(icmp_code_);
        put16(b, 0);
        put32(b, icmp_rest_);
        break;
    }
    b.insert(b.end(), payload_.begin(), payload_.end());
    return b;
  }

  size_t l4_checksum_offset() const {
    switch (l4_) {
      case L4::kUdp: return 6;
      case L4::kTcp: return 16;
      case L4::kIcmp:
      case L4::kIcmp6: return 2;
      case L4::kNone: break;
    }
    return 0;
  }

  // Fills the L4 checksum; pseudo_sum is the pseudo-header sum (0 for ICMPv4).
  void fill_l4_checksum(Bytes& l4, size_t l4_start, uint32_t pseudo_sum) const {
    if (l4_ == L4::kNone) return;
    const size_t off = l4_start + l4_checksum_offset();
    if (off + 2 > l4.size()) return;
    uint16_t c = naive_fold(naive_sum(l4.data() + l4_start, l4.size() - l4_start, pseudo_sum));
    if (l4_ == L4::kUdp && c == 0) c = 0xFFFF;
    set16(l4, off, l4_csum_.value_or(c));
  }

  Bytes build_ipv4(const Bytes& l4) const {
    Bytes h;
    const size_t hdr_len = 20 + ip_options_.size();
    h.push_back(static_cast<uint8_t>(version_.value_or(4) << 4 | ihl_.value_or(static_cast<uint8_t>(hdr_len / 4))));
    h.push_back(tos_);
    put16(h, ip_len_.value_or(static_cast<uint16_t>(hdr_len + l4.size())));
    put16(h, ip_id_);
    put16(h, static_cast<uint16_t>((df_ ? 0x4000 : 0) | (more_fragments_ ? 0x2000 : 0) | (frag_offset_ >> 3)));
    h.push_back(ttl_);
    h.push_back(l4_proto());
    put16(h, 0);
    h.insert(h.end(), src_.begin(), src_.begin() + 4);
    h.insert(h.end(), dst_.begin(), dst_.begin() + 4);
    h.insert(h.end(), ip_options_.begin(), ip_options_.end());
    set16(h, 10, ip_csum_.value_or(naive_fold(naive_sum(h.data(), h.size()))));
    const size_t l4_start = h.size();
    h.insert(h.end(), l4.begin(), l4.end());
    uint32_t pseudo = 0;
    if (l4_ != L4::kIcmp) {
      pseudo = naive_sum(src_.data(), 4) + naive_sum(dst_.data(), 4) + l4_proto() + static_cast<uint32_t>(l4.size());
    }
    fill_l4_checksum(h, l4_start, pseudo);
    return h;
  }

  Bytes build_ipv6(const Bytes& l4) const {
    Bytes chain;
    for (size_t i = 0; i < ext_.size(); ++i) {
      Bytes e = ext_[i].bytes;
      e[0] = i + 1 < ext_.size() ? ext_[i + 1].type : l4_proto();
      chain.insert(chain.end(), e.begin(), e.end());
    }
    Bytes h;
    put32(h, static_cast<uint32_t>(version_.value_or(6)) << 28 | static_cast<uint32_t>(tos_) << 20 | flow_label_);
    put16(h, ip_len_.value_or(static_cast<uint16_t>(chain.size() + l4.size())));
    h.push_back(ext_.empty() ? l4_proto() : ext_[0].type);
    h.push_back(ttl_);
    h.insert(h.end(), src_.begin(), src_.end());
    h.insert(h.end(), dst_.begin(), dst_.end());
    h.insert(h.end(), chain.begin(), chain.end());
    const size_t l4_start = h.size();
    h.insert(h.end(), l4.begin(), l4.end());
    const uint32_t l4_len = static_cast<uint32_t>(l4.size());
    const uint32_t pseudo = naive_sum(src_.data(), 16) + naive_sum(dst_.data(), 16) + l4_proto() +
                            (l4_len >> 16) + (l4_len & 0xFFFF);
    fill_l4_checksum(h, l4_start, pseudo);
    return h;
  }

  std::optional<Eth> eth_;
  std::vector<Vlan> vlans_;
  std::optional<uint16_t> ether_type_;

  L3 l3_ = L3::kNone;
  Ip6 src_{}, dst_{};  // IPv4 uses the first 4 bytes
  Bytes arp_;
  uint8_t ttl_ = 64;
  uint8_t tos_ = 0;
  uint32_t flow_label_ = 0;
  uint16_t ip_id_ = 1;
  bool df_ = false;
  uint16_t frag_offset_ = 0;
  bool more_fragments_ = false;
  Bytes ip_options_;
  std::vector<Ext> ext_;
  std::optional<uint8_t> ip_proto_, ihl_, version_;
  std::optional<uint16_t> ip_len_, ip_csum_;

  L4 l4_ = L4::kNone;
  uint16_t sport_ = 0, dport_ = 0;
  std::optional<uint16_t> udp_len_, l4_csum_;
  uint8_t tcp_flags_ = 0;
  uint32_t seq_ = 0, ack_ = 0;
  Bytes tcp_opts_;
  std::optional<uint8_t> tcp_doff_;
  uint8_t icmp_type_ = 0, icmp_code_ = 0;
  uint32_t icmp_rest_ = 0;

  Bytes payload_;
  size_t pad_to_ = 0;
};

}  // namespace meshwire::test
