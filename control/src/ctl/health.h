// meshwirectl health: the DaemonSet's readiness and liveness probes, decided
// from one GetHealth answer. Pure functions, tested without a data plane.
//
// Readiness (exit 0 only when all hold):
//   - a controller has applied a state (live generation > 0);
//   - every port's link is up;
//   - every worker has started and began a poll round within stall_ms;
//   - peers: when there are peers and keepalives are on, at least one peer
//     is up (heard within misses * interval). One node down elsewhere does
//     not make every other node unready (a DaemonSet rollout would stall on
//     it everywhere), while a node whose own fabric, keys or uplink are
//     broken hears no one and is unready. With all_peers, every peer must
//     be up (small clusters, acceptance tests).
// Liveness: the API answered (the caller's part) and every worker began a
// poll round within stall_ms: a stuck worker or a hung control thread (the
// call then times out) gets the container restarted; a missing controller
// or a dead peer does not.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "dataplane.pb.h"

namespace meshwire::control {

struct HealthRules {
  bool live = false;       // liveness instead of readiness
  uint32_t stall_ms = 1000;  // a worker silent for longer is stuck
  bool all_peers = false;  // readiness: every peer up, not just one
};

struct HealthVerdict {
  bool ok = false;
  // One line per failed condition, naming it: "not ready: port uplink0
  // link down", "not live: worker 1 stalled: no poll round for 5200 ms".
  std::vector<std::string> reasons;
  std::string summary;  // when ok: "ready: generation 3, 2 ports up, ..."
};

HealthVerdict judge_health(const v1::GetHealthResponse& health, const HealthRules& rules);

// The verdict as text (the summary, or the reasons, a line each).
std::string format_health(const HealthVerdict& verdict);
// {"check": "readiness"|"liveness", "ok": bool, "reasons": [...], "health": {GetHealthResponse}}
std::string health_json(const HealthVerdict& verdict, const HealthRules& rules, const v1::GetHealthResponse& health);

}  // namespace meshwire::control
