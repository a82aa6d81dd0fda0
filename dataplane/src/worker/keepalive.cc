#include "worker/keepalive.h"

#include <cstring>
#include <ctime>

#include "esp/encrypt.h"
#include "net/parse.h"

namespace meshwire::dp {

void write_keepalive(const Keepalive& k, uint8_t* out) {
  std::memcpy(out, kKeepaliveMagic, 4);
  net::store_be32(out + 4, static_cast<uint32_t>(k.generation >> 32));
  net::store_be32(out + 8, static_cast<uint32_t>(k.generation));
  net::store_be16(out + 12, k.peer);
  net::store_be16(out + 14, k.interval_ms);
  net::store_be32(out + 16, static_cast<uint32_t>(k.sent_us >> 32));
  net::store_be32(out + 20, static_cast<uint32_t>(k.sent_us));
  net::store_be32(out + 24, static_cast<uint32_t>(k.echo_us >> 32));
  net::store_be32(out + 28, static_cast<uint32_t>(k.echo_us));
  net::store_be32(out + 32, k.held_us);
}

bool read_keepalive(const uint8_t* p, size_t len, Keepalive* out) {
  if ((len != kKeepaliveUntimedLen && len < kKeepaliveLen) || std::memcmp(p, kKeepaliveMagic, 4) != 0) return false;
  out->generation = uint64_t{net::load_be32(p + 4)} << 32 | net::load_be32(p + 8);
  out->peer = net::load_be16(p + 12);
  out->interval_ms = net::load_be16(p + 14);
  out->timed = len >= kKeepaliveLen;
  if (out->timed) {
    out->sent_us = uint64_t{net::load_be32(p + 16)} << 32 | net::load_be32(p + 20);
    out->echo_us = uint64_t{net::load_be32(p + 24)} << 32 | net::load_be32(p + 28);
    out->held_us = net::load_be32(p + 32);
  }
  return true;
}

uint64_t wall_us() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000u + static_cast<uint64_t>(ts.tv_nsec) / 1000u;
}

void note_keepalive(PeerLink& link, const Keepalive& k, uint64_t now_us) {
  KeepaliveClock& c = link.clock;
  const uint32_t seq = c.echo_seq.load(std::memory_order_relaxed);
  c.echo_seq.store(seq + 1, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_release);
  c.peer_sent_us.store(k.sent_us, std::memory_order_relaxed);
  c.received_us.store(now_us, std::memory_order_relaxed);
  c.echo_seq.store(seq + 2, std::memory_order_release);
  if (k.echo_us == 0 || now_us <= k.echo_us) return;
  const uint64_t elapsed = now_us - k.echo_us;
  if (elapsed <= k.held_us || elapsed - k.held_us > kKeepaliveMaxRttUs) return;
  const uint64_t rtt = elapsed - k.held_us;
  c.rtt_us.store(static_cast<uint32_t>(rtt), std::memory_order_relaxed);
  c.clock_offset_us.store(static_cast<int64_t>(k.sent_us + rtt / 2) - static_cast<int64_t>(now_us),
                          std::memory_order_relaxed);
}

void fill_echo(const PeerLink& link, uint64_t now_us, Keepalive* k) {
  const KeepaliveClock& c = link.clock;
  k->echo_us = 0;
  k->held_us = 0;
  const uint32_t before = c.echo_seq.load(std::memory_order_acquire);
  if (before & 1) return;
  const uint64_t sent = c.peer_sent_us.load(std::memory_order_relaxed);
  const uint64_t received = c.received_us.load(std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_acquire);
  if (c.echo_seq.load(std::memory_order_relaxed) != before) return;
  if (sent == 0 || received == 0 || now_us < received || now_us - received > kKeepaliveMaxRttUs) return;
  k->echo_us = sent;
  k->held_us = static_cast<uint32_t>(now_us - received);
}

void note_keepalives(const Tables& tables, rte_mbuf** pkts, const uint16_t* peers, uint16_t n) {
  uint64_t now_us = 0;
  for (uint16_t i = 0; i < n; ++i) {
    rte_mbuf* m = pkts[i];
    Keepalive k;
    if (m->nb_segs == 1 && read_keepalive(rte_pktmbuf_mtod(m, const uint8_t*), m->data_len, &k) && k.timed) {
      if (now_us == 0) now_us = wall_us();
      note_keepalive(*tables.peers[peers[i]]->link, k, now_us);
    }
    rte_pktmbuf_free(m);
  }
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
