// Every table the workers read, in one place, with who writes it and when.
//
// In this release the route, peer and SA tables are built once at startup
// (before any worker runs) and are immutable afterwards; the neighbour table
// and the peers' fabric MACs are written by the control thread while workers
// read them (lock-free; see each comment).
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include <rte_fib.h>
#include <rte_fib6.h>
#include <rte_hash.h>

#include <meshwire/dp/config.h>
#include <meshwire/dp/result.h>

#include "esp/sa.h"
#include "route/prefix_set.h"
#include "esp/sad.h"

namespace meshwire::dp {

// Route next hops as stored in the FIBs.
inline constexpr uint64_t kNextHopNone = 0;   // default: no route
inline constexpr uint64_t kNextHopLocal = 1;  // one of this node's pod CIDRs
inline constexpr uint64_t kNextHopPeerBase = 2;  // peer i is kNextHopPeerBase + i

// A MAC packed into 64 bits; bit 48 set means "valid". 0 = unresolved.
inline constexpr uint64_t kMacValid = 1ull << 48;
inline uint64_t pack_mac(const uint8_t mac[6]) {
  uint64_t v = 0;
  for (int i = 0; i < 6; ++i) v |= static_cast<uint64_t>(mac[i]) << (8 * i);
  return v | kMacValid;
}
inline void unpack_mac(uint64_t packed, uint8_t mac[6]) {
  for (int i = 0; i < 6; ++i) mac[i] = static_cast<uint8_t>(packed >> (8 * i));
}
std::string format_mac(const uint8_t mac[6]);

struct PeerRuntime {
  std::string name;                 // written at startup
  IpAddress tunnel_address;         // written at startup
  std::vector<IpPrefix> pod_cidrs;  // written at startup
  PrefixSet pods;                   // the same, for the decrypt path's source check
  // Written by the control thread when ARP/ND resolves the peer; read by
  // workers (relaxed) for every packet they encapsulate towards it.
  alignas(64) std::atomic<uint64_t> fabric_mac{0};
};

// Key of the neighbour hash: a pod address.
struct NeighborKey {
  uint8_t family;
  uint8_t pad[3];
  uint8_t addr[16];
};
static_assert(sizeof(NeighborKey) == 20);

// Neighbour value (packed into the hash's data pointer): MAC | valid | port << 56.
inline uint64_t pack_neighbor(const uint8_t mac[6], uint16_t port) {
  return pack_mac(mac) | (static_cast<uint64_t>(port & 0xFF) << 56);
}
inline uint16_t neighbor_port(uint64_t packed) { return static_cast<uint16_t>(packed >> 56); }

struct Tables {
  // Written at startup, immutable afterwards.
  rte_fib* fib4 = nullptr;   // destination -> next hop (kNextHop*)
  rte_fib6* fib6 = nullptr;  // likewise for IPv6
  std::vector<PeerRuntime*> peers;
  PrefixSet local_pods;  // this node's pod CIDRs (the FIB's kNextHopLocal routes)
  esp::InboundSaTable inbound_sas;  // (outer source, SPI) -> InboundSa*; written at startup only
  std::vector<esp::InboundSa*> inbound_list;
  // outbound[peer][worker], each block written only by its worker.
  std::vector<std::vector<esp::OutboundSa*>> outbound;

  // Pod neighbours: NeighborKey -> pack_neighbor(). Written by the control
  // thread only (learning and resolution); workers look up concurrently
  // (RTE_HASH_EXTRA_FLAGS_RW_CONCURRENCY_LF). Entries are updated in place,
  // never deleted in this release.
  rte_hash* neighbors = nullptr;
  // Bumped (release) by the control thread after every change to neighbors;
  // workers drop their NeighborCache when it moves. Starts at 1 so that a
  // new cache (epoch 0) is empty and synced on first use.
  alignas(64) std::atomic<uint64_t> neighbor_epoch{1};
};

// Builds the route, peer and SA tables from the config. Errors name the field.
// num_workers outbound SAs are expanded per peer with engine (any thread's).
Result<Tables*> build_tables(const Config& config, esp::GcmEngine& engine, int socket_id);
void free_tables(Tables* tables);

// Lookup helpers for the control thread and tests (workers use bulk FIB lookups).
uint64_t route_lookup(const Tables& tables, const IpAddress& dst);
bool neighbor_lookup(const Tables& tables, const IpAddress& ip, uint8_t mac[6], uint16_t* port);
// Control thread only.
int neighbor_update(Tables& tables, const IpAddress& ip, const uint8_t mac[6], uint16_t port);

}  // namespace meshwire::dp
