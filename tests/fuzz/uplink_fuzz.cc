// libFuzzer target for the whole packet path of two data planes back to
// back (tests/support/two_nodes.h): hostile frames on node b's uplink, on
// node a's local port, and, hardest to reach by chance, arbitrary plaintext
// sealed with a valid SA so that the trailer checks, the inner parser, the
// inner-source check and delivery see fuzzed bytes after a good ICV. Both
// nodes' control threads then handle whatever was punted (ARP, ND, echo,
// ICMP errors, neighbour misses) and their replies are run through again.
// Besides "no crash, no overrun", it checks that every packet is accounted
// for: nothing is left behind in a ring or a TX buffer unexplained.
//
// Input: 1 mode byte (0: frame to b's uplink, 1: frame to a's local port,
// 2: sealed plaintext to b's uplink), then the bytes.
//
// fuzz-sources: dataplane/src/net/*.cc dataplane/src/esp/*.cc dataplane/src/route/*.cc
// fuzz-sources: dataplane/src/worker/*.cc dataplane/src/config/ip.cc dataplane/src/lb/*.cc dataplane/src/telemetry/trace.cc dataplane/src/capture/tap.cc dataplane/src/capture/filter.cc dataplane/src/capture/native_filter.cc
// fuzz-pkgs: libdpdk
// fuzz-libs: -lIPSec_MB -lpcap
#include <rte_eal.h>
#include <rte_mbuf.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <memory>
#include <vector>

#include "support/two_nodes.h"

namespace {

using namespace meshwire;
using test::Bytes;
using test::TestNode;
using test::kLocal;
using test::kUplink;

rte_mempool* g_pool = nullptr;
TestNode* g_a = nullptr;
TestNode* g_b = nullptr;
std::vector<dp::WorkerContext>* g_workers_a = nullptr;
std::vector<dp::WorkerContext>* g_workers_b = nullptr;
dp::Control* g_control_a = nullptr;
dp::Control* g_control_b = nullptr;
dp::WorkerCounters g_control_counters[2];

rte_mbuf* to_mbuf(const uint8_t* data, size_t len) {
  rte_mbuf* m = rte_pktmbuf_alloc(g_pool);
  if (!m) std::abort();
  void* d = rte_pktmbuf_append(m, static_cast<uint16_t>(len));
  if (!d) std::abort();
  std::memcpy(d, data, len);
  return m;
}

// Frees what a node's stages left in its TX buffers.
void drain_tx(TestNode& n) {
  for (uint16_t p : {kLocal, kUplink}) {
    rte_pktmbuf_free_bulk(n.tx.pkts[p], n.tx.count[p]);
    n.tx.count[p] = 0;
  }
}

// Runs a node's control thread once and feeds what it re-injects as local RX
// back through the worker; frames it would transmit are freed.
void run_control(TestNode& n, dp::Control& control) {
  control.poll();
  for (rte_mbuf* m : n.take_injected()) {
    if (static_cast<dp::InjectKind>(m->hash.usr) == dp::InjectKind::kLocalRx) {
      dp::process_local_burst(n.ctx, n.tx, m->port, &m, 1);
    } else {
      rte_pktmbuf_free(m);
    }
  }
  // Anything the re-injected frames punted again waits for the next round.
}

// An ESP-in-UDP frame from a to b around `plain` (whole ESP payload: inner
// packet, padding, pad length, next header), sealed with a's worker-0 SA.
Bytes seal(const uint8_t* plain, size_t len) {
  dp::esp::OutboundSa* sa = g_a->tables->outbound[0][0];
  const uint64_t seq = ++sa->seq;
  Bytes f(14 + 20 + 8 + 16 + len + 16);
  const uint8_t* dst_mac = g_b->node.ports[kUplink].mac;
  std::memcpy(f.data(), dst_mac, 6);
  std::memcpy(f.data() + 6, g_a->node.ports[kUplink].mac, 6);
  f[12] = 0x08;
  uint8_t* ip = f.data() + 14;
  ip[0] = 0x45;
  dp::net::store_be16(ip + 2, static_cast<uint16_t>(f.size() - 14));
  ip[8] = 64;
  ip[9] = 17;
  std::memcpy(ip + 12, sa->outer_src, 4);
  std::memcpy(ip + 16, sa->outer_dst, 4);
  uint8_t* udp = ip + 20;
  dp::net::store_be16(udp, sa->udp_sport);
  dp::net::store_be16(udp + 2, 4500);
  dp::net::store_be16(udp + 4, static_cast<uint16_t>(f.size() - 34));
  uint8_t* esp = udp + 8;
  dp::net::store_be32(esp, sa->spi);
  dp::net::store_be32(esp + 4, static_cast<uint32_t>(seq));
  dp::net::store_be32(esp + 8, static_cast<uint32_t>(seq >> 32));
  dp::net::store_be32(esp + 12, static_cast<uint32_t>(seq));
  std::memcpy(esp + 16, plain, len);
  dp::esp::GcmOp op{};
  uint8_t aad[dp::esp::kAadLen];
  dp::esp::prepare_esp_op(op, &sa->key, esp, static_cast<uint32_t>(len), sa->spi, seq, aad);
  if (dp::esp::gcm_encrypt_burst(*g_a->engine, &op, 1) != 1) std::abort();
  return f;
}

}  // namespace

// LeakSanitizer does not scan DPDK's memory (rte_malloc), so the heap blocks
// that tables kept there own look leaked at exit. The mbuf accounting above
// is this target's leak check.
extern "C" const char* __asan_default_options() { return "detect_leaks=0"; }

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  const char* eal_argv[] = {"uplink_fuzz", "--no-huge", "-m", "1024", "--no-pci", "--no-shconf",
                            "--no-telemetry", "-l", "0", "--log-level", "*:error"};
  if (rte_eal_init(static_cast<int>(std::size(eal_argv)), const_cast<char**>(eal_argv)) < 0) {
    std::fprintf(stderr, "uplink_fuzz: rte_eal_init failed\n");
    std::abort();
  }
  g_pool = rte_pktmbuf_pool_create("fuzz_pool", 4096, 0, 0, RTE_MBUF_DEFAULT_BUF_SIZE, 0);
  if (!g_pool) std::abort();
  g_a = new TestNode("fza", false, 0);
  g_b = new TestNode("fzb", false, 1);
  g_a->learn("10.11.0.2", "02:00:00:00:11:02");
  g_b->learn("10.12.0.2", "02:00:00:00:12:02");
  // Services on both, with a backend on each node, so that frames to the
  // VIP, replies from the backends and ICMP errors about them go through the
  // service stage (connection table, NAT) in both directions.
  for (TestNode* n : {g_a, g_b}) {
    dp::lb::ServicesConfig services;
    for (uint8_t proto : {uint8_t{6}, uint8_t{17}, uint8_t{132}}) {
      dp::lb::FrontendConfig f;
      f.name = "fuzz/svc";
      f.vip = test::addr("10.96.0.10");
      f.port = 80;
      f.protocol = proto;
      f.affinity_timeout_s = proto == 17 ? 60 : 0;
      for (const char* b : {"10.11.0.2", "10.12.0.2"}) {
        dp::lb::BackendConfig bc;
        bc.address = test::addr(b);
        bc.port = 8080;
        f.backends.push_back(bc);
      }
      services.push_back(f);
    }
    if (!n->apply_services(services, 1).empty()) std::abort();
  }
  g_workers_a = new std::vector<dp::WorkerContext>{g_a->ctx};
  g_workers_b = new std::vector<dp::WorkerContext>{g_b->ctx};
  g_control_a = new dp::Control(g_a->node, g_a->live, *g_workers_a, g_pool, &g_control_counters[0]);
  g_control_b = new dp::Control(g_b->node, g_b->live, *g_workers_b, g_pool, &g_control_counters[1]);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const uint8_t mode = data[0] % 3;
  ++data;
  --size;
  if (size > 1500) size = 1500;
  if (mode == 2) {
    const size_t len = size & ~size_t{3};
    if (len == 0) return 0;
    const Bytes f = seal(data, len);
    rte_mbuf* m = to_mbuf(f.data(), f.size());
    dp::process_uplink_burst(g_b->ctx, g_b->tx, &m, 1);
  } else if (size != 0) {
    rte_mbuf* m = to_mbuf(data, size);
    if (mode == 0) {
      dp::process_uplink_burst(g_b->ctx, g_b->tx, &m, 1);
    } else {
      dp::process_local_burst(g_a->ctx, g_a->tx, kLocal, &m, 1);
    }
  }
  // What a encrypted goes on to b, as on the wire.
  const uint16_t n = g_a->tx.count[kUplink];
  g_a->tx.count[kUplink] = 0;
  if (n) dp::process_uplink_burst(g_b->ctx, g_b->tx, g_a->tx.pkts[kUplink], n);
  run_control(*g_a, *g_control_a);
  run_control(*g_b, *g_control_b);
  drain_tx(*g_a);
  drain_tx(*g_b);
  // Only packets held for unresolved pods (at most 256 per node) and frames
  // queued for the next control round may still be out of the pool.
  const unsigned in_use = rte_mempool_in_use_count(g_pool);
  if (in_use > 2 * 256 + 2 * 64) {
    std::fprintf(stderr, "uplink_fuzz: %u mbufs out of the pool: a leak\n", in_use);
    std::abort();
  }
  return 0;
}
