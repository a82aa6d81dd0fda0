// Every table the workers read, in one place, with who writes it and when.
//
// A generation (Tables: routes, peers, SAs) is immutable once published. The
// control thread builds the next one aside, publishes it with one pointer
// store and frees the old one once every worker has been through a quiescent
// state (route/generations.h). What must outlive generations lives apart and
// is shared by them, written only as each comment says: the neighbour table
// (Neighbors), each peer's fabric MAC and liveness (PeerLink), and each SA's
// sequence number or replay window (the SA objects; see esp/sa.h).
// A running packet capture's taps are published apart, with the same
// grace period before they are freed (capture/tap.h, CaptureSlot).
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <string>
#include <unordered_map>
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

// Wall-clock milliseconds since the Unix epoch (for what operators read).
uint64_t unix_ms();

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

// What the control thread concluded of a peer node from its keepalives
// (worker/liveness.h). kUnknown: never heard from (or detection off).
enum class Liveness : uint8_t { kUnknown, kUp, kDown };

// One worker's traffic with one peer, through the peer's SAs (ESP frames as
// on the wire, keepalives included). Written by that worker only (plain
// adds, once per run of a burst's packets to or from the peer); read by the
// control thread with read_counter(). A line of its own per worker.
struct alignas(64) PeerTraffic {
  uint64_t tx_packets = 0;
  uint64_t tx_bytes = 0;
  uint64_t rx_packets = 0;  // authenticated and accepted by the replay window
  uint64_t rx_bytes = 0;
};

// What keepalives tell of a peer (worker/keepalive.h): written by the worker
// that decrypts the peer's keepalives (one: they come through one SA, whose
// UDP ports RSS keeps on one queue), read by the control thread.
struct KeepaliveClock {
  // The peer's send stamp of its last keepalive and our wall clock when it
  // came (microseconds, Unix), echoed back in ours. Under a sequence
  // counter (odd while written) since the reader needs the two together.
  std::atomic<uint32_t> echo_seq{0};
  std::atomic<uint64_t> peer_sent_us{0};
  std::atomic<uint64_t> received_us{0};
  // From the last keepalive that echoed one of ours: the round trip, and
  // the peer's wall clock minus ours at the middle of it. 0 rtt: unknown.
  std::atomic<uint32_t> rtt_us{0};
  std::atomic<int64_t> clock_offset_us{0};
};

// A peer's link on the fabric, shared by every generation that has a peer
// with this tunnel address.
struct PeerLink {
  IpAddress tunnel_address;  // written at creation
  uint32_t refs = 0;         // generations holding it; control thread only
  // Written by the control thread when ARP/ND resolves the peer; read by
  // workers (relaxed) for every packet they encapsulate towards it.
  alignas(64) std::atomic<uint64_t> fabric_mac{0};
  // Written by the control thread from keepalives (node liveness): a down
  // node's backends take no new connections and packets routed to it are
  // dropped (peer_down) with an ICMP host unreachable. Workers read it
  // relaxed.
  std::atomic<bool> down{false};
  // Written by workers (relaxed; only when it changes: at most one store a
  // millisecond per worker) for every authenticated ESP packet from the
  // peer, keepalive or not: their flow clock (lb::flow_clock_ms(), never 0).
  // 0: never heard from. Read by the control thread. On its own cache line:
  // workers read fabric_mac for every packet they send.
  alignas(64) std::atomic<uint32_t> last_heard_ms{0};
  // On the same line: written a few times a second at most.
  KeepaliveClock clock;
  // One block per worker (traffic_slots of them), allocated with the link.
  PeerTraffic* traffic = nullptr;
  uint16_t traffic_slots = 0;
  // Control thread only: the last conclusion of evaluate_liveness(), and
  // last_heard_ms when it concluded kDown (heard again = it moved since).
  Liveness liveness = Liveness::kUnknown;
  uint32_t heard_when_down = 0;
};

// One generation's peer: immutable once published.
// The link's traffic summed over its workers (control thread).
PeerTraffic peer_traffic(const PeerLink& link);

struct PeerRuntime {
  std::string name;
  IpAddress tunnel_address;
  std::vector<IpPrefix> pod_cidrs;
  PrefixSet pods;            // the same, for the decrypt path's source check
  PeerLink* link = nullptr;  // shared with other generations
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

// Pod neighbours, for the node's lifetime: NeighborKey -> pack_neighbor().
// Written by the control thread only (learning and resolution); workers look
// up concurrently (RTE_HASH_EXTRA_FLAGS_RW_CONCURRENCY_LF). Entries are
// updated in place, never deleted in this release.
struct Neighbors {
  rte_hash* hash = nullptr;
  // Bumped (release) by the control thread after every change to the hash;
  // workers drop their NeighborCache when it moves. Starts at 1 so that a
  // new cache (epoch 0) is empty and synced on first use.
  alignas(64) std::atomic<uint64_t> epoch{1};
};

// A pair of FIBs with the routes they hold, shared by the generations whose
// routes are the same (an Apply that only changes keys, the usual one,
// reuses them instead of building 32 MB anew). Immutable once built.
struct Fibs {
  struct Route {
    IpPrefix prefix;
    uint64_t next_hop;
    friend bool operator==(const Route&, const Route&) = default;
  };
  rte_fib* fib4 = nullptr;
  rte_fib6* fib6 = nullptr;
  std::vector<Route> routes;  // in the order the state lists them
  uint32_t refs = 0;          // control thread only
};

struct InboundEntry {
  esp::InboundSa* sa;
  uint16_t peer;  // index into Tables::peers
};

// One generation. Immutable once published; workers read it without locks.
struct Tables {
  uint64_t generation = 0;   // 0: the startup config's
  rte_fib* fib4 = nullptr;   // destination -> next hop (kNextHop*): fibs->fib4
  rte_fib6* fib6 = nullptr;  // likewise for IPv6
  Fibs* fibs = nullptr;      // shared with other generations of the same routes
  std::vector<PeerRuntime*> peers;
  // The peers' tunnel addresses, sorted, for find_peer(): an SA miss (any
  // packet an attacker makes up) and an ARP reply cost a binary search, not a
  // scan of thousands of peers.
  struct PeerAddress {
    std::array<uint8_t, 17> key;  // family, then the 16 address bytes
    uint16_t peer;
  };
  std::vector<PeerAddress> peer_addresses;
  std::vector<IpPrefix> local_pod_cidrs;  // this node's pod CIDRs (the FIB's kNextHopLocal routes)
  PrefixSet local_pods;                   // the same, for the decrypt path
  esp::InboundSaTable inbound_sas;        // (outer source, SPI) -> InboundSa*, peer
  std::vector<InboundEntry> inbound_list;
  // outbound[peer][worker]; each SA's sequence number is written only by its worker.
  std::vector<std::vector<esp::OutboundSa*>> outbound;
  Neighbors* neighbors = nullptr;  // the node's (not owned)
};

// The state generations share, and the means to find what the next one can
// reuse. Control thread only.
class SharedState {
 public:
  // workers: how many PeerTraffic blocks each link has (workers with an
  // index at or past it count no per-peer traffic).
  explicit SharedState(int socket_id, uint16_t workers = 1) : socket_id_(socket_id), workers_(workers) {}
  ~SharedState();  // frees the neighbour table; every generation must be freed first
  SharedState(const SharedState&) = delete;
  SharedState& operator=(const SharedState&) = delete;

  Status init();  // creates the neighbour table
  Neighbors* neighbors() { return &neighbors_; }
  int socket_id() const { return socket_id_; }

  // The link of a tunnel address (existing or new), with one more ref.
  PeerLink* acquire_link(const IpAddress& tunnel);
  void release_link(PeerLink* link);
  // The SA with this identity whose key is the same (existing, one more
  // ref), or nullptr when there is none.
  esp::OutboundSa* reuse_outbound(const IpAddress& peer, uint32_t spi, uint16_t worker, const SaConfig& sa);
  esp::InboundSa* reuse_inbound(const IpAddress& peer, uint32_t spi, const SaConfig& sa);
  // A new SA (refs 1) becomes reusable by later generations.
  void add_outbound(esp::OutboundSa* sa);
  void add_inbound(esp::InboundSa* sa);
  // FIBs holding the state's routes: the last ones built when their routes
  // are the same (one more ref), else new ones. Errors name the route.
  Result<Fibs*> fibs_for(const RoutingState& routing);
  void release_fibs(Fibs* fibs);
  // One ref less; the SA is wiped and freed with its last.
  void release_outbound(esp::OutboundSa* sa);
  void release_inbound(esp::InboundSa* sa);

  size_t links() const { return links_.size(); }
  size_t outbound_sas() const { return outbound_.size(); }
  size_t inbound_sas() const { return inbound_.size(); }

 private:
  using Id = std::array<uint8_t, 24>;  // family, worker (2), spi (4), address (16), pad
  static Id id_of(uint8_t family, const uint8_t* address, uint32_t spi, uint16_t worker);

  int socket_id_;
  uint16_t workers_;
  Neighbors neighbors_;
  struct IdHash {
    size_t operator()(const Id& id) const {
      uint64_t w[3];
      std::memcpy(w, id.data(), sizeof(w));
      return static_cast<size_t>((w[0] * 0x9E3779B97F4A7C15ull) ^ (w[1] * 0xC2B2AE3D27D4EB4Full) ^ w[2]);
    }
  };
  // Hashed: a generation of thousands of peers looks each up once per SA.
  std::unordered_map<Id, PeerLink*, IdHash> links_;
  std::unordered_map<Id, esp::OutboundSa*, IdHash> outbound_;
  std::unordered_map<Id, esp::InboundSa*, IdHash> inbound_;
  void destroy_fibs(Fibs* fibs);

  Fibs* last_fibs_ = nullptr;  // the FIBs built last (one ref held): reused when the routes match
  // FIBs whose last generation was freed: updated in place when routes
  // change next (one spare set of tables: ~40 MB held for a fast change).
  Fibs* spare_fibs_ = nullptr;
};

// Builds a generation from a routing state that passed check_routing():
// routes, peers (their links from `shared`), SAs (reused from `shared` when
// unchanged, else expanded with `engine`: the control thread's). Errors name
// the field ("peers[2].pod_cidrs[0]: ..."); on error nothing is kept.
Result<Tables*> build_tables(const RoutingState& routing, const IpAddress& tunnel_address, uint64_t generation,
                             esp::GcmEngine& engine, SharedState& shared);
// Frees a generation no worker can still be reading, releasing what it
// shared.
void free_tables(Tables* tables, SharedState& shared);

// The routing state a generation was built from, keys included (the
// expanded keys' first round is the key): what an Apply of a delta starts
// from. wipe() it after use. Control thread.
RoutingState routing_of(const Tables& t);

// The index of the peer with this tunnel address (family 4 or 6, 16 bytes,
// IPv4 in the first 4, the rest zero), or -1. Any thread.
int find_peer(const Tables& tables, uint8_t family, const uint8_t* address);

// Lookup helpers for the control thread and tests (workers use bulk FIB lookups).
uint64_t route_lookup(const Tables& tables, const IpAddress& dst);
bool neighbor_lookup(const Neighbors& neighbors, const IpAddress& ip, uint8_t mac[6], uint16_t* port);
// Control thread only.
int neighbor_update(Neighbors& neighbors, const IpAddress& ip, const uint8_t mac[6], uint16_t port);

}  // namespace meshwire::dp
