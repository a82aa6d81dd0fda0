#include "app/node.h"

#include <unistd.h>

#include <chrono>
#include <optional>
#include <cstdio>
#include <string>

#include <rte_errno.h>
#include <rte_launch.h>
#include <rte_lcore.h>
#include <rte_malloc.h>
#include <rte_mbuf.h>

#include "port/port.h"
#include "worker/worker.h"

namespace meshwire::dp {
namespace {

constexpr unsigned kRingSize = 1024;

bool same_prefixes(const std::vector<IpPrefix>& a, const std::vector<IpPrefix>& b) { return a == b; }

bool same_sa_keys(const std::vector<SaConfig>& want, size_t n, auto sa_at) {
  if (want.size() != n) return false;
  for (size_t i = 0; i < n; ++i) {
    const auto* sa = sa_at(i);
    if (sa->spi != want[i].spi ||
        !esp::gcm_key_matches(sa->key, want[i].key.data(), want[i].key.size(), want[i].salt.data())) {
      return false;
    }
  }
  return true;
}

// Whether the live generation already is this routing state (keys compared
// with the SAs' expanded keys: no raw key is kept to compare with).
bool same_routing(const Tables& t, const RoutingState& r) {
  if (!same_prefixes(t.local_pod_cidrs, r.pod_cidrs) || t.peers.size() != r.peers.size()) return false;
  // The inbound SAs of peer p, in the order they were listed.
  std::vector<std::vector<const esp::InboundSa*>> inbound(t.peers.size());
  for (const InboundEntry& e : t.inbound_list) inbound[e.peer].push_back(e.sa);
  for (size_t p = 0; p < r.peers.size(); ++p) {
    const PeerRuntime& live = *t.peers[p];
    const PeerConfig& want = r.peers[p];
    if (live.name != want.name || !(live.tunnel_address == want.tunnel_address) ||
        !same_prefixes(live.pod_cidrs, want.pod_cidrs)) {
      return false;
    }
    if (!same_sa_keys(want.outbound, t.outbound[p].size(), [&](size_t i) { return t.outbound[p][i]; })) return false;
    if (!same_sa_keys(want.inbound, inbound[p].size(), [&](size_t i) { return inbound[p][i]; })) return false;
  }
  return true;
}

// The rules both kinds of generation follow: applying the live one again
// is a no-op, with other contents a conflict; an older one needs force.
// What the Apply ends with when one of them decides it.
std::optional<Node::ApplyOutcome> generation_rules(uint64_t live, uint64_t generation, bool same, bool force) {
  using Code = Node::ApplyOutcome::Code;
  Node::ApplyOutcome out;
  out.live_generation = live;
  if (generation == live) {
    if (same) return out;  // idempotent: already live
    out.code = Code::kConflict;
    out.message = "generation: " + std::to_string(generation) +
                  " is live with other contents; apply the change as a new generation";
    return out;
  }
  if (generation < live && !force) {
    out.code = Code::kStale;
    out.message = "generation: " + std::to_string(generation) + " is older than the live " + std::to_string(live) +
                  " (set force to go back)";
    return out;
  }
  return std::nullopt;
}

}  // namespace

Result<std::unique_ptr<Node>> Node::create(const Config& config) {
  std::unique_ptr<Node> n(new Node());
  const unsigned nworkers = config.workers;
  if (rte_lcore_count() < nworkers + 1) {
    return make_error("workers: " + std::to_string(nworkers) + " workers need " + std::to_string(nworkers + 1) +
                      " lcores (one main), EAL has " + std::to_string(rte_lcore_count()) +
                      " (see eal: -l/--lcores)");
  }
  const int socket = static_cast<int>(rte_socket_id());

  // IPv6 links carry 1280-byte packets at least (RFC 8200): an uplink that
  // leaves less than that for an inner packet cannot serve IPv6 pods.
  bool v6_pods = false;
  for (const IpPrefix& p : config.pod_cidrs) v6_pods = v6_pods || p.address.is_v6();
  for (const PeerConfig& peer : config.peers) {
    for (const IpPrefix& p : peer.pod_cidrs) v6_pods = v6_pods || p.address.is_v6();
  }
  for (size_t i = 0; i < config.ports.size(); ++i) {
    const PortConfig& port = config.ports[i];
    if (port.role != PortRole::kUplink) continue;
    const uint16_t inner = inner_mtu_for(port.mtu, config.tunnel_address.is_v6());
    if (v6_pods && inner < 1280) {
      int needed = port.mtu;
      while (inner_mtu_for(static_cast<uint16_t>(needed), config.tunnel_address.is_v6()) < 1280) ++needed;
      return make_error("ports[" + std::to_string(i) + "].mtu: " + std::to_string(port.mtu) + " leaves " +
                        std::to_string(inner) + " bytes for a pod's packet after encapsulation; IPv6 pods need " +
                        "1280 (set mtu to " + std::to_string(needed) + " or more)");
    }
  }

  auto control_engine = esp::GcmEngine::create();
  if (!control_engine.ok()) return make_error("crypto: " + control_engine.error());
  n->control_engine_ = std::move(control_engine.value());
  for (unsigned w = 0; w < nworkers; ++w) {
    auto e = esp::GcmEngine::create();
    if (!e.ok()) return make_error("crypto: " + e.error());
    n->engines_.push_back(std::move(e.value()));
  }
  n->shared_ = std::make_unique<SharedState>(socket, static_cast<uint16_t>(nworkers));
  if (Status s = n->shared_->init(); !s.ok()) return make_error(s.error());
  auto generations = Generations::create(nworkers, *n->shared_);
  if (!generations.ok()) return make_error(generations.error());
  n->generations_ = std::move(generations.value());
  // Generation 0: the startup config's routes, peers and SAs.
  auto tables = build_tables(routing_of(config), config.tunnel_address, 0, *n->control_engine_, *n->shared_);
  if (!tables.ok()) return make_error(tables.error());
  if (Status s = n->generations_->publish(tables.value()); !s.ok()) return make_error(s.error());
  n->tunnel_address_ = config.tunnel_address;
  n->applied_unix_ms_ = unix_ms();
  // Services: none until the API applies some (generation 0).
  n->service_shared_ = std::make_unique<lb::ServiceShared>(*n->shared_);
  n->services_ = std::make_unique<Published<lb::ServiceTable>>(
      n->generations_->quiescence(), [shared = n->service_shared_.get()](lb::ServiceTable* t) {
        lb::free_services(t, *shared);
      });
  {
    auto empty = lb::build_services({}, 0, n->tables(), *n->service_shared_);
    if (!empty.ok()) return make_error(empty.error());
    if (Status s = n->services_->publish(empty.value()); !s.ok()) return make_error(s.error());
  }
  {
    lb::ConnTrackConfig cc;
    cc.capacity = config.services.conntrack_max;
    cc.workers = static_cast<uint16_t>(nworkers == 0 ? 1 : nworkers);
    cc.qsbr = n->generations_->qsbr();
    cc.socket_id = socket;
    cc.timeouts = lb::timeouts_from(config.services);
    auto ct = lb::ConnTrack::create(cc);
    if (!ct.ok()) return make_error("services: " + ct.error());
    n->conntrack_ = std::move(ct.value());
  }

  // Enough mbufs to fill every RX and TX ring of every queue, plus bursts in
  // flight, the punt/inject rings and the per-lcore caches.
  unsigned mbufs = 0;
  for (const PortConfig& p : config.ports) mbufs += (p.rx_descriptors + p.tx_descriptors) * nworkers;
  mbufs += nworkers * (2 * kRingSize + 4 * 64) + 4096;
  n->pool_ = rte_pktmbuf_pool_create("mw_pool", mbufs, 256, 0, RTE_MBUF_DEFAULT_BUF_SIZE, socket);
  if (!n->pool_) return make_error(std::string("memory: cannot create the mbuf pool: ") + rte_strerror(rte_errno));

  NodeRuntime& node = n->node_;
  node.tunnel_address = config.tunnel_address;
  node.gateway_v4 = config.gateway_v4;
  node.gateway_v6 = config.gateway_v6;
  node.idle = config.idle;
  node.services = config.services;
  node.liveness = config.liveness;
  if (config.flow_logs.enabled()) {
    auto log = FlowLog::open(config.flow_logs, config.node_name);
    if (!log.ok()) return make_error(log.error());
    n->flow_log_ = std::move(log.value());
    node.flow_log_sample = config.flow_logs.sample;
  }
  bool have_local = false;
  for (size_t i = 0; i < config.ports.size(); ++i) {
    auto port = setup_port(config.ports[i], "ports[" + std::to_string(i) + "]", static_cast<uint16_t>(nworkers), n->pool_);
    if (!port.ok()) return make_error(port.error());
    n->ports_started_++;
    node.ports.push_back(port.value());
    if (config.ports[i].role == PortRole::kUplink) node.uplink = static_cast<uint16_t>(i);
    if (config.ports[i].role == PortRole::kLocal && !have_local) {
      node.local_default = static_cast<uint16_t>(i);
      have_local = true;
    }
  }
  node.max_inner_len = inner_mtu_for(node.ports[node.uplink].mtu, config.tunnel_address.is_v6());
  node.mss_v4 = static_cast<uint16_t>(node.max_inner_len - 40);
  node.mss_v6 = static_cast<uint16_t>(node.max_inner_len - 60);

  n->counters_ = static_cast<WorkerCounters*>(
      rte_zmalloc_socket("mw_counters", sizeof(WorkerCounters) * (nworkers + 1), 64, socket));
  if (!n->counters_) return make_error("memory: cannot allocate counters");

  if (!register_trace_marks()) {
    return make_error(std::string("memory: cannot register the trace's mbuf flag: ") + rte_strerror(rte_errno));
  }
  n->workers_.resize(nworkers);
  for (unsigned w = 0; w < nworkers; ++w) {
    WorkerContext& ctx = n->workers_[w];
    n->traces_.push_back(std::make_unique<WorkerTrace>());
    ctx.trace = n->traces_.back().get();
    ctx.index = w;
    ctx.engine = n->engines_[w].get();
    ctx.counters = &n->counters_[w];
    ctx.node = &n->node_;
    ctx.live = &n->generations_->live();
    ctx.tables = n->generations_->current();
    ctx.qsbr = n->generations_->qsbr();
    ctx.capture_live = &n->capture_slot_.live;
    ctx.services_live = &n->services_->live();
    ctx.services = n->services_->current();
    ctx.conntrack = n->conntrack_.get();
    ctx.ct_cache = lb::ConnTrack::WorkerCache(static_cast<uint16_t>(w));
    ctx.stop = &n->worker_stop_;
    if (n->flow_log_) {
      n->flow_events_.push_back(std::make_unique<lb::FlowEventQueue>());
      ctx.flow_events = n->flow_events_.back().get();
      n->flow_event_queues_.push_back(ctx.flow_events);
    }
    char name[RTE_RING_NAMESIZE];
    std::snprintf(name, sizeof(name), "mw_punt_%u", w);
    ctx.punt = rte_ring_create(name, kRingSize, socket, RING_F_SP_ENQ | RING_F_SC_DEQ);
    std::snprintf(name, sizeof(name), "mw_inject_%u", w);
    ctx.inject = rte_ring_create(name, kRingSize, socket, RING_F_SP_ENQ | RING_F_SC_DEQ);
    if (!ctx.punt || !ctx.inject) return make_error(std::string("memory: cannot create rings: ") + rte_strerror(rte_errno));
  }
  n->control_ = std::make_unique<Control>(n->node_, n->generations_->live(), n->workers_, n->pool_,
                                          &n->counters_[nworkers]);
  return n;
}

Node::ApplyOutcome Node::apply(const RoutingState& routing, uint64_t generation, bool force) {
  using Code = ApplyOutcome::Code;
  ApplyOutcome out;
  const Tables& live = tables();
  out.live_generation = live.generation;
  auto refuse = [&](Code code, std::string message) {
    out.code = code;
    out.message = std::move(message);
    return out;
  };
  if (generation == 0) return refuse(Code::kInvalid, "generation: 0 is reserved for the startup config");
  if (Status s = check_routing(routing, tunnel_address_, workers(), kApiPaths); !s.ok()) {
    return refuse(Code::kInvalid, s.error());
  }
  // What create() checks for the startup config's prefixes, for those that
  // come only now (a config without node.pod_cidrs): IPv6 pods need an
  // uplink that carries 1280-byte packets after encapsulation.
  if (node_.max_inner_len < 1280) {
    auto v6 = [&](const std::vector<IpPrefix>& prefixes) {
      for (size_t i = 0; i < prefixes.size(); ++i) {
        if (prefixes[i].address.is_v6()) return static_cast<ptrdiff_t>(i);
      }
      return static_cast<ptrdiff_t>(-1);
    };
    std::string path;
    IpPrefix prefix;
    if (const ptrdiff_t i = v6(routing.pod_cidrs); i >= 0) {
      path = "pod_cidrs[" + std::to_string(i) + "]";
      prefix = routing.pod_cidrs[static_cast<size_t>(i)];
    }
    for (size_t p = 0; path.empty() && p < routing.peers.size(); ++p) {
      if (const ptrdiff_t i = v6(routing.peers[p].pod_cidrs); i >= 0) {
        path = "peers[" + std::to_string(p) + "].pod_cidrs[" + std::to_string(i) + "]";
        prefix = routing.peers[p].pod_cidrs[static_cast<size_t>(i)];
      }
    }
    if (!path.empty()) {
      return refuse(Code::kInvalid, path + ": " + format_prefix(prefix) + " is IPv6, but the uplink (" +
                                        node_.ports[node_.uplink].name + ", mtu " +
                                        std::to_string(node_.ports[node_.uplink].mtu) + ") leaves " +
                                        std::to_string(node_.max_inner_len) +
                                        " bytes for a pod's packet after encapsulation; IPv6 needs 1280");
    }
  }
  const bool same = same_routing(live, routing);
  if (auto early = generation_rules(live.generation, generation, same, force)) return *early;
  auto next = build_tables(routing, tunnel_address_, generation, *control_engine_, *shared_);
  if (!next.ok()) return refuse(Code::kInternal, next.error());
  if (Status s = generations_->publish(next.value()); !s.ok()) return refuse(Code::kUnavailable, s.error());
  source_ = "api";
  applied_unix_ms_ = unix_ms();
  out.live_generation = generation;
  out.changed = !same;
  if (out.changed) relink_services();
  return out;
}

Node::ApplyOutcome Node::apply_services(lb::ServicesConfig services, uint64_t generation, bool force) {
  using Code = ApplyOutcome::Code;
  ApplyOutcome out;
  const lb::ServiceTable& live = *services_->current();
  out.live_generation = live.generation;
  auto refuse = [&](Code code, std::string message) {
    out.code = code;
    out.message = std::move(message);
    return out;
  };
  if (generation == 0) return refuse(Code::kInvalid, "generation: 0 is reserved (no services applied)");
  if (Status s = lb::check_services(services); !s.ok()) return refuse(Code::kInvalid, s.error());
  const bool same = live.config == services;
  if (auto early = generation_rules(live.generation, generation, same, force)) return *early;
  auto next = lb::build_services(services, generation, tables(), *service_shared_);
  if (!next.ok()) return refuse(Code::kInternal, next.error());
  lb::carry_reply_grace(*next.value(), &live, lb::flow_clock_ms());
  if (Status s = services_->publish(next.value()); !s.ok()) return refuse(Code::kUnavailable, s.error());
  out.live_generation = generation;
  out.changed = !same;
  return out;
}

void Node::relink_services(bool end_reply_grace) {
  const lb::ServiceTable& live = *services_->current();
  auto next = lb::build_services(live.config, live.generation, tables(), *service_shared_);
  if (next.ok()) next.value()->untracked_reply_until_ms = end_reply_grace ? 0 : live.untracked_reply_until_ms;
  if (!next.ok()) {
    std::fprintf(stderr, "meshwire-dataplane: services: keeping their old routes: %s\n", next.error().c_str());
    return;
  }
  if (Status s = services_->publish(next.value()); !s.ok()) {
    std::fprintf(stderr, "meshwire-dataplane: services: keeping their old routes: %s\n", s.error().c_str());
  }
}

void Node::sweep_conntrack() {
  const uint32_t now = lb::flow_clock_ms();
  // The grace for untracked replies after the start ends with a generation
  // without it (the workers' check would wrap with the flow clock).
  if (const uint32_t until = services_->current()->untracked_reply_until_ms;
      until != 0 && static_cast<int32_t>(until - now) <= 0) {
    relink_services(true);
  }
  const uint64_t now64 = static_cast<uint64_t>(now);
  // A peer gone down: the whole table at once (about 20 ns a record), so
  // that UDP flows to its backends choose live ones with their next packet.
  const bool peer_went_down = control_->peers_gone_down() != swept_for_down_;
  if (!peer_went_down && now64 < next_sweep_ms_ && next_sweep_ms_ - now64 < 1000) return;
  swept_for_down_ = control_->peers_gone_down();
  next_sweep_ms_ = now64 + 10;
  // Else a hundredth of the table every 10 ms: all of it each second.
  const uint32_t budget = peer_went_down ? conntrack_->capacity()
                                         : std::max<uint32_t>(1024, conntrack_->capacity() / 100);
  const lb::ServiceTable& live = *services_->current();
  if (!flow_log_) {
    conntrack_->sweep(now, budget, [&](const lb::Flow& f) { return !live.keeps(f); });
    return;
  }
  flow_log_->set_time(now, unix_ms());
  flow_log_->drain(flow_event_queues_, live);
  conntrack_->sweep(
      now, budget,
      [&](lb::Flow& f) {
        if (!live.keeps(f)) return true;
        flow_log_->visit(f, live);
        return false;
      },
      [&](const lb::Flow& f, bool expired) { flow_log_->removed(f, expired, live); });
  flow_log_->flush();
  WorkerCounters& mine = counters_[workers_.size()];  // the control thread's block
  mine.flow_log_records = flow_log_->records();
  mine.flow_log_rate_limited = flow_log_->rate_limited();
  // A stopped worker's stock of free records is given back in worker_main.
}

void Node::run(const std::atomic<bool>& stop, void (*on_ready)()) {
  unsigned w = 0;
  unsigned lcore;
  RTE_LCORE_FOREACH_WORKER(lcore) {
    if (w == workers_.size()) break;
    workers_[w].lcore = lcore;
    rte_eal_remote_launch(worker_main, &workers_[w], lcore);
    ++w;
  }
  if (on_ready) on_ready();
  unsigned idle = 0;
  while (!stop.load(std::memory_order_relaxed)) {
    generations_->reclaim();
    services_->reclaim();
    sweep_conntrack();
    capture::nudge_if_copies(capture_slot_);
    // Punted packets (ARP, ND, keepalives...) come in runs: after one, poll
    // every 100 us for a while. API calls wake the nap themselves, so they
    // do not start that fast polling (a Prometheus scrape is seven calls).
    if (control_->poll() != 0) {
      idle = 0;
      continue;
    }
    if (tasks_.drain() != 0) continue;
    // The control thread has no line-rate duty: nap when there is nothing to do.
    tasks_.nap(std::chrono::microseconds(++idle < 100 ? 100 : 1000));
  }
  tasks_.close();
  worker_stop_.store(true);
  rte_eal_mp_wait_lcore();
  control_->poll();  // drain what the workers punted last
}

Node::~Node() {
  for (size_t i = 0; i < ports_started_; ++i) stop_port(node_.ports[i]);
  for (WorkerContext& ctx : workers_) {
    for (rte_ring* r : {ctx.punt, ctx.inject}) {
      if (!r) continue;
      void* m;
      while (rte_ring_dequeue(r, &m) == 0) rte_pktmbuf_free(static_cast<rte_mbuf*>(m));
      rte_ring_free(r);
    }
  }
  control_.reset();
  services_.reset();  // before the routing state their backends' links belong to
  conntrack_.reset();
  generations_.reset();  // every generation, before the state they share
  shared_.reset();
  if (pool_) rte_mempool_free(pool_);
  rte_free(counters_);
}

}  // namespace meshwire::dp
