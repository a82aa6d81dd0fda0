#include "route/generations.h"

#include <string>

#include <rte_errno.h>
#include <rte_malloc.h>

namespace meshwire::dp {

Result<std::unique_ptr<Generations>> Generations::create(unsigned workers, SharedState& shared) {
  const unsigned readers = workers == 0 ? 1 : workers;
  const size_t size = rte_rcu_qsbr_get_memsize(readers);
  auto* qsbr = static_cast<rte_rcu_qsbr*>(rte_zmalloc_socket("mw_qsbr", size, RTE_CACHE_LINE_SIZE, shared.socket_id()));
  if (!qsbr) return make_error("memory: cannot allocate the RCU state");
  if (rte_rcu_qsbr_init(qsbr, readers) != 0) {
    rte_free(qsbr);
    return make_error(std::string("cannot initialise the RCU state: ") + rte_strerror(rte_errno));
  }
  return std::unique_ptr<Generations>(new Generations(shared, qsbr, workers));
}

Generations::~Generations() {
  for (const Retired& r : retired_) free_tables(r.tables, shared_);
  free_tables(live_.load(), shared_);
  rte_free(qsbr_);
}

Status Generations::publish(Tables* next) {
  reclaim();
  if (retired_.size() >= kMaxRetired) {
    // The workers still online and behind the oldest retired generation.
    std::string who;
    const uint64_t token = retired_.front().token;
    for (unsigned w = 0; w < workers_; ++w) {
      const uint64_t c = __atomic_load_n(&qsbr_->qsbr_cnt[w].cnt, __ATOMIC_ACQUIRE);
      if (c != __RTE_QSBR_CNT_THR_OFFLINE && c < token) who += (who.empty() ? "worker " : ", ") + std::to_string(w);
    }
    free_tables(next, shared_);
    return make_error("generation: " + std::to_string(retired_.size()) + " earlier generations still wait for " +
                      (who.empty() ? std::string("the workers") : who) +
                      " to pass a quiescent state (is a worker stuck?); try again");
  }
  Tables* old = live_.exchange(next, std::memory_order_acq_rel);
  if (old) retired_.push_back({rte_rcu_qsbr_start(qsbr_), old});
  return Ok{};
}

unsigned Generations::reclaim() {
  unsigned freed = 0;
  while (!retired_.empty() && rte_rcu_qsbr_check(qsbr_, retired_.front().token, false) == 1) {
    free_tables(retired_.front().tables, shared_);
    retired_.pop_front();
    ++freed;
  }
  return freed;
}

}  // namespace meshwire::dp
