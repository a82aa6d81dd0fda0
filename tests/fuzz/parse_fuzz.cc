// libFuzzer target for the packet library: parsers on hostile frames, and
// the builders and rewriters on whatever the parsers accept, into output
// buffers of exactly the capacity they are told (so ASan sees any overrun).
// Besides "no crash", checks properties: what the builders emit parses and
// checksums correctly, no ICMP error answers an ICMP error, parse_frame and
// parse_ip agree, in-place and out-of-place echo replies match, MSS clamping
// and TTL decrement keep a valid checksum valid.
//
// Input: 4 parameter bytes (output capacity, max MSS, MTU / offsets), then
// the frame. Seeds: tests/fuzz/corpus/parse/.
//
// fuzz-sources: dataplane/src/net/*.cc
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

#include "net/arp.h"
#include "net/checksum.h"
#include "net/icmp.h"
#include "net/mss.h"
#include "net/nd.h"
#include "net/parse.h"

using namespace meshwire::dp::net;

namespace {

#define CHECK(cond)                \
  do {                             \
    if (!(cond)) __builtin_trap(); \
  } while (0)

const uint8_t kOurMac[6] = {0x02, 0, 0, 0, 0, 0x01};
const uint8_t kPeerMac[6] = {0x02, 0, 0, 0, 0, 0x02};
const uint8_t kOurIp4[4] = {10, 0, 0, 1};
const uint8_t kOurIp6[16] = {0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 10, 0, 0, 1};

// A heap buffer of exactly n bytes (at least 1, so that the pointer is valid).
struct Buffer {
  explicit Buffer(size_t n) : size(n), bytes(new uint8_t[n == 0 ? 1 : n]) { std::memset(bytes.get(), 0xA5, n); }
  size_t size;
  std::unique_ptr<uint8_t[]> bytes;
  uint8_t* data() { return bytes.get(); }
};

bool checksums_ok(const uint8_t* frame, size_t len, const PacketInfo& info) {
  const uint8_t* ip = frame + info.l3_offset;
  const uint8_t* l4 = frame + info.l4_offset;
  if (info.ether_type == kEtherTypeIpv4) {
    if (ipv4_header_checksum(ip, info.l4_offset - info.l3_offset) != 0) return false;
    if (info.l4_proto == kProtoIcmp) return internet_checksum(l4, info.l4_len) == 0;
    return true;
  }
  if (info.ether_type == kEtherTypeIpv6 && info.l4_proto == kProtoIcmpv6) {
    return l4_checksum_v6(ip, l4, info.l4_len, kProtoIcmpv6) == 0;
  }
  (void)len;
  return true;
}

void check_info(const PacketInfo& info, size_t len) {
  CHECK(info_fits(info, len));
  if (info.ether_type == kEtherTypeIpv4) CHECK(info.l4_offset >= info.l3_offset + kIpv4HdrLen);
  if (info.ether_type == kEtherTypeIpv6) CHECK(info.l4_offset >= info.l3_offset + kIpv6HdrLen);
  if (info.later_fragment) CHECK(info.is_fragment && !info.has_l4);
  if (info.has_l4 && info.l4_proto == kProtoTcp) {
    CHECK(info.l4_len >= kTcpHdrLen);
  }
  if (info.has_l4 && info.l4_proto == kProtoUdp) CHECK(info.l4_len >= kUdpHdrLen);
}

// A frame we built must parse, verify, and must not be answered with an error.
void check_built_frame(const uint8_t* out, size_t n, size_t cap) {
  CHECK(n <= cap);
  CHECK(n >= kEtherMinFrame);
  PacketInfo info;
  const ParseResult r = parse_frame(out, n, &info);
  CHECK(r == ParseResult::kOk || (r == ParseResult::kUnsupported && info.has_vlan));
  check_info(info, n);
  CHECK(checksums_ok(out, n, info));
}

void fuzz_icmp_errors(const uint8_t* ip, size_t ip_len, size_t cap, uint32_t mtu) {
  const uint8_t* our_ip = ip_len > 0 && (ip[0] >> 4) == 6 ? kOurIp6 : kOurIp4;
  for (IcmpError kind : {IcmpError::kFragNeeded, IcmpError::kTimeExceeded, IcmpError::kNoRoute,
                         IcmpError::kHostUnreachable}) {
    Buffer out(cap);
    const size_t n = build_icmp_error(kind, mtu, ip, ip_len, our_ip, kOurMac, kPeerMac, out.data(), cap);
    if (n == 0) continue;
    check_built_frame(out.data(), n, cap);
    PacketInfo info;
    CHECK(parse_frame(out.data(), n, &info) == ParseResult::kOk);
    CHECK(info.l3_len <= (info.ether_type == kEtherTypeIpv4 ? kIcmpv4ErrorMaxIpLen : kIcmpv6ErrorMaxIpLen));
    // Never an error about an error.
    Buffer again(2048);
    CHECK(build_icmp_error(kind, mtu, out.data() + info.l3_offset, info.l3_len, our_ip, kOurMac, kPeerMac,
                           again.data(), again.size) == 0);
  }
}

void fuzz_echo(const uint8_t* frame, size_t len, const PacketInfo& info, size_t cap) {
  Buffer out(cap);
  const size_t n = build_echo_reply(frame, len, info, out.data(), cap);
  if (n == 0) return;
  check_built_frame(out.data(), n, cap);
  // In place gives the same bytes.
  Buffer in_place(len > n ? len : n);
  std::memcpy(in_place.data(), frame, len);
  CHECK(build_echo_reply(in_place.data(), len, info, in_place.data(), in_place.size) == n);
  CHECK(std::memcmp(in_place.data(), out.data(), n) == 0);
}

void fuzz_arp(const uint8_t* frame, size_t len, uint16_t l3_offset, size_t cap) {
  ArpInfo arp;
  if (!parse_arp(frame, len, l3_offset, &arp)) return;
  CHECK(arp.op == kArpOpRequest || arp.op == kArpOpReply);
  Buffer out(cap);
  const size_t n = build_arp_reply(arp, kOurMac, out.data(), cap);
  CHECK(n == (cap >= kEtherMinFrame ? kEtherMinFrame : 0));
  if (n == 0) return;
  PacketInfo info;
  CHECK(parse_frame(out.data(), n, &info) == ParseResult::kOk);
  ArpInfo reply;
  CHECK(parse_arp(out.data(), n, info.l3_offset, &reply));
  CHECK(reply.op == kArpOpReply && reply.tpa_be == arp.spa_be && reply.spa_be == arp.tpa_be);
}

void fuzz_nd(const uint8_t* frame, size_t len, const PacketInfo& info, size_t cap) {
  NdInfo nd;
  if (!parse_nd(frame, len, info, &nd)) return;
  CHECK(nd.type == kNdNeighborSolicitation || nd.type == kNdNeighborAdvertisement);
  CHECK(nd.target[0] != 0xFF);
  Buffer out(cap);
  size_t n = build_na(kOurMac, nd.has_lladdr ? nd.lladdr : kPeerMac, nd.target, nd.src_ip, nd.target, false, true,
                      out.data(), cap);
  CHECK(n == (cap >= kNdFrameLen ? kNdFrameLen : 0));
  if (n != 0) check_built_frame(out.data(), n, cap);
  n = build_ns(kOurMac, nd.src_ip, nd.target, out.data(), cap);
  if (n == 0) return;
  check_built_frame(out.data(), n, cap);
  PacketInfo ns_info;
  CHECK(parse_frame(out.data(), n, &ns_info) == ParseResult::kOk);
  NdInfo ns;
  CHECK(parse_nd(out.data(), n, ns_info, &ns));
  CHECK(ns.type == kNdNeighborSolicitation && std::memcmp(ns.target, nd.target, 16) == 0);
}

bool tcp_checksum_ok(const uint8_t* buf, const PacketInfo& info) {
  const uint8_t* ip = buf + info.l3_offset;
  const uint8_t* l4 = buf + info.l4_offset;
  return info.ether_type == kEtherTypeIpv6 ? l4_checksum_v6(ip, l4, info.l4_len, kProtoTcp) == 0
                                           : l4_checksum_v4(ip, l4, info.l4_len, kProtoTcp) == 0;
}

void fuzz_mss(const uint8_t* buf, size_t len, const PacketInfo& info, uint16_t max_mss) {
  Buffer copy(len);
  std::memcpy(copy.data(), buf, len);
  const bool tcp = info.l4_proto == kProtoTcp && info.has_l4;
  const bool valid_before = tcp && tcp_checksum_ok(copy.data(), info);
  const bool changed = clamp_tcp_mss(copy.data(), len, info, max_mss);
  if (!changed) {
    CHECK(std::memcmp(copy.data(), buf, len) == 0);
    return;
  }
  CHECK(tcp);
  CHECK(tcp_checksum_ok(copy.data(), info) == valid_before);
  // Only the TCP checksum and options may have changed.
  const size_t tcp_hdr = static_cast<size_t>(buf[info.l4_offset + 12] >> 4) * 4;
  for (size_t i = 0; i < len; ++i) {
    const bool in_csum = i >= info.l4_offset + 16u && i < info.l4_offset + 18u;
    const bool in_opts = i >= info.l4_offset + 20u && i < info.l4_offset + tcp_hdr;
    if (!in_csum && !in_opts) CHECK(copy.data()[i] == buf[i]);
  }
  CHECK(!clamp_tcp_mss(copy.data(), len, info, max_mss));  // idempotent
}

void fuzz_ttl(const uint8_t* ip, size_t len) {
  Buffer copy(len);
  std::memcpy(copy.data(), ip, len);
  const bool v4 = len >= kIpv4HdrLen && (ip[0] >> 4) == 4;
  const size_t ihl = v4 ? static_cast<size_t>(ip[0] & 0x0F) * 4 : 0;
  const bool hdr_ok = v4 && ihl >= kIpv4HdrLen && ihl <= len;
  const bool valid_before = hdr_ok && ipv4_header_checksum(copy.data(), ihl) == 0;
  if (ip_decrement_ttl(copy.data(), len)) {
    if (hdr_ok) CHECK((ipv4_header_checksum(copy.data(), ihl) == 0) == valid_before);
  } else if (len > 0) {
    CHECK(std::memcmp(copy.data(), ip, len) == 0);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  uint8_t params[4] = {0xFF, 0x05, 0x05, 0x00};
  if (size >= 4) {
    std::memcpy(params, data, 4);
    data += 4;
    size -= 4;
  }
  const size_t cap = params[0] == 0xFF ? 2048 : static_cast<size_t>(params[0]) * 8;
  const uint16_t max_mss = static_cast<uint16_t>(params[1] << 8 | params[2]);
  const uint32_t mtu = static_cast<uint32_t>(params[2]) << 8 | params[3];
  const uint16_t any_offset = static_cast<uint16_t>(params[3]);

  // The frame in an exactly sized buffer: libFuzzer's own copy is, but the
  // parameter prefix moved the start.
  Buffer frame_buf(size);
  if (size != 0) std::memcpy(frame_buf.data(), data, size);
  const uint8_t* frame = frame_buf.data();

  PacketInfo info;
  const ParseResult r = parse_frame(frame, size, &info);
  const bool parsed = r == ParseResult::kOk || (r == ParseResult::kUnsupported && info.has_vlan && info.l3_len != 0);
  if (r == ParseResult::kOk) check_info(info, size);

  // Bare IP packet at the start of the input.
  PacketInfo ip_info;
  const ParseResult ri = parse_ip(frame, size, &ip_info);
  if (ri == ParseResult::kOk) {
    check_info(ip_info, size);
    CHECK(ip_info.l3_offset == 0);
    fuzz_mss(frame, size, ip_info, max_mss);
  }
  fuzz_ttl(frame, size);
  fuzz_icmp_errors(frame, size, cap, mtu);

  // parse_frame and parse_ip agree on the IP packet.
  if (r == ParseResult::kOk && info.ether_type != kEtherTypeArp) {
    PacketInfo inner;
    CHECK(parse_ip(frame + info.l3_offset, info.l3_len, &inner) == ParseResult::kOk);
    CHECK(inner.l4_proto == info.l4_proto && inner.has_l4 == info.has_l4 && inner.is_fragment == info.is_fragment &&
          inner.later_fragment == info.later_fragment && inner.l3_len == info.l3_len &&
          inner.l4_offset + info.l3_offset == info.l4_offset);
  }

  if (parsed) {
    if (info.ether_type != kEtherTypeArp) {
      fuzz_mss(frame, size, info, max_mss);
      fuzz_echo(frame, size, info, cap);
      fuzz_nd(frame, size, info, cap);
      fuzz_icmp_errors(frame + info.l3_offset, size - info.l3_offset, cap, mtu);
      fuzz_ttl(frame + info.l3_offset, size - info.l3_offset);
    }
    if (info.l4_proto == kProtoUdp && info.has_l4) {
      EspView view;
      const size_t l3_end = static_cast<size_t>(info.l3_offset) + info.l3_len;
      if (classify_esp_in_udp(frame, l3_end, info.l4_offset, &view) == EspClass::kEsp) {
        CHECK(view.esp_offset == info.l4_offset + kUdpHdrLen);
        CHECK(view.esp_len >= kEspMinLen && view.esp_offset + view.esp_len <= l3_end);
      }
    }
  }
  fuzz_arp(frame, size, parsed ? info.l3_offset : static_cast<uint16_t>(kEtherHdrLen), cap);

  // Offsets the parsers did not choose.
  EspView view;
  if (classify_esp_in_udp(frame, size, any_offset, &view) == EspClass::kEsp) {
    CHECK(view.esp_offset + static_cast<size_t>(view.esp_len) <= size);
  }
  fuzz_arp(frame, size, any_offset, cap);
  return 0;
}
