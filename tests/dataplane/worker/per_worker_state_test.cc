// Per-worker state: what a worker writes for every packet lies on cache lines
// that no other worker writes, and two workers of one node really keep apart
// (each its own outbound SA and sequence numbers, its own counters) while
// sharing the node's tables.
#include <gtest/gtest.h>
#include <rte_common.h>
#include <rte_mbuf.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>

#include <meshwire/dp/counters.h>

#include "esp/replay.h"
#include "esp/sa.h"
#include "net/parse.h"
#include "route/tables.h"
#include "worker/worker.h"
#include "support/two_nodes.h"

namespace meshwire::dp {
namespace {

using test::Bytes;
using test::PacketBuilder;
using test::TestNode;
using test::TestWorkers;
using test::ip4;
using test::kLocal;
using test::kUplink;
using test::mac;

// A type whose alignment is a multiple of the line size starts a line and,
// since its size is a multiple of its alignment, ends with one: two objects
// of it (in an array or apart) never share a line.
template <typename T>
constexpr bool owns_its_lines = alignof(T) % RTE_CACHE_LINE_SIZE == 0;

// Written per packet by its worker only.
static_assert(owns_its_lines<WorkerCounters>, "a worker's counters must not share a line with another's");
static_assert(owns_its_lines<esp::OutboundSa>, "a worker's sequence number must not share a line with another's");
// Read every burst by its worker; the neighbour cache inside is written on
// every miss (Node keeps the contexts in one vector, side by side).
static_assert(owns_its_lines<WorkerContext>, "a worker's context must not share a line with another's");
static_assert(owns_its_lines<NeighborCache>, "a worker's neighbour cache must not share a line with its neighbours'");
// Written per packet by whichever worker decrypts (compare-exchange): top_ and
// the slots start lines of their own, away from the key every worker reads.
static_assert(owns_its_lines<esp::ReplayWindow>, "the replay window must not share a line with the SA's key");
static_assert(owns_its_lines<esp::InboundSa>, "an inbound SA must not share a line with another SA");
// Written by the control thread and read per packet or per burst by every
// worker: on lines of their own, away from the immutable fields beside them.
static_assert(alignof(PeerLink) % RTE_CACHE_LINE_SIZE == 0 && offsetof(PeerLink, fabric_mac) % RTE_CACHE_LINE_SIZE == 0,
              "fabric_mac must not share a line with the link's other fields");
static_assert(alignof(Neighbors) % RTE_CACHE_LINE_SIZE == 0 && offsetof(Neighbors, epoch) % RTE_CACHE_LINE_SIZE == 0,
              "the neighbour epoch must not share a line with the hash pointer");

class PerWorkerStateTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    pool_ = rte_pktmbuf_pool_create("pws_pool", 256, 0, 0, RTE_MBUF_DEFAULT_BUF_SIZE, 0);
    ASSERT_NE(pool_, nullptr);
  }
  static void TearDownTestSuite() {
    rte_mempool_free(pool_);
    pool_ = nullptr;
  }
  static rte_mbuf* pod_a_to_b() {
    const Bytes frame = PacketBuilder()
                            .eth(mac("02:00:00:00:11:02"), mac("02:aa:00:00:00:01"))
                            .ipv4(ip4("10.11.0.2"), ip4("10.12.0.2"))
                            .udp(40000, 5000)
                            .payload(Bytes(32, 0x42))
                            .build();
    rte_mbuf* m = rte_pktmbuf_alloc(pool_);
    if (!m) std::abort();
    std::memcpy(rte_pktmbuf_append(m, static_cast<uint16_t>(frame.size())), frame.data(), frame.size());
    return m;
  }
  static rte_mempool* pool_;
};
rte_mempool* PerWorkerStateTest::pool_ = nullptr;

TEST_F(PerWorkerStateTest, EachWorkerOfANodeEncryptsWithItsOwnSaAndCounters) {
  TestNode a("pwsa", false, 0, 2);
  TestNode b("pwsb", false, 1, 2);
  b.learn("10.12.0.2", "02:00:00:00:12:02");
  TestWorkers workers(a, "pwsw", 2);

  // Two packets from each worker, worker 1 first: each counts its own
  // sequence from 1 under its own SPI, whatever the other did.
  for (unsigned w : {1u, 0u}) {
    for (uint32_t seq = 1; seq <= 2; ++seq) {
      SCOPED_TRACE("worker " + std::to_string(w) + ", packet " + std::to_string(seq));
      TxBuffers tx;
      rte_mbuf* m = pod_a_to_b();
      process_local_burst(workers.ctx[w], tx, kLocal, &m, 1);
      ASSERT_EQ(tx.count[kUplink], 1);
      rte_mbuf* out = tx.pkts[kUplink][0];
      const uint8_t* f = rte_pktmbuf_mtod(out, const uint8_t*);
      net::PacketInfo info;
      ASSERT_EQ(net::parse_frame(f, out->data_len, &info), net::ParseResult::kOk);
      const uint8_t* esp = f + info.l4_offset + 8;
      EXPECT_EQ(net::load_be32(esp), 0x1001 + w);  // SPI
      EXPECT_EQ(net::load_be32(esp + 4), seq);
      // Node b, built for two workers too, accepts both SAs.
      process_uplink_burst(b.ctx, b.tx, &out, 1);
      EXPECT_EQ(b.take(kLocal).size(), 1u);
    }
  }
  for (unsigned w : {0u, 1u}) {
    EXPECT_EQ(workers.counters[w].encrypted_packets, 2u) << "worker " << w;
    EXPECT_EQ(workers.counters[w].ports[kLocal].rx_packets, 2u) << "worker " << w;
    EXPECT_EQ(a.tables->outbound[0][w]->seq, 2u) << "worker " << w;
  }
  EXPECT_EQ(a.counters.encrypted_packets, 0u);  // the node's own ctx was not used
  EXPECT_EQ(b.counters.decrypted_packets, 4u);
}

}  // namespace
}  // namespace meshwire::dp
