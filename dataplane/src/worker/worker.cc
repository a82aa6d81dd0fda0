#include "worker/worker.h"

#include <unistd.h>

#include <cstring>

#include <rte_byteorder.h>
#include <rte_cycles.h>
#include <rte_ethdev.h>
#include <rte_ether.h>
#include <rte_ip.h>
#include <rte_pause.h>
#include <rte_rcu_qsbr.h>

#include "esp/decrypt.h"
#include "esp/encrypt.h"
#include "net/checksum.h"
#include "net/frag.h"
#include "net/mss.h"
#include "net/parse.h"
#include "worker/deliver.h"

namespace meshwire::dp {
namespace {

constexpr uint8_t kIcmpEchoRequest = 8;
constexpr uint8_t kIcmp6EchoRequest = 128;
constexpr uint8_t kNdRouterSolicit = 133;
constexpr uint8_t kNdNeighborSolicit = 135;
constexpr uint8_t kNdNeighborAdvert = 136;
// A 9000-byte jumbo over a 1500-byte fabric needs 7.
constexpr size_t kMaxFragments = 8;

inline void count_drop(WorkerContext& ctx, DropReason r) {
  ++ctx.counters->drops[static_cast<size_t>(r)];
}

inline void drop(WorkerContext& ctx, rte_mbuf* m, DropReason r) {
  count_drop(ctx, r);
  rte_pktmbuf_free(m);
}

inline void punt(WorkerContext& ctx, rte_mbuf* m, PuntKind kind, uint16_t port_index) {
  m->hash.usr = static_cast<uint32_t>(kind);
  m->port = port_index;
  if (rte_ring_sp_enqueue(ctx.punt, m) != 0) {
    drop(ctx, m, DropReason::kPuntQueueFull);
    return;
  }
  ++ctx.counters->punted;
}

inline void enqueue_tx(WorkerContext& ctx, TxBuffers& tx, uint16_t port_index, rte_mbuf* m) {
  uint16_t& c = tx.count[port_index];
  if (c == TxBuffers::kCapacity) flush_tx(ctx, tx);
  tx.pkts[port_index][c++] = m;
}

inline bool same_address(const uint8_t* a, const IpAddress& b, bool v6) {
  return v6 ? std::memcmp(a, b.bytes.data(), 16) == 0 : std::memcmp(a, b.bytes.data(), 4) == 0;
}

inline bool is_multicast_v4(const uint8_t* a) { return (a[0] & 0xF0) == 0xE0 || (a[0] == 0xFF && a[1] == 0xFF && a[2] == 0xFF && a[3] == 0xFF); }

// Offsets of an IP header and its destination/source address fields.
inline const uint8_t* ip_dst(const uint8_t* ip, bool v6) { return ip + (v6 ? 24 : 16); }
inline const uint8_t* ip_src(const uint8_t* ip, bool v6) { return ip + (v6 ? 8 : 12); }
inline uint32_t v4_host(const uint8_t* a) {
  uint32_t v;
  std::memcpy(&v, a, 4);
  return rte_be_to_cpu_32(v);
}

// The info of a frame, re-based so that the IP header is at offset 0.
inline net::PacketInfo rebase(const net::PacketInfo& info) {
  net::PacketInfo r = info;
  r.l4_offset = static_cast<uint16_t>(info.l4_offset - info.l3_offset);
  r.l3_offset = 0;
  return r;
}

inline bool is_tcp_syn(const uint8_t* ip, const net::PacketInfo& info) {
  return info.l4_proto == net::kProtoTcp && info.has_l4 && !info.is_fragment && (ip[info.l4_offset + 13] & 0x02);
}

// ICMP destination unreachable / time exceeded / parameter problem, ICMPv6
// destination unreachable / packet too big / time exceeded / parameter problem.
inline bool is_icmp_error(const uint8_t* ip, const net::PacketInfo& info) {
  if (!info.has_l4 || info.is_fragment) return false;
  const uint8_t type = ip[info.l4_offset];
  if (info.l4_proto == net::kProtoIcmp) return type == 3 || type == 11 || type == 12;
  return info.l4_proto == net::kProtoIcmpv6 && type >= 1 && type <= 4;
}

inline bool dont_fragment(const uint8_t* ip, bool v6) {
  return v6 || (ip[6] & 0x40);
}

// The first step of both RX stages: count the packet on its port, parse it.
// On failure the packet is dropped (as `unsupported` for what parses but is
// not carried, kMalformed otherwise) and false returned.
inline bool rx_parse(WorkerContext& ctx, uint16_t port_index, rte_mbuf* m, DropReason unsupported,
                     net::PacketInfo* info) {
  auto& pc = ctx.counters->ports[port_index];
  pc.rx_packets++;
  pc.rx_bytes += m->pkt_len;
  if (m->nb_segs != 1) {
    drop(ctx, m, DropReason::kMalformed);
    return false;
  }
  const net::ParseResult pr = net::parse_frame(rte_pktmbuf_mtod(m, const uint8_t*), m->data_len, info);
  if (pr != net::ParseResult::kOk) {
    drop(ctx, m, pr == net::ParseResult::kUnsupported ? unsupported : DropReason::kMalformed);
    return false;
  }
  return true;
}

// Delivers IP packets (data at their IP headers) to local pods: one bulk
// neighbour lookup for the burst, then TTL, Ethernet header, TX. A pod whose
// MAC is unknown gets its packet held by the control thread while it asks.
void deliver_local_burst(WorkerContext& ctx, TxBuffers& tx, rte_mbuf** pkts, const bool* v6, uint16_t n) {
  if (n == 0) return;
  NeighborCache& cache = ctx.neighbor_cache;
  cache.sync(ctx.tables->neighbors->epoch.load(std::memory_order_acquire));
  NeighborKey keys[kRxBurst];
  uint64_t packed[kRxBurst];
  // The worker's cache first; one bulk lookup in the shared table for the rest.
  const void* miss_keys[kRxBurst];
  uint16_t miss_of[kRxBurst];
  uint16_t nmiss = 0;
  for (uint16_t i = 0; i < n; ++i) {
    NeighborKey& k = keys[i];
    std::memset(&k, 0, sizeof(k));
    const uint8_t* ip = rte_pktmbuf_mtod(pkts[i], const uint8_t*);
    if (v6[i]) {  // fixed-size copies: cheaper than one copy of variable size
      k.family = 6;
      std::memcpy(k.addr, ip_dst(ip, true), 16);
    } else {
      k.family = 4;
      std::memcpy(k.addr, ip_dst(ip, false), 4);
    }
    packed[i] = cache.find(k);
    if (packed[i] == 0) {
      miss_keys[nmiss] = &k;
      miss_of[nmiss++] = i;
    }
  }
  if (nmiss != 0) {
    void* data[kRxBurst];
    uint64_t hits = 0;
    rte_hash_lookup_bulk_data(ctx.tables->neighbors->hash, miss_keys, nmiss, &hits, data);
    for (uint16_t j = 0; j < nmiss; ++j) {
      if (!(hits & (1ull << j))) continue;
      const uint16_t i = miss_of[j];
      packed[i] = reinterpret_cast<uintptr_t>(data[j]);
      cache.insert(keys[i], packed[i]);
    }
  }
  for (uint16_t i = 0; i < n; ++i) {
    rte_mbuf* m = pkts[i];
    if (packed[i] == 0) {
      punt(ctx, m, PuntKind::kNeighborMiss, ctx.node->local_default);
      continue;
    }
    uint8_t mac[6];
    unpack_mac(packed[i], mac);
    const uint16_t port_index = neighbor_port(packed[i]);
    const DropReason verdict = frame_for_pod(m, ctx.node->ports[port_index].mac, mac);
    if (verdict != DropReason::kCount) {
      drop(ctx, m, verdict);
      continue;
    }
    enqueue_tx(ctx, tx, port_index, m);
  }
}

}  // namespace

void flush_tx(WorkerContext& ctx, TxBuffers& tx) {
  for (uint16_t p = 0; p < ctx.node->ports.size(); ++p) {
    const uint16_t n = tx.count[p];
    if (n == 0) continue;
    uint64_t bytes = 0;
    for (uint16_t i = 0; i < n; ++i) bytes += tx.pkts[p][i]->pkt_len;
    const uint16_t sent = rte_eth_tx_burst(ctx.node->ports[p].port_id, static_cast<uint16_t>(ctx.index), tx.pkts[p], n);
    for (uint16_t i = sent; i < n; ++i) {
      bytes -= tx.pkts[p][i]->pkt_len;
      drop(ctx, tx.pkts[p][i], DropReason::kTxFull);
    }
    auto& pc = ctx.counters->ports[p];
    pc.tx_packets += sent;
    pc.tx_bytes += bytes;
    tx.count[p] = 0;
  }
}

void process_local_burst(WorkerContext& ctx, TxBuffers& tx, uint16_t port_index, rte_mbuf** pkts, uint16_t n) {
  const NodeRuntime& node = *ctx.node;
  // Routed candidates, by family, for bulk FIB lookups.
  rte_mbuf* v4[kRxBurst];
  net::PacketInfo v4_info[kRxBurst];
  uint32_t v4_dst[kRxBurst];
  uint64_t v4_nh[kRxBurst];
  uint16_t n4 = 0;
  rte_mbuf* v6[kRxBurst];
  net::PacketInfo v6_info[kRxBurst];
  uint8_t v6_dst[kRxBurst][RTE_FIB6_IPV6_ADDR_SIZE];
  uint64_t v6_nh[kRxBurst];
  uint16_t n6 = 0;

  for (uint16_t i = 0; i < n; ++i) {
    rte_mbuf* m = pkts[i];
    net::PacketInfo info;
    if (!rx_parse(ctx, port_index, m, DropReason::kUnsupported, &info)) continue;
    const uint8_t* frame = rte_pktmbuf_mtod(m, const uint8_t*);
    if (info.ether_type == net::kEtherTypeArp) {
      punt(ctx, m, PuntKind::kArp, port_index);
      continue;
    }
    const bool is_v6 = info.ether_type == net::kEtherTypeIpv6;
    const uint8_t* ip = frame + info.l3_offset;
    const uint8_t* dst = ip_dst(ip, is_v6);
    if (is_v6) {
      if (info.l4_proto == net::kProtoIcmpv6 && info.has_l4) {
        const uint8_t type = frame[info.l4_offset];
        if (type == kNdNeighborSolicit || type == kNdNeighborAdvert) {
          punt(ctx, m, PuntKind::kNd, port_index);
          continue;
        }
        if (type == kIcmp6EchoRequest && same_address(dst, node.gateway_v6, true)) {
          punt(ctx, m, PuntKind::kEcho, port_index);
          continue;
        }
        if (type >= kNdRouterSolicit && type <= kNdNeighborAdvert + 1) {  // RS, RA, redirect
          drop(ctx, m, DropReason::kUnsupported);
          continue;
        }
      }
      if (dst[0] == 0xFF) {  // multicast (MLD reports and the like)
        drop(ctx, m, DropReason::kUnsupported);
        continue;
      }
      if (same_address(dst, node.gateway_v6, true)) {
        drop(ctx, m, DropReason::kNotForUs);
        continue;
      }
      std::memcpy(v6_dst[n6], dst, 16);
      v6_info[n6] = info;
      v6[n6++] = m;
    } else {
      if (same_address(dst, node.gateway_v4, false)) {
        if (info.l4_proto == net::kProtoIcmp && info.has_l4 && frame[info.l4_offset] == kIcmpEchoRequest) {
          punt(ctx, m, PuntKind::kEcho, port_index);
        } else {
          drop(ctx, m, DropReason::kNotForUs);
        }
        continue;
      }
      if (is_multicast_v4(dst)) {
        drop(ctx, m, DropReason::kUnsupported);
        continue;
      }
      v4_dst[n4] = v4_host(dst);
      v4_info[n4] = info;
      v4[n4++] = m;
    }
  }
  if (n4) rte_fib_lookup_bulk(ctx.tables->fib4, v4_dst, v4_nh, n4);
  if (n6) rte_fib6_lookup_bulk(ctx.tables->fib6, v6_dst, v6_nh, n6);

  // Same-node deliveries, then the encrypt batch.
  rte_mbuf* local[kRxBurst];
  bool local_v6[kRxBurst];
  uint16_t nlocal = 0;
  // Fragments can make more packets than came in: the batch is sent
  // whenever it is full.
  rte_mbuf* enc[esp::kMaxBurst];
  esp::OutboundSa* enc_sa[esp::kMaxBurst];
  uint64_t enc_mac[esp::kMaxBurst];
  uint16_t nenc = 0;
  auto encrypt_batch = [&] {
    if (nenc == 0) return;
    const PortRuntime& up = node.ports[node.uplink];
    esp::EncryptContext ectx{};
    std::memcpy(ectx.src_mac, up.mac, 6);
    ectx.offload_ipv4_cksum = up.offload_ipv4_cksum;
    ectx.offload_udp_cksum = up.offload_udp_cksum;
    DropReason reasons[esp::kMaxBurst];
    const uint16_t good = esp::encrypt_burst(*ctx.engine, ectx, enc, enc_sa, enc_mac, nenc, reasons);
    for (uint16_t i = 0; i < good; ++i) {
      ctx.counters->encrypted_packets++;
      ctx.counters->encrypted_bytes += enc[i]->pkt_len;
      enqueue_tx(ctx, tx, node.uplink, enc[i]);
    }
    for (uint16_t i = good; i < nenc; ++i) drop(ctx, enc[i], reasons[i]);
    nenc = 0;
  };
  auto add_to_batch = [&](rte_mbuf* m, esp::OutboundSa* sa, uint64_t mac) {
    if (nenc == esp::kMaxBurst) encrypt_batch();
    enc[nenc] = m;
    enc_sa[nenc] = sa;
    enc_mac[nenc] = mac;
    ++nenc;
  };
  // An IPv4 packet without DF that does not fit the tunnel: split before
  // encryption (RFC 4459 section 3) into fresh mbufs from the same pool.
  auto fragment_into_batch = [&](rte_mbuf* m, esp::OutboundSa* sa, uint64_t mac) {
    const uint8_t* ip = rte_pktmbuf_mtod(m, const uint8_t*);
    const size_t count = net::ipv4_fragment_count(ip, m->data_len, node.max_inner_len);
    rte_mbuf* frags[kMaxFragments];
    if (count == 0 || count > kMaxFragments || rte_pktmbuf_alloc_bulk(m->pool, frags, static_cast<unsigned>(count)) != 0) {
      drop(ctx, m, DropReason::kTooBig);
      return;
    }
    for (size_t k = 0; k < count; ++k) {
      uint8_t* out = rte_pktmbuf_mtod(frags[k], uint8_t*);
      const size_t len = net::ipv4_build_fragment(ip, m->data_len, node.max_inner_len, k, out,
                                                  rte_pktmbuf_tailroom(frags[k]));
      frags[k]->data_len = static_cast<uint16_t>(len);
      frags[k]->pkt_len = static_cast<uint32_t>(len);
    }
    rte_pktmbuf_free(m);
    ctx.counters->fragmented++;
    for (size_t k = 0; k < count; ++k) add_to_batch(frags[k], sa, mac);
  };

  auto route_one = [&](rte_mbuf* m, const net::PacketInfo& info, uint64_t nh, bool is_v6) {
    if (nh == kNextHopNone) {
      drop(ctx, m, DropReason::kNoRoute);
      return;
    }
    // Strip Ethernet and any trailing padding: from here on the mbuf is the IP packet.
    rte_pktmbuf_adj(m, info.l3_offset);
    rte_pktmbuf_trim(m, static_cast<uint16_t>(m->data_len - info.l3_len));
    const net::PacketInfo ip_info = rebase(info);
    uint8_t* ip = rte_pktmbuf_mtod(m, uint8_t*);
    if (info.ttl <= 1) {
      punt(ctx, m, PuntKind::kTtlExceeded, port_index);
      count_drop(ctx, DropReason::kTtlExceeded);
      return;
    }
    if (nh == kNextHopLocal) {
      ctx.counters->forwarded_local++;
      local_v6[nlocal] = is_v6;
      local[nlocal++] = m;
      return;
    }
    const uint64_t peer = nh - kNextHopPeerBase;
    const bool too_big = info.l3_len > node.max_inner_len;
    if (too_big && dont_fragment(ip, is_v6)) {
      if (!info.is_fragment) {
        punt(ctx, m, PuntKind::kTooBig, port_index);  // the control thread answers with the MTU
      } else {
        rte_pktmbuf_free(m);
      }
      count_drop(ctx, DropReason::kTooBig);
      return;
    }
    const uint64_t mac = ctx.tables->peers[peer]->link->fabric_mac.load(std::memory_order_relaxed);
    if (mac == 0) {
      drop(ctx, m, DropReason::kPeerUnresolved);
      return;
    }
    net::ip_decrement_ttl(ip);
    esp::OutboundSa* sa = ctx.tables->outbound[peer][ctx.index];
    if (too_big) {
      fragment_into_batch(m, sa, mac);  // IPv4 without DF
      return;
    }
    if (is_tcp_syn(ip, ip_info) &&
        net::clamp_tcp_mss(ip, m->data_len, ip_info, is_v6 ? node.mss_v6 : node.mss_v4)) {
      ctx.counters->mss_clamped++;
    }
    add_to_batch(m, sa, mac);
  };
  for (uint16_t i = 0; i < n4; ++i) route_one(v4[i], v4_info[i], v4_nh[i], false);
  for (uint16_t i = 0; i < n6; ++i) route_one(v6[i], v6_info[i], v6_nh[i], true);
  deliver_local_burst(ctx, tx, local, local_v6, nlocal);

  encrypt_batch();
}

void process_uplink_burst(WorkerContext& ctx, TxBuffers& tx, rte_mbuf** pkts, uint16_t n) {
  const NodeRuntime& node = *ctx.node;
  const bool node_v6 = node.tunnel_address.is_v6();
  rte_mbuf* esp_pkts[kRxBurst];
  esp::EspMeta meta[kRxBurst];
  uint16_t nesp = 0;

  for (uint16_t i = 0; i < n; ++i) {
    rte_mbuf* m = pkts[i];
    net::PacketInfo info;
    if (!rx_parse(ctx, node.uplink, m, DropReason::kPlaintextOnUplink, &info)) continue;
    const uint8_t* frame = rte_pktmbuf_mtod(m, const uint8_t*);
    if (info.ether_type == net::kEtherTypeArp) {
      punt(ctx, m, PuntKind::kArp, node.uplink);
      continue;
    }
    const bool is_v6 = info.ether_type == net::kEtherTypeIpv6;
    const uint8_t* ip = frame + info.l3_offset;
    if (is_v6 && info.l4_proto == net::kProtoIcmpv6 && info.has_l4) {
      const uint8_t type = frame[info.l4_offset];
      if (type == kNdNeighborSolicit || type == kNdNeighborAdvert) {
        punt(ctx, m, PuntKind::kNd, node.uplink);
        continue;
      }
    }
    if (is_v6 != node_v6 || !same_address(ip_dst(ip, is_v6), node.tunnel_address, is_v6)) {
      drop(ctx, m, DropReason::kPlaintextOnUplink);
      continue;
    }
    if (info.l4_proto == net::kProtoUdp && info.has_l4 && !info.is_fragment) {
      const uint16_t dport = static_cast<uint16_t>(frame[info.l4_offset + 2] << 8 | frame[info.l4_offset + 3]);
      if (dport == net::kEspInUdpPort) {
        net::EspView view;
        switch (net::classify_esp_in_udp(frame, m->data_len, info.l4_offset, &view)) {
          case net::EspClass::kEsp: {
            esp::EspMeta& em = meta[nesp];
            em.key.spi = view.spi;
            if (is_v6) {
              em.key.family = 6;
              std::memcpy(em.key.addr, ip_src(ip, true), 16);
            } else {
              em.key.family = 4;
              std::memcpy(em.key.addr, ip_src(ip, false), 4);
              std::memset(em.key.addr + 4, 0, 12);
            }
            em.seq_low = view.seq_low;
            em.esp_offset = view.esp_offset;
            em.esp_len = view.esp_len;
            esp_pkts[nesp++] = m;
            continue;
          }
          case net::EspClass::kKeepalive:
            drop(ctx, m, DropReason::kUnsupported);
            continue;
          case net::EspClass::kTruncated:
            drop(ctx, m, DropReason::kMalformed);
            continue;
          case net::EspClass::kNonEsp:
            drop(ctx, m, DropReason::kPlaintextOnUplink);
            continue;
        }
      }
    }
    if (info.has_l4 && !info.is_fragment &&
        ((!is_v6 && info.l4_proto == net::kProtoIcmp && frame[info.l4_offset] == kIcmpEchoRequest) ||
         (is_v6 && info.l4_proto == net::kProtoIcmpv6 && frame[info.l4_offset] == kIcmp6EchoRequest))) {
      punt(ctx, m, PuntKind::kEcho, node.uplink);
      continue;
    }
    drop(ctx, m, DropReason::kPlaintextOnUplink);
  }
  if (nesp == 0) return;

  DropReason reasons[kRxBurst];
  uint16_t peer_of[kRxBurst];
  const uint16_t good = esp::decrypt_burst(*ctx.engine, *ctx.tables, esp_pkts, meta, nesp, reasons, peer_of);
  for (uint16_t i = good; i < nesp; ++i) drop(ctx, esp_pkts[i], reasons[i]);

  // The inner source must be one of the sending peer's pods (or the peer
  // itself in an ICMP error), the destination one of ours: membership in
  // their pod CIDRs (which never overlap), no FIB lookup needed.
  rte_mbuf* deliver[kRxBurst];
  bool deliver_v6[kRxBurst];
  uint16_t ndeliver = 0;
  uint64_t decrypted_bytes = 0;
  for (uint16_t i = 0; i < good; ++i) {
    rte_mbuf* m = esp_pkts[i];
    decrypted_bytes += m->pkt_len;
    const uint8_t* ip = rte_pktmbuf_mtod(m, const uint8_t*);
    net::PacketInfo info;
    if (net::parse_ip(ip, m->data_len, &info) != net::ParseResult::kOk) {
      drop(ctx, m, DropReason::kMalformed);
      continue;
    }
    const bool is_v6 = info.ether_type == net::kEtherTypeIpv6;
    const PeerRuntime& peer = *ctx.tables->peers[peer_of[i]];
    const IpAddress& peer_address = peer.tunnel_address;
    if (!peer.pods.contains(ip_src(ip, is_v6), is_v6) &&
        !(is_icmp_error(ip, info) && peer_address.is_v6() == is_v6 &&
          same_address(ip_src(ip, is_v6), peer_address, is_v6))) {
      drop(ctx, m, DropReason::kInnerSpoofed);
      continue;
    }
    if (!ctx.tables->local_pods.contains(ip_dst(ip, is_v6), is_v6)) {
      drop(ctx, m, DropReason::kNotForUs);
      continue;
    }
    if (info.ttl <= 1) {
      punt(ctx, m, PuntKind::kTtlExceeded, node.uplink);  // answered through the tunnel
      count_drop(ctx, DropReason::kTtlExceeded);
      continue;
    }
    // Trim any bytes after the inner IP packet (there should be none).
    if (m->data_len > info.l3_len) rte_pktmbuf_trim(m, static_cast<uint16_t>(m->data_len - info.l3_len));
    deliver_v6[ndeliver] = is_v6;
    deliver[ndeliver++] = m;
  }
  ctx.counters->decrypted_packets += good;
  ctx.counters->decrypted_bytes += decrypted_bytes;
  deliver_local_burst(ctx, tx, deliver, deliver_v6, ndeliver);
}

int worker_main(void* arg) {
  auto& ctx = *static_cast<WorkerContext*>(arg);
  const NodeRuntime& node = *ctx.node;
  TxBuffers tx;
  rte_mbuf* pkts[kRxBurst];
  uint32_t idle_polls = 0;
  const uint16_t q = static_cast<uint16_t>(ctx.index);
  rte_rcu_qsbr_thread_register(ctx.qsbr, ctx.index);
  rte_rcu_qsbr_thread_online(ctx.qsbr, ctx.index);

  while (!ctx.stop->load(std::memory_order_relaxed)) {
    // The generation of the tables for this round: a new one published by
    // the control thread is picked up here, never in the middle of a burst.
    ctx.tables = ctx.live->load(std::memory_order_acquire);
    uint32_t work = 0;
    for (uint16_t p = 0; p < node.ports.size(); ++p) {
      const uint16_t n = rte_eth_rx_burst(node.ports[p].port_id, q, pkts, kRxBurst);
      if (n == 0) continue;
      work += n;
      if (p == node.uplink) {
        process_uplink_burst(ctx, tx, pkts, n);
      } else {
        process_local_burst(ctx, tx, p, pkts, n);
      }
    }
    // Frames built by the control thread (ARP/ND replies, ICMP errors).
    const unsigned ninj = rte_ring_sc_dequeue_burst(ctx.inject, reinterpret_cast<void**>(pkts), kRxBurst, nullptr);
    for (unsigned i = 0; i < ninj; ++i) {
      if (static_cast<InjectKind>(pkts[i]->hash.usr) == InjectKind::kLocalRx) {
        process_local_burst(ctx, tx, pkts[i]->port, &pkts[i], 1);
      } else {
        enqueue_tx(ctx, tx, pkts[i]->port, pkts[i]);
      }
    }
    work += ninj;
    flush_tx(ctx, tx);
    // Done with this round's generation.
    rte_rcu_qsbr_quiescent(ctx.qsbr, ctx.index);

    if (work != 0 || ctx.node->idle == IdleMode::kBusyPoll) {
      idle_polls = 0;
      continue;
    }
    // Adaptive idle backoff: spin briefly, then yield the core in growing naps
    // (offline meanwhile, so that no generation waits for a sleeper).
    ++idle_polls;
    if (idle_polls < 256) {
      rte_pause();
    } else {
      const uint32_t us = idle_polls < 1024 ? 10 : (idle_polls < 4096 ? 100 : 500);
      rte_rcu_qsbr_thread_offline(ctx.qsbr, ctx.index);
      usleep(us);
      rte_rcu_qsbr_thread_online(ctx.qsbr, ctx.index);
    }
  }
  flush_tx(ctx, tx);
  rte_rcu_qsbr_thread_offline(ctx.qsbr, ctx.index);
  rte_rcu_qsbr_thread_unregister(ctx.qsbr, ctx.index);
  return 0;
}

}  // namespace meshwire::dp
