// Per-worker state, shown by scaling: the encrypt (local) stage on one and on
// two threads, each thread pinned to its own CPU and running as one worker of
// the same node. If nothing written per packet is shared, a thread's rate does
// not depend on whether the other one runs; a cache line that both write per
// packet makes each wait for the other's writes, and its rate falls.
//
//   BM_WorkerScaling/per_worker         the data plane's layout, as Node::create builds it:
//                                       each worker its own context, counters, outbound SA,
//                                       ipsec-mb manager, mempool cache and TX buffers; the
//                                       node's Tables (FIB, peers, SA tables, neighbours)
//                                       built once and shared read-only. Bursts of 32.
//   BM_WorkerScaling/per_worker_burst1  the same, one packet per burst (as when the RX queue
//                                       holds one): whatever is written once per burst is
//                                       now written once per packet
//   BM_WorkerScaling/shared_line        the control: per_worker_burst1 plus one fetch_add per
//                                       packet on an atomic that every thread writes
//
// What the method sees: a line costs a transfer between cores each time the
// other core wrote it last. Written between packets, a shared line meets the
// other thread's writes every time; written 32 times together once per burst
// (after the burst, or in one of the stage's loops) it rarely does, and costs
// less than this machine's noise. Hence the control's one-packet bursts. With
// ipsec-mb 1.3 (Debian 12) per_worker_burst1 drops as well: every burst call
// stores to the library's process-wide imb_errno (fixed in ipsec-mb 1.4).
//
// Each thread feeds the stage 64-byte pod frames, 32 per iteration (mbuf
// allocation and copy included, as in BM_EncryptStage). items_per_second is
// the threads' aggregate; the counters are per thread (means over threads):
//   pps_per_thread      packets per second of wall-clock time
//   cpu_pps_per_thread  packets per second of the thread's own CPU time, which
//                       leaves out the time other processes held its CPU (these
//                       machines are shared): interference between workers
//                       stays in it, as stalls
//   cyc_pkt             TSC cycles per packet in the stage (wall clock)
// Read them at threads:2 against threads:1; perf/meshwire_perf/scaling.py
// does. Needs as many CPUs in the process's affinity as threads: a run with
// more threads than that is skipped with an error.
#include <benchmark/benchmark.h>
#include <pthread.h>
#include <rte_cycles.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <sched.h>
#include <time.h>

#include <atomic>
#include <memory>
#include <vector>

#include "stage_harness.h"
#include "support/two_nodes.h"
#include "worker/worker.h"

namespace {

namespace bench = meshwire::bench;
namespace dp = meshwire::dp;
using meshwire::test::Bytes;
using meshwire::test::TestNode;
using meshwire::test::TestWorkers;
using meshwire::test::kLocal;

constexpr int64_t kFrameSize = 64;

enum class Layout { kPerWorker, kPerWorkerBurst1, kSharedLine };

// The CPUs this process may run on, read before main(): rte_eal_init (-l 0)
// pins the main thread to CPU 0, and every thread created afterwards
// inherits that.
std::vector<int> affinity_at_startup() {
  std::vector<int> cpus;
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) != 0) return cpus;
  for (int c = 0; c < CPU_SETSIZE; ++c) {
    if (CPU_ISSET(c, &set)) cpus.push_back(c);
  }
  return cpus;
}
const std::vector<int> kCpus = affinity_at_startup();

// Pins the calling thread to one CPU for its lifetime, then restores its
// previous affinity (thread 0 is the main thread, which the other benchmarks
// use afterwards).
class CpuPin {
 public:
  explicit CpuPin(int cpu) : cpu_(cpu) {
    have_saved_ = pthread_getaffinity_np(pthread_self(), sizeof(saved_), &saved_) == 0;
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(cpu, &one);
    ok_ = have_saved_ && pthread_setaffinity_np(pthread_self(), sizeof(one), &one) == 0;
  }
  ~CpuPin() {
    if (have_saved_) pthread_setaffinity_np(pthread_self(), sizeof(saved_), &saved_);
  }
  CpuPin(const CpuPin&) = delete;
  CpuPin& operator=(const CpuPin&) = delete;

  bool ok() const { return ok_; }
  // Still on the CPU it was pinned to.
  bool holds() const { return sched_getcpu() == cpu_; }

 private:
  int cpu_;
  cpu_set_t saved_;
  bool have_saved_ = false;
  bool ok_ = false;
};

// Gives a thread that is not an EAL lcore an lcore id for its lifetime, hence
// its own cache in every mempool, as a worker lcore has. Google Benchmark runs
// thread 0 on the main lcore and creates the others.
class LcoreId {
 public:
  LcoreId() {
    if (rte_lcore_id() != LCORE_ID_ANY) {
      ok_ = true;
      return;
    }
    registered_ = rte_thread_register() == 0;
    ok_ = registered_;
  }
  ~LcoreId() {
    if (registered_) rte_thread_unregister();
  }
  LcoreId(const LcoreId&) = delete;
  LcoreId& operator=(const LcoreId&) = delete;

  bool ok() const { return ok_; }

 private:
  bool registered_ = false;
  bool ok_ = false;
};

// One node and its workers, built by Setup before the threads start and
// freed by Teardown after they end: the node's Tables are shared by all.
struct SharedNode {
  explicit SharedNode(unsigned workers) : node("ws_a", false, 0, workers), workers(node, "ws_w", workers) {}
  TestNode node;
  TestWorkers workers;
};
std::unique_ptr<SharedNode> g_node;

// The control's shared write, alone on its line.
struct alignas(64) SharedLine {
  std::atomic<uint64_t> packets{0};
};
SharedLine g_line;

void setup(const benchmark::State& state) {
  bench::pool();  // created on the main thread, before the workers need it
  if (static_cast<size_t>(state.threads()) <= kCpus.size()) {
    g_node = std::make_unique<SharedNode>(static_cast<unsigned>(state.threads()));
  }
}

void teardown(const benchmark::State&) { g_node.reset(); }

void BM_WorkerScaling(benchmark::State& state, Layout layout) {
  if (!g_node) return state.SkipWithError("fewer CPUs in this process's affinity than threads");
  if (bench::pool() == nullptr) return state.SkipWithError("no mbuf pool");
  const auto t = static_cast<size_t>(state.thread_index());
  CpuPin pin(kCpus[t]);
  LcoreId lcore;
  if (!pin.ok()) return state.SkipWithError("cannot pin the thread to its CPU");
  if (!lcore.ok()) return state.SkipWithError("cannot register the thread as an lcore");

  dp::WorkerContext& ctx = g_node->workers.ctx[t];
  dp::TxBuffers tx;  // on the worker's own stack, as worker_main keeps them
  const uint64_t encrypted_before = ctx.counters->encrypted_packets;
  const Bytes frame = bench::pod_frame(kFrameSize);
  rte_mbuf* pkts[bench::kBurst];
  uint64_t cycles = 0;
  timespec cpu0;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &cpu0);
  for (auto _ : state) {
    if (!bench::rx_burst(frame, pkts)) {
      state.SkipWithError("mbuf pool empty");
      break;
    }
    const uint64_t t0 = rte_rdtsc();
    if (layout == Layout::kPerWorker) {
      dp::process_local_burst(ctx, tx, kLocal, pkts, bench::kBurst);
    } else {
      for (uint16_t i = 0; i < bench::kBurst; ++i) {
        dp::process_local_burst(ctx, tx, kLocal, &pkts[i], 1);
        if (layout == Layout::kSharedLine) g_line.packets.fetch_add(1, std::memory_order_relaxed);
      }
    }
    cycles += rte_rdtsc() - t0;
    bench::free_tx_buffers(tx);
  }
  timespec cpu1;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &cpu1);
  if (state.error_occurred()) return;
  const double cpu_s = double(cpu1.tv_sec - cpu0.tv_sec) + 1e-9 * double(cpu1.tv_nsec - cpu0.tv_nsec);
  const auto packets = static_cast<uint64_t>(state.iterations()) * bench::kBurst;
  if (!pin.holds()) return state.SkipWithError("the thread left its CPU");
  if (ctx.counters->encrypted_packets - encrypted_before != packets) return state.SkipWithError("packets were dropped");
  bench::account(state, kFrameSize);
  state.counters["pps_per_thread"] = benchmark::Counter(double(packets), benchmark::Counter::kAvgThreadsRate);
  state.counters["cpu_pps_per_thread"] = benchmark::Counter(double(packets) / cpu_s, benchmark::Counter::kAvgThreads);
  state.counters["cyc_pkt"] = benchmark::Counter(double(cycles) / double(packets), benchmark::Counter::kAvgThreads);
}

BENCHMARK_CAPTURE(BM_WorkerScaling, per_worker, Layout::kPerWorker)
    ->Setup(setup)->Teardown(teardown)->Threads(1)->Threads(2)->UseRealTime();
BENCHMARK_CAPTURE(BM_WorkerScaling, per_worker_burst1, Layout::kPerWorkerBurst1)
    ->Setup(setup)->Teardown(teardown)->Threads(1)->Threads(2)->UseRealTime();
BENCHMARK_CAPTURE(BM_WorkerScaling, shared_line, Layout::kSharedLine)
    ->Setup(setup)->Teardown(teardown)->Threads(1)->Threads(2)->UseRealTime();

}  // namespace
