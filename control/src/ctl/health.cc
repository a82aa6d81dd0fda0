#include "ctl/health.h"

#include <nlohmann/json.hpp>

#include "ctl/format.h"

namespace meshwire::control {

HealthVerdict judge_health(const v1::GetHealthResponse& h, const HealthRules& rules) {
  HealthVerdict v;
  const std::string no = rules.live ? "not live: " : "not ready: ";
  for (const v1::WorkerHealth& w : h.workers()) {
    const std::string name = "worker " + std::to_string(w.index());
    if (!w.started()) {
      v.reasons.push_back(no + name + " has not started polling");
    } else if (w.heartbeat_ms_ago() > rules.stall_ms) {
      v.reasons.push_back(no + name + " stalled: no poll round for " + std::to_string(w.heartbeat_ms_ago()) +
                          " ms (limit " + std::to_string(rules.stall_ms) + " ms)");
    }
  }
  if (h.workers_size() == 0) v.reasons.push_back(no + "the data plane reports no workers");
  if (rules.live) {
    v.ok = v.reasons.empty();
    if (v.ok) v.summary = "live: " + std::to_string(h.workers_size()) + " worker(s) polling";
    return v;
  }

  if (h.live_generation() == 0) {
    v.reasons.push_back(no + "no state applied yet (live generation 0: is the controller running?)");
  }
  int ports_up = 0;
  for (const v1::PortHealth& p : h.ports()) {
    if (p.link_up()) {
      ++ports_up;
    } else {
      v.reasons.push_back(no + "port " + p.name() + " (" + p.role() + ") link down");
    }
  }
  int peers_up = 0;
  for (const v1::PeerHealth& p : h.peers()) peers_up += p.liveness() == "up";
  const bool keepalives = h.liveness_interval_ms() != 0;
  const bool peers_fail = keepalives && h.peers_size() > 0 && (rules.all_peers ? peers_up < h.peers_size() : peers_up == 0);
  if (peers_fail) {
    // Every peer that is not up, each on its line, and why.
    const std::string why = rules.all_peers ? "" : "; no peer is up";
    for (const v1::PeerHealth& p : h.peers()) {
      if (p.liveness() == "up") continue;
      if (!p.heard()) {
        v.reasons.push_back(no + "peer " + p.name() + " never heard from" + why);
      } else {
        v.reasons.push_back(no + "peer " + p.name() + " down (silent for " +
                            format_duration_ms(p.last_heard_ms_ago()) + ")" + why);
      }
    }
  }
  v.ok = v.reasons.empty();
  if (v.ok) {
    v.summary = "ready: generation " + std::to_string(h.live_generation()) + ", " + std::to_string(ports_up) +
                " port(s) up, " + std::to_string(h.workers_size()) + " worker(s) polling, " + std::to_string(peers_up) +
                "/" + std::to_string(h.peers_size()) + " peer(s) up" + (keepalives ? "" : " (keepalives off)");
  }
  return v;
}

std::string format_health(const HealthVerdict& verdict) {
  if (verdict.ok) return verdict.summary + "\n";
  std::string out;
  for (const std::string& r : verdict.reasons) out += r + "\n";
  return out;
}

std::string health_json(const HealthVerdict& verdict, const HealthRules& rules, const v1::GetHealthResponse& health) {
  nlohmann::ordered_json doc;
  doc["check"] = rules.live ? "liveness" : "readiness";
  doc["ok"] = verdict.ok;
  doc["reasons"] = verdict.reasons;
  doc["health"] = nlohmann::json::parse(to_json(health));
  return doc.dump(2) + "\n";
}

}  // namespace meshwire::control
