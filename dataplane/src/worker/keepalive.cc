#include "worker/keepalive.h"

#include <cstring>

#include "esp/encrypt.h"
#include "net/parse.h"

namespace meshwire::dp {

void write_keepalive(const Keepalive& k, uint8_t* out) {
  std::memcpy(out, kKeepaliveMagic, 4);
  net::store_be32(out + 4, static_cast<uint32_t>(k.generation >> 32));
  net::store_be32(out + 8, static_cast<uint32_t>(k.generation));
  net::store_be16(out + 12, k.peer);
  net::store_be16(out + 14, k.interval_ms);
}

bool read_keepalive(const uint8_t* p, size_t len, Keepalive* out) {
  if (len != kKeepaliveLen || std::memcmp(p, kKeepaliveMagic, 4) != 0) return false;
  out->generation = uint64_t{net::load_be32(p + 4)} << 32 | net::load_be32(p + 8);
  out->peer = net::load_be16(p + 12);
  out->interval_ms = net::load_be16(p + 14);
  return true;
}

void send_keepalives(WorkerContext& ctx, TxBuffers& tx, rte_mbuf** pkts, uint16_t n) {
  const Tables& t = *ctx.tables;
  const NodeRuntime& node = *ctx.node;
  rte_mbuf* enc[kRxBurst];
  esp::OutboundSa* sas[kRxBurst];
  uint64_t macs[kRxBurst];
  uint16_t nenc = 0;
  for (uint16_t i = 0; i < n; ++i) {
    rte_mbuf* m = pkts[i];
    Keepalive k;
    if (m->nb_segs != 1 || !read_keepalive(rte_pktmbuf_mtod(m, const uint8_t*), m->data_len, &k) ||
        k.generation != t.generation || k.peer >= t.peers.size()) {
      rte_pktmbuf_free(m);  // stale: built for a generation this worker no longer (or not yet) reads
      continue;
    }
    const uint64_t mac = t.peers[k.peer]->link->fabric_mac.load(std::memory_order_relaxed);
    if (mac == 0) {
      ++ctx.counters->drops[static_cast<size_t>(DropReason::kPeerUnresolved)];
      rte_pktmbuf_free(m);
      continue;
    }
    enc[nenc] = m;
    sas[nenc] = t.outbound[k.peer][ctx.index];
    macs[nenc++] = mac;
  }
  if (nenc == 0) return;
  const esp::EncryptContext ectx = uplink_encrypt_context(node);
  DropReason reasons[kRxBurst];
  const uint16_t good = esp::encrypt_dummy_burst(*ctx.engine, ectx, enc, sas, macs, nenc, reasons);
  for (uint16_t i = 0; i < good; ++i) {
    uint16_t& c = tx.count[node.uplink];
    if (c == TxBuffers::kCapacity) flush_tx(ctx, tx);
    tx.pkts[node.uplink][c++] = enc[i];
  }
  ctx.counters->keepalives_sent += good;
  for (uint16_t i = good; i < nenc; ++i) {
    ++ctx.counters->drops[static_cast<size_t>(reasons[i])];
    rte_pktmbuf_free(enc[i]);
  }
}

}  // namespace meshwire::dp
