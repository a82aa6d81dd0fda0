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

// Pre-built padding: RFC 4303 monotonic bytes 1, 2, 3.
constexpr uint8_t kPadBytes[4] = {1, 2, 3, 4};

// kDummy: the payload is no IP packet but an ESP dummy (next header 59).
template <bool kDummy>
uint16_t encrypt(GcmEngine& engine, const EncryptContext& ctx, rte_mbuf** pkts, OutboundSa* const* sas,
                 const uint64_t* dst_macs, uint16_t n, DropReason* reasons) {
  GcmOp ops[kMaxBurst];
  uint8_t aad[kMaxBurst][kAadLen];
  uint16_t op_of[kMaxBurst];
  bool ok[kMaxBurst];
  uint16_t nops = 0;

  for (uint16_t i = 0; i < n; ++i) {
    ok[i] = false;
    rte_mbuf* m = pkts[i];
    OutboundSa* sa = sas[i];
    if (m->nb_segs != 1) {
      reasons[i] = DropReason::kMalformed;
      continue;
    }
    const uint8_t* inner = rte_pktmbuf_mtod(m, const uint8_t*);
    const uint32_t inner_len = m->data_len;
    const uint8_t version = inner_len ? (inner[0] >> 4) : 0;
    if (!kDummy && version != 4 && version != 6) {
      reasons[i] = DropReason::kMalformed;
      continue;
    }
    const uint32_t pad = (4 - ((inner_len + kTrailerLen) & 3)) & 3;
    const bool outer_v6 = sa->family == 6;
    const uint16_t ip_len = outer_v6 ? sizeof(rte_ipv6_hdr) : sizeof(rte_ipv4_hdr);
    const uint16_t hdr_len = sizeof(rte_ether_hdr) + ip_len + kUdpLen + kEspHeaderLen + kIvLen;
    if (rte_pktmbuf_headroom(m) < hdr_len || rte_pktmbuf_tailroom(m) < pad + kTrailerLen + kIcvLen) {
      reasons[i] = DropReason::kTooBig;
      continue;
    }
    uint8_t* tail = reinterpret_cast<uint8_t*>(rte_pktmbuf_append(m, pad + kTrailerLen + kIcvLen));
    std::memcpy(tail, kPadBytes, pad);
    tail[pad] = static_cast<uint8_t>(pad);
    tail[pad + 1] = kDummy ? net::kProtoNoNext : version == 4 ? net::kProtoIpInIp : net::kProtoIpv6;
    uint8_t* frame = reinterpret_cast<uint8_t*>(rte_pktmbuf_prepend(m, hdr_len));

    const uint64_t seq = ++sa->seq;
    const uint32_t payload_len = inner_len + pad + kTrailerLen;  // encrypted bytes
    const uint16_t udp_len = kUdpLen + kEspHeaderLen + kIvLen + payload_len + kIcvLen;

    auto* eth = reinterpret_cast<rte_ether_hdr*>(frame);
    unpack_mac(dst_macs[i], eth->dst_addr.addr_bytes);
    std::memcpy(eth->src_addr.addr_bytes, ctx.src_mac, 6);
    uint8_t* l3 = frame + sizeof(rte_ether_hdr);
    auto* udp = reinterpret_cast<rte_udp_hdr*>(l3 + ip_len);
    if (outer_v6) {
      eth->ether_type = rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV6);
      auto* ip6 = reinterpret_cast<rte_ipv6_hdr*>(l3);
      ip6->vtc_flow = rte_cpu_to_be_32(6u << 28);
      ip6->payload_len = rte_cpu_to_be_16(udp_len);
      ip6->proto = IPPROTO_UDP;
      ip6->hop_limits = 64;
      std::memcpy(ip6->src_addr, sa->outer_src, 16);
      std::memcpy(ip6->dst_addr, sa->outer_dst, 16);
      m->l3_len = sizeof(rte_ipv6_hdr);
    } else {
      eth->ether_type = rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV4);
      auto* ip4 = reinterpret_cast<rte_ipv4_hdr*>(l3);
      ip4->version_ihl = 0x45;
      ip4->type_of_service = 0;
      ip4->total_length = rte_cpu_to_be_16(static_cast<uint16_t>(sizeof(rte_ipv4_hdr) + udp_len));
      ip4->packet_id = 0;
      ip4->fragment_offset = rte_cpu_to_be_16(RTE_IPV4_HDR_DF_FLAG);
      ip4->time_to_live = 64;
      ip4->next_proto_id = IPPROTO_UDP;
      ip4->hdr_checksum = 0;
      std::memcpy(&ip4->src_addr, sa->outer_src, 4);
      std::memcpy(&ip4->dst_addr, sa->outer_dst, 4);
      m->l3_len = sizeof(rte_ipv4_hdr);
    }
    m->l2_len = sizeof(rte_ether_hdr);
    udp->src_port = rte_cpu_to_be_16(sa->udp_sport);
    udp->dst_port = rte_cpu_to_be_16(net::kEspInUdpPort);
    udp->dgram_len = rte_cpu_to_be_16(udp_len);
    udp->dgram_cksum = 0;  // RFC 3948: zero for IPv4; IPv6 filled in after encryption

    uint8_t* esp = reinterpret_cast<uint8_t*>(udp) + kUdpLen;
    net::store_be32(esp, sa->spi);
    net::store_be32(esp + 4, static_cast<uint32_t>(seq));
    net::store_be32(esp + 8, static_cast<uint32_t>(seq >> 32));  // IV = the 64-bit sequence number
    net::store_be32(esp + 12, static_cast<uint32_t>(seq));
    prepare_esp_op(ops[nops], &sa->key, esp, payload_len, sa->spi, seq, aad[nops]);
    op_of[nops] = i;
    ++nops;
    ok[i] = true;
  }

  gcm_encrypt_burst(engine, ops, nops);

  // Per-peer traffic, added once per run of packets to one peer.
  PeerTraffic* run = nullptr;
  uint64_t run_packets = 0, run_bytes = 0;
  auto flush_run = [&] {
    if (run != nullptr) {
      run->tx_packets += run_packets;
      run->tx_bytes += run_bytes;
    }
  };
  for (uint16_t k = 0; k < nops; ++k) {
    const uint16_t i = op_of[k];
    if (!ops[k].ok) {
      ok[i] = false;
      reasons[i] = DropReason::kMalformed;
      continue;
    }
    rte_mbuf* m = pkts[i];
    if (sas[i]->traffic != run) {
      flush_run();
      run = sas[i]->traffic;
      run_packets = run_bytes = 0;
    }
    ++run_packets;
    run_bytes += m->pkt_len;
    uint8_t* l3 = rte_pktmbuf_mtod_offset(m, uint8_t*, sizeof(rte_ether_hdr));
    if (sas[i]->family == 6) {
      auto* ip6 = reinterpret_cast<rte_ipv6_hdr*>(l3);
      auto* udp = reinterpret_cast<rte_udp_hdr*>(ip6 + 1);
      if (ctx.offload_udp_cksum) {
        m->ol_flags |= RTE_MBUF_F_TX_IPV6 | RTE_MBUF_F_TX_UDP_CKSUM;
        udp->dgram_cksum = rte_ipv6_phdr_cksum(ip6, m->ol_flags);
      } else {
        udp->dgram_cksum = rte_ipv6_udptcp_cksum(ip6, udp);
      }
    } else {
      auto* ip4 = reinterpret_cast<rte_ipv4_hdr*>(l3);
      if (ctx.offload_ipv4_cksum) {
        m->ol_flags |= RTE_MBUF_F_TX_IPV4 | RTE_MBUF_F_TX_IP_CKSUM;
      } else {
        ip4->hdr_checksum = rte_ipv4_cksum(ip4);
      }
    }
  }
  flush_run();
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
