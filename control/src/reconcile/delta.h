// What the controller applied last, peer by peer, so that a change is sent
// as a StateDelta of the peers that differ (at thousands of nodes, one Node
// edit is one peer, not a 1.5 MB state to send, parse and convert).
#pragma once

#include <map>
#include <string>

#include "dataplane.pb.h"

namespace meshwire::control {

class AppliedState {
 public:
  // Compares `want` with what was applied: fills `delta` (when given) with
  // the peers to add or replace, those to remove and the pod CIDRs when they
  // differ; true when anything differs (always, when nothing was applied).
  // What it computed waits for commit().
  bool prepare(const v1::State& want, v1::StateDelta* delta);
  // The state prepare() saw is now live (a whole-state or a delta Apply of it).
  void commit();
  // The data plane runs something else (restarted, programmed by hand).
  void clear();
  bool has_applied() const { return has_; }

 private:
  std::map<std::string, std::string> peers_, pending_peers_;  // name -> serialized v1::Peer
  std::string pod_cidrs_, pending_pod_cidrs_;                 // joined with '\n'
  bool has_ = false;
};

}  // namespace meshwire::control
