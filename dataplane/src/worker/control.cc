#include "worker/control.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <string>

#include <rte_byteorder.h>
#include <rte_cycles.h>
#include <rte_ether.h>
#include <rte_mbuf.h>

#include "net/arp.h"
#include "net/checksum.h"
#include "net/icmp.h"
#include "net/nd.h"
#include "net/parse.h"
#include "worker/deliver.h"
#include "worker/keepalive.h"
#include "worker/liveness.h"

namespace meshwire::dp {
namespace {

IpAddress v4_from(const uint8_t* p) {
  IpAddress a;
  a.family = 4;
  std::memcpy(a.bytes.data(), p, 4);
  return a;
}
IpAddress v6_from(const uint8_t* p) {
  IpAddress a;
  a.family = 6;
  std::memcpy(a.bytes.data(), p, 16);
  return a;
}
constexpr size_t kHeldPerAddress = 4;
constexpr size_t kHeldTotal = 256;

std::string address_key(const IpAddress& a) {
  std::string key(reinterpret_cast<const char*>(a.bytes.data()), 16);
  key.push_back(static_cast<char>(a.family));
  return key;
}

bool is_unspecified_v6(const uint8_t* p) {
  static constexpr uint8_t kZero[16] = {};
  return std::memcmp(p, kZero, 16) == 0;
}

}  // namespace

Control::Control(const NodeRuntime& node, std::atomic<Tables*>& live, std::vector<WorkerContext>& workers,
                 rte_mempool* pool, WorkerCounters* counters)
    : node_(node), live_(live), workers_(workers), pool_(pool), counters_(counters) {
  const uint32_t now_ms = lb::flow_clock_ms();
  next_liveness_ms_ = now_ms;
  icmp_refilled_ms_ = now_ms;
}

Control::~Control() {
  for (auto& [key, held] : held_) {
    for (rte_mbuf* m : held.pkts) rte_pktmbuf_free(m);
  }
}

unsigned Control::poll() {
  unsigned handled = 0;
  rte_mbuf* pkts[32];
  for (WorkerContext& w : workers_) {
    const unsigned n = rte_ring_sc_dequeue_burst(w.punt, reinterpret_cast<void**>(pkts), 32, nullptr);
    for (unsigned i = 0; i < n; ++i) handle(pkts[i]);
    handled += n;
  }
  const uint64_t now = rte_get_timer_cycles();
  if (now >= next_peer_round_) {
    resolve_peers(now, false);
  } else if (tables().generation != resolved_generation_) {
    resolve_peers(now, true);  // a new generation may bring peers to resolve: ask them now
  }
  if (held_count_ != 0 && now >= next_expiry_) expire_held(now);
  if (node_.liveness.interval_ms != 0) {
    const uint32_t now_ms = lb::flow_clock_ms();
    if (static_cast<int32_t>(now_ms - next_liveness_ms_) >= 0) {
      liveness_round(now_ms);
    } else if (keepalive_next_ < tables().peers.size()) {
      send_keepalives();
    }
  }
  return handled;
}

void Control::liveness_round(uint32_t now_ms) {
  const LivenessSettings& s = node_.liveness;
  next_liveness_ms_ = now_ms + s.interval_ms;
  for (const PeerRuntime* p : tables().peers) {
    PeerLink& link = *p->link;
    const LivenessChange change = evaluate_liveness(link, now_ms, s.misses * s.interval_ms);
    if (change == LivenessChange::kNone) continue;
    const std::string address = format_ip(p->tunnel_address);
    if (change == LivenessChange::kDown) {
      ++peers_gone_down_;
      std::fprintf(stderr, "meshwire-dataplane: peer %s (%s) down: no keepalive for %u ms\n", p->name.c_str(),
                   address.c_str(), heard_ms_ago(link, now_ms));
    } else if (link.heard_when_down != 0) {
      std::fprintf(stderr, "meshwire-dataplane: peer %s (%s) up: heard again after %u ms\n", p->name.c_str(),
                   address.c_str(), link.last_heard_ms.load(std::memory_order_relaxed) - link.heard_when_down);
    } else {
      std::fprintf(stderr, "meshwire-dataplane: peer %s (%s) up\n", p->name.c_str(), address.c_str());
    }
  }
  keepalive_next_ = 0;
  send_keepalives();
}

void Control::send_keepalives() {
  // The live generation, whichever it is now: a keepalive names its
  // generation, and a worker still on another one drops it.
  const Tables& t = tables();
  // Peer indexes are 16 bits wide here as in the inbound SA table.
  const size_t end = std::min({t.peers.size(), keepalive_next_ + kKeepalivesPerPoll, size_t{0x10000}});
  const auto interval = static_cast<uint16_t>(std::min<uint32_t>(node_.liveness.interval_ms, 0xFFFF));
  for (; keepalive_next_ < end; ++keepalive_next_) {
    const size_t p = keepalive_next_;
    if (t.peers[p]->link->fabric_mac.load(std::memory_order_relaxed) == 0) continue;  // not resolved yet
    Keepalive k{.generation = t.generation, .peer = static_cast<uint16_t>(p), .interval_ms = interval};
    k.sent_us = wall_us();
    fill_echo(*t.peers[p]->link, k.sent_us, &k);
    send_built(
        node_.uplink,
        [&](uint8_t* out, size_t cap) -> size_t {
          if (cap < kKeepaliveLen) return 0;
          write_keepalive(k, out);
          return kKeepaliveLen;
        },
        InjectKind::kKeepalive);
  }
  if (keepalive_next_ >= std::min(t.peers.size(), size_t{0x10000})) keepalive_next_ = SIZE_MAX;
}

bool Control::icmp_error_allowed(uint32_t now_ms) {
  const uint32_t elapsed = now_ms - icmp_refilled_ms_;
  if (elapsed != 0) {
    constexpr uint32_t kFull = kIcmpErrorBurst * 1000;
    // kIcmpErrorsPerSecond thousandths of an error per millisecond.
    const uint64_t refill = uint64_t{std::min<uint32_t>(elapsed, 1000)} * kIcmpErrorsPerSecond;
    icmp_tokens_ = static_cast<uint32_t>(std::min<uint64_t>(kFull, icmp_tokens_ + refill));
    icmp_refilled_ms_ = now_ms;
  }
  return icmp_tokens_ >= 1000;
}

void Control::handle(rte_mbuf* m) {
  const auto kind = static_cast<PuntKind>(m->hash.usr);
  const uint16_t port_index = m->port;
  switch (kind) {
    case PuntKind::kArp: handle_arp(m, port_index); break;
    case PuntKind::kNd: handle_nd(m, port_index); break;
    case PuntKind::kEcho: handle_echo(m, port_index); break;
    case PuntKind::kTtlExceeded:
    case PuntKind::kTooBig:
    case PuntKind::kPeerDown: handle_icmp_error(m, kind); break;
    case PuntKind::kNeighborMiss: handle_neighbor_miss(m); break;
    default: rte_pktmbuf_free(m); break;
  }
}

void Control::send(uint16_t port_index, rte_mbuf* m, InjectKind kind) {
  m->port = port_index;
  m->hash.usr = static_cast<uint32_t>(kind);
  if (rte_ring_sp_enqueue(workers_[0].inject, m) != 0) {
    ++counters_->drops[static_cast<size_t>(DropReason::kPuntQueueFull)];
    rte_pktmbuf_free(m);
  }
}

template <typename Build>
void Control::send_built(uint16_t port_index, Build&& build, InjectKind kind) {
  rte_mbuf* m = rte_pktmbuf_alloc(pool_);
  if (!m) return;
  uint8_t* out = rte_pktmbuf_mtod(m, uint8_t*);
  const size_t len = build(out, rte_pktmbuf_tailroom(m));
  if (len == 0) {
    rte_pktmbuf_free(m);
    return;
  }
  m->data_len = static_cast<uint16_t>(len);
  m->pkt_len = static_cast<uint32_t>(len);
  send(port_index, m, kind);
}

void Control::learn_peer(const IpAddress& address, const uint8_t mac[6]) {
  const Tables& t = tables();
  const int p = find_peer(t, address.family, address.bytes.data());
  if (p >= 0) t.peers[p]->link->fabric_mac.store(pack_mac(mac), std::memory_order_relaxed);
}

void Control::learn_pod(const IpAddress& address, const uint8_t mac[6], uint16_t port_index) {
  // Only addresses of this node's pods go into the neighbour table.
  if (route_lookup(tables(), address) != kNextHopLocal) return;
  uint8_t old_mac[6];
  uint16_t old_port;
  if (neighbor_lookup(*tables().neighbors, address, old_mac, &old_port) && old_port == port_index &&
      std::memcmp(old_mac, mac, 6) == 0) {
    return;
  }
  neighbor_update(*tables().neighbors, address, mac, port_index);
  release_held(address, mac, port_index);
}

void Control::release_held(const IpAddress& address, const uint8_t mac[6], uint16_t port_index) {
  auto it = held_.find(address_key(address));
  if (it == held_.end()) return;
  const PortRuntime& port = node_.ports[port_index];
  for (rte_mbuf* m : it->second.pkts) {
    --held_count_;
    const DropReason verdict = frame_for_pod(m, port.mac, mac);
    if (verdict != DropReason::kCount) {
      ++counters_->drops[static_cast<size_t>(verdict)];
      rte_pktmbuf_free(m);
      continue;
    }
    send(port_index, m);
  }
  held_.erase(it);
}

void Control::expire_held(uint64_t now) {
  const uint64_t hold = rte_get_timer_hz();  // one second, like a kernel's unresolved queue
  for (auto it = held_.begin(); it != held_.end();) {
    if (now - it->second.since < hold) {
      ++it;
      continue;
    }
    for (rte_mbuf* m : it->second.pkts) {
      ++counters_->drops[static_cast<size_t>(DropReason::kNeighborMiss)];
      rte_pktmbuf_free(m);
      --held_count_;
    }
    it = held_.erase(it);
  }
  next_expiry_ = now + hold / 10;
}

void Control::handle_arp(rte_mbuf* m, uint16_t port_index) {
  const uint8_t* frame = rte_pktmbuf_mtod(m, const uint8_t*);
  net::PacketInfo info;
  net::ArpInfo arp;
  if (net::parse_frame(frame, m->data_len, &info) != net::ParseResult::kOk ||
      !net::parse_arp(frame, m->data_len, info.l3_offset, &arp)) {
    ++counters_->drops[static_cast<size_t>(DropReason::kMalformed)];
    rte_pktmbuf_free(m);
    return;
  }
  rte_pktmbuf_free(m);
  const PortRuntime& port = node_.ports[port_index];
  const IpAddress sender = v4_from(reinterpret_cast<const uint8_t*>(&arp.spa_be));
  const IpAddress target = v4_from(reinterpret_cast<const uint8_t*>(&arp.tpa_be));
  const bool probe = arp.spa_be == 0;  // duplicate address detection: never answer
  if (port.role == PortRole::kUplink) {
    if (!probe) learn_peer(sender, arp.sha);
    if (arp.op == 1 && !probe && target == node_.tunnel_address) {
      send_built(port_index, [&](uint8_t* out, size_t cap) { return net::build_arp_reply(arp, port.mac, out, cap); });
    }
    return;
  }
  if (probe) return;
  learn_pod(sender, arp.sha, port_index);
  // Proxy ARP: the data plane is the gateway for every address but the asker's own.
  if (arp.op == 1 && arp.tpa_be != arp.spa_be) {
    send_built(port_index, [&](uint8_t* out, size_t cap) { return net::build_arp_reply(arp, port.mac, out, cap); });
  }
}

void Control::handle_nd(rte_mbuf* m, uint16_t port_index) {
  const uint8_t* frame = rte_pktmbuf_mtod(m, const uint8_t*);
  net::PacketInfo info;
  net::NdInfo nd;
  if (net::parse_frame(frame, m->data_len, &info) != net::ParseResult::kOk ||
      !net::parse_nd(frame, m->data_len, info, &nd)) {
    ++counters_->drops[static_cast<size_t>(DropReason::kMalformed)];
    rte_pktmbuf_free(m);
    return;
  }
  uint8_t eth_src[6];
  std::memcpy(eth_src, frame + 6, 6);
  rte_pktmbuf_free(m);
  const PortRuntime& port = node_.ports[port_index];
  const bool uplink = port.role == PortRole::kUplink;
  const uint8_t* mac = nd.has_lladdr ? nd.lladdr : eth_src;
  if (nd.type == net::kNdNeighborAdvertisement) {
    if (uplink) {
      learn_peer(v6_from(nd.target), mac);
    } else {
      learn_pod(v6_from(nd.target), mac, port_index);
    }
    return;
  }
  // Neighbour solicitation. From :: it is duplicate address detection: stay quiet.
  if (is_unspecified_v6(nd.src_ip)) return;
  if (uplink) {
    learn_peer(v6_from(nd.src_ip), mac);
    if (v6_from(nd.target) != node_.tunnel_address) return;
  } else {
    learn_pod(v6_from(nd.src_ip), mac, port_index);
    if (std::memcmp(nd.target, nd.src_ip, 16) == 0) return;
  }
  send_built(port_index, [&](uint8_t* out, size_t cap) {
    return net::build_na(port.mac, mac, nd.target, nd.src_ip, nd.target, /*solicited=*/true,
                         /*router=*/!uplink, out, cap);
  });
}

void Control::handle_echo(rte_mbuf* m, uint16_t port_index) {
  const uint8_t* frame = rte_pktmbuf_mtod(m, const uint8_t*);
  net::PacketInfo info;
  if (net::parse_frame(frame, m->data_len, &info) == net::ParseResult::kOk) {
    send_built(port_index, [&](uint8_t* out, size_t cap) {
      return net::build_echo_reply(frame, m->data_len, info, out, cap);
    });
  }
  rte_pktmbuf_free(m);
}

bool Control::to_a_backend(const uint8_t* ip, size_t len) const {
  const lb::ServiceTable* st = workers_.empty() || !workers_[0].services_live
                                   ? nullptr
                                   : workers_[0].services_live->load(std::memory_order_acquire);
  if (st == nullptr || st->by_backend.empty()) return false;
  net::PacketInfo info;
  if (net::parse_ip(ip, len, &info) != net::ParseResult::kOk || !info.has_l4 ||
      (info.l4_proto != net::kProtoTcp && info.l4_proto != net::kProtoUdp && info.l4_proto != net::kProtoSctp)) {
    return false;
  }
  const bool v6 = info.ether_type == net::kEtherTypeIpv6;
  const uint16_t dport = net::load_be16(ip + info.l4_offset + 2);
  return st->by_backend.find(lb::endpoint_key(v6 ? 6 : 4, info.l4_proto, ip + (v6 ? 24 : 16), dport)) !=
         lb::EndpointIndex::kNone;
}

void Control::handle_icmp_error(rte_mbuf* m, PuntKind kind) {
  // The worker already stripped the Ethernet header: m holds the IP packet.
  const uint8_t* ip = rte_pktmbuf_mtod(m, const uint8_t*);
  const bool v6 = m->data_len > 0 && (ip[0] >> 4) == 6;
  const IpAddress src = v6 ? v6_from(ip + 8) : v4_from(ip + 12);
  const auto error = kind == PuntKind::kTooBig    ? net::IcmpError::kFragNeeded
                     : kind == PuntKind::kPeerDown ? net::IcmpError::kHostUnreachable
                                                   : net::IcmpError::kTimeExceeded;
  if (!icmp_error_allowed(lb::flow_clock_ms())) {
    counters_->icmp_errors_rate_limited++;
    rte_pktmbuf_free(m);
    return;
  }
  uint8_t mac[6];
  uint16_t port_index;
  size_t built = 0;
  if (neighbor_lookup(*tables().neighbors, src, mac, &port_index)) {
    // A pod of ours: answer it directly, from the gateway address. About a
    // packet of a service connection (to a backend, after DNAT), the error
    // goes through a worker's service stage first, as if the pod had sent
    // it, so that it quotes the packet the pod sent: to the ClusterIP.
    const IpAddress& from = v6 ? node_.gateway_v6 : node_.gateway_v4;
    const PortRuntime& port = node_.ports[port_index];
    const bool service = to_a_backend(ip, m->data_len);
    send_built(
        port_index,
        [&](uint8_t* out, size_t cap) {
          built = net::build_icmp_error(error, node_.max_inner_len, ip, m->data_len, from.bytes.data(), port.mac,
                                        service ? port.mac : mac, out, cap);
          return built;
        },
        service ? InjectKind::kLocalRx : InjectKind::kTransmit);
  } else if (route_lookup(tables(), src) >= kNextHopPeerBase && node_.tunnel_address.is_v6() == v6) {
    // A pod behind a peer (its packet expired here): the error goes back
    // through the tunnel, from our tunnel address (which the peer accepts as
    // speaking for this node), routed and encrypted by a worker like pod traffic.
    const PortRuntime& port = node_.ports[node_.local_default];
    send_built(
        node_.local_default,
        [&](uint8_t* out, size_t cap) {
          built = net::build_icmp_error(error, node_.max_inner_len, ip, m->data_len,
                                        node_.tunnel_address.bytes.data(), port.mac, port.mac, out, cap);
          return built;
        },
        InjectKind::kLocalRx);
  }
  if (built) {
    counters_->icmp_errors_sent++;
    icmp_tokens_ -= 1000;
  }
  rte_pktmbuf_free(m);
}

void Control::solicit(uint16_t port_index, const IpAddress& src, const IpAddress& target) {
  const PortRuntime& port = node_.ports[port_index];
  if (target.is_v4()) {
    uint32_t src_be, target_be;
    std::memcpy(&src_be, src.bytes.data(), 4);
    std::memcpy(&target_be, target.bytes.data(), 4);
    send_built(port_index, [&](uint8_t* out, size_t cap) {
      return net::build_arp_request(port.mac, src_be, target_be, out, cap);
    });
  } else {
    send_built(port_index, [&](uint8_t* out, size_t cap) {
      return net::build_ns(port.mac, src.bytes.data(), target.bytes.data(), out, cap);
    });
  }
}

void Control::handle_neighbor_miss(rte_mbuf* m) {
  const uint8_t* ip = rte_pktmbuf_mtod(m, const uint8_t*);
  const bool v6 = m->data_len > 0 && (ip[0] >> 4) == 6;
  const IpAddress dst = v6 ? v6_from(ip + 24) : v4_from(ip + 16);
  const std::string key = address_key(dst);
  const uint64_t now = rte_get_timer_cycles();
  // The MAC may have been learned since the worker looked.
  uint8_t mac[6];
  uint16_t port_index;
  if (neighbor_lookup(*tables().neighbors, dst, mac, &port_index)) {
    held_[key].pkts.push_back(m);
    ++held_count_;
    release_held(dst, mac, port_index);
    return;
  }
  Held& held = held_[key];
  if (held.pkts.empty()) held.since = now;
  if (held.pkts.size() < kHeldPerAddress && held_count_ < kHeldTotal) {
    held.pkts.push_back(m);
    ++held_count_;
  } else {
    ++counters_->drops[static_cast<size_t>(DropReason::kNeighborMiss)];
    rte_pktmbuf_free(m);
  }
  const uint64_t gap = rte_get_timer_hz() / 5;  // at most 5 solicitations a second per address
  auto it = last_solicit_.find(key);
  if (it != last_solicit_.end() && now - it->second < gap) return;
  last_solicit_[key] = now;
  if (last_solicit_.size() > 4096) last_solicit_.clear();  // bounded memory under a scan
  for (uint16_t p = 0; p < node_.ports.size(); ++p) {
    if (node_.ports[p].role != PortRole::kLocal) continue;
    solicit(p, v6 ? node_.gateway_v6 : node_.gateway_v4, dst);
  }
}

void Control::resolve_peers(uint64_t now, bool unresolved_only) {
  bool all_resolved = true;
  const Tables& t = tables();
  resolved_generation_ = t.generation;
  for (PeerRuntime* p : t.peers) {
    const bool resolved = p->link->fabric_mac.load(std::memory_order_relaxed) != 0;
    all_resolved = all_resolved && resolved;
    if (!resolved || !unresolved_only) solicit(node_.uplink, node_.tunnel_address, p->tunnel_address);
  }
  // A new generation's peers that were resolved before keep the timer as it was.
  if (unresolved_only && all_resolved) return;
  // Ask twice a second until every peer answered, then refresh every 10 s.
  next_peer_round_ = now + (all_resolved ? 10 : 0) * rte_get_timer_hz() + (all_resolved ? 0 : rte_get_timer_hz() / 2);
}

}  // namespace meshwire::dp
