// The generations of the workers' read-mostly tables and their hand-over.
//
// The control thread builds a generation aside, publishes it with one
// release store, and keeps the old one on a retire list until rte_rcu_qsbr
// says every worker has been through a quiescent state since: a worker
// loads the live pointers at the top of each poll round and reports
// quiescent at its end (offline while it naps), so the old generation is
// freed within a round of every worker after the swap. Workers see the old
// tables or the new ones, never a mix. Two kinds are published this way,
// each on its own: the routing tables (Tables: routes, peers, SAs) and the
// services (lb::ServiceTable); they share the RCU state.
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
#include <functional>
#include <memory>
#include <string>

#include <rte_rcu_qsbr.h>

#include <meshwire/dp/result.h>

#include "route/tables.h"

namespace meshwire::dp {

// The RCU state of the workers (reader ids 0..workers-1).
class Quiescence {
 public:
  static Result<std::unique_ptr<Quiescence>> create(unsigned workers, int socket_id);
  ~Quiescence();
  Quiescence(const Quiescence&) = delete;
  Quiescence& operator=(const Quiescence&) = delete;
  rte_rcu_qsbr* qsbr() const { return qsbr_; }
  unsigned workers() const { return workers_; }
  // The online workers that have not passed a quiescent state since `token`:
  // "worker 0, 2", or "" when none.
  std::string behind(uint64_t token) const;

 private:
  Quiescence(rte_rcu_qsbr* qsbr, unsigned workers) : qsbr_(qsbr), workers_(workers) {}
  rte_rcu_qsbr* qsbr_;
  unsigned workers_;
};

template <typename T>
class Published {
 public:
  // free_fn frees a generation no worker can still read.
  Published(const Quiescence& q, std::function<void(T*)> free_fn) : q_(q), free_(std::move(free_fn)) {}
  // Frees the live and every retired generation: the workers must have stopped.
  ~Published() {
    for (const Retired& r : retired_) free_(r.item);
    if (T* live = live_.load()) free_(live);
  }
  Published(const Published&) = delete;
  Published& operator=(const Published&) = delete;

  std::atomic<T*>& live() { return live_; }
  T* current() const { return live_.load(std::memory_order_relaxed); }

  // Makes next the live generation (ownership passes here) and retires the
  // one before. Refuses (and frees next) when kMaxRetired generations are
  // still waiting for a worker: the error names it.
  Status publish(T* next) {
    reclaim();
    if (retired_.size() >= kMaxRetired) {
      const std::string who = q_.behind(retired_.front().token);
      free_(next);
      return make_error("generation: " + std::to_string(retired_.size()) +
                        " earlier generations still wait for " + (who.empty() ? std::string("the workers") : who) +
                        " to pass a quiescent state (is a worker stuck?); try again");
    }
    T* old = live_.exchange(next, std::memory_order_acq_rel);
    if (old) retired_.push_back({rte_rcu_qsbr_start(q_.qsbr()), old});
    return Ok{};
  }

  // Frees the retired generations every worker is done with; returns how many.
  unsigned reclaim() {
    unsigned freed = 0;
    while (!retired_.empty() && rte_rcu_qsbr_check(q_.qsbr(), retired_.front().token, false) == 1) {
      free_(retired_.front().item);
      retired_.pop_front();
      ++freed;
    }
    return freed;
  }
  size_t retired() const { return retired_.size(); }

  // A worker passes a quiescent state every poll round (microseconds), so
  // more than a few waiting means one is stuck; each routing generation
  // holds its FIBs (the IPv4 one alone is 32 MB of hugepages).
  static constexpr size_t kMaxRetired = 3;

 private:
  struct Retired {
    uint64_t token;
    T* item;
  };
  const Quiescence& q_;
  std::function<void(T*)> free_;
  std::atomic<T*> live_{nullptr};
  std::deque<Retired> retired_;
};

// The routing tables' generations.
class Generations : public Published<Tables> {
 public:
  static Result<std::unique_ptr<Generations>> create(unsigned workers, SharedState& shared);
  rte_rcu_qsbr* qsbr() const { return q_->qsbr(); }
  const Quiescence& quiescence() const { return *q_; }

 private:
  Generations(std::unique_ptr<Quiescence> q, SharedState& shared)
      : Published<Tables>(*q, [&shared](Tables* t) { free_tables(t, shared); }), q_(std::move(q)) {}
  // Destroyed before the base, whose destructor only frees generations.
  std::unique_ptr<Quiescence> q_;
};

}  // namespace meshwire::dp
