#include "route/tables.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>

#include <rte_errno.h>
#include <rte_jhash.h>
#include <rte_malloc.h>

#include <meshwire/dp/counters.h>

#include "net/parse.h"

namespace meshwire::dp {

uint64_t unix_ms() {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
          .count());
}

namespace {

constexpr int kMaxRoutes = 1 << 16;
constexpr uint32_t kMaxNeighbors = 1 << 14;

std::array<uint8_t, 17> address_key(uint8_t family, const uint8_t* address) {
  std::array<uint8_t, 17> k;
  k[0] = family;
  std::memcpy(k.data() + 1, address, 16);
  return k;
}

uint32_t v4_host_order(const IpAddress& a) {
  return (uint32_t{a.bytes[0]} << 24) | (uint32_t{a.bytes[1]} << 16) |
         (uint32_t{a.bytes[2]} << 8) | uint32_t{a.bytes[3]};
}

template <typename T>
T* alloc_aligned(const char* what, int socket_id) {
  void* mem = rte_zmalloc_socket(what, sizeof(T), 64, socket_id);
  return mem ? new (mem) T() : nullptr;
}

template <typename T>
void free_aligned(T* p) {
  if (!p) return;
  p->~T();
  rte_free(p);
}

// Expands a new SA's key and gives the SA its first ref; on failure the SA
// is wiped and freed, and the error named by path() (built only then).
template <typename Sa, typename PathFn>
Status expand_new_sa(esp::GcmEngine& engine, const SaConfig& sc, Sa* sa, PathFn path) {
  Status s = esp::expand_gcm_key(engine, sc.key.data(), sc.key.size(), sc.salt.data(), &sa->key);
  if (!s.ok()) s = make_error(path() + ": " + s.error());
  if (!s.ok()) {
    esp::wipe(&sa->key);
    free_aligned(sa);
    return s;
  }
  sa->refs = 1;
  return Ok{};
}

}  // namespace

std::string format_mac(const uint8_t mac[6]) {
  char buf[18];
  std::snprintf(buf, sizeof(buf), "%02x:%02x:%02x:%02x:%02x:%02x", mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]);
  return buf;
}

// --- SharedState

SharedState::~SharedState() {
  if (last_fibs_) release_fibs(last_fibs_);
  destroy_fibs(spare_fibs_);
  if (neighbors_.hash) rte_hash_free(neighbors_.hash);
}

Status SharedState::init() {
  static std::atomic<int> instance{0};
  char name[RTE_HASH_NAMESIZE];
  std::snprintf(name, sizeof(name), "mw_neigh_%d", instance.fetch_add(1));
  rte_hash_parameters np{};
  np.name = name;
  np.entries = kMaxNeighbors;
  np.key_len = sizeof(NeighborKey);
  np.hash_func = rte_jhash;
  np.socket_id = socket_id_;
  np.extra_flag = RTE_HASH_EXTRA_FLAGS_RW_CONCURRENCY_LF;
  neighbors_.hash = rte_hash_create(&np);
  if (!neighbors_.hash) return make_error(std::string("cannot create the neighbour table: ") + rte_strerror(rte_errno));
  return Ok{};
}

SharedState::Id SharedState::id_of(uint8_t family, const uint8_t* address, uint32_t spi, uint16_t worker) {
  Id id{};
  id[0] = family;
  id[1] = static_cast<uint8_t>(worker >> 8);
  id[2] = static_cast<uint8_t>(worker);
  net::store_be32(&id[3], spi);
  std::memcpy(&id[7], address, 16);
  return id;
}

PeerLink* SharedState::acquire_link(const IpAddress& tunnel) {
  const Id id = id_of(tunnel.family, tunnel.bytes.data(), 0, 0);
  auto it = links_.find(id);
  if (it == links_.end()) {
    auto* link = alloc_aligned<PeerLink>("mw_peer_link", socket_id_);
    if (!link) return nullptr;
    link->traffic = static_cast<PeerTraffic*>(
        rte_zmalloc_socket("mw_peer_traffic", sizeof(PeerTraffic) * workers_, 64, socket_id_));
    if (!link->traffic) {
      free_aligned(link);
      return nullptr;
    }
    link->traffic_slots = workers_;
    link->tunnel_address = tunnel;
    it = links_.emplace(id, link).first;
  }
  it->second->refs++;
  return it->second;
}

PeerTraffic peer_traffic(const PeerLink& link) {
  PeerTraffic sum;
  for (uint16_t w = 0; w < link.traffic_slots; ++w) {
    const PeerTraffic& t = link.traffic[w];
    sum.tx_packets += read_counter(t.tx_packets);
    sum.tx_bytes += read_counter(t.tx_bytes);
    sum.rx_packets += read_counter(t.rx_packets);
    sum.rx_bytes += read_counter(t.rx_bytes);
  }
  return sum;
}

void SharedState::release_link(PeerLink* link) {
  if (!link || --link->refs != 0) return;
  links_.erase(id_of(link->tunnel_address.family, link->tunnel_address.bytes.data(), 0, 0));
  rte_free(link->traffic);
  free_aligned(link);
}

esp::OutboundSa* SharedState::reuse_outbound(const IpAddress& peer, uint32_t spi, uint16_t worker,
                                             const SaConfig& sa) {
  auto it = outbound_.find(id_of(peer.family, peer.bytes.data(), spi, worker));
  if (it == outbound_.end() || !esp::gcm_key_matches(it->second->key, sa.key.data(), sa.key.size(), sa.salt.data())) {
    return nullptr;
  }
  it->second->refs++;
  return it->second;
}

esp::InboundSa* SharedState::reuse_inbound(const IpAddress& peer, uint32_t spi, const SaConfig& sa) {
  auto it = inbound_.find(id_of(peer.family, peer.bytes.data(), spi, 0));
  if (it == inbound_.end() || !esp::gcm_key_matches(it->second->key, sa.key.data(), sa.key.size(), sa.salt.data())) {
    return nullptr;
  }
  it->second->refs++;
  return it->second;
}

// A new SA with the identity of an older one (same SPI, another key) takes
// its place for later generations; the older one lives on, unreachable by
// reuse, until the generations that hold it are freed.
void SharedState::add_outbound(esp::OutboundSa* sa) {
  outbound_[id_of(sa->family, sa->outer_dst, sa->spi, sa->worker)] = sa;
}

void SharedState::add_inbound(esp::InboundSa* sa) { inbound_[id_of(sa->family, sa->source, sa->spi, 0)] = sa; }

void SharedState::release_outbound(esp::OutboundSa* sa) {
  if (!sa || --sa->refs != 0) return;
  auto it = outbound_.find(id_of(sa->family, sa->outer_dst, sa->spi, sa->worker));
  if (it != outbound_.end() && it->second == sa) outbound_.erase(it);
  esp::wipe(&sa->key);
  free_aligned(sa);
}

void SharedState::release_inbound(esp::InboundSa* sa) {
  if (!sa || --sa->refs != 0) return;
  auto it = inbound_.find(id_of(sa->family, sa->source, sa->spi, 0));
  if (it != inbound_.end() && it->second == sa) inbound_.erase(it);
  esp::wipe(&sa->key);
  free_aligned(sa);
}

std::vector<Fibs::Route> routes_of(const RoutingState& routing) {
  std::vector<Fibs::Route> routes;
  for (const IpPrefix& p : routing.pod_cidrs) routes.push_back({p, kNextHopLocal});
  for (size_t i = 0; i < routing.peers.size(); ++i) {
    for (const IpPrefix& p : routing.peers[i].pod_cidrs) routes.push_back({p, kNextHopPeerBase + i});
  }
  return routes;
}

namespace {

// The path of routes[k] in the state, for errors: built only then.
std::string route_path(const RoutingState& routing, size_t k) {
  if (k < routing.pod_cidrs.size()) return "node.pod_cidrs[" + std::to_string(k) + "]";
  k -= routing.pod_cidrs.size();
  for (size_t p = 0; p < routing.peers.size(); ++p) {
    if (k < routing.peers[p].pod_cidrs.size()) {
      return "peers[" + std::to_string(p) + "].pod_cidrs[" + std::to_string(k) + "]";
    }
    k -= routing.peers[p].pod_cidrs.size();
  }
  return "routes";
}

int fib_add(Fibs& f, const Fibs::Route& r) {
  if (r.prefix.address.is_v4()) return rte_fib_add(f.fib4, v4_host_order(r.prefix.address), r.prefix.length, r.next_hop);
  return rte_fib6_add(f.fib6, const_cast<uint8_t*>(r.prefix.address.bytes.data()), r.prefix.length, r.next_hop);
}

int fib_delete(Fibs& f, const IpPrefix& p) {
  if (p.address.is_v4()) return rte_fib_delete(f.fib4, v4_host_order(p.address), p.length);
  return rte_fib6_delete(f.fib6, const_cast<uint8_t*>(p.address.bytes.data()), p.length);
}

bool prefix_less(const Fibs::Route& a, const Fibs::Route& b) {
  return std::tie(a.prefix.address.family, a.prefix.address.bytes, a.prefix.length) <
         std::tie(b.prefix.address.family, b.prefix.address.bytes, b.prefix.length);
}

// Turns FIBs that hold `f.routes` into FIBs that hold `routes` by adding and
// deleting what differs (after a pod CIDR change: a few routes, instead of
// 32 MB of table cleared and every route added again). False when an
// update failed: the FIBs are then in no known state.
bool update_routes(Fibs& f, const std::vector<Fibs::Route>& routes) {
  std::vector<Fibs::Route> before = f.routes;
  std::vector<Fibs::Route> after = routes;
  std::sort(before.begin(), before.end(), prefix_less);
  std::sort(after.begin(), after.end(), prefix_less);
  size_t i = 0, j = 0;
  while (i < before.size() || j < after.size()) {
    if (j == after.size() || (i < before.size() && prefix_less(before[i], after[j]))) {
      if (fib_delete(f, before[i].prefix) != 0) return false;
      ++i;
    } else if (i == before.size() || prefix_less(after[j], before[i])) {
      if (fib_add(f, after[j]) != 0) return false;
      ++j;
    } else {
      if (before[i].next_hop != after[j].next_hop && fib_add(f, after[j]) != 0) return false;  // replaces
      ++i;
      ++j;
    }
  }
  f.routes = routes;
  return true;
}

}  // namespace

void SharedState::destroy_fibs(Fibs* f) {
  if (!f) return;
  if (f->fib4) rte_fib_free(f->fib4);
  if (f->fib6) rte_fib6_free(f->fib6);
  delete f;
}

Result<Fibs*> SharedState::fibs_for(const RoutingState& routing) {
  std::vector<Fibs::Route> routes = routes_of(routing);
  if (last_fibs_ && last_fibs_->routes == routes) {
    last_fibs_->refs++;
    return last_fibs_;
  }
  Fibs* f = nullptr;
  if (spare_fibs_) {
    // FIBs no generation uses any more (retired under RCU): brought up to
    // date in place. No worker can be reading them.
    f = spare_fibs_;
    spare_fibs_ = nullptr;
    if (!update_routes(*f, routes)) {
      destroy_fibs(f);
      f = nullptr;
    }
  }
  if (!f) {
    static std::atomic<int> instance{0};
    const int id = instance.fetch_add(1);
    char name[RTE_HASH_NAMESIZE];  // rte_fib names are limited alike
    f = new Fibs();
    auto fail = [&](std::string message) -> Result<Fibs*> {
      destroy_fibs(f);
      return make_error(std::move(message));
    };
    rte_fib_conf c4{};
    c4.type = RTE_FIB_DIR24_8;
    c4.default_nh = kNextHopNone;
    c4.max_routes = kMaxRoutes;
    c4.dir24_8.nh_sz = RTE_FIB_DIR24_8_2B;
    c4.dir24_8.num_tbl8 = 1 << 10;
    std::snprintf(name, sizeof(name), "mw_fib4_%d", id);
    f->fib4 = rte_fib_create(name, socket_id_, &c4);
    if (!f->fib4) return fail(std::string("routes: cannot create IPv4 FIB: ") + rte_strerror(rte_errno));

    rte_fib6_conf c6{};
    c6.type = RTE_FIB6_TRIE;
    c6.default_nh = kNextHopNone;
    c6.max_routes = kMaxRoutes;
    c6.trie.nh_sz = RTE_FIB6_TRIE_2B;
    c6.trie.num_tbl8 = 1 << 12;
    std::snprintf(name, sizeof(name), "mw_fib6_%d", id);
    f->fib6 = rte_fib6_create(name, socket_id_, &c6);
    if (!f->fib6) return fail(std::string("routes: cannot create IPv6 FIB: ") + rte_strerror(rte_errno));

    for (size_t k = 0; k < routes.size(); ++k) {
      if (const int rc = fib_add(*f, routes[k]); rc != 0) {
        return fail(route_path(routing, k) + ": cannot add route " + format_prefix(routes[k].prefix) + ": " +
                    rte_strerror(-rc));
      }
    }
    f->routes = std::move(routes);
  }
  f->refs = 1;
  if (last_fibs_) release_fibs(last_fibs_);  // no longer the one to reuse
  last_fibs_ = f;
  f->refs++;  // held as last_fibs_
  return f;
}

void SharedState::release_fibs(Fibs* f) {
  if (!f || --f->refs != 0) return;
  // Kept (one set) to be updated in place for the next change of routes.
  if (!spare_fibs_) {
    spare_fibs_ = f;
  } else {
    destroy_fibs(f);
  }
}

// --- Generations

Result<Tables*> build_tables(const RoutingState& routing, const IpAddress& tunnel_address, uint64_t generation,
                             esp::GcmEngine& engine, SharedState& shared) {
  auto* t = new Tables();
  t->generation = generation;
  t->neighbors = shared.neighbors();
  auto fail = [&](std::string message) -> Result<Tables*> {
    free_tables(t, shared);
    return make_error(std::move(message));
  };
  const int socket_id = shared.socket_id();
  auto fibs = shared.fibs_for(routing);
  if (!fibs.ok()) return fail(fibs.error());
  t->fibs = fibs.value();
  t->fib4 = t->fibs->fib4;
  t->fib6 = t->fibs->fib6;

  t->local_pod_cidrs = routing.pod_cidrs;
  for (const IpPrefix& prefix : routing.pod_cidrs) t->local_pods.add(prefix);

  t->peers.reserve(routing.peers.size());
  t->outbound.reserve(routing.peers.size());
  t->peer_addresses.reserve(routing.peers.size());
  for (size_t p = 0; p < routing.peers.size(); ++p) {
    const PeerConfig& pc = routing.peers[p];
    // Paths for errors only: at thousands of peers, building them for every
    // peer cost more than the rest.
    auto field = [p] { return "peers[" + std::to_string(p) + "]"; };
    auto* peer = new PeerRuntime();
    t->peers.push_back(peer);
    peer->name = pc.name;
    peer->tunnel_address = pc.tunnel_address;
    peer->pod_cidrs = pc.pod_cidrs;
    for (const IpPrefix& prefix : pc.pod_cidrs) peer->pods.add(prefix);
    peer->link = shared.acquire_link(pc.tunnel_address);
    if (!peer->link) return fail(field() + ": out of memory");
    t->peer_addresses.push_back({address_key(pc.tunnel_address.family, pc.tunnel_address.bytes.data()),
                                 static_cast<uint16_t>(p)});

    t->outbound.emplace_back();
    for (size_t w = 0; w < pc.outbound.size(); ++w) {
      const SaConfig& sc = pc.outbound[w];
      const uint16_t worker = static_cast<uint16_t>(w);
      esp::OutboundSa* sa = shared.reuse_outbound(pc.tunnel_address, sc.spi, worker, sc);
      if (!sa) {
        sa = alloc_aligned<esp::OutboundSa>("mw_sa_out", socket_id);
        if (!sa) return fail(field() + ".sas.outbound: out of memory");
        sa->spi = sc.spi;
        sa->created_unix_ms = unix_ms();
        sa->udp_sport = esp::udp_source_port_for_spi(sa->spi);
        sa->family = tunnel_address.family;
        sa->worker = worker;
        sa->traffic = worker < peer->link->traffic_slots ? &peer->link->traffic[worker] : nullptr;
        std::memcpy(sa->outer_src, tunnel_address.bytes.data(), 16);
        std::memcpy(sa->outer_dst, pc.tunnel_address.bytes.data(), 16);
        esp::build_outer_template(sa);
        Status s = expand_new_sa(engine, sc, sa, [&] { return field() + ".sas.outbound[" + std::to_string(w) + "]"; });
        if (!s.ok()) return fail(s.error());
        shared.add_outbound(sa);
      }
      t->outbound[p].push_back(sa);
    }

    for (size_t i = 0; i < pc.inbound.size(); ++i) {
      const SaConfig& sc = pc.inbound[i];
      auto sfield = [&] { return field() + ".sas.inbound[" + std::to_string(i) + "]"; };
      esp::InboundSa* sa = shared.reuse_inbound(pc.tunnel_address, sc.spi, sc);
      if (!sa) {
        sa = alloc_aligned<esp::InboundSa>("mw_sa_in", socket_id);
        if (!sa) return fail(sfield() + ": out of memory");
        sa->spi = sc.spi;
        sa->created_unix_ms = unix_ms();
        sa->family = pc.tunnel_address.family;
        std::memcpy(sa->source, pc.tunnel_address.bytes.data(), 16);
        Status s = expand_new_sa(engine, sc, sa, sfield);
        if (!s.ok()) return fail(s.error());
        shared.add_inbound(sa);
      }
      t->inbound_list.push_back({sa, static_cast<uint16_t>(p)});
      if (!t->inbound_sas.add(pc.tunnel_address, sa->spi, sa, static_cast<uint16_t>(p))) {
        return fail(sfield() + ".spi: " + std::to_string(sa->spi) + " is already an inbound SA of this peer");
      }
    }
  }
  std::sort(t->peer_addresses.begin(), t->peer_addresses.end(),
            [](const Tables::PeerAddress& a, const Tables::PeerAddress& b) { return a.key < b.key; });
  return t;
}

namespace {

SaConfig sa_config_of(uint32_t spi, const esp::GcmKey& key) {
  SaConfig sc;
  sc.spi = spi;
  sc.algorithm = key.key_len == 32 ? AeadAlgorithm::kAes256Gcm : AeadAlgorithm::kAes128Gcm;
  sc.key.assign(key.expanded.expanded_keys, key.expanded.expanded_keys + key.key_len);
  sc.salt = key.salt;
  return sc;
}

}  // namespace

RoutingState routing_of(const Tables& t) {
  RoutingState r;
  r.pod_cidrs = t.local_pod_cidrs;
  r.peers.resize(t.peers.size());
  for (size_t p = 0; p < t.peers.size(); ++p) {
    PeerConfig& pc = r.peers[p];
    pc.name = t.peers[p]->name;
    pc.tunnel_address = t.peers[p]->tunnel_address;
    pc.pod_cidrs = t.peers[p]->pod_cidrs;
    for (const esp::OutboundSa* sa : t.outbound[p]) pc.outbound.push_back(sa_config_of(sa->spi, sa->key));
  }
  for (const InboundEntry& e : t.inbound_list) r.peers[e.peer].inbound.push_back(sa_config_of(e.sa->spi, e.sa->key));
  return r;
}

void free_tables(Tables* t, SharedState& shared) {
  if (!t) return;
  shared.release_fibs(t->fibs);
  for (PeerRuntime* p : t->peers) {
    shared.release_link(p->link);
    delete p;
  }
  for (auto& per_peer : t->outbound) {
    for (esp::OutboundSa* sa : per_peer) shared.release_outbound(sa);
  }
  for (const InboundEntry& e : t->inbound_list) shared.release_inbound(e.sa);
  delete t;
}

int find_peer(const Tables& t, uint8_t family, const uint8_t* address) {
  const std::array<uint8_t, 17> k = address_key(family, address);
  auto it = std::lower_bound(t.peer_addresses.begin(), t.peer_addresses.end(), k,
                             [](const Tables::PeerAddress& e, const std::array<uint8_t, 17>& key) { return e.key < key; });
  return it != t.peer_addresses.end() && it->key == k ? it->peer : -1;
}

uint64_t route_lookup(const Tables& t, const IpAddress& dst) {
  uint64_t nh = kNextHopNone;
  if (dst.is_v4()) {
    uint32_t ip = v4_host_order(dst);
    rte_fib_lookup_bulk(t.fib4, &ip, &nh, 1);
  } else {
    uint8_t ip[1][RTE_FIB6_IPV6_ADDR_SIZE];
    std::memcpy(ip[0], dst.bytes.data(), 16);
    rte_fib6_lookup_bulk(t.fib6, ip, &nh, 1);
  }
  return nh;
}

static NeighborKey neighbor_key(const IpAddress& ip) {
  NeighborKey k{};
  k.family = ip.family;
  std::memcpy(k.addr, ip.bytes.data(), 16);
  return k;
}

bool neighbor_lookup(const Neighbors& neighbors, const IpAddress& ip, uint8_t mac[6], uint16_t* port) {
  NeighborKey k = neighbor_key(ip);
  void* data = nullptr;
  if (rte_hash_lookup_data(neighbors.hash, &k, &data) < 0) return false;
  const auto packed = reinterpret_cast<uintptr_t>(data);
  unpack_mac(packed, mac);
  *port = neighbor_port(packed);
  return true;
}

int neighbor_update(Neighbors& neighbors, const IpAddress& ip, const uint8_t mac[6], uint16_t port) {
  NeighborKey k = neighbor_key(ip);
  const uint64_t packed = pack_neighbor(mac, port);
  const int rc = rte_hash_add_key_data(neighbors.hash, &k, reinterpret_cast<void*>(static_cast<uintptr_t>(packed)));
  if (rc == 0) neighbors.epoch.fetch_add(1, std::memory_order_release);  // workers' caches are stale
  return rc;
}

}  // namespace meshwire::dp
