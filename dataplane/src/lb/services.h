// Service frontends (VIP, port, protocol) and their backends, as the workers
// read them: one immutable snapshot per services generation.
//
// The control thread checks a ServicesConfig whole (check_services), builds
// a ServiceTable aside (build_services: Maglev tables, lookup indexes, each
// backend's node link), publishes it with one pointer store and frees the
// old one after an RCU grace period (route/generations.h, the same
// mechanism as the routing tables). Workers look frontends up by
// destination, and ask "is this source a backend?" to find the replies
// that need the VIP put back, each in one probe of a small flat table.
//
// What outlives snapshots, shared by them and written as its comment says:
// each backend's health and counters (BackendHealth, one per frontend and
// backend), and each node's PeerLink (route/tables.h) that says whether the
// node is up.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <map>
#include <span>
#include <string>
#include <vector>

#include <meshwire/dp/config.h>
#include <meshwire/dp/result.h>

#include "lb/conntrack.h"
#include "lb/maglev.h"
#include "net/parse.h"
#include "route/tables.h"

namespace meshwire::dp::lb {

struct BackendConfig {
  IpAddress address;
  uint16_t port = 0;
  uint32_t weight = 1;    // 1..kMaglevMaxWeight
  bool draining = false;  // keeps its connections, takes no new ones
  std::string reason;     // why draining
  std::string node;       // for operators
  std::string target;     // for operators
  friend bool operator==(const BackendConfig&, const BackendConfig&) = default;
};

struct FrontendConfig {
  std::string name;
  IpAddress vip;
  uint16_t port = 0;
  uint8_t protocol = net::kProtoTcp;  // TCP, UDP or SCTP
  uint32_t affinity_timeout_s = 0;    // ClientIP affinity; 0: none
  std::vector<BackendConfig> backends;
  friend bool operator==(const FrontendConfig&, const FrontendConfig&) = default;
};

using ServicesConfig = std::vector<FrontendConfig>;

// Every rule: protocols, ports 1..65535, weights, address families (a
// backend's is its VIP's), frontends unique by (VIP, port, protocol),
// backends unique within a frontend, at most kMaxBackends of them. The first
// error names its field ("services[2].backends[0].port: ..."). Pure.
inline constexpr size_t kMaxBackends = kNoBackend - 1;
Status check_services(const ServicesConfig& services);

// One backend's health and counters, shared by every snapshot that has the
// same frontend and backend: what passive outlier detection and the
// operator's reads are made of. Counters are added to by any worker
// (relaxed atomics: only new and failed connections touch them).
// Connect latency (a TCP SYN or SCTP INIT sent to a backend, to the SYN-ACK
// or INIT-ACK the data plane sees come back): the upper bounds of its
// histogram's buckets, in microseconds; one more bucket takes the rest.
inline constexpr std::array<uint32_t, 15> kConnectLatencyBoundsUs{
    100, 250, 500, 1'000, 2'500, 5'000, 10'000, 25'000, 50'000, 100'000, 250'000, 500'000, 1'000'000, 2'500'000,
    5'000'000};

inline size_t connect_latency_bucket(uint32_t us) {
  size_t b = 0;
  while (b < kConnectLatencyBoundsUs.size() && us > kConnectLatencyBoundsUs[b]) ++b;
  return b;
}

struct alignas(64) BackendHealth {
  std::atomic<uint64_t> connections{0};      // new connections sent here
  std::atomic<uint64_t> failed_connects{0};  // attempts answered with RST/unreachable, or unanswered
  std::atomic<uint64_t> retries_away{0};     // connections retried elsewhere after failing here
  std::atomic<uint64_t> ejections{0};        // times passive outlier detection ejected it
  std::atomic<uint32_t> consecutive_failures{0};
  std::atomic<uint32_t> ejected_until_ms{0};  // flow clock; 0: not ejected
  uint32_t refs = 0;                          // snapshots holding it; control thread only
  // Connects answered, by latency bucket (not cumulative), and their sum.
  std::array<std::atomic<uint64_t>, kConnectLatencyBoundsUs.size() + 1> connect_latency{};
  std::atomic<uint64_t> connect_latency_sum_us{0};
};

// One answered connect of latency us (any worker; relaxed adds: only
// answered connects come here).
inline void record_connect_latency(BackendHealth& h, uint32_t us) {
  h.connect_latency[connect_latency_bucket(us)].fetch_add(1, std::memory_order_relaxed);
  h.connect_latency_sum_us.fetch_add(us, std::memory_order_relaxed);
}

// A flat, read-only hash from (family, protocol, address, port) to an index:
// linear probing in a power-of-two table at most half full.
struct EndpointKey {
  uint8_t family;
  uint8_t protocol;
  uint16_t port;  // host order
  uint8_t addr[16];
  friend bool operator==(const EndpointKey&, const EndpointKey&) = default;
};
static_assert(sizeof(EndpointKey) == 20);

inline EndpointKey endpoint_key(uint8_t family, uint8_t protocol, const uint8_t* addr, uint16_t port) {
  EndpointKey k;
  k.family = family;
  k.protocol = protocol;
  k.port = port;
  if (family == 6) {
    std::memcpy(k.addr, addr, 16);
  } else {
    std::memcpy(k.addr, addr, 4);
    std::memset(k.addr + 4, 0, 12);
  }
  return k;
}

// Every byte of the key reaches the low bits the tables index by (a
// multiply alone only carries bits upwards: an IPv4 address, in the upper
// half of the first word, would barely move the slot).
inline uint64_t endpoint_hash(const EndpointKey& k) {
  uint64_t w[2];
  uint32_t tail;
  std::memcpy(w, &k, 16);
  std::memcpy(&tail, reinterpret_cast<const uint8_t*>(&k) + 16, 4);
  uint64_t h = w[0] * 0x9E3779B97F4A7C15ull + w[1] * 0xC2B2AE3D27D4EB4Full + tail * 0x165667B19E3779F9ull;
  h ^= h >> 32;
  h *= 0xD6E8FEB86659FD93ull;
  return h ^ (h >> 32);
}

inline bool same_key(const EndpointKey& a, const EndpointKey& b) {
  uint64_t x[2], y[2];
  uint32_t xt, yt;
  std::memcpy(x, &a, 16);
  std::memcpy(y, &b, 16);
  std::memcpy(&xt, reinterpret_cast<const uint8_t*>(&a) + 16, 4);
  std::memcpy(&yt, reinterpret_cast<const uint8_t*>(&b) + 16, 4);
  return ((x[0] ^ y[0]) | (x[1] ^ y[1]) | (xt ^ yt)) == 0;
}

// A set of L4 ports (64 Ki bits): the first, cheap test a packet meets
// before a probe of the indexes, so that traffic to and from ports no
// service uses costs one bit test each way.
class PortSet {
 public:
  void add(uint16_t port) { bits_[port >> 6] |= uint64_t{1} << (port & 63); }
  bool contains(uint16_t port) const { return (bits_[port >> 6] >> (port & 63)) & 1; }

 private:
  std::array<uint64_t, 1024> bits_{};
};

// A set of addresses as 64 Ki bits indexed by a hash of the address: never
// a false negative, sometimes a false positive (about 1.5 % with 1,000
// addresses, 14 % with 10,000). With PortSet, the cheap test that keeps
// traffic to a frontend's port but not to a VIP (or from a backend's port
// but not from a backend) out of the connection table's lookup.
class AddressFilter {
 public:
  void add(uint8_t family, const uint8_t* addr) {
    const uint32_t b = bit(family, addr);
    bits_[b >> 6] |= uint64_t{1} << (b & 63);
  }
  bool contains(uint8_t family, const uint8_t* addr) const {
    const uint32_t b = bit(family, addr);
    return (bits_[b >> 6] >> (b & 63)) & 1;
  }

 private:
  static uint32_t bit(uint8_t family, const uint8_t* addr) {
    uint64_t x;
    if (family == 6) {
      uint64_t w[2];
      std::memcpy(w, addr, 16);
      x = w[0] ^ (w[1] * 0xC2B2AE3D27D4EB4Full);
    } else {
      uint32_t v;
      std::memcpy(&v, addr, 4);
      x = v;
    }
    return static_cast<uint32_t>((x * 0x9E3779B97F4A7C15ull) >> 48);
  }
  std::array<uint64_t, 1024> bits_{};
};

class EndpointIndex {
 public:
  static constexpr uint32_t kNone = 0xFFFFFFFF;
  void build(const std::vector<std::pair<EndpointKey, uint32_t>>& entries);
  uint32_t find(const EndpointKey& k) const {
    if (mask_ == 0) return kNone;
    for (uint64_t i = endpoint_hash(k) & mask_;; i = (i + 1) & mask_) {
      const Slot& s = slots_[i];
      if (s.value == kNone) return kNone;
      if (same_key(s.key, k)) return s.value;
    }
  }
  bool empty() const { return mask_ == 0; }

 private:
  struct Slot {
    EndpointKey key;
    uint32_t value;
  };
  std::vector<Slot> slots_;
  uint64_t mask_ = 0;
};

struct BackendRuntime {
  IpAddress address;
  uint16_t port = 0;
  bool active = false;          // ACTIVE in the config (not draining)
  bool routed = false;          // a route existed when the snapshot was built
  PeerLink* link = nullptr;     // the node it lives on; nullptr when that is this node (or unrouted)
  BackendHealth* health = nullptr;
  uint32_t slots = 0;           // Maglev slots it holds
};

struct FrontendRuntime {
  IpAddress vip;
  uint16_t port = 0;
  uint8_t protocol = 0;
  uint32_t affinity_ms = 0;
  std::vector<BackendRuntime> backends;  // in config order
  std::vector<uint16_t> maglev;          // slot -> index into backends (active ones only)
  EndpointIndex backend_index;           // (family, protocol, address, port) -> index into backends
};

// One services generation. Immutable once published.
struct ServiceTable {
  uint64_t generation = 0;  // 0: none applied
  ServicesConfig config;    // what it was built from, for reads and rebuilds
  std::vector<FrontendRuntime> frontends;  // in config order
  // (family, protocol, VIP, port) -> frontend; also (family, 0, VIP, 0) ->
  // a frontend of that VIP, to recognise fragments without ports.
  EndpointIndex by_frontend;
  EndpointIndex by_backend;   // (family, protocol, backend, port) -> any frontend it serves
  PortSet frontend_ports;     // every frontend's port
  PortSet backend_ports;      // every backend's port
  AddressFilter vips;         // every frontend's VIP
  AddressFilter backend_addresses;
  size_t backends = 0;
  // While the flow clock is before this (0: never), a packet from a
  // backend's address and port to a pod of this node that belongs to no
  // connection is dropped (kServiceReplyUntracked) rather than delivered:
  // the data plane came up with an empty connection table, and such a
  // packet may be the reply of a connection its predecessor translated
  // (an upgrade). Delivered untranslated, its source is not the VIP the
  // client talks to, and the client answers it with a RST; dropped, the
  // backend sends it again, after the client's next packet has recreated
  // the connection (Maglev gives it the same backend). See
  // carry_reply_grace().
  uint32_t untracked_reply_until_ms = 0;

  // Where a flow (or affinity record) belongs in this generation: its
  // frontend and backend, or kNowhere when that frontend or backend is gone.
  static constexpr uint32_t kNowhere = 0xFFFFFFFF;
  struct Place {
    uint32_t frontend = kNowhere;
    uint32_t backend = kNowhere;
  };
  Place place_of(const Flow& f) const;
  bool serves(const Flow& f) const { return place_of(f).frontend != kNowhere; }
  // Whether a tracked flow keeps its backend (the conntrack sweep closes
  // the others): its frontend still lists the backend, and, for UDP flows
  // and affinity records, the backend's node is not down. Those move on:
  // the next packet chooses a live backend (a UDP flow has no connection
  // the backend could lose). TCP and SCTP flows stay: a node that was only
  // slow to answer comes back to its connections, and one that died loses
  // them anyway.
  bool keeps(const Flow& f) const;
};

// How long after a data plane's first services generation the
// untracked replies of its predecessor's connections are dropped: longer
// than a client's TCP retransmission takes to come after a restart's gap.
// A direct connection from a pod of this node to a backend's address and
// port waits as long for its replies then.
inline constexpr uint32_t kUntrackedReplyGraceMs = 10000;

// Sets next's untracked_reply_until_ms from the live generation: a first
// generation (the data plane's connection table is still empty) starts
// the grace at now_ms; later ones keep live's.
inline void carry_reply_grace(ServiceTable& next, const ServiceTable* live, uint32_t now_ms) {
  next.untracked_reply_until_ms =
      live == nullptr || live->generation == 0 ? (now_ms + kUntrackedReplyGraceMs) | 1u : live->untracked_reply_until_ms;
}

// An affinity record's key: affinity_tuple() with the frontend's protocol
// in the (otherwise unused) source port, so that a record names its
// frontend whole.
inline FlowTuple affinity_key(uint8_t family, uint8_t protocol, const uint8_t* client, const uint8_t* vip,
                              uint16_t vip_port) {
  FlowTuple t = affinity_tuple(family, client, vip, vip_port);
  t.src_port = protocol;
  return t;
}

// The connection table's timeouts from the startup config.
inline ConnTrackTimeouts timeouts_from(const ServicesSettings& s) {
  ConnTrackTimeouts t;
  t.syn_sent_ms = s.tcp_syn_timeout_s * 1000;
  t.established_ms = s.tcp_established_timeout_s * 1000;
  t.fin_seen_ms = s.tcp_closing_timeout_s * 1000;
  t.closed_ms = s.tcp_closing_timeout_s * 1000;
  t.udp_ms = s.udp_timeout_s * 1000;
  t.sctp_ms = s.sctp_timeout_s * 1000;
  return t;
}

inline std::string_view flow_state_name(FlowState s) {
  switch (s) {
    case FlowState::kSynSent: return "syn_sent";
    case FlowState::kEstablished: return "established";
    case FlowState::kFinSeen: return "closing";
    case FlowState::kClosed: return "closed";
    case FlowState::kUdp: return "udp";
    case FlowState::kSctp: return "sctp";
    case FlowState::kAffinity: return "affinity";
    case FlowState::kConnectFailed: return "retrying";
  }
  return "unknown";
}

// What service snapshots share, and the means to find it. Control thread.
class ServiceShared {
 public:
  explicit ServiceShared(SharedState& routing) : routing_(routing) {}
  ~ServiceShared();
  ServiceShared(const ServiceShared&) = delete;
  ServiceShared& operator=(const ServiceShared&) = delete;

  BackendHealth* acquire_health(const FrontendRuntime& f, const BackendRuntime& b);
  void release_health(const FrontendRuntime& f, const BackendRuntime& b, BackendHealth* h);
  SharedState& routing() { return routing_; }
  size_t health_entries() const { return health_.size(); }

 private:
  static std::string key_of(const FrontendRuntime& f, const BackendRuntime& b);
  SharedState& routing_;
  std::map<std::string, BackendHealth*> health_;
};

// Builds a snapshot of checked services: Maglev tables from the active
// backends, the lookup indexes, and each backend's node from the routing
// generation `routes` (its PeerLink, shared). nullptr only when memory runs
// out. Control thread.
Result<ServiceTable*> build_services(const ServicesConfig& services, uint64_t generation, const Tables& routes,
                                     ServiceShared& shared);
void free_services(ServiceTable* table, ServiceShared& shared);

// The flow clock: milliseconds since an arbitrary start, wrapping after 49
// days (compare with wrap-safe subtraction). Any thread; cheap (one TSC read
// and a multiply).
uint32_t flow_clock_ms();
// The same clock in microseconds (wraps after 71 minutes: take differences).
uint32_t flow_clock_us();

// Whether new connections may go to backend b of f now, and why not.
enum class Selectable : uint8_t { kYes, kDraining, kEjected, kNodeDown, kNoRoute };
inline Selectable backend_selectable(const BackendRuntime& b, uint32_t now_ms) {
  if (!b.active) return Selectable::kDraining;
  if (!b.routed) return Selectable::kNoRoute;
  if (b.link && b.link->down.load(std::memory_order_relaxed)) return Selectable::kNodeDown;
  const uint32_t until = b.health->ejected_until_ms.load(std::memory_order_relaxed);
  if (until != 0 && static_cast<int32_t>(until - now_ms) > 0) return Selectable::kEjected;
  return Selectable::kYes;
}

// The backend for a new connection with flow hash h: its Maglev slot's, or
// when that one is not selectable the next selectable one in table order
// (the "next backend in the Maglev order" connect retries use too, with
// `skip` the backends that failed the connection). kNoBackend when none is
// selectable.
uint16_t select_backend(const FrontendRuntime& f, uint64_t h, uint32_t now_ms, std::span<const uint16_t> skip = {});

}  // namespace meshwire::dp::lb
