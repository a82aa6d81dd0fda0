#include "lb/services.h"

#include <algorithm>
#include <new>
#include <set>
#include <tuple>

#include <rte_cycles.h>

namespace meshwire::dp::lb {
namespace {

std::string at(const std::string& path, size_t i) { return path + "[" + std::to_string(i) + "]"; }

std::string protocol_name(uint8_t p) {
  switch (p) {
    case net::kProtoTcp: return "TCP";
    case net::kProtoUdp: return "UDP";
    case net::kProtoSctp: return "SCTP";
    default: return std::to_string(p);
  }
}

bool is_unspecified(const IpAddress& a) {
  return std::all_of(a.bytes.begin(), a.bytes.end(), [](uint8_t b) { return b == 0; });
}

}  // namespace

Status check_services(const ServicesConfig& services) {
  std::set<std::tuple<uint8_t, std::array<uint8_t, 16>, uint8_t, uint16_t>> seen;
  for (size_t i = 0; i < services.size(); ++i) {
    const FrontendConfig& f = services[i];
    const std::string path = at("services", i);
    if (f.protocol != net::kProtoTcp && f.protocol != net::kProtoUdp && f.protocol != net::kProtoSctp) {
      return make_error(path + ".protocol: must be TCP, UDP or SCTP");
    }
    if (f.vip.family != 4 && f.vip.family != 6) return make_error(path + ".vip: not an IP address");
    if (is_unspecified(f.vip)) return make_error(path + ".vip: " + format_ip(f.vip) + " is not a usable address");
    if (f.port == 0) return make_error(path + ".port: must be 1..65535");
    if (!seen.insert({f.vip.family, f.vip.bytes, f.protocol, f.port}).second) {
      return make_error(path + ": " + format_ip(f.vip) + ":" + std::to_string(f.port) + "/" +
                        protocol_name(f.protocol) + " is already a frontend");
    }
    if (f.affinity_timeout_s > 86400 * 365) return make_error(path + ".affinity_timeout_s: at most a year");
    if (f.backends.size() > kMaxBackends) {
      return make_error(path + ".backends: at most " + std::to_string(kMaxBackends) + " per frontend");
    }
    std::set<std::tuple<std::array<uint8_t, 16>, uint16_t>> mine;
    for (size_t j = 0; j < f.backends.size(); ++j) {
      const BackendConfig& b = f.backends[j];
      const std::string bpath = at(path + ".backends", j);
      if (b.address.family != f.vip.family) {
        return make_error(bpath + ".address: " + (b.address.family ? format_ip(b.address) : std::string("(none)")) +
                          " is not of the VIP's family (IPv" + std::to_string(f.vip.family) + ")");
      }
      if (is_unspecified(b.address)) return make_error(bpath + ".address: not a usable address");
      if (b.port == 0) return make_error(bpath + ".port: must be 1..65535");
      if (b.weight == 0 || b.weight > kMaglevMaxWeight) {
        return make_error(bpath + ".weight: must be 1.." + std::to_string(kMaglevMaxWeight));
      }
      if (!mine.insert({b.address.bytes, b.port}).second) {
        return make_error(bpath + ": " + format_ip(b.address) + ":" + std::to_string(b.port) +
                          " is listed twice");
      }
    }
  }
  return Ok{};
}

void EndpointIndex::build(const std::vector<std::pair<EndpointKey, uint32_t>>& entries) {
  slots_.clear();
  mask_ = 0;
  if (entries.empty()) return;
  size_t size = 16;
  while (size < entries.size() * 2) size *= 2;
  slots_.assign(size, Slot{EndpointKey{}, kNone});
  mask_ = size - 1;
  for (const auto& [key, value] : entries) {
    for (uint64_t i = endpoint_hash(key) & mask_;; i = (i + 1) & mask_) {
      if (slots_[i].value == kNone) {
        slots_[i] = {key, value};
        break;
      }
      if (same_key(slots_[i].key, key)) break;  // the first one stays
    }
  }
}

ServiceShared::~ServiceShared() {
  for (auto& [key, h] : health_) {
    h->~BackendHealth();
    ::operator delete(h, std::align_val_t{64});
  }
}

std::string ServiceShared::key_of(const FrontendRuntime& f, const BackendRuntime& b) {
  std::string k;
  k.reserve(40);
  k.push_back(static_cast<char>(f.vip.family));
  k.push_back(static_cast<char>(f.protocol));
  k.append(reinterpret_cast<const char*>(f.vip.bytes.data()), 16);
  k.push_back(static_cast<char>(f.port >> 8));
  k.push_back(static_cast<char>(f.port & 0xFF));
  k.append(reinterpret_cast<const char*>(b.address.bytes.data()), 16);
  k.push_back(static_cast<char>(b.port >> 8));
  k.push_back(static_cast<char>(b.port & 0xFF));
  return k;
}

BackendHealth* ServiceShared::acquire_health(const FrontendRuntime& f, const BackendRuntime& b) {
  auto [it, fresh] = health_.emplace(key_of(f, b), nullptr);
  if (fresh) {
    void* mem = ::operator new(sizeof(BackendHealth), std::align_val_t{64});
    it->second = new (mem) BackendHealth();
  }
  it->second->refs++;
  return it->second;
}

void ServiceShared::release_health(const FrontendRuntime& f, const BackendRuntime& b, BackendHealth* h) {
  if (!h || --h->refs != 0) return;
  health_.erase(key_of(f, b));
  h->~BackendHealth();
  ::operator delete(h, std::align_val_t{64});
}

Result<ServiceTable*> build_services(const ServicesConfig& services, uint64_t generation, const Tables& routes,
                                     ServiceShared& shared) {
  auto* t = new ServiceTable();
  t->generation = generation;
  t->config = services;
  t->frontends.reserve(services.size());
  std::vector<std::pair<EndpointKey, uint32_t>> fronts, backs;
  fronts.reserve(services.size());
  for (size_t i = 0; i < services.size(); ++i) {
    const FrontendConfig& fc = services[i];
    FrontendRuntime& f = t->frontends.emplace_back();
    f.vip = fc.vip;
    f.port = fc.port;
    f.protocol = fc.protocol;
    f.affinity_ms = fc.affinity_timeout_s * 1000;
    f.backends.reserve(fc.backends.size());
    std::vector<std::string> keys;
    keys.reserve(fc.backends.size());
    std::vector<std::pair<EndpointKey, uint32_t>> mine;
    mine.reserve(fc.backends.size());
    for (const BackendConfig& bc : fc.backends) {
      BackendRuntime& b = f.backends.emplace_back();
      b.address = bc.address;
      b.port = bc.port;
      b.active = !bc.draining;
      const uint64_t nh = route_lookup(routes, bc.address);
      b.routed = nh != kNextHopNone;
      if (nh >= kNextHopPeerBase && nh - kNextHopPeerBase < routes.peers.size()) {
        b.link = shared.routing().acquire_link(routes.peers[nh - kNextHopPeerBase]->tunnel_address);
        if (!b.link) {
          free_services(t, shared);
          return make_error(at("services", i) + ": out of memory");
        }
      }
      b.health = shared.acquire_health(f, b);
      std::string key(reinterpret_cast<const char*>(bc.address.bytes.data()), 16);
      key.push_back(static_cast<char>(bc.port >> 8));
      key.push_back(static_cast<char>(bc.port & 0xFF));
      keys.push_back(std::move(key));
      backs.push_back({endpoint_key(bc.address.family, fc.protocol, bc.address.bytes.data(), bc.port),
                       static_cast<uint32_t>(i)});
      mine.push_back({backs.back().first, static_cast<uint32_t>(f.backends.size() - 1)});
      t->backend_ports.add(bc.port);
      t->backend_addresses.add(bc.address.family, bc.address.bytes.data());
    }
    std::vector<MaglevBackend> mb;
    mb.reserve(fc.backends.size());
    for (size_t j = 0; j < fc.backends.size(); ++j) {
      mb.push_back({keys[j], f.backends[j].active ? fc.backends[j].weight : 0});
    }
    f.maglev = maglev_build(mb);
    f.backend_index.build(mine);
    for (uint16_t slot : f.maglev) {
      if (slot != kNoBackend) f.backends[slot].slots++;
    }
    t->backends += f.backends.size();
    fronts.push_back({endpoint_key(fc.vip.family, fc.protocol, fc.vip.bytes.data(), fc.port), static_cast<uint32_t>(i)});
    t->frontend_ports.add(fc.port);
    t->vips.add(fc.vip.family, fc.vip.bytes.data());
  }
  for (size_t i = 0; i < services.size(); ++i) {  // after the real keys: a VIP's fragments
    fronts.push_back({endpoint_key(services[i].vip.family, 0, services[i].vip.bytes.data(), 0), static_cast<uint32_t>(i)});
  }
  t->by_frontend.build(fronts);
  t->by_backend.build(backs);
  return t;
}

ServiceTable::Place ServiceTable::place_of(const Flow& f) const {
  const FlowTuple& k = f.forward;
  const uint8_t protocol = k.proto == kAffinityProto ? static_cast<uint8_t>(k.src_port) : k.proto;
  Place p;
  const uint32_t fi = by_frontend.find(endpoint_key(k.family, protocol, k.dst, k.dst_port));
  if (fi == EndpointIndex::kNone) return p;
  const uint32_t bi = frontends[fi].backend_index.find(endpoint_key(k.family, protocol, f.backend, f.backend_port));
  if (bi == EndpointIndex::kNone) return p;
  p.frontend = fi;
  p.backend = bi;
  return p;
}

bool ServiceTable::keeps(const Flow& f) const {
  const Place p = place_of(f);
  if (p.frontend == kNowhere) return false;
  const BackendRuntime& b = frontends[p.frontend].backends[p.backend];
  if (!b.link || !b.link->down.load(std::memory_order_relaxed)) return true;
  const auto state = static_cast<FlowState>(f.state.load(std::memory_order_relaxed));
  return state != FlowState::kUdp && state != FlowState::kAffinity;
}

void free_services(ServiceTable* table, ServiceShared& shared) {
  if (!table) return;
  for (FrontendRuntime& f : table->frontends) {
    for (BackendRuntime& b : f.backends) {
      if (b.link) shared.routing().release_link(b.link);
      shared.release_health(f, b, b.health);
    }
  }
  delete table;
}

uint32_t flow_clock_ms() {
  static const uint64_t per_ms = rte_get_tsc_hz() / 1000;
  return static_cast<uint32_t>(rte_get_tsc_cycles() / per_ms);
}

uint32_t flow_clock_us() {
  static const uint64_t per_us = rte_get_tsc_hz() / 1'000'000;
  return static_cast<uint32_t>(rte_get_tsc_cycles() / per_us);
}

uint16_t select_backend(const FrontendRuntime& f, uint64_t h, uint32_t now_ms, std::span<const uint16_t> skip) {
  auto skipped = [&](uint16_t b) { return std::find(skip.begin(), skip.end(), b) != skip.end(); };
  const size_t size = f.maglev.size();
  if (size == 0) return kNoBackend;
  const size_t start = h % size;
  // Slots are spread over the table, so a few steps find another backend;
  // the walk is bounded, then the backends are scanned in order.
  constexpr size_t kWalk = 64;
  for (size_t k = 0; k < std::min(kWalk, size); ++k) {
    const uint16_t b = f.maglev[(start + k) % size];
    if (b == kNoBackend) return kNoBackend;  // no active backend at all
    if (!skipped(b) && backend_selectable(f.backends[b], now_ms) == Selectable::kYes) return b;
  }
  for (size_t k = 0; k < f.backends.size(); ++k) {
    const uint16_t b = static_cast<uint16_t>((start + k) % f.backends.size());
    if (!skipped(b) && backend_selectable(f.backends[b], now_ms) == Selectable::kYes) return b;
  }
  return kNoBackend;
}

}  // namespace meshwire::dp::lb
