// Packet trace (`meshwirectl trace -c N`): the next packets the workers
// receive, with every decision the data plane makes about each (route,
// service and backend, SA, drop reason, punt, the port it leaves by), as
// `vppctl trace` shows them.
//
// Arming: the API thread sets a worker's budget (WorkerTrace::budget); the
// worker marks that many of the packets it receives next (a dynamic mbuf
// flag, and a packet id in a dynamic mbuf field, so the mark follows the
// mbuf through encryption, decryption and copies). At each decision point a
// marked packet costs the worker one event (TraceEvent: the step, a few
// numbers, the first bytes of the packet) pushed into its own lock-free
// single-producer single-consumer queue; a full queue loses the event
// (counted). Unmarked packets cost one test of a flag in the mbuf's first
// cache line per point, and each burst one relaxed load of the budget.
//
// The consumer (one Trace call at a time, serialised by the API server)
// groups the events by (worker, packet id), and a packet is complete at its
// last step: sent (kTx), dropped, punted, or consumed (a keepalive).
#pragma once

#include <atomic>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include <boost/lockfree/spsc_queue.hpp>
#include <rte_cycles.h>
#include <rte_mbuf.h>

namespace meshwire::dp {

enum class TraceStep : uint8_t {
  kRx,        // a: port index; head: the frame as received
  kService,   // a: frontend index, b: backend index (kTraceNone: a reply given its VIP back)
  kRoute,     // a: 0 local, 1 peer (b: peer index)
  kEncrypt,   // a: SPI, b: peer index
  kDecrypt,   // a: SPI, b: peer index; head: the inner packet
  kDrop,      // a: DropReason
  kPunt,      // a: PuntKind (to the control thread: ARP, ND, ICMP to us, errors to send)
  kTx,        // a: port index; head: the frame as sent
  kConsumed,  // the data plane's own (a keepalive), or a refusal retried elsewhere: freed
  kFragmented,  // a: fragments made (new mbufs, not followed); the packet itself is freed
};
inline constexpr uint32_t kTraceNone = 0xFFFFFFFF;

inline bool trace_step_ends(TraceStep s) {
  return s == TraceStep::kDrop || s == TraceStep::kPunt || s == TraceStep::kTx || s == TraceStep::kConsumed ||
         s == TraceStep::kFragmented;
}

struct TraceEvent {
  uint32_t packet = 0;  // the worker's id of the packet
  TraceStep step = TraceStep::kRx;
  uint8_t head_len = 0;
  bool head_is_ip = false;  // head starts at the IP header (no Ethernet)
  uint32_t a = 0;
  uint32_t b = 0;
  uint32_t len = 0;  // the packet's length at this step
  uint64_t tsc = 0;
  uint8_t head[96];
};

inline constexpr size_t kTraceQueueSize = 2048;
using TraceQueue = boost::lockfree::spsc_queue<TraceEvent, boost::lockfree::capacity<kTraceQueueSize>>;

// One worker's: the budget the API thread arms, the worker's id counter and
// its queue.
struct alignas(64) WorkerTrace {
  std::atomic<uint32_t> budget{0};  // packets still to mark; the API thread sets it, the worker counts it down
  std::atomic<int32_t> port{-1};    // only packets received on this port index (-1: any)
  uint32_t next_id = 0;             // the worker's
  std::atomic<uint64_t> lost{0};    // events the queue had no room for (the worker's; relaxed)
  TraceQueue queue;
};

// The dynamic mbuf flag and field (registered once per process, before the
// workers start; tests register them too). Unregistered: nothing is traced.
struct TraceMarks {
  uint64_t flag = 0;
  int id_offset = -1;
};
inline TraceMarks g_trace_marks;
// Registers them; false (with rte_errno) when DPDK refuses.
bool register_trace_marks();

inline bool traced(const rte_mbuf* m) { return (m->ol_flags & g_trace_marks.flag) != 0; }

// The worker's part: marks up to its budget of pkts[0..n) and records their
// kRx step. Cheap when nothing is armed (the caller tests budget first).
void trace_mark_burst(WorkerTrace& t, uint16_t port_index, rte_mbuf** pkts, uint16_t n);
// One step of a marked packet (the caller tested traced(m)). head_is_ip:
// the mbuf's data starts at the IP header. Ending steps clear the mark.
void trace_step(WorkerTrace& t, rte_mbuf* m, TraceStep step, uint32_t a, uint32_t b = 0, bool head_is_ip = false);

// Arms the workers.
inline void trace_arm(WorkerTrace& t, uint32_t packets) { t.budget.store(packets, std::memory_order_relaxed); }

// A one-line summary of the first bytes of a packet: addresses, protocol,
// ports, TCP flags, ICMP type, ESP SPI and sequence number. Any thread.
std::string summarize_head(const uint8_t* head, size_t len, bool is_ip);

}  // namespace meshwire::dp
