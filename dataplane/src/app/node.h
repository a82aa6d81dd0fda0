// One running data plane: ports, tables, workers and the control loop,
// brought up from a validated Config after rte_eal_init(). Startup either
// completes or undoes what it did and says which field was at fault.
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <rte_mempool.h>

#include <meshwire/dp/config.h>
#include <meshwire/dp/result.h>

#include "app/control_tasks.h"
#include "capture/session.h"
#include "capture/tap.h"
#include "lb/conntrack.h"
#include "lb/services.h"
#include "route/generations.h"
#include "telemetry/flow_log.h"
#include "worker/control.h"
#include "worker/runtime.h"

namespace meshwire::dp {

class Node {
 public:
  // Main lcore, after rte_eal_init(). Does not start the workers.
  static Result<std::unique_ptr<Node>> create(const Config& config);
  ~Node();

  // Launches the workers and runs the control loop on the calling (main)
  // lcore until *stop becomes true; then stops the workers. on_ready runs
  // once the workers are launched.
  void run(const std::atomic<bool>& stop, void (*on_ready)());

  const NodeRuntime& runtime() const { return node_; }
  // The live generation. Control thread (or with the workers stopped).
  const Tables& tables() const { return *generations_->current(); }

  // Other threads' work for the control thread (the API server's calls).
  ControlTasks& tasks() { return tasks_; }

  // What Apply did. Control thread.
  struct ApplyOutcome {
    enum class Code { kOk, kInvalid, kStale, kConflict, kUnavailable, kInternal };
    Code code = Code::kOk;
    std::string message;        // names the field for kInvalid
    uint64_t live_generation = 0;
    bool changed = false;       // false: the state was already live
  };
  // Makes routing (checked whole first) generation `generation`: workers
  // switch to it between two bursts. Refused, with nothing changed, when
  // invalid, when generation is 0, or older than the live one without force,
  // or the live one with other contents. Control thread.
  ApplyOutcome apply(const RoutingState& routing, uint64_t generation, bool force);
  // Makes `services` (checked whole first) services generation
  // `generation`, under the same rules as apply(). Control thread.
  ApplyOutcome apply_services(lb::ServicesConfig services, uint64_t generation, bool force);
  // The live services. Control thread.
  const lb::ServiceTable& services() const { return *services_->current(); }
  lb::ConnTrack& conntrack() { return *conntrack_; }
  std::string_view source() const { return source_; }  // "config" or "api"
  uint64_t applied_unix_ms() const { return applied_unix_ms_; }
  unsigned workers() const { return static_cast<unsigned>(workers_.size()); }
  // Counter blocks: one per worker, then the control thread's.
  const WorkerCounters* counters() const { return counters_; }
  unsigned counter_blocks() const { return workers() + 1; }
  // The workers' packet trace blocks (telemetry/trace.h): one consumer at a time.
  WorkerTrace& trace(unsigned worker) { return *traces_[worker]; }
  // Packet capture (capture/session.h): the slot the workers read, and
  // their RCU state (a stopped capture waits for its grace period).
  capture::CaptureSlot& capture_slot() { return capture_slot_; }
  rte_rcu_qsbr* qsbr() const { return generations_->qsbr(); }

 private:
  Node() = default;
  // Builds the live services again against the live routes (a backend's
  // node comes from its route), keeping their generation (and, with
  // end_reply_grace, ending ServiceTable::untracked_reply_until_ms). Control thread.
  void relink_services(bool end_reply_grace = false);
  // Expires idle connections and closes those the services no longer keep
  // (ServiceTable::keeps), a slice of the table per call, or all of it
  // after a peer went down. Control thread.
  void sweep_conntrack();

  NodeRuntime node_;
  std::unique_ptr<esp::GcmEngine> control_engine_;  // expands the keys of new SAs
  std::unique_ptr<SharedState> shared_;
  std::unique_ptr<Generations> generations_;
  std::unique_ptr<lb::ServiceShared> service_shared_;
  std::unique_ptr<Published<lb::ServiceTable>> services_;
  std::unique_ptr<lb::ConnTrack> conntrack_;
  // Flow logs (null when off) and each worker's queue of events for them.
  std::unique_ptr<FlowLog> flow_log_;
  std::vector<std::unique_ptr<lb::FlowEventQueue>> flow_events_;
  std::vector<lb::FlowEventQueue*> flow_event_queues_;
  std::vector<std::unique_ptr<WorkerTrace>> traces_;  // one per worker
  uint64_t next_sweep_ms_ = 0;
  uint64_t swept_for_down_ = 0;  // control_->peers_gone_down() at the last whole sweep
  ControlTasks tasks_;
  IpAddress tunnel_address_;
  std::string source_ = "config";
  uint64_t applied_unix_ms_ = 0;
  rte_mempool* pool_ = nullptr;
  WorkerCounters* counters_ = nullptr;
  std::vector<std::unique_ptr<esp::GcmEngine>> engines_;
  std::vector<WorkerContext> workers_;
  std::unique_ptr<Control> control_;
  std::atomic<bool> worker_stop_{false};
  capture::CaptureSlot capture_slot_;
  size_t ports_started_ = 0;
};

}  // namespace meshwire::dp
