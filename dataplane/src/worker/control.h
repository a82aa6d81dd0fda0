// The control thread's packet work (main lcore): everything the workers punt
// — ARP and ND (proxy answers towards pods, answers for the tunnel address,
// learning pod and peer MACs), ICMP echo to the gateway/tunnel address, ICMP
// errors (time exceeded, fragmentation needed / packet too big) — plus the
// timers that resolve peers on the fabric and pods that have not spoken yet.
// Frames it builds are handed to worker 0 through its inject ring; it never
// touches a port queue itself, so a device needs no queue for it.
//
// Threading: poll() runs on the control thread only. It is the only writer of
// the neighbour table and of the peers' fabric MACs.
#pragma once

#include <atomic>
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

 private:
  void handle_arp(rte_mbuf* m, uint16_t port_index);
  void handle_nd(rte_mbuf* m, uint16_t port_index);
  void handle_echo(rte_mbuf* m, uint16_t port_index);
  void handle_icmp_error(rte_mbuf* m, PuntKind kind);
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
};

}  // namespace meshwire::dp
