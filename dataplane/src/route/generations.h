// The generations of the tables and their hand-over to the workers.
//
// The control thread builds a generation aside (build_tables), publishes it
// with one release store, and keeps the old one on a retire list until
// rte_rcu_qsbr says every worker has been through a quiescent state since:
// a worker loads the live pointer at the top of each poll round and reports
// quiescent at its end (offline while it naps), so the old generation is
// freed within a round of every worker after the swap. Workers see the old
// tables or the new ones, never a mix.
//
// Our own retire list rather than rte_rcu_qsbr_dq: its fixed size would turn
// a burst of Applies into failures, and its failure only says "full"; here
// publish() refuses, naming the worker, when generations pile up behind one
// that stopped reporting.
//
// Threading: every call from the control thread, except live() and qsbr(),
// which workers use as above.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>

#include <rte_rcu_qsbr.h>

#include <meshwire/dp/result.h>

#include "route/tables.h"

namespace meshwire::dp {

class Generations {
 public:
  // workers: the reader thread ids are 0..workers-1.
  static Result<std::unique_ptr<Generations>> create(unsigned workers, SharedState& shared);
  // Frees the live and every retired generation: the workers must have stopped.
  ~Generations();
  Generations(const Generations&) = delete;
  Generations& operator=(const Generations&) = delete;

  rte_rcu_qsbr* qsbr() const { return qsbr_; }
  std::atomic<Tables*>& live() { return live_; }
  Tables* current() const { return live_.load(std::memory_order_relaxed); }

  // Makes next the live generation (ownership passes here) and retires the
  // one before. Refuses (and frees next) when kMaxRetired generations are
  // still waiting for a worker: the error names it.
  Status publish(Tables* next);

  // Frees the retired generations every worker is done with; returns how many.
  unsigned reclaim();
  size_t retired() const { return retired_.size(); }

  // A worker passes a quiescent state every poll round (microseconds), so
  // more than a few waiting means one is stuck; each holds its FIBs (the
  // IPv4 one alone is 32 MB of hugepages).
  static constexpr size_t kMaxRetired = 3;

 private:
  Generations(SharedState& shared, rte_rcu_qsbr* qsbr, unsigned workers)
      : shared_(shared), qsbr_(qsbr), workers_(workers) {}

  struct Retired {
    uint64_t token;
    Tables* tables;
  };
  SharedState& shared_;
  rte_rcu_qsbr* qsbr_;
  unsigned workers_;
  std::atomic<Tables*> live_{nullptr};
  std::deque<Retired> retired_;
};

}  // namespace meshwire::dp
