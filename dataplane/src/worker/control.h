// The control thread's packet work (main lcore): everything the workers punt
// — ARP and ND (proxy answers towards pods, answers for the tunnel address,
// learning pod and peer MACs), ICMP echo to the gateway/tunnel address, ICMP
// errors (time exceeded, fragmentation needed / packet too big, host
// unreachable for a down peer; at most kIcmpErrorsPerSecond) — plus the
// timers that resolve peers on the fabric and pods that have not spoken yet,
// and node liveness: every LivenessSettings::interval_ms a keepalive to each
// peer (worker/keepalive.h) and an evaluation of each peer's link
// (worker/liveness.h), logging each peer that goes down or comes up.
// Frames it builds are handed to worker 0 through its inject ring; it never
// touches a port queue itself, so a device needs no queue for it.
//
// Threading: poll() runs on the control thread only. It is the only writer of
// the neighbour table, of the peers' fabric MACs and of their down flags.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include <rte_mbuf.h>
#include <rte_mempool.h>

#include "worker/runtime.h"

namespace meshwire::dp {

class Control {
 public:
  // live: the published generation (the control thread publishes it too,
  // so it reads it without further care).
  Control(const NodeRuntime& node, std::atomic<Tables*>& live, std::vector<WorkerContext>& workers,
          rte_mempool* pool, WorkerCounters* counters);
  ~Control();  // frees held packets
  Control(const Control&) = delete;
  Control& operator=(const Control&) = delete;

  // One round: drain the punt rings, run due timers. Returns the number of
  // packets handled (0 lets the caller sleep).
  unsigned poll();

  // Handles one punted packet (takes ownership). Public for tests.
  void handle(rte_mbuf* m);

  // The liveness timer's work at now_ms (the flow clock): evaluates every
  // peer of the live generation (logging changes) and starts this round's
  // keepalives (poll() sends the rest when there are many peers). poll()
  // calls it every interval_ms when that is not 0. Public for tests, which
  // drive it with explicit times.
  void liveness_round(uint32_t now_ms);
  // How many times a peer has gone down (liveness_round): the node sweeps
  // the connection table whole when this moves, so that flows to the dead
  // node's backends move on at once rather than within the second the
  // paced sweep takes.
  uint64_t peers_gone_down() const { return peers_gone_down_; }

  // ICMP errors sent at most this often on average, in bursts of at most
  // kIcmpErrorBurst (Linux's icmp_msgs_per_sec and icmp_msgs_burst); the
  // rest are counted as icmp_errors_rate_limited.
  static constexpr uint32_t kIcmpErrorsPerSecond = 1000;
  static constexpr uint32_t kIcmpErrorBurst = 50;
  // Keepalives handed to worker 0 per poll: its inject ring (1024) also
  // carries ARP, ND and ICMP.
  static constexpr size_t kKeepalivesPerPoll = 128;

 private:
  void handle_arp(rte_mbuf* m, uint16_t port_index);
  void handle_nd(rte_mbuf* m, uint16_t port_index);
  void handle_echo(rte_mbuf* m, uint16_t port_index);
  void handle_icmp_error(rte_mbuf* m, PuntKind kind);
  // Whether the IP packet is to a service backend (the live services'):
  // one a worker translated from a ClusterIP, when it came from our pod.
  bool to_a_backend(const uint8_t* ip, size_t len) const;
  void handle_neighbor_miss(rte_mbuf* m);
  // Asks the fabric for the peers' MACs: all of them (refreshing), or only
  // those not resolved yet (after a new generation).
  void resolve_peers(uint64_t now, bool unresolved_only);
  // Packets waiting for a pod's MAC: sent once it is learned, dropped
  // (neighbor_miss) after kHoldTime or beyond the limits below.
  void release_held(const IpAddress& address, const uint8_t mac[6], uint16_t port_index);
  void expire_held(uint64_t now);
  void learn_peer(const IpAddress& address, const uint8_t mac[6]);
  void learn_pod(const IpAddress& address, const uint8_t mac[6], uint16_t port_index);
  void solicit(uint16_t port_index, const IpAddress& src, const IpAddress& target);
  // Sends up to kKeepalivesPerPoll keepalives of the round in progress.
  void send_keepalives();
  // Refills the ICMP error bucket; whether one error may go now.
  bool icmp_error_allowed(uint32_t now_ms);
  // Allocates an mbuf, lets build() write a frame into it, sends it.
  template <typename Build>
  void send_built(uint16_t port_index, Build&& build, InjectKind kind = InjectKind::kTransmit);
  void send(uint16_t port_index, rte_mbuf* m, InjectKind kind = InjectKind::kTransmit);

  const Tables& tables() const { return *live_.load(std::memory_order_relaxed); }

  const NodeRuntime& node_;
  std::atomic<Tables*>& live_;
  std::vector<WorkerContext>& workers_;
  rte_mempool* pool_;
  WorkerCounters* counters_;
  uint64_t next_peer_round_ = 0;
  uint64_t resolved_generation_ = 0;  // the generation whose peers the last round asked for
  // When we last asked for a pod address (key: family byte + 16 address bytes).
  std::unordered_map<std::string, uint64_t> last_solicit_;
  struct Held {
    uint64_t since = 0;
    std::vector<rte_mbuf*> pkts;
  };
  std::unordered_map<std::string, Held> held_;
  size_t held_count_ = 0;
  uint64_t next_expiry_ = 0;
  // Liveness: when the next round is due, and the next peer (index in the
  // live generation) of the round in progress to send a keepalive to.
  uint32_t next_liveness_ms_ = 0;
  size_t keepalive_next_ = SIZE_MAX;
  uint64_t peers_gone_down_ = 0;
  // ICMP error token bucket, in thousandths of an error.
  uint32_t icmp_tokens_ = kIcmpErrorBurst * 1000;
  uint32_t icmp_refilled_ms_ = 0;
};

}  // namespace meshwire::dp
