#include "capture/session.h"

#include <algorithm>
#include <atomic>
#include <cstdio>

#include <rte_common.h>
#include <rte_errno.h>
#include <rte_ether.h>
#include <rte_lcore.h>
#include <rte_ring.h>

namespace meshwire::dp::capture {
namespace {

constexpr unsigned kPoolCache = 32;
// Copies a worker may hold outside its ring: one chunk of tap_burst.
constexpr unsigned kInFlightPerWorker = 32;
// The drainer's batch, and as many pcapng blocks made from it.
constexpr unsigned kDrainerMbufs = 2 * 64;

std::atomic<unsigned> g_sequence{0};  // unique names: a stopping capture's pool may still exist

}  // namespace

Result<std::unique_ptr<Session>> Session::create(const Spec& spec, unsigned workers, int socket_id) {
  if (spec.snaplen == 0 || spec.snaplen > Spec::kMaxSnaplen) {
    return make_error("snaplen: " + std::to_string(spec.snaplen) + " is not in 1.." + std::to_string(Spec::kMaxSnaplen));
  }
  if (spec.ring_size < 1 || spec.ring_size > Spec::kMaxRingSize) {
    return make_error("ring_size: " + std::to_string(spec.ring_size) + " is not in 1.." +
                      std::to_string(Spec::kMaxRingSize));
  }
  std::unique_ptr<Session> s(new Session());
  s->spec_ = spec;
  auto filter = Filter::compile(spec.filter, is_inner(spec.point) ? LinkType::kRawIp : LinkType::kEthernet,
                                spec.snaplen);
  if (!filter.ok()) return make_error(filter.error());
  s->filter_ = std::move(filter.value());

  const unsigned seq = g_sequence.fetch_add(1);
  char name[RTE_MEMPOOL_NAMESIZE];
  std::snprintf(name, sizeof(name), "mw_cap%u", seq);
  // A copy, then the pcapng block made of it: a synthetic Ethernet header
  // (inner points), padding, the block's options and trailer.
  const uint32_t room = RTE_PKTMBUF_HEADROOM + RTE_ALIGN(spec.snaplen + RTE_ETHER_HDR_LEN, 4) + 64;
  const unsigned lcores = rte_lcore_count();
  const unsigned n = workers * (spec.ring_size + kInFlightPerWorker) + kDrainerMbufs + lcores * kPoolCache * 3 / 2;
  s->pool_ = rte_pktmbuf_pool_create(name, n, kPoolCache, sizeof(CopyMeta), static_cast<uint16_t>(room), socket_id);
  if (s->pool_ == nullptr) {
    return make_error("memory: cannot create the capture pool (" + std::to_string(n) + " mbufs): " +
                      rte_strerror(rte_errno));
  }
  s->taps_.workers.resize(workers);
  for (unsigned w = 0; w < workers; ++w) {
    WorkerTap& t = s->taps_.workers[w];
    std::snprintf(name, sizeof(name), "mw_cap%u_%u", seq, w);
    t.ring = rte_ring_create(name, spec.ring_size, socket_id, RING_F_SP_ENQ | RING_F_SC_DEQ | RING_F_EXACT_SZ);
    if (t.ring == nullptr) {
      return make_error("memory: cannot create the capture ring of worker " + std::to_string(w) + ": " +
                        rte_strerror(rte_errno));
    }
    t.filter = s->filter_.get();
    t.pool = s->pool_;
    t.snaplen = spec.snaplen;
    t.point = spec.point;
    t.worker = static_cast<uint16_t>(w);
    t.port_mask = spec.port_mask;
  }
  return s;
}

Session::~Session() {
  for (WorkerTap& t : taps_.workers) {
    if (t.ring == nullptr) continue;
    void* m;
    while (rte_ring_sc_dequeue(t.ring, &m) == 0) rte_pktmbuf_free(static_cast<rte_mbuf*>(m));
    rte_ring_free(t.ring);
  }
  if (pool_) rte_mempool_free(pool_);
}

unsigned Session::drain(rte_mbuf** out, unsigned max) {
  unsigned got = 0;
  const unsigned n = static_cast<unsigned>(taps_.workers.size());
  // In turn from the worker after the last one served, so that a busy
  // worker cannot starve the others' rings.
  for (unsigned k = 0; k < n && got < max; ++k) {
    const unsigned w = (next_ring_ + k) % n;
    got += rte_ring_sc_dequeue_burst(taps_.workers[w].ring, reinterpret_cast<void**>(out + got), max - got, nullptr);
  }
  next_ring_ = n == 0 ? 0 : (next_ring_ + 1) % n;
  return got;
}

bool publish(CaptureSlot& slot, const Session& s) {
  bool expected = false;
  if (!slot.busy.compare_exchange_strong(expected, true)) return false;
  slot.live.store(&s.taps(), std::memory_order_release);
  return true;
}

uint64_t withdraw(CaptureSlot& slot, rte_rcu_qsbr* qsbr) {
  slot.live.store(nullptr, std::memory_order_release);
  return rte_rcu_qsbr_start(qsbr);
}

void release(CaptureSlot& slot) { slot.busy.store(false, std::memory_order_release); }

void nudge_if_copies(CaptureSlot& slot) {
  const Taps* taps = slot.live.load(std::memory_order_acquire);
  if (taps == nullptr) return;
  for (const WorkerTap& t : taps->workers) {
    if (rte_ring_count(t.ring) == 0) continue;
    {
      std::lock_guard<std::mutex> lock(slot.nudge_mutex);
      if (slot.nudged) return;
      slot.nudged = true;
    }
    slot.nudge.notify_one();
    return;
  }
}

void wait_for_copies(CaptureSlot& slot, std::chrono::microseconds most) {
  std::unique_lock<std::mutex> lock(slot.nudge_mutex);
  slot.nudge.wait_for(lock, most, [&] { return slot.nudged; });
  slot.nudged = false;
}

}  // namespace meshwire::dp::capture
