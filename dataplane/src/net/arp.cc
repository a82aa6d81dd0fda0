#include "net/arp.h"

#include <cstring>

#include "net/parse.h"

namespace meshwire::dp::net {
namespace {

// Ethernet header + ARP body with all fields given; pads to the minimum frame.
size_t write_arp(const uint8_t eth_dst[6], const uint8_t eth_src[6], uint16_t op, const uint8_t sha[6],
                 uint32_t spa_be, const uint8_t tha[6], uint32_t tpa_be, uint8_t* out, size_t cap) {
  if (out == nullptr || cap < kEtherMinFrame) return 0;
  std::memset(out, 0, kEtherMinFrame);
  std::memcpy(out, eth_dst, 6);
  std::memcpy(out + 6, eth_src, 6);
  store_be16(out + 12, kEtherTypeArp);
  uint8_t* a = out + kEtherHdrLen;
  store_be16(a, 1);  // Ethernet
  store_be16(a + 2, kEtherTypeIpv4);
  a[4] = 6;
  a[5] = 4;
  store_be16(a + 6, op);
  std::memcpy(a + 8, sha, 6);
  std::memcpy(a + 14, &spa_be, 4);  // already in wire order
  std::memcpy(a + 18, tha, 6);
  std::memcpy(a + 24, &tpa_be, 4);
  return kEtherMinFrame;
}

}  // namespace

bool parse_arp(const uint8_t* frame, size_t len, uint16_t l3_offset, ArpInfo* arp) {
  if (frame == nullptr || l3_offset > len || len - l3_offset < kArpLen) return false;
  const uint8_t* a = frame + l3_offset;
  if (load_be16(a) != 1 || load_be16(a + 2) != kEtherTypeIpv4 || a[4] != 6 || a[5] != 4) return false;
  const uint16_t op = load_be16(a + 6);
  if (op != kArpOpRequest && op != kArpOpReply) return false;
  arp->op = op;
  std::memcpy(arp->sha, a + 8, 6);
  std::memcpy(&arp->spa_be, a + 14, 4);
  std::memcpy(arp->tha, a + 18, 6);
  std::memcpy(&arp->tpa_be, a + 24, 4);
  return true;
}

size_t build_arp_reply(const ArpInfo& request, const uint8_t our_mac[6], uint8_t* out, size_t cap) {
  return write_arp(request.sha, our_mac, kArpOpReply, our_mac, request.tpa_be, request.sha, request.spa_be, out,
                   cap);
}

size_t build_arp_request(const uint8_t src_mac[6], uint32_t src_ip_be, uint32_t target_ip_be, uint8_t* out,
                         size_t cap) {
  static constexpr uint8_t kBroadcast[6] = {0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF};
  static constexpr uint8_t kZero[6] = {};
  return write_arp(kBroadcast, src_mac, kArpOpRequest, src_mac, src_ip_be, kZero, target_ip_be, out, cap);
}

}  // namespace meshwire::dp::net
