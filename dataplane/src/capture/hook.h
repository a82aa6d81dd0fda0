// Where the worker stages call capture (capture/tap.h): one branch per
// burst and point while no capture runs.
#pragma once

#include "capture/tap.h"
#include "worker/runtime.h"

namespace meshwire::dp::capture {

inline void at_point(const WorkerContext& ctx, Point point, uint16_t port_index, rte_mbuf* const* pkts, uint16_t n) {
  const WorkerTap* t = ctx.capture;
  if (t == nullptr) [[likely]] return;
  if (t->point == point && n != 0) tap_burst(*t, *ctx.counters, port_index, pkts, n);
}

}  // namespace meshwire::dp::capture
