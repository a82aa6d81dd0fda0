// What the stage benchmarks share: one mbuf pool, a pod's frame, a simulated
// RX burst and freeing what the stages left in the TX buffers.
//
// Threading: pool() is created on first use (from the main thread, as Google
// Benchmark runs single-threaded benchmarks there); rx_burst() and
// free_tx_buffers() may run on any number of threads at once, each with its
// own mbufs and TxBuffers. A thread that is no EAL lcore has no mempool cache
// (every allocation then takes the pool's shared ring): register it first.
#pragma once

#include <benchmark/benchmark.h>
#include <rte_mbuf.h>

#include <cstdint>
#include <cstring>

#include "support/two_nodes.h"

namespace meshwire::bench {

inline constexpr uint16_t kBurst = 32;

inline rte_mempool* pool() {
  static rte_mempool* p = rte_pktmbuf_pool_create("bench_pool", 8192, 256, 0, RTE_MBUF_DEFAULT_BUF_SIZE, 0);
  return p;
}

// A UDP packet from pod 10.11.0.2 on node a to pod 10.12.0.2 on node b, as
// node a's local port receives it; frame_size counts the Ethernet header.
inline test::Bytes pod_frame(size_t frame_size) {
  const size_t payload = frame_size - 14 - 20 - 8;
  return test::PacketBuilder()
      .eth(test::mac("02:00:00:00:11:02"), test::mac("02:aa:00:00:00:01"))
      .ipv4(test::ip4("10.11.0.2"), test::ip4("10.12.0.2"))
      .udp(40000, 5000)
      .payload(test::Bytes(payload, 0x42))
      .build();
}

// Simulated RX: kBurst fresh mbufs holding the frame. False when the pool is empty.
inline bool rx_burst(const test::Bytes& frame, rte_mbuf** pkts) {
  if (rte_pktmbuf_alloc_bulk(pool(), pkts, kBurst) != 0) return false;
  for (uint16_t i = 0; i < kBurst; ++i) {
    void* d = rte_pktmbuf_append(pkts[i], static_cast<uint16_t>(frame.size()));
    std::memcpy(d, frame.data(), frame.size());
  }
  return true;
}

// Frees what the stages queued for transmission, as a port would once sent.
inline void free_tx_buffers(dp::TxBuffers& tx) {
  for (uint16_t p : {test::kLocal, test::kUplink}) {
    rte_pktmbuf_free_bulk(tx.pkts[p], tx.count[p]);
    tx.count[p] = 0;
  }
}

// Items and bytes for `frame_size`-byte frames, kBurst per iteration.
inline void account(benchmark::State& state, int64_t frame_size) {
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()) * kBurst);
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * kBurst * frame_size);
}

}  // namespace meshwire::bench
