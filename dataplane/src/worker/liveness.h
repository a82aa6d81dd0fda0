// Node liveness: from when each peer was last heard (any authenticated ESP
// packet, keepalives included: PeerLink::last_heard_ms, written by the
// workers' decrypt stage) to whether it is down (PeerLink::down, read by the
// workers: a down node's backends take no new connections, and packets
// routed to it are dropped as peer_down with an ICMP host unreachable).
//
// The control thread evaluates every peer link of the live generation once
// per LivenessSettings::interval_ms (worker/control.h):
//   never heard         -> unknown, and NOT down: a peer that never came up
//                          (or a scripted one that sends no keepalives) is
//                          Kubernetes readiness's business, not ours
//   silent > misses * interval_ms -> down, until heard again
//   heard again         -> up at once
// With 100 ms and 3 misses a dead node is down 300-400 ms after its last
// packet, whatever traffic there is.
#pragma once

#include <cstdint>

#include "route/tables.h"

namespace meshwire::dp {

enum class LivenessChange : uint8_t { kNone, kUp, kDown };

// One evaluation of link at now_ms (the flow clock, lb::flow_clock_ms()):
// updates link.liveness and link.heard_when_down, stores link.down when it
// changes, and says what changed. down_after_ms = misses * interval_ms.
// Wrap-safe: "heard again" means last_heard_ms moved since the peer went
// down, not a comparison of times. Control thread only.
LivenessChange evaluate_liveness(PeerLink& link, uint32_t now_ms, uint32_t down_after_ms);

// "up", "down", "unknown": for the API, telemetry and logs.
const char* liveness_name(Liveness l);

// Milliseconds since the peer was last heard at now_ms; 0 when never (or
// when a worker's clock ran a little ahead of now_ms).
uint32_t heard_ms_ago(const PeerLink& link, uint32_t now_ms);

}  // namespace meshwire::dp
