// The worker loop: run to completion over bursts.
//   local RX  -> parse -> classify (punt / local / peer) -> route -> encrypt -> uplink TX
//   uplink RX -> parse -> classify (punt / ESP / drop)   -> decrypt -> route -> local TX
// No locks, allocation, syscalls or logging, except the idle backoff's sleep
// when there is no traffic at all (IdleMode::kAdaptive).
#pragma once

#include <cstdint>

#include <rte_mbuf.h>

#include <meshwire/dp/counters.h>

#include "worker/runtime.h"

namespace meshwire::dp {

inline constexpr uint16_t kRxBurst = 32;

// Per-port transmit buffers of one worker. The stages append; flush() sends
// (tests read them instead). Capacity covers one RX burst plus injected frames.
struct TxBuffers {
  static constexpr uint16_t kCapacity = 2 * kRxBurst;
  rte_mbuf* pkts[kMaxPorts][kCapacity];
  uint16_t count[kMaxPorts] = {};
};

// lcore entry point; arg is a WorkerContext*. Returns when *ctx->stop is set.
int worker_main(void* arg);

// One burst through the stages (exposed for tests, which feed mbufs directly).
// Forwarded packets end in tx (ownership passes to it); dropped packets are
// freed and counted; punted ones go to ctx.punt. n <= kRxBurst.
void process_local_burst(WorkerContext& ctx, TxBuffers& tx, uint16_t port_index, rte_mbuf** pkts, uint16_t n);
void process_uplink_burst(WorkerContext& ctx, TxBuffers& tx, rte_mbuf** pkts, uint16_t n);

// Sends the first packet of each new connection whose backend refused it
// or left it unanswered past connect_timeout_ms to its next backend (the
// worker loop calls it once a millisecond while any is pending); forgets
// the ones answered. release_connect_retries() frees what is still held
// (the worker stopping).
void run_connect_retries(WorkerContext& ctx, TxBuffers& tx);
void release_connect_retries(WorkerContext& ctx);

// Sends everything buffered for every port on queue ctx.index; what the
// driver does not take is freed and counted as kTxFull.
void flush_tx(WorkerContext& ctx, TxBuffers& tx);

}  // namespace meshwire::dp
