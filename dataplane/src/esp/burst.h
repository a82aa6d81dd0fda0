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

}  // namespace meshwire::dp
