// The mesh as one node sees it: peers' public keys, key epochs, clocks, the
// controller, and pod traffic that would bypass the data plane.
#include <algorithm>
#include <cstdlib>
#include <map>
#include <optional>
#include <set>
#include <string>

#include "doctor/checks.h"
#include "kube/objects.h"

namespace meshwire::control {

namespace {

Finding make(Severity s, const char* check, std::string found, std::string fix = "") {
  return Finding{s, check, std::move(found), std::move(fix)};
}

std::string join(const std::set<uint32_t>& values) {
  std::string out;
  for (uint32_t v : values) out += (out.empty() ? "" : ", ") + std::to_string(v);
  return out.empty() ? "none" : out;
}

// This node's Node: --node, else the one whose meshwire.io/tunnel-address
// or InternalIP is the data plane's tunnel address.
const NodeFact* self_node(const Facts& facts) {
  if (!facts.nodes) return nullptr;
  for (const NodeFact& n : *facts.nodes) {
    if (!facts.self_node.empty()) {
      if (n.name == facts.self_node) return &n;
      continue;
    }
    if (!facts.dataplane) continue;
    const std::string& mine = facts.dataplane->generation.tunnel_address();
    if (n.tunnel_address == mine) return &n;
    for (const std::string& ip : n.internal_ips) {
      if (ip == mine) return &n;
    }
  }
  return nullptr;
}

std::string self_name(const Facts& facts) {
  const NodeFact* self = self_node(facts);
  return self ? self->name : facts.self_node.empty() ? std::string("this node") : facts.self_node;
}

constexpr uint32_t kEpochMask = 0xFFFFFFu;  // what an SPI keeps of an epoch

}  // namespace

// Every Node publishes meshwire.io/public-key (44 characters of canonical
// base64); every peer of the data plane has SAs both ways.
std::vector<Finding> check_public_keys(const Facts& facts) {
  const char* kCheck = "public-keys";
  std::vector<Finding> out;
  size_t keyed = 0;
  if (!facts.nodes) {
    out.push_back(make(Severity::kSkipped, kCheck,
                       facts.nodes_error.empty()
                           ? "Node objects: skipped: needs --source dir:PATH or --source kube"
                           : "cannot read the Node objects: " + facts.nodes_error,
                       facts.nodes_error.empty() ? "" : "correct --source (the controller's)"));
  } else {
    std::set<std::string> peers;
    if (facts.dataplane) {
      for (const auto& p : facts.dataplane->peers.peers()) peers.insert(p.name());
    }
    const NodeFact* self = self_node(facts);
    for (const NodeFact& n : *facts.nodes) {
      if (!n.public_key) {
        out.push_back(make(Severity::kError, kCheck,
                           "Node " + n.name + " has no " + kPublicKeyAnnotation +
                               ": no node can derive keys with it, so none sends it traffic",
                           "start (or fix) meshwire-controller on " + n.name + ": it publishes the key (its log says "
                           "why not); kubectl get node " + n.name + " -o jsonpath='{.metadata.annotations}'"));
      } else if (!n.public_key_valid) {
        out.push_back(make(Severity::kError, kCheck,
                           "Node " + n.name + "'s " + kPublicKeyAnnotation + " is not 32 bytes in canonical base64: '" +
                               *n.public_key + "'",
                           "remove the annotation and restart meshwire-controller on " + n.name +
                               " (it publishes its key again)"));
      } else {
        ++keyed;
        if (facts.dataplane && &n != self && !peers.count(n.name)) {
          out.push_back(make(Severity::kWarning, kCheck,
                             "Node " + n.name + " publishes a key but is no peer of this data plane",
                             "the controller's log says why it left " + n.name + " out (no InternalIP or tunnel address, pod CIDR, "
                             "key epoch or workers yet?)"));
        }
      }
    }
  }
  if (facts.dataplane) {
    for (const auto& p : facts.dataplane->peers.peers()) {
      if (p.outbound_sas() == 0 || p.inbound_sas() == 0) {
        out.push_back(make(Severity::kError, kCheck,
                           "peer " + p.name() + " has " + std::to_string(p.outbound_sas()) + " outbound and " +
                               std::to_string(p.inbound_sas()) + " inbound SA(s): traffic " +
                               (p.outbound_sas() == 0 ? "to" : "from") + " it is dropped",
                           "meshwirectl show sas; the controller's log names what it lacks for " + p.name()));
      }
    }
  }
  bool bad = false;
  for (const Finding& f : out) bad = bad || f.severity == Severity::kError || f.severity == Severity::kWarning;
  if (!bad) {
    std::string found;
    if (facts.nodes) found = std::to_string(keyed) + " Node(s) publish a public key";
    if (facts.dataplane) {
      found += (found.empty() ? "" : "; ") + std::to_string(facts.dataplane->peers.peers_size()) +
               " peer(s) with SAs both ways";
    }
    if (!found.empty()) out.push_back(make(Severity::kOk, kCheck, found));
  }
  return out;
}

// From one node's view (epochs as SPIs carry them: mod 2^24):
// * its outbound SAs must be of the epoch it publishes (its Node's
//   meshwire.io/key-epoch, else the controller's meshwire_controller_key_epoch):
//   peers accept only that one, the next, and the one before for --grace.
//   One off is a rotation in flight (warning), more is an error.
// * per peer, its inbound SAs must include the epoch the peer publishes
//   (else what the peer sends is dropped: error) and the next one (else the
//   peer's next rotation loses traffic: warning).
// Manual SAs (SPI top bit clear) carry no epoch and are not judged.
std::vector<Finding> check_key_epochs(const Facts& facts) {
  const char* kCheck = "key-epochs";
  if (!facts.dataplane) return {make(Severity::kSkipped, kCheck, "skipped: needs the data plane's API (--socket)")};
  std::optional<uint64_t> own;
  std::map<std::string, uint64_t> published;
  std::string from;
  if (facts.nodes) {
    from = "its Node";
    const NodeFact* self = self_node(facts);
    if (self) own = self->key_epoch;
    for (const NodeFact& n : *facts.nodes) {
      if (&n != self && n.key_epoch) published[n.name] = *n.key_epoch;
    }
  } else if (facts.controller && facts.controller->error.empty()) {
    from = "the controller's metrics";
    if (facts.controller->key_epoch) own = static_cast<uint64_t>(*facts.controller->key_epoch);
    for (const auto& [peer, e] : facts.controller->peer_key_epoch) published[peer] = static_cast<uint64_t>(e);
  } else {
    return {make(Severity::kSkipped, kCheck,
                 "skipped: needs the published epochs: --source (Node objects) or --controller URL")};
  }
  std::map<std::string, std::set<uint32_t>> outbound, inbound;
  size_t manual = 0;
  for (const auto& sa : facts.dataplane->sas.sas()) {
    if (!is_derived_spi(sa.spi())) {
      ++manual;
      continue;
    }
    (sa.direction() == "outbound" ? outbound : inbound)[sa.peer()].insert(spi_epoch_bits(sa.spi()));
  }
  std::vector<Finding> out;
  const std::string me = self_name(facts);
  if (!own && !outbound.empty()) {
    out.push_back(make(Severity::kWarning, kCheck,
                       me + " publishes no key epoch in " + from + ": peers cannot know which one it sends under",
                       "check meshwire-controller on this node (--node must name its Node)"));
  }
  for (const auto& [peer, epochs] : outbound) {
    if (!own) break;
    const uint32_t p = static_cast<uint32_t>(*own) & kEpochMask;
    if (epochs.size() == 1 && *epochs.begin() == p) continue;
    const bool in_flight = epochs.size() == 1 && (*epochs.begin() == ((p + 1) & kEpochMask) ||
                                                  ((*epochs.begin() + 1) & kEpochMask) == p);
    out.push_back(make(in_flight ? Severity::kWarning : Severity::kError, kCheck,
                       me + " sends to " + peer + " under epoch " + join(epochs) + " but publishes epoch " +
                           std::to_string(*own) + " in " + from +
                           (in_flight ? ": a rotation in flight (it settles within a resync)"
                                      : ": " + peer + " accepts only " + std::to_string(p) + " and " +
                                            std::to_string((p + 1) & kEpochMask) +
                                            ", so it drops this node's traffic (no_sa)"),
                       in_flight ? "run doctor again in a few seconds"
                                 : "restart meshwire-controller on this node (it publishes and applies one epoch); "
                                   "do not apply derived SAs by hand"));
  }
  for (const auto& [peer, epoch] : published) {
    const auto it = inbound.find(peer);
    if (it == inbound.end()) continue;  // no derived inbound SAs: public-keys says so, or manual keying
    const uint32_t q = static_cast<uint32_t>(epoch) & kEpochMask;
    const uint32_t next = (q + 1) & kEpochMask;
    if (!it->second.count(q)) {
      out.push_back(make(Severity::kError, kCheck,
                         peer + " publishes epoch " + std::to_string(epoch) + " (" + from + ") but " + me +
                             " accepts from it epoch(s) " + join(it->second) +
                             " only: what it sends is dropped (no_sa)",
                         "check that this node's controller reads " + peer + "'s Node (its log), then restart it"));
    } else if (!it->second.count(next)) {
      out.push_back(make(Severity::kWarning, kCheck,
                         me + " accepts " + peer + "'s epoch " + std::to_string(q) + " but not the next, " +
                             std::to_string(next) + ": its next rotation loses traffic until this node catches up",
                         "restart meshwire-controller on this node"));
    }
  }
  if (out.empty()) {
    std::string found = "outbound SAs of epoch " +
                        (own ? std::to_string(*own) : std::string("(none derived)")) + "; inbound SAs match the " +
                        std::to_string(published.size()) + " epoch(s) peers publish (" + from + ")";
    if (manual) found += "; " + std::to_string(manual) + " manual SA(s) not judged";
    out.push_back(make(Severity::kOk, kCheck, found));
  }
  return out;
}

// PeerStatus.clock_offset_ms: the peer's wall clock minus ours, measured
// from keepalives. meshwire compares no clocks (each node times its own
// epochs and grace periods), so skew breaks no key; but beyond a second
// logs, flow records and the SA-age metrics of two nodes stop lining up,
// and at tens of seconds Kubernetes' time-bound credentials (service
// account tokens, certificates' notBefore) and leases start to fail.
std::vector<Finding> check_clock_skew(const Facts& facts) {
  const char* kCheck = "clock-skew";
  if (!facts.dataplane) return {make(Severity::kSkipped, kCheck, "skipped: needs the data plane's API (--socket)")};
  std::vector<Finding> out;
  size_t known = 0;
  int64_t worst = 0;
  for (const auto& p : facts.dataplane->peers.peers()) {
    if (!p.clock_known()) continue;
    ++known;
    const int64_t off = p.clock_offset_ms();
    const int64_t mag = std::llabs(off);
    worst = std::max(worst, mag);
    if (mag < kClockWarnMs) continue;
    out.push_back(make(mag >= kClockErrorMs ? Severity::kError : Severity::kWarning, kCheck,
                       "peer " + p.name() + "'s clock is " + std::to_string(mag) + " ms " +
                           (off > 0 ? "ahead of" : "behind") + " this node's (keepalives)",
                       "synchronise both nodes' clocks (chronyc tracking; chronyc sources -v on each)"));
  }
  if (known == 0) {
    return {make(Severity::kSkipped, kCheck,
                 "skipped: no peer's clock offset is known yet (the data plane measures it from keepalives: it "
                 "needs liveness.interval_ms > 0 and a peer that echoed one)")};
  }
  if (out.empty()) {
    out.push_back(make(Severity::kOk, kCheck,
                       std::to_string(known) + " peer clock(s) within " + std::to_string(worst) + " ms of this node's"));
  }
  return out;
}

// Connected: the data plane runs an applied generation (0 / "config": only
// its startup config), has peers, and had an Apply within two default
// rotation periods; the controller's /metrics answers, reads the data plane
// (meshwire_dataplane_up 1), has no failed Applies, and applied the live
// generation.
std::vector<Finding> check_controller(const Facts& facts) {
  const char* kCheck = "controller";
  std::vector<Finding> out;
  if (facts.dataplane) {
    const auto& g = facts.dataplane->generation;
    const int peers = facts.dataplane->peers.peers_size();
    if (g.live_generation() == 0 || g.source() == "config") {
      out.push_back(make(peers == 0 ? Severity::kError : Severity::kWarning, kCheck,
                         "the data plane runs its startup config only (generation " +
                             std::to_string(g.live_generation()) + ", " + std::to_string(peers) +
                             " static peer(s)): no controller has applied a state",
                         "start meshwire-controller with --api-socket naming this data plane's socket (in the "
                         "DaemonSet: the controller container); its log says why it does not apply"));
    } else if (peers == 0) {
      out.push_back(make(Severity::kWarning, kCheck,
                         "generation " + std::to_string(g.live_generation()) + " has no peers: the controller knows "
                         "no other ready node",
                         "the controller's log names the nodes it leaves out and why"));
    } else if (g.applied_unix_ms() != 0 && facts.now_ms > g.applied_unix_ms() &&
               facts.now_ms - g.applied_unix_ms() > 2 * 3600 * 1000ull) {
      out.push_back(make(Severity::kWarning, kCheck,
                         "no Apply for " + std::to_string((facts.now_ms - g.applied_unix_ms()) / 60000) +
                             " minutes, though keys rotate hourly by default (--rotate-after 3600)",
                         "check that meshwire-controller runs (and its --rotate-after)"));
    }
  }
  if (!facts.controller) {
    out.push_back(make(Severity::kSkipped, kCheck, "controller metrics: skipped: needs --controller URL"));
  } else {
    const ControllerMetrics& m = *facts.controller;
    if (!m.error.empty()) {
      out.push_back(make(Severity::kError, kCheck, "cannot read the controller's metrics at " + m.url + ": " + m.error,
                         "is meshwire-controller running with --metrics-listen (ADDRESS:9464)?"));
    } else if (!m.dataplane_up) {
      out.push_back(make(Severity::kError, kCheck, m.url + " has no meshwire_dataplane_up: not a meshwire controller?",
                         "name the controller's --metrics-listen address"));
    } else if (*m.dataplane_up == 0) {
      out.push_back(make(Severity::kError, kCheck,
                         "the controller cannot read the data plane (meshwire_dataplane_up 0 at " + m.url + ")",
                         "its --api-socket must be the data plane's socket; is meshwire-dataplane running?"));
    } else {
      if (m.apply_failures && *m.apply_failures > 0) {
        out.push_back(make(Severity::kWarning, kCheck,
                           std::to_string(static_cast<uint64_t>(*m.apply_failures)) +
                               " Apply(s) failed since the controller started "
                               "(meshwire_controller_apply_failures_total)",
                           "the controller's log names each refusal"));
      }
      if (facts.dataplane && m.applied_generation &&
          static_cast<uint64_t>(*m.applied_generation) != facts.dataplane->generation.live_generation()) {
        out.push_back(make(Severity::kWarning, kCheck,
                           "the controller applied generation " +
                               std::to_string(static_cast<uint64_t>(*m.applied_generation)) +
                               " last, the data plane runs " +
                               std::to_string(facts.dataplane->generation.live_generation()),
                           "run doctor again in a second; if it stays, another client applies (meshwirectl apply?) "
                           "or this is another node's controller"));
      }
    }
  }
  bool bad = false;
  for (const Finding& f : out) bad = bad || f.severity == Severity::kError || f.severity == Severity::kWarning;
  if (!bad) {
    std::string found;
    if (facts.dataplane) {
      found = "generation " + std::to_string(facts.dataplane->generation.live_generation()) + " applied through the API";
    }
    if (facts.controller) found += (found.empty() ? "" : "; ") + facts.controller->url + " reads the data plane";
    if (!found.empty()) out.push_back(make(Severity::kOk, kCheck, found));
  }
  return out;
}

// In a pod's network namespace, the device of the route via the data
// plane's gateway (169.254.1.1 / fe80::1, the config's node.gateway_*) is the
// data plane's path; the route to an address of every remote pod CIDR must
// leave through that device (the data plane answers ARP/ND for every
// address there, so any next hop on it is the data plane). Any other device
// bypasses it: the packet leaves unencrypted. On the host, a route to a
// remote pod CIDR through the fabric's kernel interface does the same.
std::vector<Finding> check_bypass(const Facts& facts) {
  const char* kCheck = "bypass";
  std::vector<Finding> out;
  if (facts.pods.empty()) {
    out.push_back(make(Severity::kSkipped, kCheck, "pods: skipped: needs --pod-netns NAME (a pod's network namespace)"));
  }
  const std::string gw4 = facts.config ? facts.config->gateway_v4 : "169.254.1.1";
  for (const PodNetnsFact& pod : facts.pods) {
    if (!pod.error.empty()) {
      out.push_back(make(Severity::kError, kCheck, "cannot inspect pod netns " + pod.netns + ": " + pod.error,
                         "name it as `ip netns list` does, or as a path (/proc/PID/ns/net)"));
      continue;
    }
    if (pod.dataplane_dev.empty()) {
      out.push_back(make(Severity::kError, kCheck,
                         "pod netns " + pod.netns + " has no route via the data plane's gateway " + gw4 +
                             ": its traffic does not go through the data plane",
                         "ip -n " + pod.netns + " route replace default via " + gw4 +
                             " dev IF (the interface the data plane's local port serves)"));
      continue;
    }
    size_t good = 0;
    for (const RouteFact& r : pod.routes) {
      const std::string what = "pod netns " + pod.netns + ": " + r.dst + " (" + r.peer + "'s pod CIDR " + r.cidr + ")";
      if (!r.error.empty() || r.dev.empty()) {
        out.push_back(make(Severity::kError, kCheck, what + " has no route: " + r.error,
                           "ip -n " + pod.netns + " route replace default via " + gw4 + " dev " + pod.dataplane_dev));
      } else if (r.dev != pod.dataplane_dev) {
        out.push_back(make(Severity::kError, kCheck,
                           what + " leaves through " + r.dev + (r.gateway.empty() ? "" : " via " + r.gateway) +
                               ", not the data plane's " + pod.dataplane_dev + ": it bypasses the data plane "
                               "and crosses unencrypted",
                           "ip -n " + pod.netns + " route show match " + r.dst +
                               "; delete the route through " + r.dev + " (the CNI that added it must not route "
                               "pod CIDRs)"));
      } else {
        ++good;
      }
    }
    if (good == pod.routes.size()) {
      out.push_back(make(Severity::kOk, kCheck,
                         "pod netns " + pod.netns + ": " + std::to_string(good) +
                             " remote pod CIDR(s) routed through " + pod.dataplane_dev + " (the data plane)"));
    }
  }
  if (facts.host_routes) {
    const std::set<std::string> fabric(facts.host_routes->fabric_ifaces.begin(),
                                       facts.host_routes->fabric_ifaces.end());
    size_t bad = 0;
    for (const RouteFact& r : facts.host_routes->routes) {
      if (r.dev.empty() || !fabric.count(r.dev)) continue;
      ++bad;
      out.push_back(make(Severity::kError, kCheck,
                         "host route to " + r.dst + " (" + r.peer + "'s pod CIDR " + r.cidr + ") leaves through " +
                             r.dev + (r.gateway.empty() ? "" : " via " + r.gateway) +
                             ", the fabric's interface: the host's packets to those pods cross unencrypted",
                         "ip route show match " + r.dst + "; delete that route (only the data plane may reach "
                         "pods over the fabric)"));
    }
    if (bad == 0) {
      std::string ifs;
      for (const std::string& i : facts.host_routes->fabric_ifaces) ifs += (ifs.empty() ? "" : ", ") + i;
      out.push_back(make(Severity::kOk, kCheck,
                         "host: no route to the " + std::to_string(facts.host_routes->routes.size()) +
                             " remote pod address(es) leaves through the fabric (" + (ifs.empty() ? "none" : ifs) +
                             ")"));
    }
  }
  return out;
}

}  // namespace meshwire::control
