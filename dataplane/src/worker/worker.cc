#include "worker/worker.h"

#include <unistd.h>

#include <cstring>
#include <span>

#include <rte_byteorder.h>
#include <rte_cycles.h>
#include <rte_ethdev.h>
#include <rte_ether.h>
#include <rte_ip.h>
#include <rte_pause.h>
#include <rte_prefetch.h>
#include <rte_rcu_qsbr.h>

#include "capture/hook.h"
#include "esp/burst.h"
#include "esp/decrypt.h"
#include "esp/encrypt.h"
#include "net/checksum.h"
#include "net/frag.h"
#include "net/mss.h"
#include "net/nat.h"
#include "net/parse.h"
#include "worker/deliver.h"
#include "worker/keepalive.h"

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
  if (ctx.from_fabric) ++ctx.counters->drops_from_fabric[static_cast<size_t>(r)];
}

// Marks the uplink stage for its whole run, whichever way it returns.
struct FromFabric {
  explicit FromFabric(WorkerContext& c) : ctx(c) { ctx.from_fabric = true; }
  ~FromFabric() { ctx.from_fabric = false; }
  WorkerContext& ctx;
};

// A step of a traced packet (telemetry/trace.h): one flag test for the others.
inline void trace_if(WorkerContext& ctx, rte_mbuf* m, TraceStep step, uint32_t a, uint32_t b = 0,
                     bool head_is_ip = false) {
  if (__builtin_expect(traced(m), 0) && ctx.trace != nullptr) trace_step(*ctx.trace, m, step, a, b, head_is_ip);
}

// Marks the packets of a burst for a trace the API armed (one load a burst).
inline void trace_rx(WorkerContext& ctx, uint16_t port_index, rte_mbuf** pkts, uint16_t n) {
  if (ctx.trace != nullptr && __builtin_expect(ctx.trace->budget.load(std::memory_order_relaxed) != 0, 0)) {
    trace_mark_burst(*ctx.trace, port_index, pkts, n);
  }
}

inline void drop(WorkerContext& ctx, rte_mbuf* m, DropReason r) {
  count_drop(ctx, r);
  trace_if(ctx, m, TraceStep::kDrop, static_cast<uint32_t>(r));
  rte_pktmbuf_free(m);
}

inline void punt(WorkerContext& ctx, rte_mbuf* m, PuntKind kind, uint16_t port_index) {
  trace_if(ctx, m, TraceStep::kPunt, static_cast<uint32_t>(kind));
  m->hash.usr = static_cast<uint32_t>(kind);
  m->port = port_index;
  if (rte_ring_sp_enqueue(ctx.punt, m) != 0) {
    drop(ctx, m, DropReason::kPuntQueueFull);
    return;
  }
  ++ctx.counters->punted;
}

// Node liveness withdrew the route: a packet towards a peer that missed its
// keepalives is dropped, and punted for an ICMP host unreachable so that
// its sender fails fast (at most kUnreachablePuntsPerMs a millisecond:
// traffic to a dead node must not fill the punt ring that ARP and ND need;
// the control thread's own limit is lower still).
constexpr uint16_t kUnreachablePuntsPerMs = 4;
inline void drop_peer_down(WorkerContext& ctx, rte_mbuf* m, uint16_t port_index) {
  if (ctx.unreachable_ms != ctx.now_ms) {
    ctx.unreachable_ms = ctx.now_ms;
    ctx.unreachable_punts = 0;
  }
  if (ctx.unreachable_punts < kUnreachablePuntsPerMs) {
    ++ctx.unreachable_punts;
    punt(ctx, m, PuntKind::kPeerDown, port_index);
  } else {
    rte_pktmbuf_free(m);
  }
  count_drop(ctx, DropReason::kPeerDown);
}

inline void enqueue_tx(WorkerContext& ctx, TxBuffers& tx, uint16_t port_index, rte_mbuf* m) {
  trace_if(ctx, m, TraceStep::kTx, port_index);
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

// ---- Services: the frontend lookup, connection tracking and NAT.
//
// A packet from a client to a frontend (VIP, port, protocol) gets its
// connection's backend as destination: the flow's, or for a new connection
// one chosen by the frontend's Maglev table (or the client's affinity
// record). A packet from a backend whose reverse tuple is a flow of this
// node gets the frontend back as source. Everything else passes untouched.
//
// The connection table is looked up first: an established connection's
// packets (nearly all of them) need nothing else, not even the frontend
// index. What may be a service's packet is told by two cheap tests per
// direction first (the port in a bitmap of the services' ports, the address
// in a filter of their addresses), so that other traffic mostly costs those
// tests alone; the frontend index is probed only on a miss (a new
// connection, or a filter's false positive).

constexpr uint8_t kTcpFin = 0x01, kTcpSyn = 0x02, kTcpRst = 0x04, kTcpAck = 0x10;

// A packet the service stage takes, with what its lookup needs.
struct ServicePacket {
  rte_mbuf* m;
  uint8_t* frame;        // the mbuf's data (kept: the later passes need not read the mbuf again)
  net::PacketInfo info;  // offsets into frame
  // The end of the IP packet: what the rewrites may touch (<= the data's length).
  size_t len() const { return static_cast<size_t>(info.l3_offset) + info.l3_len; }
  lb::FlowTuple tuple;
  uint64_t hash;
  uint32_t frontend;  // kUnresolved until frontend_of() looks it up; then the frontend, or kNowhere
  bool to_frontend;   // its destination port and address may be a frontend's (the filters say so)
  bool icmp_error;    // an ICMP error quoting client -> backend: only ever a reply
  uint16_t port_index;  // the port it came in on
};
constexpr uint32_t kUnresolved = 0xFFFFFFFE;

enum class ServiceClass : uint8_t { kNone, kTaken, kFragment };

inline bool is_service_protocol(uint8_t p) {
  return p == net::kProtoTcp || p == net::kProtoUdp || p == net::kProtoSctp;
}

// Whether the packet at frame (parsed into info) is the service stage's:
// to a frontend, or from a backend (`replies_only`: only the latter, for
// what comes out of the tunnel).
// Fills *out for a packet the stage takes, with its tuple (src -> dst; the
// addresses 4 or 16 bytes as the family says) and the tuple's hash.
inline void take_for_service(ServicePacket* out, rte_mbuf* m, const uint8_t* frame, const net::PacketInfo& info,
                             bool to_frontend, bool icmp_error, uint8_t family, uint8_t proto, const uint8_t* src,
                             uint16_t sport, const uint8_t* dst, uint16_t dport) {
  out->m = m;
  out->frame = const_cast<uint8_t*>(frame);  // the mbuf's own data, which the stage rewrites
  out->info = info;
  out->frontend = kUnresolved;
  out->to_frontend = to_frontend;
  out->icmp_error = icmp_error;
  out->port_index = 0;
  lb::FlowTuple& t = out->tuple;
  t = lb::FlowTuple{};
  t.family = family;
  t.proto = proto;
  t.src_port = sport;
  t.dst_port = dport;
  if (family == 6) {  // constant sizes: a move each, not a call
    std::memcpy(t.src, src, 16);
    std::memcpy(t.dst, dst, 16);
  } else {
    std::memcpy(t.src, src, 4);
    std::memcpy(t.dst, dst, 4);
  }
  out->hash = lb::flow_hash(t);
}

// An ICMP error about a packet client -> backend that came from a node's
// service stage: its tuple, reversed, is the connection's reply tuple.
inline ServiceClass classify_icmp_error(const lb::ServiceTable& st, rte_mbuf* m, const uint8_t* frame,
                                        const net::PacketInfo& info, ServicePacket* out) {
  net::InnerView inner;
  if (!net::icmp_error_inner(frame, m->data_len, info, &inner)) return ServiceClass::kNone;
  const uint8_t family = inner.ether_type == net::kEtherTypeIpv6 ? 6 : 4;
  if (st.by_backend.find(lb::endpoint_key(family, inner.proto, inner.dst, inner.dport)) == lb::EndpointIndex::kNone) {
    return ServiceClass::kNone;
  }
  // The quoted packet went client -> backend: its reverse is the reply tuple.
  take_for_service(out, m, frame, info, false, true, family, inner.proto, inner.dst, inner.dport, inner.src, inner.sport);
  return ServiceClass::kTaken;
}

// Inlined by force: as a call it cost the stage a spill of its registers per packet.
[[gnu::always_inline]] inline ServiceClass classify_service(const lb::ServiceTable& st, rte_mbuf* m,
                                                            const uint8_t* frame, const net::PacketInfo& info, bool v6,
                                                            bool replies_only, ServicePacket* out) {
  if (info.has_l4 && !info.is_fragment &&
      (info.l4_proto == net::kProtoIcmp || info.l4_proto == net::kProtoIcmpv6) &&
      is_icmp_error(frame + info.l3_offset, rebase(info))) {
    return st.by_backend.empty() ? ServiceClass::kNone : classify_icmp_error(st, m, frame, info, out);
  }
  if (!is_service_protocol(info.l4_proto)) return ServiceClass::kNone;
  const uint8_t* ip = frame + info.l3_offset;
  const uint8_t* dst = ip_dst(ip, v6);
  const uint8_t* src = ip_src(ip, v6);
  const uint8_t family = v6 ? 6 : 4;
  if (!info.has_l4) {
    // A later fragment has no ports to balance by.
    if (!replies_only && info.is_fragment &&
        st.by_frontend.find(lb::endpoint_key(family, 0, dst, 0)) != lb::EndpointIndex::kNone) {
      return ServiceClass::kFragment;
    }
    return ServiceClass::kNone;
  }
  const uint8_t* l4 = frame + info.l4_offset;
  const uint16_t sport = net::load_be16(l4);
  const uint16_t dport = net::load_be16(l4 + 2);
  const bool to_frontend = !replies_only && st.frontend_ports.contains(dport) && st.vips.contains(family, dst);
  if (!to_frontend && !(st.backend_ports.contains(sport) && st.backend_addresses.contains(family, src))) {
    return ServiceClass::kNone;
  }
  take_for_service(out, m, frame, info, to_frontend, false, family, info.l4_proto, src, sport, dst, dport);
  return ServiceClass::kTaken;
}

// The checksum deltas of a connection's DNAT (its VIP and port to its
// backend's), packed as Flow::dnat_deltas keeps them.
inline uint32_t dnat_deltas(const lb::FlowTuple& forward, const uint8_t* backend, uint16_t backend_port) {
  return net::nat_deltas(forward.family == 6, forward.dst, forward.dst_port, backend, backend_port).packed();
}
inline void refresh_dnat_deltas(lb::Flow& f) {
  f.dnat_deltas.store(dnat_deltas(f.forward, f.backend, f.backend_port), std::memory_order_relaxed);
}

// The TCP flags of a packet the stage took (0 for UDP and SCTP).
inline uint8_t tcp_flags(const ServicePacket& p) {
  if (p.info.l4_proto != net::kProtoTcp) return 0;
  return p.frame[p.info.l4_offset + 13];
}

// SCTP chunk types that open and close associations (RFC 9260 3.2).
constexpr uint8_t kSctpInit = 1, kSctpInitAck = 2, kSctpAbort = 6, kSctpShutdownComplete = 14;

// The first chunk's type of an SCTP packet the stage took (0xFF: none).
inline uint8_t sctp_first_chunk(const ServicePacket& p) {
  if (p.info.l4_proto != net::kProtoSctp || p.info.l4_len < 13) return 0xFF;
  return p.frame[p.info.l4_offset + 12];
}

// What a packet says of a new connection still waiting for its backend.
enum class ConnectEvent : uint8_t { kNone, kAnswered, kRefused };

inline bool connecting(lb::FlowState s) { return s == lb::FlowState::kSynSent || s == lb::FlowState::kConnectFailed; }

// A flow's state after a packet in this direction. A backend's refusal of
// a connection still being made (RST, ABORT) leaves the state to the
// caller, who may retry it elsewhere.
inline ConnectEvent track_state(lb::Flow& f, const ServicePacket& p, bool reply) {
  const auto state = static_cast<lb::FlowState>(f.state.load(std::memory_order_relaxed));
  lb::FlowState next = state;
  ConnectEvent event = ConnectEvent::kNone;
  if (p.info.l4_proto == net::kProtoTcp) {
    const uint8_t flags = tcp_flags(p);
    if (flags & kTcpRst) {
      if (reply && connecting(state)) {
        event = ConnectEvent::kRefused;
      } else {
        next = lb::FlowState::kClosed;
      }
    } else if (flags & kTcpFin) {
      if (state != lb::FlowState::kClosed) next = lb::FlowState::kFinSeen;
    } else if (reply && connecting(state) && (flags & (kTcpSyn | kTcpAck)) == (kTcpSyn | kTcpAck)) {
      next = lb::FlowState::kEstablished;
      event = ConnectEvent::kAnswered;
    }
  } else if (p.info.l4_proto == net::kProtoSctp) {
    const uint8_t chunk = sctp_first_chunk(p);
    if (chunk == kSctpAbort) {
      if (reply && connecting(state)) {
        event = ConnectEvent::kRefused;
      } else {
        next = lb::FlowState::kClosed;
      }
    } else if (chunk == kSctpShutdownComplete) {
      next = lb::FlowState::kClosed;
    } else if (reply && connecting(state) && chunk == kSctpInitAck) {
      next = lb::FlowState::kSctp;
      event = ConnectEvent::kAnswered;
    }
  }
  if (next != state) f.state.store(static_cast<uint8_t>(next), std::memory_order_relaxed);
  return event;
}

// The frontend and backend a flow is on in this round's services, or false.
bool locate(WorkerContext& ctx, uint32_t flow, const lb::FrontendRuntime** fr, uint16_t* backend) {
  const lb::Flow& f = ctx.conntrack->flow(flow);
  const lb::FlowTuple& t = f.forward;
  const uint32_t fi = ctx.services->by_frontend.find(lb::endpoint_key(t.family, t.proto, t.dst, t.dst_port));
  if (fi == lb::EndpointIndex::kNone) return false;
  uint8_t addr[16];
  uint16_t port, id;
  if (!ctx.conntrack->read_backend(flow, addr, &port, &id)) return false;
  const lb::FrontendRuntime& front = ctx.services->frontends[fi];
  const uint32_t b = front.backend_index.find(lb::endpoint_key(t.family, t.proto, addr, port));
  if (b == lb::EndpointIndex::kNone) return false;
  *fr = &front;
  *backend = static_cast<uint16_t>(b);
  return true;
}

// Passive outlier detection: a connect answered clears the backend's run of
// failures; one refused or unanswered adds to it, and a run of
// outlier_failures ejects the backend for outlier_ejection_s.
void record_connect(WorkerContext& ctx, const lb::BackendRuntime& b, bool ok) {
  lb::BackendHealth& h = *b.health;
  if (ok) {
    if (h.consecutive_failures.load(std::memory_order_relaxed) != 0) {
      h.consecutive_failures.store(0, std::memory_order_relaxed);
    }
    return;
  }
  ctx.counters->service_connect_failures++;
  h.failed_connects.fetch_add(1, std::memory_order_relaxed);
  const uint32_t run = h.consecutive_failures.fetch_add(1, std::memory_order_relaxed) + 1;
  const ServicesSettings& s = ctx.node->services;
  if (s.outlier_failures != 0 && run >= s.outlier_failures) {
    h.ejected_until_ms.store((ctx.now_ms + s.outlier_ejection_s * 1000) | 1, std::memory_order_relaxed);
    h.consecutive_failures.store(0, std::memory_order_relaxed);
    h.ejections.fetch_add(1, std::memory_order_relaxed);
    ctx.counters->service_outlier_ejections++;
  }
}

// A backend answered or refused a connection being made (any worker). On a
// refusal, true when the connection will be retried on another backend by
// the worker that owns it: the refusal then goes no further.
bool on_connect_event(WorkerContext& ctx, lb::Flow& f, uint32_t flow, ConnectEvent event) {
  const auto state = static_cast<lb::FlowState>(f.state.load(std::memory_order_relaxed));
  const lb::FrontendRuntime* fr = nullptr;
  uint16_t b = 0;
  const bool located = locate(ctx, flow, &fr, &b);
  if (event == ConnectEvent::kAnswered) {
    if (located) {
      record_connect(ctx, fr->backends[b], true);
      if (f.connect_started_us != 0) {
        lb::record_connect_latency(*fr->backends[b].health, lb::flow_clock_us() - f.connect_started_us);
      }
    }
    return false;
  }
  if (state == lb::FlowState::kConnectFailed) return true;  // a refusal already on its way to a retry
  if (located) record_connect(ctx, fr->backends[b], false);
  const uint16_t skip[1] = {b};
  if (located && f.retry.load(std::memory_order_relaxed) &&
      f.attempts.load(std::memory_order_relaxed) < ctx.node->services.connect_attempts &&
      lb::select_backend(*fr, lb::flow_hash(f.forward), ctx.now_ms, skip) != lb::kNoBackend) {
    f.state.store(static_cast<uint8_t>(lb::FlowState::kConnectFailed), std::memory_order_relaxed);
    return true;
  }
  f.state.store(static_cast<uint8_t>(lb::FlowState::kClosed), std::memory_order_relaxed);
  return false;
}

// Keeps a copy of a new connection's first packet (before translation), so
// that the worker can send it to another backend if this one fails.
void arm_retry(WorkerContext& ctx, const ServicePacket& p, uint32_t flow, uint16_t backend) {
  PendingConnects& pc = ctx.pending;
  rte_mbuf* copy = pc.count < PendingConnects::kCapacity ? rte_pktmbuf_copy(p.m, p.m->pool, 0, UINT32_MAX) : nullptr;
  if (copy == nullptr) {
    ctx.counters->service_retry_untracked++;
    return;
  }
  PendingConnects::Entry& e = pc.entries[pc.count++];
  e.tuple = p.tuple;
  e.first = copy;
  e.flow = flow;
  e.deadline_ms = ctx.now_ms + ctx.node->services.connect_timeout_ms;
  e.port_index = p.port_index;
  e.ntried = 1;
  e.tried[0] = backend;
  ctx.conntrack->flow(flow).retry.store(1, std::memory_order_relaxed);
}

// The backend for a new connection of frontend fi, or kNoBackend.
uint16_t choose_backend(WorkerContext& ctx, const lb::FrontendRuntime& fr, uint32_t fi, const ServicePacket& p) {
  const lb::FlowTuple& t = p.tuple;
  if (fr.affinity_ms == 0) return lb::select_backend(fr, p.hash, ctx.now_ms);
  // ClientIP affinity: the client's record while its backend can take the
  // connection, else Maglev by the client's address alone, remembered.
  const lb::FlowTuple key = lb::affinity_key(t.family, t.proto, t.src, t.dst, t.dst_port);
  const uint64_t h = lb::flow_hash(key);
  const lb::LookupResult r = ctx.conntrack->lookup(key, h);
  if (r.flow != lb::kNoFlow) {
    lb::Flow& rec = ctx.conntrack->flow(r.flow);
    const uint32_t b = fr.backend_index.find(lb::endpoint_key(t.family, t.proto, rec.backend, rec.backend_port));
    if (b != lb::EndpointIndex::kNone &&
        lb::backend_selectable(fr.backends[b], ctx.now_ms) == lb::Selectable::kYes) {
      lb::touch(rec, ctx.now_ms);
      return static_cast<uint16_t>(b);
    }
    // Its backend is gone or out: a new choice, in a new record once this
    // one expires (records are not rewritten in place).
  }
  lb::FlowTuple client_only{};
  client_only.family = t.family;
  std::memcpy(client_only.src, t.src, 16);
  const uint16_t b = lb::select_backend(fr, lb::flow_hash(client_only), ctx.now_ms);
  if (b != lb::kNoBackend && r.flow == lb::kNoFlow) {
    lb::Flow init;
    init.forward = key;
    std::memcpy(init.backend, fr.backends[b].address.bytes.data(), 16);
    init.backend_port = fr.backends[b].port;
    init.backend_id = b;
    init.frontend_id = fi;
    init.affinity_timeout_ms = fr.affinity_ms;
    ctx.conntrack->insert_affinity(ctx.ct_cache, init, h, ctx.now_ms);  // best effort: a full table only loses stickiness
  }
  return b;
}

// Whether a client's packet opens a new connection on the tuple of a flow
// that has closed: a TCP SYN after FIN or RST, an SCTP INIT after ABORT or
// SHUTDOWN COMPLETE.
inline bool reopens(const lb::Flow& f, const ServicePacket& p) {
  const auto state = static_cast<lb::FlowState>(f.state.load(std::memory_order_relaxed));
  if (p.info.l4_proto == net::kProtoTcp) {
    return (tcp_flags(p) & (kTcpSyn | kTcpAck)) == kTcpSyn &&
           (state == lb::FlowState::kFinSeen || state == lb::FlowState::kClosed);
  }
  return p.info.l4_proto == net::kProtoSctp && state == lb::FlowState::kClosed && sctp_first_chunk(p) == kSctpInit;
}

// Whether the reply tuple a new connection would have with backend b is
// another connection's already.
inline bool reply_tuple_taken(const lb::ConnTrack& ct, const lb::FlowTuple& forward, const lb::BackendRuntime& b) {
  const lb::FlowTuple reply = lb::reverse_tuple(forward, b.address.bytes.data(), b.port);
  return ct.lookup(reply, lb::flow_hash(reply)).flow != lb::kNoFlow;
}

// Translates the packets the stage took: one bulk lookup, then per packet
// the flow (found or made) and the rewrite. keep[i] says whether packet i
// goes on (translated or untouched); dropped ones are freed and counted.
void translate_services(WorkerContext& ctx, ServicePacket* pkts, uint16_t n, bool* keep) {
  const lb::ServiceTable& st = *ctx.services;
  lb::ConnTrack& ct = *ctx.conntrack;
  const lb::FlowTuple* tuples[kRxBurst];
  uint64_t hashes[kRxBurst];
  // Raw storage, as svc's: lookup_burst writes each of the n (an array of
  // LookupResult would be initialised whole on every burst).
  alignas(lb::LookupResult) unsigned char found_storage[sizeof(lb::LookupResult) * kRxBurst];
  lb::LookupResult* found = reinterpret_cast<lb::LookupResult*>(found_storage);
  for (uint16_t i = 0; i < n; ++i) {
    tuples[i] = &pkts[i].tuple;
    hashes[i] = pkts[i].hash;
  }
  // The buckets are on their way already (prefetch() when each packet was
  // taken); this also fetches line 2 of the records, which packets write.
  ct.lookup_burst(tuples, hashes, n, found, true);
  // The frontend a packet is sent to (kNowhere: none), looked up once.
  auto frontend_of = [&st](ServicePacket& p) {
    if (p.frontend == kUnresolved) {
      const lb::FlowTuple& t = p.tuple;
      const uint32_t fi = st.by_frontend.find(lb::endpoint_key(t.family, t.proto, t.dst, t.dst_port));
      p.frontend = fi == lb::EndpointIndex::kNone ? lb::ServiceTable::kNowhere : fi;
    }
    return p.frontend;
  };
  for (uint16_t i = 0; i < n; ++i) {
    ServicePacket& p = pkts[i];
    keep[i] = true;
    uint8_t* frame = p.frame;
    const lb::LookupResult& r = found[i];
    // A reply of one of our connections: from its backend to its client.
    // (A reply tuple that is also a frontend's is a new connection instead.)
    if (r.flow != lb::kNoFlow && r.reverse && (!p.to_frontend || frontend_of(p) == lb::ServiceTable::kNowhere)) {
      lb::Flow& f = ct.flow(r.flow);
      if (p.icmp_error) {
        if (connecting(static_cast<lb::FlowState>(f.state.load(std::memory_order_relaxed))) &&
            on_connect_event(ctx, f, r.flow, ConnectEvent::kRefused)) {
          keep[i] = false;
          trace_if(ctx, p.m, TraceStep::kConsumed, 0);
          rte_pktmbuf_free(p.m);  // retried elsewhere: the client never hears of it
          continue;
        }
        // The client learns of the error from the VIP, about its packet to the VIP.
        const size_t len = p.len();
        const uint8_t* outer_src = ip_src(frame + p.info.l3_offset, p.tuple.family == 6);
        if (std::memcmp(outer_src, p.tuple.src, p.tuple.family == 6 ? 16 : 4) == 0) {
          net::rewrite_outer_src_addr(frame, len, p.info, f.forward.dst);
        }
        net::rewrite_icmp_error_inner_dst(frame, len, p.info, f.forward.dst, f.forward.dst_port);
        ctx.counters->service_reverse_packets++;
        continue;
      }
      lb::touch(f, ctx.now_ms);
      const ConnectEvent event = track_state(f, p, true);
      if (event != ConnectEvent::kNone && on_connect_event(ctx, f, r.flow, event)) {
        keep[i] = false;
        trace_if(ctx, p.m, TraceStep::kConsumed, 0);
        rte_pktmbuf_free(p.m);  // refused, retried elsewhere: the client never hears of it
        continue;
      }
      if (!net::rewrite_src_parsed(frame, p.len(), p.info, f.forward.dst, f.forward.dst_port)) {
        keep[i] = false;
        drop(ctx, p.m, DropReason::kUnsupported);
        continue;
      }
      if (f.log_reported_ms.load(std::memory_order_relaxed) != 0) {
        lb::count_flow(f.rev_packets, f.rev_bytes, p.len() - p.info.l3_offset);
      }
      trace_if(ctx, p.m, TraceStep::kService, f.frontend_id, kTraceNone);
      ctx.counters->service_reverse_packets++;
      continue;
    }
    if (!p.to_frontend) {
      // Not ours: no flow, or a forward one on the way in from the tunnel.
      // But just after this data plane started, a backend's packet to a pod
      // here with no flow may be the reply of a connection translated before
      // the restart: dropped (ServiceTable::untracked_reply_until_ms).
      if (r.flow == lb::kNoFlow && !p.icmp_error && st.untracked_reply_until_ms != 0 &&
          static_cast<int32_t>(st.untracked_reply_until_ms - ctx.now_ms) > 0 &&
          st.by_backend.find(lb::endpoint_key(p.tuple.family, p.tuple.proto, p.tuple.src, p.tuple.src_port)) !=
              lb::EndpointIndex::kNone &&
          ctx.tables->local_pods.contains(p.tuple.dst, p.tuple.family == 6)) {
        keep[i] = false;
        drop(ctx, p.m, DropReason::kServiceReplyUntracked);
      }
      continue;
    }
    uint32_t idx = r.flow != lb::kNoFlow && !r.reverse ? r.flow : lb::kNoFlow;
    if (idx == lb::kNoFlow) {
      if (frontend_of(p) == lb::ServiceTable::kNowhere) continue;  // not a frontend after all (the filters' guess)
      const lb::FrontendRuntime& fr = st.frontends[p.frontend];
      uint16_t b = choose_backend(ctx, fr, p.frontend, p);
      // The client may use this source port towards another frontend whose
      // connection went to the same backend: the replies of the two would be
      // one tuple. Linux's NAT would move the source port; here the new
      // connection takes the next backend instead.
      uint16_t clashed[4];
      uint16_t nclashed = 0;
      while (b != lb::kNoBackend && reply_tuple_taken(ct, p.tuple, fr.backends[b])) {
        if (nclashed == 4) {
          b = lb::kNoBackend;
          break;
        }
        clashed[nclashed++] = b;
        b = lb::select_backend(fr, p.hash, ctx.now_ms, std::span(clashed, nclashed));
      }
      if (b == lb::kNoBackend) {
        keep[i] = false;
        drop(ctx, p.m, DropReason::kNoBackend);
        continue;
      }
      const lb::BackendRuntime& br = fr.backends[b];
      lb::Flow init;
      init.forward = p.tuple;
      std::memcpy(init.backend, br.address.bytes.data(), 16);
      init.backend_port = br.port;
      init.backend_id = b;
      init.frontend_id = p.frontend;
      init.attempts.store(1, std::memory_order_relaxed);
      init.dnat_deltas.store(dnat_deltas(p.tuple, br.address.bytes.data(), br.port), std::memory_order_relaxed);
      lb::FlowState state = lb::FlowState::kUdp;
      if (p.info.l4_proto == net::kProtoTcp) {
        // A connection picked up mid-stream (this node restarted, or its
        // flow expired) keeps going: Maglev gives it the same backend.
        state = (tcp_flags(p) & (kTcpSyn | kTcpAck)) == kTcpSyn ? lb::FlowState::kSynSent : lb::FlowState::kEstablished;
      } else if (p.info.l4_proto == net::kProtoSctp) {
        state = sctp_first_chunk(p) == kSctpInit ? lb::FlowState::kSynSent : lb::FlowState::kSctp;
      }
      init.state.store(static_cast<uint8_t>(state), std::memory_order_relaxed);
      if (state == lb::FlowState::kSynSent) init.connect_started_us = lb::flow_clock_us() | 1;
      const uint32_t sample = ctx.node->flow_log_sample;
      if (sample != 0 && flow_logged(p.hash, sample)) init.log_reported_ms.store(ctx.now_ms | 1, std::memory_order_relaxed);
      idx = ct.insert(ctx.ct_cache, init, p.hash, ctx.now_ms);
      if (idx == lb::kNoFlow) {
        keep[i] = false;
        drop(ctx, p.m, DropReason::kConntrackFull);
        continue;
      }
      br.health->connections.fetch_add(1, std::memory_order_relaxed);
      ctx.counters->service_new_flows++;
      if (state == lb::FlowState::kSynSent && ctx.node->services.connect_attempts > 1) arm_retry(ctx, p, idx, b);
    } else {
      lb::Flow& f = ct.flow(idx);
      lb::touch(f, ctx.now_ms);
      if (reopens(f, p) && frontend_of(p) != lb::ServiceTable::kNowhere) {
        // The client opens a new connection on the tuple of one that has
        // closed (TCP allows it): a backend is chosen again, as for any new
        // connection, and it gets retries.
        const lb::FrontendRuntime& fr = st.frontends[p.frontend];
        const uint16_t b = choose_backend(ctx, fr, p.frontend, p);
        if (b == lb::kNoBackend) {
          keep[i] = false;
          drop(ctx, p.m, DropReason::kNoBackend);
          continue;
        }
        const lb::BackendRuntime& br = fr.backends[b];
        if (std::memcmp(f.backend, br.address.bytes.data(), 16) != 0 || f.backend_port != br.port) {
          ct.rebind(idx, br.address.bytes.data(), br.port, b);  // on failure the old backend stays
          refresh_dnat_deltas(f);
        }
        f.attempts.store(1, std::memory_order_relaxed);
        f.state.store(static_cast<uint8_t>(lb::FlowState::kSynSent), std::memory_order_relaxed);
        f.connect_started_us = lb::flow_clock_us() | 1;
        br.health->connections.fetch_add(1, std::memory_order_relaxed);
        ctx.counters->service_new_flows++;
        if (ctx.node->services.connect_attempts > 1) arm_retry(ctx, p, idx, b);
      } else {
        track_state(f, p, false);
      }
    }
    lb::Flow& f = ct.flow(idx);
    if (!net::rewrite_dst_with(frame, p.len(), p.info, f.backend, f.backend_port,
                               net::NatDeltas::unpack(f.dnat_deltas.load(std::memory_order_relaxed)))) {
      // SCTP in a fragment (its checksum covers what follows), or source-routed.
      keep[i] = false;
      drop(ctx, p.m, DropReason::kUnsupported);
      continue;
    }
    if (f.log_reported_ms.load(std::memory_order_relaxed) != 0) {
      lb::count_flow(f.fwd_packets, f.fwd_bytes, p.len() - p.info.l3_offset);
    }
    trace_if(ctx, p.m, TraceStep::kService, f.frontend_id, f.backend_id);
    ctx.counters->service_dnat_packets++;
  }
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
  const uint8_t* prev_dst = nullptr;  // the packet before's destination, when the cache had it
  for (uint16_t i = 0; i < n; ++i) {
    const uint8_t* ip = rte_pktmbuf_mtod(pkts[i], const uint8_t*);
    const uint8_t* dst = ip_dst(ip, v6[i]);
    // A run of packets to one pod: the hit of the packet before (the cache
    // does not change before the bulk lookup below).
    if (prev_dst != nullptr && v6[i] == v6[i - 1] &&
        (v6[i] ? std::memcmp(dst, prev_dst, 16) == 0 : std::memcmp(dst, prev_dst, 4) == 0)) {
      packed[i] = packed[i - 1];
      continue;
    }
    prev_dst = nullptr;
    NeighborKey& k = keys[i];
    std::memset(&k, 0, sizeof(k));
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
    } else {
      prev_dst = dst;
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
    capture::at_point(ctx, capture::Point::kTx, p, tx.pkts[p], n);
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

void run_connect_retries(WorkerContext& ctx, TxBuffers& tx) {
  PendingConnects& pc = ctx.pending;
  if (pc.count == 0) return;
  const ServicesSettings& settings = ctx.node->services;
  lb::ConnTrack& ct = *ctx.conntrack;
  // First packets to send again, after the list is settled.
  rte_mbuf* resend[PendingConnects::kCapacity];
  uint16_t resend_port[PendingConnects::kCapacity];
  uint16_t nresend = 0;
  uint16_t kept = 0;
  for (uint16_t k = 0; k < pc.count; ++k) {
    PendingConnects::Entry e = pc.entries[k];
    lb::Flow& f = ct.flow(e.flow);
    bool keep = false;
    if (f.forward == e.tuple) {  // else the record was removed (and maybe reused) meanwhile
      const auto state = static_cast<lb::FlowState>(f.state.load(std::memory_order_relaxed));
      const bool timed_out = state == lb::FlowState::kSynSent && static_cast<int32_t>(ctx.now_ms - e.deadline_ms) >= 0;
      keep = state == lb::FlowState::kSynSent && !timed_out;
      const lb::FrontendRuntime* fr = nullptr;
      uint16_t b = 0;
      if ((timed_out || state == lb::FlowState::kConnectFailed) && locate(ctx, e.flow, &fr, &b)) {
        if (timed_out) record_connect(ctx, fr->backends[b], false);
        if (e.ntried < PendingConnects::kMaxTried && (e.ntried == 0 || e.tried[e.ntried - 1] != b)) {
          e.tried[e.ntried++] = b;
        }
        const uint16_t next =
            f.attempts.load(std::memory_order_relaxed) < settings.connect_attempts
                ? lb::select_backend(*fr, lb::flow_hash(f.forward), ctx.now_ms, std::span(e.tried, e.ntried))
                : lb::kNoBackend;
        if (next != lb::kNoBackend) {
          const lb::BackendRuntime& nb = fr->backends[next];
          const bool logged = ctx.flow_events != nullptr && f.log_reported_ms.load(std::memory_order_relaxed) != 0;
          const lb::FlowEvent event =
              logged ? lb::flow_event(f, timed_out ? lb::FlowEventKind::kRetryTimedOut : lb::FlowEventKind::kRetryRefused,
                                      ctx.now_ms)
                     : lb::FlowEvent{};
          if (ct.rebind(e.flow, nb.address.bytes.data(), nb.port, next)) {
            if (logged && !ctx.flow_events->push(event)) ctx.counters->flow_log_queue_full++;
            f.connect_started_us = lb::flow_clock_us() | 1;
            refresh_dnat_deltas(f);
            f.state.store(static_cast<uint8_t>(lb::FlowState::kSynSent), std::memory_order_relaxed);
            fr->backends[b].health->retries_away.fetch_add(1, std::memory_order_relaxed);
            nb.health->connections.fetch_add(1, std::memory_order_relaxed);
            ctx.counters->service_connect_retries++;
            e.deadline_ms = ctx.now_ms + settings.connect_timeout_ms;
            rte_mbuf* again = rte_pktmbuf_copy(e.first, e.first->pool, 0, UINT32_MAX);
            if (again != nullptr) {  // else the client's own retransmission goes to the new backend
              resend_port[nresend] = e.port_index;
              resend[nresend++] = again;
            }
            keep = true;
          }
        }
        if (!keep && state == lb::FlowState::kConnectFailed) {
          // Out of backends or attempts: the client's next try meets the
          // last refusal itself.
          f.state.store(static_cast<uint8_t>(lb::FlowState::kClosed), std::memory_order_relaxed);
        }
      }
      if (!keep) f.retry.store(0, std::memory_order_relaxed);
    }
    if (keep) {
      pc.entries[kept++] = e;
    } else {
      rte_pktmbuf_free(e.first);
    }
  }
  pc.count = kept;
  for (uint16_t i = 0; i < nresend; ++i) process_local_burst(ctx, tx, resend_port[i], &resend[i], 1);
}

void release_connect_retries(WorkerContext& ctx) {
  for (uint16_t k = 0; k < ctx.pending.count; ++k) rte_pktmbuf_free(ctx.pending.entries[k].first);
  ctx.pending.count = 0;
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
  // Packets to or from services, translated before the route lookup.
  const bool has_services = !ctx.services->frontends.empty();
  // Raw storage (ServicePacket is an aggregate, an implicit-lifetime type):
  // each entry is written whole when a packet is taken, where an array of
  // ServicePacket would clear ~3 KB on every burst for nothing.
  alignas(ServicePacket) unsigned char svc_storage[sizeof(ServicePacket) * kRxBurst];
  ServicePacket* svc = reinterpret_cast<ServicePacket*>(svc_storage);
  uint16_t nsvc = 0;
  // True when the service stage took the packet (or dropped it). Inlined by
  // force, as classify_service is: as a call (it has two call sites) it cost
  // every packet to a service a spill of the stage's registers.
  auto to_service_stage = [&](rte_mbuf* m, const uint8_t* frame, const net::PacketInfo& info,
                              bool is_v6) __attribute__((always_inline)) {
    switch (classify_service(*ctx.services, m, frame, info, is_v6, false, &svc[nsvc])) {
      case ServiceClass::kTaken:
        ctx.conntrack->prefetch(svc[nsvc].hash);
        svc[nsvc++].port_index = port_index;
        return true;
      case ServiceClass::kFragment: drop(ctx, m, DropReason::kServiceFragment); return true;
      case ServiceClass::kNone: return false;
    }
    return false;
  };

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
      if (has_services && to_service_stage(m, frame, info, true)) continue;
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
      if (has_services && to_service_stage(m, frame, info, false)) continue;
      v4_dst[n4] = v4_host(dst);
      v4_info[n4] = info;
      v4[n4++] = m;
    }
  }
  if (nsvc) {
    // Translated packets join the routed ones with their new destination.
    bool keep[kRxBurst];
    translate_services(ctx, svc, nsvc, keep);
    for (uint16_t i = 0; i < nsvc; ++i) {
      if (!keep[i]) continue;
      const ServicePacket& p = svc[i];
      const uint8_t* ip = p.frame + p.info.l3_offset;
      if (p.info.ether_type == net::kEtherTypeIpv6) {
        std::memcpy(v6_dst[n6], ip_dst(ip, true), 16);
        v6_info[n6] = p.info;
        v6[n6++] = p.m;
      } else {
        v4_dst[n4] = v4_host(ip_dst(ip, false));
        v4_info[n4] = p.info;
        v4[n4++] = p.m;
      }
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
    const esp::EncryptContext ectx = uplink_encrypt_context(node);
    capture::at_point(ctx, capture::Point::kPreEncrypt, port_index, enc, nenc);
    DropReason reasons[esp::kMaxBurst];
    const uint16_t good = esp::encrypt_burst(*ctx.engine, ectx, enc, enc_sa, enc_mac, nenc, reasons);
    uint64_t bytes = 0;
    for (uint16_t i = 0; i < good; ++i) {
      bytes += enc[i]->pkt_len;
      trace_if(ctx, enc[i], TraceStep::kEncrypt, enc_sa[i]->spi);
      enqueue_tx(ctx, tx, node.uplink, enc[i]);
    }
    ctx.counters->encrypted_packets += good;
    ctx.counters->encrypted_bytes += bytes;
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
    trace_if(ctx, m, TraceStep::kFragmented, static_cast<uint32_t>(count), 0, true);
    rte_pktmbuf_free(m);
    ctx.counters->fragmented++;
    for (size_t k = 0; k < count; ++k) add_to_batch(frags[k], sa, mac);
  };

  // The next hop's link and this worker's SA to it, looked up once per run
  // of packets to the same peer (a burst mostly goes to one or a few).
  uint64_t run_nh = kNextHopNone;
  PeerLink* run_link = nullptr;
  esp::OutboundSa* run_sa = nullptr;
  // Inlined by force into its two loops: as a call it cost a frame and six
  // saved registers per packet.
  auto route_one = [&](rte_mbuf* m, const net::PacketInfo& info, uint64_t nh, bool is_v6) __attribute__((always_inline)) {
    if (nh == kNextHopNone) {
      drop(ctx, m, DropReason::kNoRoute);
      return;
    }
    trace_if(ctx, m, TraceStep::kRoute, nh == kNextHopLocal ? 0 : 1,
             nh == kNextHopLocal ? 0 : static_cast<uint32_t>(nh - kNextHopPeerBase));
    // Strip Ethernet and any trailing padding: from here on the mbuf is the IP
    // packet (one segment, rx_parse() saw to it, holding the IP packet parsed).
    narrow_single_segment(m, info.l3_offset, info.l3_len);
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
    if (nh != run_nh) {
      const uint64_t peer = nh - kNextHopPeerBase;
      run_nh = nh;
      run_link = ctx.tables->peers[peer]->link;
      run_sa = ctx.tables->outbound[peer][ctx.index];
    }
    if (run_link->down.load(std::memory_order_relaxed)) {
      drop_peer_down(ctx, m, port_index);
      return;
    }
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
    const uint64_t mac = run_link->fabric_mac.load(std::memory_order_relaxed);
    if (mac == 0) {
      drop(ctx, m, DropReason::kPeerUnresolved);
      return;
    }
    net::ip_decrement_ttl(ip);
    esp::OutboundSa* sa = run_sa;
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
  const FromFabric stage(ctx);
  const NodeRuntime& node = *ctx.node;
  const bool node_v6 = node.tunnel_address.is_v6();
  rte_mbuf* esp_pkts[kRxBurst];
  esp::EspMeta meta[kRxBurst];
  uint16_t nesp = 0;
  uint64_t esp_flags = 0;  // the ESP packets' mbuf flags together: is any traced?

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
            esp_flags |= m->ol_flags;
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
  uint16_t keepalives = 0;  // ESP dummy packets: they only prove their peer alive
  const uint16_t good =
      esp::decrypt_burst(*ctx.engine, *ctx.tables, ctx.now_ms, ctx.index, esp_pkts, meta, nesp, reasons, peer_of,
                         &keepalives);
  ctx.counters->keepalives_received += keepalives;
  for (uint16_t i = 0; (esp_flags & g_trace_marks.flag) != 0 && i < good + keepalives; ++i) {
    trace_if(ctx, esp_pkts[i], i < good ? TraceStep::kDecrypt : TraceStep::kConsumed, kTraceNone, peer_of[i], true);
  }
  if (keepalives != 0) note_keepalives(*ctx.tables, esp_pkts + good, peer_of + good, keepalives);
  for (uint16_t i = good + keepalives; i < nesp; ++i) drop(ctx, esp_pkts[i], reasons[i]);
  capture::at_point(ctx, capture::Point::kPostDecrypt, node.uplink, esp_pkts, good);

  // The inner source must be one of the sending peer's pods (or the peer
  // itself in an ICMP error), the destination one of ours: membership in
  // their pod CIDRs (which never overlap), no FIB lookup needed.
  rte_mbuf* deliver[kRxBurst];
  bool deliver_v6[kRxBurst];
  uint16_t ndeliver = 0;
  uint64_t decrypted_bytes = 0;
  const bool has_services = !ctx.services->by_backend.empty();
  // Raw storage (ServicePacket is an aggregate, an implicit-lifetime type):
  // each entry is written whole when a packet is taken, where an array of
  // ServicePacket would clear ~3 KB on every burst for nothing.
  alignas(ServicePacket) unsigned char svc_storage[sizeof(ServicePacket) * kRxBurst];
  ServicePacket* svc = reinterpret_cast<ServicePacket*>(svc_storage);
  bool svc_v6[kRxBurst];
  uint16_t nsvc = 0;
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
    if (has_services &&
        classify_service(*ctx.services, m, ip, info, is_v6, true, &svc[nsvc]) == ServiceClass::kTaken) {
      ctx.conntrack->prefetch(svc[nsvc].hash);
      svc_v6[nsvc++] = is_v6;  // a reply from a backend: delivered after translation
      continue;
    }
    deliver_v6[ndeliver] = is_v6;
    deliver[ndeliver++] = m;
  }
  if (nsvc) {
    bool keep[kRxBurst];
    translate_services(ctx, svc, nsvc, keep);
    for (uint16_t i = 0; i < nsvc; ++i) {
      if (!keep[i]) continue;
      deliver_v6[ndeliver] = svc_v6[i];
      deliver[ndeliver++] = svc[i].m;
    }
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
  uint32_t last_retry_ms = 0;
  const uint16_t q = static_cast<uint16_t>(ctx.index);
  rte_rcu_qsbr_thread_register(ctx.qsbr, ctx.index);
  rte_rcu_qsbr_thread_online(ctx.qsbr, ctx.index);

  while (!ctx.stop->load(std::memory_order_relaxed)) {
    // The generation of the tables for this round: a new one published by
    // the control thread is picked up here, never in the middle of a burst.
    ctx.tables = ctx.live->load(std::memory_order_acquire);
    ctx.services = ctx.services_live->load(std::memory_order_acquire);
    ctx.now_ms = lb::flow_clock_ms();
    ctx.counters->heartbeat_ms = ctx.now_ms;
    ctx.capture = capture::tap_of(ctx.capture_live->load(std::memory_order_acquire), ctx.index);
    uint32_t work = 0;
    for (uint16_t p = 0; p < node.ports.size(); ++p) {
      const uint16_t n = rte_eth_rx_burst(node.ports[p].port_id, q, pkts, kRxBurst);
      if (n == 0) continue;
      work += n;
      trace_rx(ctx, p, pkts, n);
      capture::at_point(ctx, capture::Point::kRx, p, pkts, n);
      if (p == node.uplink) {
        process_uplink_burst(ctx, tx, pkts, n);
      } else {
        process_local_burst(ctx, tx, p, pkts, n);
      }
    }
    // Frames built by the control thread (ARP/ND replies, ICMP errors,
    // keepalives to encrypt).
    const unsigned ninj = rte_ring_sc_dequeue_burst(ctx.inject, reinterpret_cast<void**>(pkts), kRxBurst, nullptr);
    rte_mbuf* keepalives[kRxBurst];
    uint16_t nkeepalives = 0;
    for (unsigned i = 0; i < ninj; ++i) {
      const auto kind = static_cast<InjectKind>(pkts[i]->hash.usr);
      if (kind == InjectKind::kLocalRx) {
        process_local_burst(ctx, tx, pkts[i]->port, &pkts[i], 1);
      } else if (kind == InjectKind::kKeepalive) {
        keepalives[nkeepalives++] = pkts[i];
      } else {
        enqueue_tx(ctx, tx, pkts[i]->port, pkts[i]);
      }
    }
    if (nkeepalives != 0) send_keepalives(ctx, tx, keepalives, nkeepalives);
    work += ninj;
    // New connections whose backend refused or did not answer: the next one.
    if (ctx.pending.count != 0 && ctx.now_ms != last_retry_ms) {
      last_retry_ms = ctx.now_ms;
      run_connect_retries(ctx, tx);
    }
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
  release_connect_retries(ctx);
  ctx.conntrack->release(ctx.ct_cache);
  rte_rcu_qsbr_thread_offline(ctx.qsbr, ctx.index);
  rte_rcu_qsbr_thread_unregister(ctx.qsbr, ctx.index);
  return 0;
}

}  // namespace meshwire::dp
