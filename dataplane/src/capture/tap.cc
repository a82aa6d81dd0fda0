#include "capture/tap.h"

#include <algorithm>

#include <rte_cycles.h>

namespace meshwire::dp::capture {
namespace {
constexpr uint16_t kChunk = 32;
}  // namespace

void tap_burst(const WorkerTap& t, WorkerCounters& counters, uint16_t port_index, rte_mbuf* const* pkts,
               uint16_t n) {
  if (!(t.port_mask >> port_index & 1u)) return;
  const uint64_t tsc = rte_rdtsc();
  uint64_t dropped = 0;
  uint64_t queued = 0;
  for (uint16_t base = 0; base < n; base += kChunk) {
    const uint16_t k = std::min<uint16_t>(kChunk, static_cast<uint16_t>(n - base));
    uint64_t match[kChunk];
    t.filter->match_burst(pkts + base, k, match);
    // Only as many copies as the ring can take now (it only grows meanwhile:
    // this worker is its only producer): no copy is made to be thrown away.
    const unsigned room = rte_ring_free_count(t.ring);
    rte_mbuf* copies[kChunk];
    uint16_t nc = 0;
    for (uint16_t i = 0; i < k; ++i) {
      if (match[i] == 0) continue;
      rte_mbuf* m = pkts[base + i];
      rte_mbuf* c = nc < room ? rte_pktmbuf_copy(m, t.pool, 0, t.snaplen) : nullptr;
      if (c == nullptr) {
        ++dropped;
        continue;
      }
      CopyMeta* meta = meta_of(c);
      meta->tsc = tsc;
      meta->orig_len = m->pkt_len;
      meta->port_index = port_index;
      meta->worker = t.worker;
      copies[nc++] = c;
    }
    if (nc == 0) continue;
    const unsigned q = rte_ring_sp_enqueue_burst(t.ring, reinterpret_cast<void**>(copies), nc, nullptr);
    if (q < nc) {  // not expected (room was counted), but never wait
      rte_pktmbuf_free_bulk(copies + q, nc - q);
      dropped += nc - q;
    }
    queued += q;
  }
  counters.capture_copies += queued;
  counters.capture_dropped += dropped;
}

}  // namespace meshwire::dp::capture
