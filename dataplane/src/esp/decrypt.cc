#include "esp/decrypt.h"

#include <cstring>

#include <rte_byteorder.h>

#include "esp/burst.h"
#include "esp/sa.h"
#include "net/parse.h"

namespace meshwire::dp::esp {
namespace {

// A packet whose SA lookup missed: was it from a peer at all?
DropReason classify_miss(const Tables& tables, const InboundSaTable::Key& key) {
  return find_peer(tables, key.family, key.addr) >= 0 ? DropReason::kNoSa : DropReason::kUnknownPeer;
}

enum class Outcome : uint8_t { kFailed, kInner, kDummy };

// Orders the burst [inner | dummies | failed], each group in arrival order,
// with reasons[] moved along with the failed ones. Returns the inner count.
uint16_t sort_outcomes(rte_mbuf** pkts, DropReason* reasons, const Outcome* outcome, uint16_t n,
                       uint16_t* dummies) {
  rte_mbuf* dummy[kMaxBurst];
  rte_mbuf* failed[kMaxBurst];
  DropReason failed_reason[kMaxBurst];
  uint16_t ninner = 0, ndummy = 0, nfailed = 0;
  for (uint16_t i = 0; i < n; ++i) {
    switch (outcome[i]) {
      case Outcome::kInner: pkts[ninner++] = pkts[i]; break;
      case Outcome::kDummy: dummy[ndummy++] = pkts[i]; break;
      case Outcome::kFailed:
        failed_reason[nfailed] = reasons[i];
        failed[nfailed++] = pkts[i];
        break;
    }
  }
  for (uint16_t i = 0; i < ndummy; ++i) pkts[ninner + i] = dummy[i];
  for (uint16_t i = 0; i < nfailed; ++i) {
    pkts[ninner + ndummy + i] = failed[i];
    reasons[ninner + ndummy + i] = failed_reason[i];
  }
  *dummies = ndummy;
  return ninner;
}

// The peer was heard from now: one store a millisecond, not one a packet.
inline void mark_heard(PeerLink& link, uint32_t now_ms) {
  const uint32_t stamp = now_ms != 0 ? now_ms : 1;  // 0 means "never"
  if (link.last_heard_ms.load(std::memory_order_relaxed) != stamp) {
    link.last_heard_ms.store(stamp, std::memory_order_relaxed);
  }
}

}  // namespace

uint16_t decrypt_burst(GcmEngine& engine, const Tables& tables, uint32_t now_ms, uint16_t worker, rte_mbuf** pkts,
                       const EspMeta* meta, uint16_t n, DropReason* reasons, uint16_t* peer_of,
                       uint16_t* dummies) {
  InboundSaTable::Hit hits[kMaxBurst];
  GcmOp ops[kMaxBurst];
  uint8_t aad[kMaxBurst][kAadLen];
  uint64_t seqs[kMaxBurst];
  bool left_of_window[kMaxBurst];
  uint16_t op_of[kMaxBurst];
  Outcome outcome[kMaxBurst];
  uint16_t nops = 0;

  for (uint16_t i = 0; i < n; ++i) {
    outcome[i] = Outcome::kFailed;
    // A burst mostly holds runs of packets of one SA: a key equal to the one
    // before it reuses that lookup.
    hits[i] = i != 0 && meta[i].key == meta[i - 1].key ? hits[i - 1] : tables.inbound_sas.lookup(meta[i].key);
    InboundSa* sa = hits[i].sa;
    if (sa == nullptr) {
      reasons[i] = classify_miss(tables, meta[i].key);
      continue;
    }
    rte_mbuf* m = pkts[i];
    const uint32_t min_len = kEspHeaderLen + kIvLen + kTrailerLen + kIcvLen;
    const uint32_t payload_len = meta[i].esp_len - kEspHeaderLen - kIvLen - kIcvLen;
    if (m->nb_segs != 1 || meta[i].esp_len < min_len || (payload_len & 3) != 0 ||
        uint32_t{meta[i].esp_offset} + meta[i].esp_len > m->data_len) {
      reasons[i] = DropReason::kMalformed;
      continue;
    }
    const ReplayCheck check = sa->window.check(meta[i].seq_low);
    if (!check.ok) {
      reasons[i] = DropReason::kReplay;
      continue;
    }
    uint8_t* esp = rte_pktmbuf_mtod_offset(m, uint8_t*, meta[i].esp_offset);
    write_inbound_aad(aad[nops], esp, static_cast<uint32_t>(check.seq >> 32));
    point_esp_op(ops[nops], &sa->key, esp, payload_len, aad[nops]);
    seqs[nops] = check.seq;
    left_of_window[nops] = check.left_of_window;
    op_of[nops] = i;
    ++nops;
  }

  gcm_decrypt_burst(engine, ops, nops);

  // Ops are in packet order, so the good packets' peers can be written
  // straight to where sort_outcomes() will put those packets; the dummies'
  // go after them once their number is known.
  uint16_t good = 0;
  uint16_t dummy_peer[kMaxBurst];
  uint16_t ndummy = 0;
  // Per-peer traffic, added once per run of packets from one peer, whose
  // link is looked up (and marked heard: now_ms is the burst's) once a run.
  uint32_t run_peer = UINT32_MAX;
  PeerLink* run = nullptr;
  uint64_t run_packets = 0, run_bytes = 0;
  auto flush_run = [&] {
    if (run != nullptr && worker < run->traffic_slots) {
      run->traffic[worker].rx_packets += run_packets;
      run->traffic[worker].rx_bytes += run_bytes;
    }
  };
  for (uint16_t k = 0; k < nops; ++k) {
    const uint16_t i = op_of[k];
    if (!ops[k].ok) {
      // Left of the window, the ESN inference assumed the next subspace: a
      // failed ICV there is an old packet (e.g. one that waited on another
      // worker while this SA moved on), dropped as too old.
      reasons[i] = left_of_window[k] ? DropReason::kReplay : DropReason::kAuthFailed;
      continue;
    }
    // Only an authenticated packet may move the window (RFC 4303 3.4.3).
    if (!hits[i].sa->window.commit(seqs[k])) {
      reasons[i] = DropReason::kReplay;
      continue;
    }
    if (hits[i].peer != run_peer) {
      flush_run();
      run_peer = hits[i].peer;
      run = tables.peers[run_peer]->link;
      mark_heard(*run, now_ms);
      run_packets = run_bytes = 0;
    }
    ++run_packets;
    run_bytes += pkts[i]->pkt_len;
    const uint8_t* plain = ops[k].data;
    const uint32_t len = ops[k].len;
    const uint8_t next_header = plain[len - 1];
    const uint8_t pad = plain[len - 2];
    const bool dummy = next_header == net::kProtoNoNext;
    bool trailer_ok = pad + uint32_t{kTrailerLen} <= len &&
                      (next_header == net::kProtoIpInIp || next_header == net::kProtoIpv6 || dummy);
    const uint32_t inner_len = len - kTrailerLen - (trailer_ok ? pad : 0);
    for (uint8_t p = 0; trailer_ok && p < pad; ++p) {
      trailer_ok = plain[inner_len + p] == p + 1;
    }
    rte_mbuf* m = pkts[i];
    auto keep_inner = [&] {  // one segment, and the ESP packet inside its data: checked above
      narrow_single_segment(m, static_cast<uint16_t>(meta[i].esp_offset + kEspHeaderLen + kIvLen),
                            static_cast<uint16_t>(inner_len));
    };
    if (trailer_ok && dummy) {
      keep_inner();  // the caller reads a keepalive's payload; other dummies' is discarded
      outcome[i] = Outcome::kDummy;
      dummy_peer[ndummy++] = hits[i].peer;
      continue;
    }
    if (!trailer_ok || inner_len == 0 ||
        (plain[0] >> 4) != (next_header == net::kProtoIpInIp ? 4 : 6)) {
      reasons[i] = DropReason::kBadTrailer;
      continue;
    }
    keep_inner();
    outcome[i] = Outcome::kInner;
    peer_of[good++] = hits[i].peer;
  }
  flush_run();
  for (uint16_t d = 0; d < ndummy; ++d) peer_of[good + d] = dummy_peer[d];
  if (good == n) {  // all inner packets: in order as they are
    *dummies = 0;
    return n;
  }
  return sort_outcomes(pkts, reasons, outcome, n, dummies);
}

}  // namespace meshwire::dp::esp
