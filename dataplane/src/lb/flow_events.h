// What a worker tells the control thread's flow log of a connection, when
// the control thread cannot see it for itself: an attempt that a backend
// refused or left unanswered, retried on another backend. (Connections that
// end are seen by the control thread's sweep, which removes them.)
//
// One single-producer single-consumer queue per worker (Boost.Lockfree's
// spsc_queue: no locks, no allocation after construction): the worker
// pushes, the control thread pops. A full queue loses the event, counted by
// the worker (flow_log_queue_full).
#pragma once

#include <cstdint>
#include <cstring>

#include <boost/lockfree/spsc_queue.hpp>

#include "lb/conntrack.h"

namespace meshwire::dp::lb {

enum class FlowEventKind : uint8_t {
  kRetryRefused,   // the backend refused the connect (RST, ABORT, ICMP unreachable); retried elsewhere
  kRetryTimedOut,  // the backend left it unanswered for connect_timeout_ms; retried elsewhere
};

struct FlowEvent {
  FlowTuple forward;
  uint8_t backend[16];  // the backend the attempt went to
  uint16_t backend_port = 0;
  FlowEventKind kind = FlowEventKind::kRetryRefused;
  uint8_t attempts = 0;  // this attempt's number (1: the first backend)
  uint32_t created_ms = 0;  // flow clock
  uint32_t at_ms = 0;       // flow clock, when it happened
  uint64_t fwd_packets = 0, fwd_bytes = 0, rev_packets = 0, rev_bytes = 0;  // the connection's so far
};

// The event for flow f (read by the worker that owns its forward direction,
// before it moves the flow to another backend).
inline FlowEvent flow_event(const Flow& f, FlowEventKind kind, uint32_t now_ms) {
  FlowEvent e;
  e.forward = f.forward;
  std::memcpy(e.backend, f.backend, 16);
  e.backend_port = f.backend_port;
  e.kind = kind;
  e.attempts = f.attempts.load(std::memory_order_relaxed);
  e.created_ms = f.created_ms;
  e.at_ms = now_ms;
  e.fwd_packets = f.fwd_packets.load(std::memory_order_relaxed);
  e.fwd_bytes = f.fwd_bytes.load(std::memory_order_relaxed);
  e.rev_packets = f.rev_packets.load(std::memory_order_relaxed);
  e.rev_bytes = f.rev_bytes.load(std::memory_order_relaxed);
  return e;
}

inline constexpr size_t kFlowEventQueueSize = 1024;
using FlowEventQueue = boost::lockfree::spsc_queue<FlowEvent, boost::lockfree::capacity<kFlowEventQueueSize>>;

}  // namespace meshwire::dp::lb
