#include "route/tables.h"

#include <cstdio>
#include <cstring>

#include <rte_errno.h>
#include <rte_jhash.h>
#include <rte_malloc.h>

namespace meshwire::dp {
namespace {

constexpr int kMaxRoutes = 1 << 16;
constexpr uint32_t kMaxNeighbors = 1 << 14;

uint32_t v4_host_order(const IpAddress& a) {
  return (uint32_t{a.bytes[0]} << 24) | (uint32_t{a.bytes[1]} << 16) |
         (uint32_t{a.bytes[2]} << 8) | uint32_t{a.bytes[3]};
}

Status add_route(Tables& t, const IpPrefix& p, uint64_t nh, const std::string& field) {
  int rc;
  if (p.address.is_v4()) {
    rc = rte_fib_add(t.fib4, v4_host_order(p.address), p.length, nh);
  } else {
    rc = rte_fib6_add(t.fib6, const_cast<uint8_t*>(p.address.bytes.data()), p.length, nh);
  }
  if (rc != 0) return make_error(field + ": cannot add route " + format_prefix(p) + ": " + rte_strerror(-rc));
  return Ok{};
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

Status expand_sa_key(esp::GcmEngine& engine, const SaConfig& sa, esp::GcmKey* key, const std::string& field) {
  Status s = esp::expand_gcm_key(engine, sa.key.data(), sa.key.size(), sa.salt.data(), key);
  if (!s.ok()) return make_error(field + ": " + s.error());
  return Ok{};
}

}  // namespace

std::string format_mac(const uint8_t mac[6]) {
  char buf[18];
  std::snprintf(buf, sizeof(buf), "%02x:%02x:%02x:%02x:%02x:%02x", mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]);
  return buf;
}

Result<Tables*> build_tables(const Config& config, esp::GcmEngine& engine, int socket_id) {
  auto* t = new Tables();
  auto fail = [&](std::string message) -> Result<Tables*> {
    free_tables(t);
    return make_error(std::move(message));
  };
  static std::atomic<int> instance{0};
  const int id = instance.fetch_add(1);
  char name[RTE_HASH_NAMESIZE];

  rte_fib_conf c4{};
  c4.type = RTE_FIB_DIR24_8;
  c4.default_nh = kNextHopNone;
  c4.max_routes = kMaxRoutes;
  c4.dir24_8.nh_sz = RTE_FIB_DIR24_8_2B;
  c4.dir24_8.num_tbl8 = 1 << 10;
  std::snprintf(name, sizeof(name), "mw_fib4_%d", id);
  t->fib4 = rte_fib_create(name, socket_id, &c4);
  if (!t->fib4) return fail(std::string("routes: cannot create IPv4 FIB: ") + rte_strerror(rte_errno));

  rte_fib6_conf c6{};
  c6.type = RTE_FIB6_TRIE;
  c6.default_nh = kNextHopNone;
  c6.max_routes = kMaxRoutes;
  c6.trie.nh_sz = RTE_FIB6_TRIE_2B;
  c6.trie.num_tbl8 = 1 << 12;
  std::snprintf(name, sizeof(name), "mw_fib6_%d", id);
  t->fib6 = rte_fib6_create(name, socket_id, &c6);
  if (!t->fib6) return fail(std::string("routes: cannot create IPv6 FIB: ") + rte_strerror(rte_errno));

  for (size_t i = 0; i < config.pod_cidrs.size(); ++i) {
    Status s = add_route(*t, config.pod_cidrs[i], kNextHopLocal, "node.pod_cidrs[" + std::to_string(i) + "]");
    if (!s.ok()) return fail(s.error());
    t->local_pods.add(config.pod_cidrs[i]);
  }

  char nname[RTE_HASH_NAMESIZE];
  std::snprintf(nname, sizeof(nname), "mw_neigh_%d", id);
  rte_hash_parameters np{};
  np.name = nname;
  np.entries = kMaxNeighbors;
  np.key_len = sizeof(NeighborKey);
  np.hash_func = rte_jhash;
  np.socket_id = socket_id;
  np.extra_flag = RTE_HASH_EXTRA_FLAGS_RW_CONCURRENCY_LF;
  t->neighbors = rte_hash_create(&np);
  if (!t->neighbors) return fail(std::string("cannot create the neighbour table: ") + rte_strerror(rte_errno));

  for (size_t p = 0; p < config.peers.size(); ++p) {
    const PeerConfig& pc = config.peers[p];
    const std::string field = "peers[" + std::to_string(p) + "]";
    auto* peer = alloc_aligned<PeerRuntime>("mw_peer", socket_id);
    if (!peer) return fail(field + ": out of memory");
    peer->name = pc.name;
    peer->tunnel_address = pc.tunnel_address;
    peer->pod_cidrs = pc.pod_cidrs;
    for (const IpPrefix& prefix : pc.pod_cidrs) peer->pods.add(prefix);
    t->peers.push_back(peer);
    for (size_t i = 0; i < pc.pod_cidrs.size(); ++i) {
      Status s = add_route(*t, pc.pod_cidrs[i], kNextHopPeerBase + p, field + ".pod_cidrs[" + std::to_string(i) + "]");
      if (!s.ok()) return fail(s.error());
    }

    t->outbound.emplace_back();
    for (size_t w = 0; w < pc.outbound.size(); ++w) {
      auto* sa = alloc_aligned<esp::OutboundSa>("mw_sa_out", socket_id);
      if (!sa) return fail(field + ".sas.outbound: out of memory");
      t->outbound[p].push_back(sa);
      sa->spi = pc.outbound[w].spi;
      sa->udp_sport = esp::udp_source_port_for_spi(sa->spi);
      sa->peer = static_cast<uint16_t>(p);
      sa->family = config.tunnel_address.family;
      std::memcpy(sa->outer_src, config.tunnel_address.bytes.data(), 16);
      std::memcpy(sa->outer_dst, pc.tunnel_address.bytes.data(), 16);
      Status s = expand_sa_key(engine, pc.outbound[w], &sa->key, field + ".sas.outbound[" + std::to_string(w) + "]");
      if (!s.ok()) return fail(s.error());
    }

    for (size_t i = 0; i < pc.inbound.size(); ++i) {
      const std::string sfield = field + ".sas.inbound[" + std::to_string(i) + "]";
      auto* sa = alloc_aligned<esp::InboundSa>("mw_sa_in", socket_id);
      if (!sa) return fail(sfield + ": out of memory");
      t->inbound_list.push_back(sa);
      sa->spi = pc.inbound[i].spi;
      sa->peer = static_cast<uint16_t>(p);
      Status s = expand_sa_key(engine, pc.inbound[i], &sa->key, sfield);
      if (!s.ok()) return fail(s.error());
      if (!t->inbound_sas.add(pc.tunnel_address, sa->spi, sa)) {
        return fail(sfield + ".spi: " + std::to_string(sa->spi) + " is already an inbound SA of this peer");
      }
    }
  }
  return t;
}

void free_tables(Tables* t) {
  if (!t) return;
  if (t->fib4) rte_fib_free(t->fib4);
  if (t->fib6) rte_fib6_free(t->fib6);
  if (t->neighbors) rte_hash_free(t->neighbors);
  for (auto* p : t->peers) free_aligned(p);
  for (auto& per_peer : t->outbound) {
    for (auto* sa : per_peer) {
      if (sa) esp::wipe(&sa->key);
      free_aligned(sa);
    }
  }
  for (auto* sa : t->inbound_list) {
    esp::wipe(&sa->key);
    free_aligned(sa);
  }
  delete t;
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

bool neighbor_lookup(const Tables& t, const IpAddress& ip, uint8_t mac[6], uint16_t* port) {
  NeighborKey k = neighbor_key(ip);
  void* data = nullptr;
  if (rte_hash_lookup_data(t.neighbors, &k, &data) < 0) return false;
  const auto packed = reinterpret_cast<uintptr_t>(data);
  unpack_mac(packed, mac);
  *port = neighbor_port(packed);
  return true;
}

int neighbor_update(Tables& t, const IpAddress& ip, const uint8_t mac[6], uint16_t port) {
  NeighborKey k = neighbor_key(ip);
  const uint64_t packed = pack_neighbor(mac, port);
  const int rc = rte_hash_add_key_data(t.neighbors, &k, reinterpret_cast<void*>(static_cast<uintptr_t>(packed)));
  if (rc == 0) t.neighbor_epoch.fetch_add(1, std::memory_order_release);  // workers' caches are stale
  return rc;
}

}  // namespace meshwire::dp
