#include "gen/traffic.h"

#include <algorithm>
#include <cstring>

#include "net/checksum.h"
#include "net/parse.h"

namespace meshwire::perf {
namespace {

using dp::net::store_be16;
using dp::net::store_be32;

// address + k, carrying into higher bytes (the last 4 bytes for IPv6).
dp::IpAddress add(const dp::IpAddress& a, uint32_t k) {
  dp::IpAddress r = a;
  const size_t last = a.is_v4() ? 3 : 15;
  uint32_t carry = k;
  for (size_t i = last + 1; i-- > 0 && carry != 0;) {
    const uint32_t v = r.bytes[i] + (carry & 0xff);
    r.bytes[i] = static_cast<uint8_t>(v);
    carry = (carry >> 8) + (v >> 8);
  }
  return r;
}

size_t l3_len(uint8_t family) { return family == 4 ? dp::net::kIpv4HdrLen : dp::net::kIpv6HdrLen; }
size_t l4_len(L4Proto l4) { return l4 == L4Proto::kUdp ? dp::net::kUdpHdrLen : dp::net::kTcpHdrLen; }

bool read_probe_l4(const uint8_t* base, size_t len, const dp::net::PacketInfo& info, Probe* out) {
  if (!info.has_l4 || info.is_fragment) return false;
  size_t hdr = 0;
  if (info.l4_proto == dp::net::kProtoUdp) {
    hdr = dp::net::kUdpHdrLen;
  } else if (info.l4_proto == dp::net::kProtoTcp) {
    hdr = static_cast<size_t>(base[info.l4_offset + 12] >> 4) * 4;
  } else {
    return false;
  }
  const size_t at = info.l4_offset + hdr;
  if (at + sizeof(Probe) > len || hdr + sizeof(Probe) > info.l4_len) return false;
  std::memcpy(out, base + at, sizeof(Probe));
  return out->magic == kProbeMagic;
}

}  // namespace

Flow make_flow(const FlowSet& set, uint32_t i) {
  Flow f{};
  std::memcpy(f.src_mac, set.src_mac, 6);
  std::memcpy(f.dst_mac, set.dst_mac, 6);
  const uint32_t src_count = std::max<uint32_t>(set.src_count, 1);
  const uint32_t dst_count = std::max<uint32_t>(set.dst_count, 1);
  f.src = add(set.src, i % src_count);
  f.dst = add(set.dst, (i / src_count) % dst_count);
  f.sport = static_cast<uint16_t>(1024 + (i % 60000));
  f.dport = static_cast<uint16_t>(set.dport + (i % std::max<uint16_t>(set.dport_count, 1)));
  f.l4 = set.l4;
  return f;
}

size_t header_len(uint8_t family, L4Proto l4) { return dp::net::kEtherHdrLen + l3_len(family) + l4_len(l4); }

uint16_t effective_frame_size(uint16_t requested, uint8_t family, L4Proto l4) {
  const size_t min = header_len(family, l4) + sizeof(Probe) + kFcsLen;
  return static_cast<uint16_t>(std::min<size_t>(std::max<size_t>(requested, min), kMaxFrameSize));
}

void build_template(const Flow& flow, uint16_t frame_size, Template* out) {
  uint8_t* b = out->bytes.data();
  const uint8_t family = flow.src.family;
  const size_t len = frame_size - kFcsLen;
  std::memset(b, 0, len);
  std::memcpy(b, flow.dst_mac, 6);
  std::memcpy(b + 6, flow.src_mac, 6);
  const size_t l3 = dp::net::kEtherHdrLen;
  const size_t l4 = l3 + l3_len(family);
  const size_t payload = l4 + l4_len(flow.l4);
  const uint8_t proto = flow.l4 == L4Proto::kUdp ? dp::net::kProtoUdp : dp::net::kProtoTcp;
  if (family == 4) {
    store_be16(b + 12, dp::net::kEtherTypeIpv4);
    uint8_t* ip = b + l3;
    ip[0] = 0x45;
    store_be16(ip + 2, static_cast<uint16_t>(len - l3));
    store_be16(ip + 6, 0x4000);  // DF
    ip[8] = 64;
    ip[9] = proto;
    std::memcpy(ip + 12, flow.src.bytes.data(), 4);
    std::memcpy(ip + 16, flow.dst.bytes.data(), 4);
    store_be16(ip + 10, dp::net::ipv4_header_checksum(ip, dp::net::kIpv4HdrLen));
  } else {
    store_be16(b + 12, dp::net::kEtherTypeIpv6);
    uint8_t* ip = b + l3;
    ip[0] = 0x60;
    store_be16(ip + 4, static_cast<uint16_t>(len - l4));
    ip[6] = proto;
    ip[7] = 64;
    std::memcpy(ip + 8, flow.src.bytes.data(), 16);
    std::memcpy(ip + 24, flow.dst.bytes.data(), 16);
  }
  uint8_t* t = b + l4;
  store_be16(t, flow.sport);
  store_be16(t + 2, flow.dport);
  if (flow.l4 == L4Proto::kUdp) {
    store_be16(t + 4, static_cast<uint16_t>(len - l4));
    out->csum_offset = static_cast<uint16_t>(l4 + 6);
  } else {
    store_be32(t + 4, 0x1000'0000u + flow.sport);  // sequence
    store_be32(t + 8, 0x2000'0000u + flow.dport);  // acknowledgement
    t[12] = 5 << 4;                                // data offset
    t[13] = 0x10;                                  // ACK
    store_be16(t + 14, 65535);
    out->csum_offset = static_cast<uint16_t>(l4 + 16);
  }
  for (size_t i = payload + sizeof(Probe); i < len; ++i) b[i] = static_cast<uint8_t>(i);

  // Pseudo-header + L4 with probe and checksum zero, unfolded.
  const size_t seg = len - l4;
  uint8_t pseudo[40];
  size_t pseudo_len;
  if (family == 4) {
    std::memcpy(pseudo, flow.src.bytes.data(), 4);
    std::memcpy(pseudo + 4, flow.dst.bytes.data(), 4);
    pseudo[8] = 0;
    pseudo[9] = proto;
    store_be16(pseudo + 10, static_cast<uint16_t>(seg));
    pseudo_len = 12;
  } else {
    std::memcpy(pseudo, flow.src.bytes.data(), 16);
    std::memcpy(pseudo + 16, flow.dst.bytes.data(), 16);
    store_be32(pseudo + 32, static_cast<uint32_t>(seg));
    pseudo[36] = pseudo[37] = pseudo[38] = 0;
    pseudo[39] = proto;
    pseudo_len = 40;
  }
  uint64_t sum = dp::net::checksum_partial(pseudo, pseudo_len, 0);
  sum = dp::net::checksum_partial(b + l4, seg, sum);
  out->csum_partial = sum;
  out->len = static_cast<uint16_t>(len);
  out->probe_offset = static_cast<uint16_t>(payload);
  out->frame_size = frame_size;
}

void stamp_probe(uint8_t* frame, const Template& t, const Probe& probe) {
  std::memcpy(frame + t.probe_offset, &probe, sizeof(Probe));
  // The probe starts at an even offset of the L4 segment (8 or 20 bytes in).
  uint16_t csum = dp::net::checksum_fold(dp::net::checksum_partial(frame + t.probe_offset, sizeof(Probe),
                                                                   t.csum_partial));
  const bool udp = t.csum_offset == t.probe_offset - dp::net::kUdpHdrLen + 6;
  if (udp && csum == 0) csum = 0xffff;
  store_be16(frame + t.csum_offset, csum);
}

bool read_probe_frame(const uint8_t* frame, size_t len, Probe* out) {
  dp::net::PacketInfo info;
  if (dp::net::parse_frame(frame, len, &info) != dp::net::ParseResult::kOk) return false;
  return read_probe_l4(frame, len, info, out);
}

bool read_probe_ip(const uint8_t* ip, size_t len, Probe* out) {
  dp::net::PacketInfo info;
  if (dp::net::parse_ip(ip, len, &info) != dp::net::ParseResult::kOk) return false;
  return read_probe_l4(ip, len, info, out);
}

}  // namespace meshwire::perf
