#include "esp/encrypt.h"

#include <cstring>

#include <rte_byteorder.h>
#include <rte_ether.h>
#include <rte_ip.h>
#include <rte_udp.h>

#include "esp/burst.h"
#include "net/parse.h"
#include "route/tables.h"

namespace meshwire::dp::esp {
namespace {

// RFC 4303 padding (monotonic bytes 1, 2, 3), stored as one word ahead of
// the pad length and next header.
constexpr uint8_t kPadBytes[4] = {1, 2, 3, 4};

// kDummy: the payload is no IP packet but an ESP dummy (next header 59).
//
// Per packet: the SA's prebuilt outer headers are copied in front of the
// packet and its lengths, IPv4 checksum (from the template's sum) and
// sequence number patched in; only IPv6's UDP checksum, which covers the
// ciphertext, waits for the encryption.
template <bool kDummy>
uint16_t encrypt(GcmEngine& engine, const EncryptContext& ctx, rte_mbuf** pkts, OutboundSa* const* sas,
                 const uint64_t* dst_macs, uint16_t n, DropReason* reasons) {
  GcmOp ops[kMaxBurst];
  uint8_t aad[kMaxBurst][kAadLen];
  uint16_t op_of[kMaxBurst];
  bool ok[kMaxBurst];
  uint16_t nops = 0;
  bool any_v6 = false;
  uint32_t pad_word;
  std::memcpy(&pad_word, kPadBytes, 4);
  uint16_t src_mac_hi;
  uint32_t src_mac_lo;
  std::memcpy(&src_mac_lo, ctx.src_mac, 4);
  std::memcpy(&src_mac_hi, ctx.src_mac + 4, 2);
  const uint64_t v4_flags = ctx.offload_ipv4_cksum ? RTE_MBUF_F_TX_IPV4 | RTE_MBUF_F_TX_IP_CKSUM : 0;
  // Per-peer traffic, added once per run of packets to one peer.
  PeerTraffic* run = nullptr;
  uint64_t run_packets = 0, run_bytes = 0;
  auto flush_run = [&] {
    if (run != nullptr) {
      run->tx_packets += run_packets;
      run->tx_bytes += run_bytes;
    }
  };

  for (uint16_t i = 0; i < n; ++i) {
    ok[i] = false;
    rte_mbuf* m = pkts[i];
    OutboundSa* sa = sas[i];
    if (m->nb_segs != 1) {
      reasons[i] = DropReason::kMalformed;
      continue;
    }
    uint8_t* inner = rte_pktmbuf_mtod(m, uint8_t*);
    const uint32_t inner_len = m->data_len;
    const uint8_t version = inner_len ? (inner[0] >> 4) : 0;
    if ((!kDummy && version != 4 && version != 6) || sa->outer_template_len == 0) {
      reasons[i] = DropReason::kMalformed;
      continue;
    }
    const uint32_t pad = (4 - ((inner_len + kTrailerLen) & 3)) & 3;
    const bool outer_v6 = sa->outer_template_len == kOuterTemplateV6;
    const uint16_t ip_len = outer_v6 ? 40 : 20;
    const uint16_t hdr_len = sizeof(rte_ether_hdr) + ip_len + kUdpLen + kEspHeaderLen + kIvLen;
    const uint32_t tail_len = pad + kTrailerLen + kIcvLen;
    if (m->data_off < hdr_len || rte_pktmbuf_tailroom(m) < tail_len) {
      reasons[i] = DropReason::kTooBig;
      continue;
    }
    // Trailer: the padding as one word (the bytes past pad + 2 belong to the
    // ICV, which the encryption writes), then pad length and next header.
    uint8_t* tail = inner + inner_len;
    std::memcpy(tail, &pad_word, 4);
    tail[pad] = static_cast<uint8_t>(pad);
    tail[pad + 1] = kDummy ? net::kProtoNoNext : version == 4 ? net::kProtoIpInIp : net::kProtoIpv6;
    // The mbuf grows at both ends; one segment, room checked above.
    uint8_t* frame = inner - hdr_len;
    m->data_off = static_cast<uint16_t>(m->data_off - hdr_len);
    m->data_len = static_cast<uint16_t>(inner_len + hdr_len + tail_len);
    m->pkt_len += hdr_len + tail_len;

    const uint64_t seq = ++sa->seq;
    const uint32_t payload_len = inner_len + pad + kTrailerLen;  // encrypted bytes
    const uint16_t udp_len = static_cast<uint16_t>(kUdpLen + kEspHeaderLen + kIvLen + payload_len + kIcvLen);

    // Ethernet: the peer's MAC (packed little-endian: an 8-byte store whose
    // last two bytes the source MAC then overwrites), ours, the type.
    const uint64_t dst_mac = dst_macs[i];
    std::memcpy(frame, &dst_mac, 8);
    std::memcpy(frame + 6, &src_mac_lo, 4);
    std::memcpy(frame + 10, &src_mac_hi, 2);
    uint8_t* l3 = frame + sizeof(rte_ether_hdr);
    uint8_t* udp;
    if (outer_v6) {
      net::store_be16(frame + 12, RTE_ETHER_TYPE_IPV6);
      std::memcpy(l3, sa->outer_template, kOuterTemplateV6);
      net::store_be16(l3 + 4, udp_len);  // payload length
      udp = l3 + 40;
      m->l3_len = 40;
      any_v6 = true;
    } else {
      net::store_be16(frame + 12, RTE_ETHER_TYPE_IPV4);
      std::memcpy(l3, sa->outer_template, kOuterTemplateV4);
      const uint16_t total_length = static_cast<uint16_t>(20 + udp_len);
      net::store_be16(l3 + 2, total_length);
      if (v4_flags == 0) {
        const uint16_t cksum = outer_ip4_checksum(sa->ip4_sum, total_length);
        std::memcpy(l3 + 10, &cksum, 2);
      } else {
        m->ol_flags |= v4_flags;
      }
      udp = l3 + 20;
      m->l3_len = 20;
    }
    m->l2_len = sizeof(rte_ether_hdr);
    net::store_be16(udp + 4, udp_len);  // the UDP checksum: 0 for IPv4 (RFC 3948); IPv6's after encryption

    uint8_t* esp = udp + kUdpLen;  // the template wrote the SPI
    const uint32_t seq_lo = net::to_be32(static_cast<uint32_t>(seq));
    const uint32_t seq_hi = net::to_be32(static_cast<uint32_t>(seq >> 32));
    std::memcpy(esp + 4, &seq_lo, 4);
    std::memcpy(esp + 8, &seq_hi, 4);  // IV = the 64-bit sequence number
    std::memcpy(esp + 12, &seq_lo, 4);
    // AAD: SPI || seq-hi || seq-lo, all as on the wire.
    uint8_t* a = aad[nops];
    std::memcpy(a, esp, 4);
    std::memcpy(a + 4, &seq_hi, 4);
    std::memcpy(a + 8, &seq_lo, 4);
    point_esp_op(ops[nops], &sa->key, esp, payload_len, a);
    op_of[nops] = i;
    ++nops;
    ok[i] = true;
    if (sa->traffic != run) {
      flush_run();
      run = sa->traffic;
      run_packets = run_bytes = 0;
    }
    ++run_packets;
    run_bytes += m->pkt_len;
  }
  flush_run();

  const uint16_t encrypted = gcm_encrypt_burst(engine, ops, nops);

  for (uint16_t k = 0; encrypted != nops && k < nops; ++k) {  // an op fails only for a key never expanded
    if (ops[k].ok) continue;
    const uint16_t i = op_of[k];
    ok[i] = false;
    reasons[i] = DropReason::kMalformed;
    if (PeerTraffic* t = sas[i]->traffic; t != nullptr) {  // counted with its run above: not sent after all
      t->tx_packets -= 1;
      t->tx_bytes -= pkts[i]->pkt_len;
    }
  }
  for (uint16_t k = 0; any_v6 && k < nops; ++k) {
    const uint16_t i = op_of[k];
    if (!ops[k].ok || sas[i]->outer_template_len != kOuterTemplateV6) continue;
    rte_mbuf* m = pkts[i];
    auto* ip6 = rte_pktmbuf_mtod_offset(m, rte_ipv6_hdr*, sizeof(rte_ether_hdr));
    auto* udp = reinterpret_cast<rte_udp_hdr*>(ip6 + 1);
    if (ctx.offload_udp_cksum) {
      m->ol_flags |= RTE_MBUF_F_TX_IPV6 | RTE_MBUF_F_TX_UDP_CKSUM;
      udp->dgram_cksum = rte_ipv6_phdr_cksum(ip6, m->ol_flags);
    } else {
      udp->dgram_cksum = rte_ipv6_udptcp_cksum(ip6, udp);
    }
  }
  if (encrypted == n) return n;  // nothing failed: the burst is in order as it is
  return move_bad_to_tail(pkts, reasons, ok, n);
}

}  // namespace

uint16_t encrypt_burst(GcmEngine& engine, const EncryptContext& ctx, rte_mbuf** pkts,
                       OutboundSa* const* sas, const uint64_t* dst_macs, uint16_t n,
                       DropReason* reasons) {
  return encrypt<false>(engine, ctx, pkts, sas, dst_macs, n, reasons);
}

uint16_t encrypt_dummy_burst(GcmEngine& engine, const EncryptContext& ctx, rte_mbuf** pkts,
                             OutboundSa* const* sas, const uint64_t* dst_macs, uint16_t n,
                             DropReason* reasons) {
  return encrypt<true>(engine, ctx, pkts, sas, dst_macs, n, reasons);
}

}  // namespace meshwire::dp::esp
