// Two nodes back to back for the worker's stage tests: node A's local burst
// produces ESP frames that node B's uplink burst must accept.
#pragma once

#include <gtest/gtest.h>
#include <rte_mbuf.h>

#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "worker/worker.h"
#include "support/two_nodes.h"

namespace meshwire::dp {

using test::Bytes;
using test::PacketBuilder;
using test::TestNode;
using test::ip4;
using test::kLocal;
using test::kUplink;
using test::mac;

class WorkerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    pool_ = rte_pktmbuf_pool_create("wt_pool", 4096, 0, 0, RTE_MBUF_DEFAULT_BUF_SIZE, 0);
    ASSERT_NE(pool_, nullptr);
  }
  static void TearDownTestSuite() {
    rte_mempool_free(pool_);
    pool_ = nullptr;
  }
  void SetUp() override {
    static int n = 0;
    const bool v6 = GetParamV6();
    a_ = std::make_unique<TestNode>("wta" + std::to_string(n), v6, 0);
    b_ = std::make_unique<TestNode>("wtb" + std::to_string(n), v6, 1);
    ++n;
  }
  virtual bool GetParamV6() const { return false; }

  static rte_mbuf* mbuf(const Bytes& frame) {
    rte_mbuf* m = rte_pktmbuf_alloc(pool_);
    EXPECT_NE(m, nullptr);
    uint8_t* d = reinterpret_cast<uint8_t*>(rte_pktmbuf_append(m, static_cast<uint16_t>(frame.size())));
    if (!d) std::abort();  // a test frame larger than one mbuf
    std::memcpy(d, frame.data(), frame.size());
    return m;
  }
  static void local_rx(TestNode& n, const std::vector<Bytes>& frames) {
    std::vector<rte_mbuf*> ms;
    for (const Bytes& f : frames) ms.push_back(mbuf(f));
    process_local_burst(n.ctx, n.tx, kLocal, ms.data(), static_cast<uint16_t>(ms.size()));
  }
  static void uplink_rx(TestNode& n, const std::vector<Bytes>& frames) {
    std::vector<rte_mbuf*> ms;
    for (const Bytes& f : frames) ms.push_back(mbuf(f));
    process_uplink_burst(n.ctx, n.tx, ms.data(), static_cast<uint16_t>(ms.size()));
  }
  // A pod on A sends to a pod on B.
  static Bytes pod_a_to_b(uint8_t ttl = 64, size_t payload = 32) {
    return PacketBuilder()
        .eth(mac("02:00:00:00:11:02"), mac("02:aa:00:00:00:01"))
        .ipv4(ip4("10.11.0.2"), ip4("10.12.0.2"))
        .ttl(ttl)
        .udp(40000, 5000)
        .payload(Bytes(payload, 0x42))
        .build();
  }

  inline static rte_mempool* pool_ = nullptr;
  std::unique_ptr<TestNode> a_, b_;
};

}  // namespace meshwire::dp
