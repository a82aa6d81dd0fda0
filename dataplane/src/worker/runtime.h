// The node's runtime: what workers and the control thread share after
// startup. Everything here is written before the workers start and only read
// afterwards, except where a comment says otherwise.
#pragma once

#include <atomic>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include <rte_mbuf.h>
#include <rte_rcu_qsbr.h>
#include <rte_ring.h>

#include <meshwire/dp/config.h>
#include <meshwire/dp/counters.h>
#include <meshwire/dp/encap.h>

#include "capture/tap.h"
#include "esp/encrypt.h"
#include "esp/gcm.h"
#include "lb/conntrack.h"
#include "lb/flow_events.h"
#include "lb/services.h"
#include "telemetry/trace.h"
#include "route/neighbor_cache.h"
#include "route/tables.h"

namespace meshwire::dp {

struct PortRuntime {
  std::string name;
  uint16_t port_id = 0;
  PortRole role = PortRole::kLocal;
  uint8_t mac[6]{};
  uint16_t mtu = 1500;
  bool offload_ipv4_cksum = false;
  bool offload_udp_cksum = false;
};

// Why a worker handed a packet to the control thread (kept in mbuf->hash.usr,
// which the worker no longer needs once it punts).
enum class PuntKind : uint32_t {
  kArp,           // ARP on any port
  kNd,            // ICMPv6 neighbour solicitation/advertisement
  kEcho,          // ICMP/ICMPv6 echo request to the gateway or tunnel address
  kTtlExceeded,   // forwarding would exhaust TTL: answer with ICMP time exceeded
  kTooBig,        // does not fit after encapsulation: answer with frag-needed/PTB
  kNeighborMiss,  // a pod's MAC is unknown: resolve it (the packet starts at its IP header)
  kPeerDown,      // routed to a peer node that is down: answer with ICMP host unreachable
};

// What a worker does with a frame from its inject ring (in mbuf->hash.usr).
enum class InjectKind : uint32_t {
  kTransmit,  // send as is on port mbuf->port
  kLocalRx,   // process as if received on local port mbuf->port (an ICMP error
              // for a remote pod: it must be routed and encrypted like pod traffic)
  kKeepalive,  // a keepalive payload (worker/keepalive.h): encrypt it as an ESP
               // dummy packet for the peer it names and send it on the uplink
};

struct NodeRuntime {
  IpAddress tunnel_address;
  IpAddress gateway_v4;
  IpAddress gateway_v6;
  std::vector<PortRuntime> ports;  // in config order; index == position
  uint16_t uplink = 0;             // index into ports
  uint16_t local_default = 0;      // index of the first local port
  // Largest inner IP packet that fits the uplink after encapsulation.
  uint16_t max_inner_len = 0;
  // MSS to clamp TCP SYNs to, per inner family.
  uint16_t mss_v4 = 0;
  uint16_t mss_v6 = 0;
  IdleMode idle = IdleMode::kAdaptive;
  ServicesSettings services;  // connect retries, outlier detection
  LivenessSettings liveness;  // keepalives to peers, and when a silent one is down
  // Flow logs: log 1 connection in flow_log_sample; 0: flow logs off.
  uint32_t flow_log_sample = 0;
};

// Whether a new connection of this hash is one of the 1 in `sample` that
// flow logs keep (sample != 0): the top 32 bits scaled, no division.
inline bool flow_logged(uint64_t hash, uint32_t sample) {
  return ((hash >> 32) * sample) >> 32 == 0;
}

// What the encrypt stage needs to know of the uplink.
inline esp::EncryptContext uplink_encrypt_context(const NodeRuntime& node) {
  const PortRuntime& up = node.ports[node.uplink];
  esp::EncryptContext ectx{};
  std::memcpy(ectx.src_mac, up.mac, 6);
  ectx.offload_ipv4_cksum = up.offload_ipv4_cksum;
  ectx.offload_udp_cksum = up.offload_udp_cksum;
  return ectx;
}

// New connections to a service (TCP SYN, SCTP INIT) that may still be
// retried on another backend, kept by the worker that made their flow (the
// only one that may rebind it): a copy of the first packet as the client
// sent it, and when to give up on the backend. Worker-only.
struct PendingConnects {
  static constexpr uint16_t kCapacity = 256;  // beyond: connections go without retries (counted)
  static constexpr uint16_t kMaxTried = 8;
  struct Entry {
    lb::FlowTuple tuple;  // the flow's forward tuple: a record reused for another flow is told apart
    rte_mbuf* first;      // the client's first packet, untranslated
    uint32_t flow;
    uint32_t deadline_ms;
    uint16_t port_index;  // the local port it came in on
    uint16_t ntried;
    uint16_t tried[kMaxTried];  // backends (indexes in their frontend) that failed it
  };
  Entry entries[kCapacity];
  uint16_t count = 0;
};

// Worker w polls queue w of every port and transmits on queue w.
struct alignas(64) WorkerContext {
  unsigned index = 0;
  unsigned lcore = 0;
  esp::GcmEngine* engine = nullptr;  // owned by this worker
  WorkerCounters* counters = nullptr;
  const NodeRuntime* node = nullptr;
  // The generation this worker reads in its current round (worker_main
  // loads it from *live each round; tests set it directly).
  Tables* tables = nullptr;
  std::atomic<Tables*>* live = nullptr;  // the published generation
  rte_rcu_qsbr* qsbr = nullptr;          // where this worker (thread id = index) reports quiescent states
  rte_ring* punt = nullptr;    // worker -> control (single producer, single consumer)
  rte_ring* inject = nullptr;  // control -> worker: frames to send, port index in mbuf->port
  const std::atomic<bool>* stop = nullptr;
  NeighborCache neighbor_cache;  // this worker's own
  // Services: the snapshot of this round (loaded like tables), the shared
  // connection table, this worker's stock of free flow records, and the
  // flow clock read at the top of the round.
  lb::ServiceTable* services = nullptr;
  std::atomic<lb::ServiceTable*>* services_live = nullptr;
  lb::ConnTrack* conntrack = nullptr;
  lb::ConnTrack::WorkerCache ct_cache;
  uint32_t now_ms = 0;
  PendingConnects pending;
  // Flow logs: this worker's events for the control thread (retries); null
  // when flow logs are off.
  lb::FlowEventQueue* flow_events = nullptr;
  // Packet trace (telemetry/trace.h): this worker's budget and events.
  WorkerTrace* trace = nullptr;
  // True while the worker handles what came in on the uplink: its drops
  // count as from the fabric (WorkerCounters::drops_from_fabric).
  bool from_fabric = false;
  // Packets towards a down peer punted for an ICMP error in the millisecond
  // unreachable_ms (a bound, so that traffic to a dead node cannot fill the
  // punt ring that ARP and ND need).
  uint32_t unreachable_ms = 0;
  uint16_t unreachable_punts = 0;
  // Packet capture (capture/tap.h): the running capture's taps, loaded
  // each round like the tables, and this worker's tap for the round (null:
  // none runs).
  const std::atomic<const capture::Taps*>* capture_live = &capture::kNoCapture;
  const capture::WorkerTap* capture = nullptr;
};

}  // namespace meshwire::dp
