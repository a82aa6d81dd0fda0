// The controller's services side: the desired services (reconcile/
// services.h) computed from the cluster's objects when Services,
// EndpointSlices or Nodes changed, and applied through ApplyServices apart
// from the routing state, under their own generation
// (GetGenerationResponse.services_generation). A set is applied when it
// differs from the one the data plane runs, or when the data plane runs
// another one than ours (restarted: 0, or programmed by hand).
//
// Failures are said once each (until another or a success) and never
// retried in a tight loop:
//  * INVALID_ARGUMENT: the set is not sent again until it changes (a
//    restarted data plane gets the last set it accepted);
//  * FAILED_PRECONDITION (the generation moved under us): the next round,
//    against the generation read then;
//  * anything else (UNIMPLEMENTED by an older data plane, unavailable,
//    deadline): not before resync_ms later.
//
// Not thread-safe: the controller's loop thread owns it.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include <grpcpp/support/status.h>

#include "dataplane.pb.h"
#include "reconcile/services.h"

namespace meshwire::control {

class ServicesSync {
 public:
  // The ApplyServices call (with its deadline), and where lines are logged.
  using Apply = std::function<grpc::Status(const v1::ApplyServicesRequest&, v1::ApplyServicesResponse*)>;
  using Log = std::function<void(const std::string&)>;

  ServicesSync(std::string node, uint64_t resync_ms, Apply apply, Log log);

  // Services, EndpointSlices or Nodes changed: the set is computed anew.
  void objects_changed() { dirty_ = true; }
  // Whether run() needs this round's objects (it computes the set).
  bool needs_objects() const { return dirty_; }
  // Whether run() has something to do this round: compute, or apply.
  // live_generation: the data plane's services_generation, read this round.
  bool due(uint64_t live_generation, uint64_t now_ms) const;

  // Computes the set when the objects changed (cluster must then be given)
  // and applies it as live_generation + 1 when due. One log line per apply:
  // "applied services generation N: F frontend(s), B backend(s) (computed X
  // ms, applied Y ms, of which the data plane built Z ms)".
  void run(const ClusterObjects* cluster, uint64_t live_generation, uint64_t now_ms);

  // The services generation our set last went live as (0: none yet).
  uint64_t applied_generation() const { return applied_generation_; }

 private:
  bool send_next() const { return has_next_ && !rejected_; }
  bool moved(uint64_t live_generation) const {
    return applied_generation_ != 0 && live_generation != applied_generation_;
  }
  void problem(const std::string& what);

  std::string node_;
  uint64_t resync_ms_;
  Apply apply_;
  Log log_;
  bool dirty_ = true;                // the objects changed since the set was computed
  DesiredServices applied_;          // the set last applied...
  uint64_t applied_generation_ = 0;  // ...and the generation it went live as
  DesiredServices next_;             // the set computed last, when it is not the one applied...
  bool has_next_ = false;
  bool rejected_ = false;            // ...and the data plane refused it as invalid
  uint64_t retry_at_ms_ = 0;         // after a failed attempt: not before then
  v1::ApplyServicesRequest req_;     // reused: its buffers stay allocated
  std::string last_problem_;
  std::string last_skipped_;
};

}  // namespace meshwire::control
