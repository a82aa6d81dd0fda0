// Two simulated nodes' worth of data plane state for tests and benchmarks:
// node "a" (pods 10.11.0.0/24, fd00:11::/64) and node "b" (10.12.0.0/24,
// fd00:12::/64), each with its real tables, one worker context, counters and
// rings, but no ports: callers run the stages and read the TX buffers.
// TestWorkers adds the other workers of a node built for several.
#pragma once

#include <rte_malloc.h>
#include <rte_mbuf.h>
#include <rte_ring.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "esp/sa.h"
#include "lb/conntrack.h"
#include "lb/services.h"
#include "route/generations.h"
#include "route/tables.h"
#include "worker/control.h"
#include "worker/worker.h"
#include "../dataplane/net/packet_builder.h"

namespace meshwire::test {

using dp::AeadAlgorithm;
using dp::Config;
using dp::DropReason;
using dp::IpAddress;
using dp::IpPrefix;
using dp::NodeRuntime;
using dp::PeerConfig;
using dp::PortRole;
using dp::PortRuntime;
using dp::PuntKind;
using dp::SaConfig;
using dp::Tables;
using dp::TxBuffers;
using dp::WorkerContext;
using dp::WorkerCounters;
using dp::pack_mac;

inline constexpr uint16_t kLocal = 0;
inline constexpr uint16_t kUplink = 1;

inline IpAddress addr(const char* text) { return *dp::parse_ip_address(text); }
inline IpPrefix prefix(const char* text) { return *dp::parse_ip_prefix(text); }

inline SaConfig sa(uint32_t spi, uint8_t seed, size_t key_len = 16) {
  SaConfig s;
  s.spi = spi;
  s.algorithm = key_len == 32 ? AeadAlgorithm::kAes256Gcm : AeadAlgorithm::kAes128Gcm;
  for (size_t i = 0; i < key_len; ++i) s.key.push_back(static_cast<uint8_t>(seed + i));
  s.salt = {static_cast<uint8_t>(seed), 0xA5, 0x5A, static_cast<uint8_t>(~seed)};
  return s;
}

// One simulated node: its tables, one worker's context and counters, no
// real ports (tests read the TX buffers instead of flushing them).
//
// With workers > 1 the node is configured as the data plane is for that many
// workers: one outbound SA per worker towards the peer (worker w: SPI
// 0x1001 + w on a, 0x2001 + w on b) and one inbound SA per sending worker of
// the peer, so two nodes built with the same count understand each other.
// ctx stays worker 0; TestWorkers makes the others.
struct TestNode {
  Config config;
  NodeRuntime node;
  std::unique_ptr<dp::SharedState> shared;
  Tables* tables = nullptr;
  std::atomic<Tables*> live{nullptr};
  std::unique_ptr<dp::esp::GcmEngine> engine;
  WorkerCounters counters{};
  // Services: an empty set until apply_services(), and a connection table
  // (4096 flows) whose grace periods pass at once (no reader registered).
  std::unique_ptr<dp::Quiescence> quiescence;
  std::unique_ptr<dp::lb::ServiceShared> service_shared;
  dp::lb::ServiceTable* services = nullptr;
  std::atomic<dp::lb::ServiceTable*> services_live{nullptr};
  std::unique_ptr<dp::lb::ConnTrack> conntrack;
  WorkerContext ctx;
  std::atomic<bool> stop{false};
  TxBuffers tx;

  TestNode(const std::string& name, bool v6_fabric, int which, unsigned workers = 1) {
    const bool a = which == 0;
    config.tunnel_address = addr(v6_fabric ? (a ? "2001:db8::1" : "2001:db8::2") : (a ? "192.0.2.1" : "192.0.2.2"));
    config.pod_cidrs = {prefix(a ? "10.11.0.0/24" : "10.12.0.0/24"), prefix(a ? "fd00:11::/64" : "fd00:12::/64")};
    config.gateway_v4 = addr("169.254.1.1");
    config.gateway_v6 = addr("fe80::1");
    PeerConfig peer;
    peer.name.assign(1, a ? 'b' : 'a');
    peer.tunnel_address = addr(v6_fabric ? (a ? "2001:db8::2" : "2001:db8::1") : (a ? "192.0.2.2" : "192.0.2.1"));
    peer.pod_cidrs = {prefix(a ? "10.12.0.0/24" : "10.11.0.0/24"), prefix(a ? "fd00:12::/64" : "fd00:11::/64")};
    // A -> B uses SPI 0x1001 (key seed 1); B -> A uses 0x2001 (seed 2).
    // Worker w of a node with several uses 0x1001 + w (seed 1 + 2w) and
    // 0x2001 + w (seed 2 + 2w).
    config.workers = workers;
    for (unsigned w = 0; w < workers; ++w) {
      const SaConfig a_to_b = sa(0x1001 + w, static_cast<uint8_t>(1 + 2 * w));
      const SaConfig b_to_a = sa(0x2001 + w, static_cast<uint8_t>(2 + 2 * w));
      peer.outbound.push_back(a ? a_to_b : b_to_a);
      peer.inbound.push_back(a ? b_to_a : a_to_b);
    }
    config.peers = {peer};

    auto e = dp::esp::GcmEngine::create();
    if (!e.ok()) std::abort();
    engine = std::move(e.value());
    shared = std::make_unique<dp::SharedState>(0);
    if (!shared->init().ok()) std::abort();
    auto t = dp::build_tables(dp::routing_of(config), config.tunnel_address, 0, *engine, *shared);
    if (!t.ok()) {
      std::fprintf(stderr, "build_tables: %s\n", t.error().c_str());
      std::abort();
    }
    tables = t.value();
    live.store(tables);

    PortRuntime local;
    local.name = "pods";
    local.role = PortRole::kLocal;
    std::memcpy(local.mac, mac(a ? "02:aa:00:00:00:01" : "02:bb:00:00:00:01").data(), 6);
    PortRuntime up;
    up.name = "fabric";
    up.role = PortRole::kUplink;
    std::memcpy(up.mac, mac(a ? "02:aa:00:00:00:02" : "02:bb:00:00:00:02").data(), 6);
    node.ports = {local, up};
    node.uplink = kUplink;
    node.local_default = kLocal;
    node.tunnel_address = config.tunnel_address;
    node.gateway_v4 = config.gateway_v4;
    node.gateway_v6 = config.gateway_v6;
    node.max_inner_len = dp::inner_mtu_for(1500, v6_fabric);
    node.mss_v4 = node.max_inner_len - 40;
    node.mss_v6 = node.max_inner_len - 60;
    // No liveness timer in Control::poll(): the workers' clock here is the
    // fixed ctx.now_ms, which the real clock poll() reads would find long
    // silent, taking the peer down. Liveness tests set node.liveness and
    // drive Control::liveness_round() with times of their own.
    node.liveness.interval_ms = 0;
    // The peer's fabric MAC as ARP would have found it.
    tables->peers[0]->link->fabric_mac = pack_mac(mac(a ? "02:bb:00:00:00:02" : "02:aa:00:00:00:02").data());

    ctx.index = 0;
    ctx.engine = engine.get();
    ctx.counters = &counters;
    ctx.node = &node;
    ctx.tables = tables;
    ctx.stop = &stop;

    auto q = dp::Quiescence::create(workers, 0);
    if (!q.ok()) std::abort();
    quiescence = std::move(q.value());
    service_shared = std::make_unique<dp::lb::ServiceShared>(*shared);
    auto st = dp::lb::build_services({}, 0, *tables, *service_shared);
    if (!st.ok()) std::abort();
    services = st.value();
    services_live.store(services);
    dp::lb::ConnTrackConfig cc;
    cc.capacity = 4096;
    cc.workers = static_cast<uint16_t>(workers);
    cc.qsbr = quiescence->qsbr();
    auto ct = dp::lb::ConnTrack::create(cc);
    if (!ct.ok()) {
      std::fprintf(stderr, "conntrack: %s\n", ct.error().c_str());
      std::abort();
    }
    conntrack = std::move(ct.value());
    ctx.services = services;
    ctx.services_live = &services_live;
    ctx.conntrack = conntrack.get();
    ctx.ct_cache = dp::lb::ConnTrack::WorkerCache(0);
    ctx.now_ms = 1000;
    char ring_name[RTE_RING_NAMESIZE];
    std::snprintf(ring_name, sizeof(ring_name), "%s_p", name.c_str());
    ctx.punt = rte_ring_create(ring_name, 64, 0, RING_F_SP_ENQ | RING_F_SC_DEQ);
    std::snprintf(ring_name, sizeof(ring_name), "%s_i", name.c_str());
    ctx.inject = rte_ring_create(ring_name, 64, 0, RING_F_SP_ENQ | RING_F_SC_DEQ);
    if (!ctx.punt || !ctx.inject) std::abort();
  }
  ~TestNode() {
    clear_tx();
    void* m;
    while (rte_ring_dequeue(ctx.punt, &m) == 0) rte_pktmbuf_free(static_cast<rte_mbuf*>(m));
    rte_ring_free(ctx.punt);
    rte_ring_free(ctx.inject);
    dp::release_connect_retries(ctx);
    conntrack->release(ctx.ct_cache);
    conntrack.reset();
    dp::lb::free_services(services, *service_shared);
    service_shared.reset();
    dp::free_tables(tables, *shared);
  }
  // Makes `config` the node's services (generation `generation`), as
  // ApplyServices would; returns the error of an invalid set.
  std::string apply_services(const dp::lb::ServicesConfig& config, uint64_t generation) {
    if (auto s = dp::lb::check_services(config); !s.ok()) return s.error();
    auto t = dp::lb::build_services(config, generation, *tables, *service_shared);
    if (!t.ok()) return t.error();
    dp::lb::carry_reply_grace(*t.value(), services, ctx.now_ms);
    dp::lb::free_services(services, *service_shared);
    services = t.value();
    services_live.store(services);
    ctx.services = services;
    return "";
  }
  // Builds generation `generation` from routing (the config's with changes)
  // and makes it this node's tables, as an Apply would; the old generation is
  // freed at once (no worker thread runs in these tests). Returns the error
  // of an invalid state, leaving the tables as they were.
  std::string apply(const dp::RoutingState& routing, uint64_t generation) {
    auto t = dp::build_tables(routing, config.tunnel_address, generation, *engine, *shared);
    if (!t.ok()) return t.error();
    dp::free_tables(tables, *shared);
    tables = t.value();
    live.store(tables);
    ctx.tables = tables;
    return "";
  }
  void clear_tx() {
    for (auto p : {kLocal, kUplink}) {
      for (uint16_t i = 0; i < tx.count[p]; ++i) rte_pktmbuf_free(tx.pkts[p][i]);
      tx.count[p] = 0;
    }
  }
  uint64_t drops(DropReason r) const { return counters.drops[static_cast<size_t>(r)]; }
  // Takes the frames sent on a port, as bytes.
  std::vector<Bytes> take(uint16_t port) {
    std::vector<Bytes> out;
    for (uint16_t i = 0; i < tx.count[port]; ++i) {
      rte_mbuf* m = tx.pkts[port][i];
      const uint8_t* d = rte_pktmbuf_mtod(m, const uint8_t*);
      out.emplace_back(d, d + m->data_len);
      rte_pktmbuf_free(m);
    }
    tx.count[port] = 0;
    return out;
  }
  std::vector<std::pair<PuntKind, Bytes>> punted() {
    std::vector<std::pair<PuntKind, Bytes>> out;
    void* v;
    while (rte_ring_dequeue(ctx.punt, &v) == 0) {
      auto* m = static_cast<rte_mbuf*>(v);
      const uint8_t* d = rte_pktmbuf_mtod(m, const uint8_t*);
      out.emplace_back(static_cast<PuntKind>(m->hash.usr), Bytes(d, d + m->data_len));
      rte_pktmbuf_free(m);
    }
    return out;
  }
  // Takes what the control thread handed to this worker (the caller owns it).
  std::vector<rte_mbuf*> take_injected() {
    std::vector<rte_mbuf*> out;
    void* v;
    while (rte_ring_dequeue(ctx.inject, &v) == 0) out.push_back(static_cast<rte_mbuf*>(v));
    return out;
  }
  void learn(const char* ip, const char* mac_text) {
    if (dp::neighbor_update(*tables->neighbors, addr(ip), mac(mac_text).data(), kLocal) != 0) std::abort();
  }
};

// Workers 0..count-1 of a TestNode built with at least count workers, laid
// out as Node::create lays out a node's workers: one GcmEngine each, the
// counters in one cache-line-aligned rte_zmalloc array, the contexts in one
// std::vector, each context with its own punt and inject rings, all over the
// node's shared NodeRuntime and Tables. ctx[w] uses the node's outbound SA
// for worker w; the TX buffers belong to whoever runs the worker (worker_main
// keeps them on its stack). ctx[0] and the node's own ctx are both worker 0:
// they share its outbound SA, so use one or the other. Destroy before the node.
struct TestWorkers {
  std::vector<std::unique_ptr<dp::esp::GcmEngine>> engines;
  WorkerCounters* counters = nullptr;  // one block per worker
  std::vector<WorkerContext> ctx;

  TestWorkers(TestNode& n, const std::string& name, unsigned count) : ctx(count) {
    if (count == 0 || count > n.config.workers) std::abort();
    counters = static_cast<WorkerCounters*>(rte_zmalloc("test_counters", sizeof(WorkerCounters) * count, 64));
    if (!counters) std::abort();
    for (unsigned w = 0; w < count; ++w) {
      auto e = dp::esp::GcmEngine::create();
      if (!e.ok()) std::abort();
      engines.push_back(std::move(e.value()));
      WorkerContext& c = ctx[w];
      c.index = w;
      c.engine = engines[w].get();
      c.counters = &counters[w];
      c.node = &n.node;
      c.tables = n.tables;
      c.stop = &n.stop;
      c.services = n.services;
      c.services_live = &n.services_live;
      c.conntrack = n.conntrack.get();
      c.ct_cache = dp::lb::ConnTrack::WorkerCache(static_cast<uint16_t>(w));
      c.now_ms = 1000;
      char ring_name[RTE_RING_NAMESIZE];
      std::snprintf(ring_name, sizeof(ring_name), "%s_p%u", name.c_str(), w);
      c.punt = rte_ring_create(ring_name, 64, 0, RING_F_SP_ENQ | RING_F_SC_DEQ);
      std::snprintf(ring_name, sizeof(ring_name), "%s_i%u", name.c_str(), w);
      c.inject = rte_ring_create(ring_name, 64, 0, RING_F_SP_ENQ | RING_F_SC_DEQ);
      if (!c.punt || !c.inject) std::abort();
    }
  }
  ~TestWorkers() {
    for (WorkerContext& c : ctx) {
      for (rte_ring* r : {c.punt, c.inject}) {
        void* m;
        while (rte_ring_dequeue(r, &m) == 0) rte_pktmbuf_free(static_cast<rte_mbuf*>(m));
        rte_ring_free(r);
      }
    }
    rte_free(counters);
  }
  TestWorkers(const TestWorkers&) = delete;
  TestWorkers& operator=(const TestWorkers&) = delete;
};


}  // namespace meshwire::test
