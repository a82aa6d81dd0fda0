// Burst bookkeeping shared by the fast-path stages: a stage takes a span of
// mbufs, returns how many are good (kept in order at the front) and moves the
// bad ones to the tail with their drop reason. Only the caller frees.
#pragma once

#include <cstdint>

#include <rte_mbuf.h>

#include <meshwire/dp/counters.h>

namespace meshwire::dp {

// Packets that passed [0, n) are compacted to the front in their original
// order; the failed ones follow, with reasons[] rearranged alongside.
// ok[i] says whether pkts[i] passed. Returns the number that passed.
inline uint16_t move_bad_to_tail(rte_mbuf** pkts, DropReason* reasons, const bool* ok, uint16_t n) {
  rte_mbuf* bad[256];
  DropReason bad_reason[256];
  uint16_t good = 0, nbad = 0;
  for (uint16_t i = 0; i < n; ++i) {
    if (ok[i]) {
      pkts[good++] = pkts[i];
    } else {
      bad[nbad] = pkts[i];
      bad_reason[nbad++] = reasons[i];
    }
  }
  for (uint16_t i = 0; i < nbad; ++i) {
    pkts[good + i] = bad[i];
    reasons[good + i] = bad_reason[i];
  }
  return good;
}

// Narrows a one-segment mbuf's data to [offset, offset + len) of what it
// holds now: what rte_pktmbuf_adj(m, offset) then rte_pktmbuf_trim() of the
// rest do, without their checks and their walk to the last segment. The
// caller has checked that m has one segment and offset + len <= data_len.
inline void narrow_single_segment(rte_mbuf* m, uint16_t offset, uint16_t len) {
  const uint16_t cut = static_cast<uint16_t>(m->data_len - len);  // offset and the bytes after
  m->data_off = static_cast<uint16_t>(m->data_off + offset);
  m->data_len = len;
  m->pkt_len -= cut;
}

}  // namespace meshwire::dp
