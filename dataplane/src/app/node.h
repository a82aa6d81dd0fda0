// One running data plane: ports, tables, workers and the control loop,
// brought up from a validated Config after rte_eal_init(). Startup either
// completes or undoes what it did and says which field was at fault.
#pragma once

#include <atomic>
#include <memory>
#include <vector>

#include <rte_mempool.h>

#include <meshwire/dp/config.h>
#include <meshwire/dp/result.h>

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
  const Tables& tables() const { return *tables_; }
  unsigned workers() const { return static_cast<unsigned>(workers_.size()); }
  // Counter blocks: one per worker, then the control thread's.
  const WorkerCounters* counters() const { return counters_; }
  unsigned counter_blocks() const { return workers() + 1; }

 private:
  Node() = default;

  NodeRuntime node_;
  Tables* tables_ = nullptr;
  rte_mempool* pool_ = nullptr;
  WorkerCounters* counters_ = nullptr;
  std::vector<std::unique_ptr<esp::GcmEngine>> engines_;
  std::vector<WorkerContext> workers_;
  std::unique_ptr<Control> control_;
  std::atomic<bool> worker_stop_{false};
  size_t ports_started_ = 0;
};

}  // namespace meshwire::dp
