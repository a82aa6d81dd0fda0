// One capture's resources on the control side: the filter, the copies'
// mempool and one ring per worker, and the taps the workers read
// (capture/tap.h); publishing them in the node's CaptureSlot and taking
// them back.
//
// Sizes: each worker's ring holds ring_size copies; the pool holds every
// ring full, plus a burst in flight per worker, the per-lcore caches, and
// the drainer's batch and the pcapng blocks made of it
// (capture/pcapng_writer.h). When the drainer falls behind, workers drop
// copies (counted), never packets.
//
// Threading: create() and the destructor on an EAL thread or any thread
// once no worker can read the taps (after stop()'s grace period); drain()
// from one thread at a time (the rings' single consumer).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include <rte_mbuf.h>
#include <rte_mempool.h>
#include <rte_rcu_qsbr.h>

#include <meshwire/dp/result.h>

#include "capture/filter.h"
#include "capture/tap.h"

namespace meshwire::dp::capture {

struct Spec {
  Point point = Point::kRx;
  uint32_t port_mask = 0;  // bit i: port index i
  std::string filter;      // pcap-filter(7); empty: everything
  uint32_t snaplen = kMaxSnaplen;
  uint32_t ring_size = kDefaultRingSize;

  static constexpr uint32_t kMaxSnaplen = 2048;  // the data plane's mbufs hold single 2 KB segments
  static constexpr uint32_t kDefaultRingSize = 1024;
  static constexpr uint32_t kMaxRingSize = 65536;
};

class Session {
 public:
  // Compiles the filter and makes the pool and rings; nothing is published.
  static Result<std::unique_ptr<Session>> create(const Spec& spec, unsigned workers, int socket_id);
  ~Session();  // frees what the rings still hold, the rings, pool and filter
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  const Spec& spec() const { return spec_; }
  rte_mempool* pool() const { return pool_; }
  const Taps& taps() const { return taps_; }

  // Takes up to max copies out of the workers' rings (in turn); returns how many.
  unsigned drain(rte_mbuf** out, unsigned max);

 private:
  Session() = default;
  Spec spec_;
  std::unique_ptr<Filter> filter_;
  rte_mempool* pool_ = nullptr;
  Taps taps_;
  unsigned next_ring_ = 0;
};

// Publishes s's taps in the slot unless a capture holds it (false then).
// Caller: the control thread.
bool publish(CaptureSlot& slot, const Session& s);
// Takes the taps back; the returned token says (rte_rcu_qsbr_check) when no
// worker can still read them. The slot stays busy until release().
uint64_t withdraw(CaptureSlot& slot, rte_rcu_qsbr* qsbr);
void release(CaptureSlot& slot);

// Wakes the running capture's drainer when a worker's ring holds copies.
// Caller: the control thread, every round of its loop (it also withdraws
// the taps, so they stay valid while it reads them).
void nudge_if_copies(CaptureSlot& slot);
// The drainer's wait: until nudged (at once if nudged since the last
// wait) or for at most `most`.
void wait_for_copies(CaptureSlot& slot, std::chrono::microseconds most);

}  // namespace meshwire::dp::capture
