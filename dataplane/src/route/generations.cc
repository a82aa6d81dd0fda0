#include "route/generations.h"

#include <string>

#include <rte_errno.h>
#include <rte_malloc.h>

namespace meshwire::dp {

Result<std::unique_ptr<Quiescence>> Quiescence::create(unsigned workers, int socket_id) {
  const unsigned readers = workers == 0 ? 1 : workers;
  const size_t size = rte_rcu_qsbr_get_memsize(readers);
  auto* qsbr = static_cast<rte_rcu_qsbr*>(rte_zmalloc_socket("mw_qsbr", size, RTE_CACHE_LINE_SIZE, socket_id));
  if (!qsbr) return make_error("memory: cannot allocate the RCU state");
  if (rte_rcu_qsbr_init(qsbr, readers) != 0) {
    rte_free(qsbr);
    return make_error(std::string("cannot initialise the RCU state: ") + rte_strerror(rte_errno));
  }
  return std::unique_ptr<Quiescence>(new Quiescence(qsbr, workers));
}

Quiescence::~Quiescence() { rte_free(qsbr_); }

std::string Quiescence::behind(uint64_t token) const {
  std::string who;
  for (unsigned w = 0; w < workers_; ++w) {
    const uint64_t c = __atomic_load_n(&qsbr_->qsbr_cnt[w].cnt, __ATOMIC_ACQUIRE);
    if (c != __RTE_QSBR_CNT_THR_OFFLINE && c < token) who += (who.empty() ? "worker " : ", ") + std::to_string(w);
  }
  return who;
}

Result<std::unique_ptr<Generations>> Generations::create(unsigned workers, SharedState& shared) {
  auto q = Quiescence::create(workers, shared.socket_id());
  if (!q.ok()) return make_error(q.error());
  return std::unique_ptr<Generations>(new Generations(std::move(*q), shared));
}

}  // namespace meshwire::dp
