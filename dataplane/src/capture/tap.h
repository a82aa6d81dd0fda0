// The worker side of packet capture: at a named point of the path, a
// worker runs the capture's filter over a burst and puts copies of the
// matching packets (at most snaplen bytes each, from the capture's own
// mempool) in its own ring; whoever drains the rings writes them out
// (capture/session.h). A copy that finds the ring or the pool full is
// dropped and counted (WorkerCounters::capture_dropped): a capture never
// makes a worker wait.
//
// Enabling and disabling: CaptureSlot::live points to the taps of the
// running capture, or is null. A worker loads it once per poll round (with
// the tables) and keeps its own tap for the round in WorkerContext::capture,
// so that a capture that is not running costs one well-predicted branch
// per burst and point (capture/hook.h). Stopping withdraws the pointer and
// waits one RCU grace period (the workers' rte_rcu_qsbr) before the rings,
// pool and filter are freed.
#pragma once

#include <array>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string_view>
#include <vector>

#include <rte_mbuf.h>
#include <rte_mempool.h>
#include <rte_ring.h>

#include <meshwire/dp/counters.h>

#include "capture/filter.h"

namespace meshwire::dp::capture {

enum class Point : uint8_t {
  kRx,           // frames as a port received them
  kTx,           // frames as they are handed to a port
  kPreEncrypt,   // inner IP packets about to be sealed (no Ethernet header)
  kPostDecrypt,  // inner IP packets just authenticated and decrypted (no Ethernet header)
  kCount
};
inline constexpr std::array<std::string_view, static_cast<size_t>(Point::kCount)> kPointNames{
    "rx", "tx", "pre-encrypt", "post-decrypt"};
inline constexpr bool is_inner(Point p) { return p == Point::kPreEncrypt || p == Point::kPostDecrypt; }

// What a worker notes in each copy's private area (the capture pool's
// mbufs carry sizeof(CopyMeta) of it).
struct CopyMeta {
  uint64_t tsc;          // when the worker saw the burst (rte_rdtsc)
  uint32_t orig_len;     // the packet's length before snaplen cut it
  uint16_t port_index;   // the port it was seen on (index in NodeRuntime::ports)
  uint16_t worker;
};
inline CopyMeta* meta_of(rte_mbuf* copy) { return static_cast<CopyMeta*>(rte_mbuf_to_priv(copy)); }

// One worker's tap of the running capture. Built and freed by the control
// side; workers only read it.
struct alignas(64) WorkerTap {
  const Filter* filter = nullptr;  // shared by all workers (read-only)
  rte_ring* ring = nullptr;        // this worker -> the drainer (single producer, single consumer)
  rte_mempool* pool = nullptr;     // where copies come from (shared)
  uint32_t snaplen = 0;
  Point point = Point::kRx;
  uint16_t worker = 0;
  uint32_t port_mask = 0;  // bit i: port index i is captured
};

// All workers' taps of one capture: what is published.
struct Taps {
  std::vector<WorkerTap> workers;  // index == worker index
};

// The node's capture slot: at most one capture runs at a time.
struct CaptureSlot {
  // The running capture's taps, or null. Written by the capture's owner
  // (capture/session.h), read by every worker once per poll round.
  std::atomic<const Taps*> live{nullptr};
  // Held by the capture that owns the slot, from before its taps are
  // published until after its grace period.
  std::atomic<bool> busy{false};
  // The control thread's nudge to the capture's drainer when a worker's
  // ring holds copies (capture/session.h: nudge_if_copies, wait_for_copies),
  // so that an idle capture's drainer sleeps instead of polling: the
  // control thread wakes every millisecond anyway.
  std::mutex nudge_mutex;
  std::condition_variable nudge;
  bool nudged = false;
};

// What WorkerContext::capture_live points to where no node wires a slot
// (tests that build a WorkerContext by hand): never a capture.
inline constinit std::atomic<const Taps*> kNoCapture{nullptr};

inline const WorkerTap* tap_of(const Taps* taps, unsigned worker) {
  return taps == nullptr ? nullptr : &taps->workers[worker];
}

// Copies the packets of pkts[0..n) seen on port_index that pass the filter
// into t's ring; copies that meet a full ring or pool are dropped and
// counted. The packets are only read. Worker thread of t.
[[gnu::noinline]] void tap_burst(const WorkerTap& t, WorkerCounters& counters, uint16_t port_index,
                                 rte_mbuf* const* pkts, uint16_t n);

}  // namespace meshwire::dp::capture
