#include "gen/generator.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include <sys/stat.h>

#include <rte_cycles.h>
#include <rte_ethdev.h>

#include "esp/encrypt.h"
#include "net/arp.h"
#include "net/nd.h"
#include "net/parse.h"
#include "route/tables.h"

namespace meshwire::perf {
namespace {

constexpr uint16_t kBurst = 32;
// Frames the rate may owe before the generator gives them up (see run_trial).
constexpr uint64_t kMaxBacklog = 2 * kBurst;
constexpr uint8_t kIcmpv6RouterSolicitation = 133;
constexpr uint8_t kIcmpv6Redirect = 137;
constexpr uint8_t kIcmpv6Mld2Report = 143;
constexpr uint8_t kNextHeaderNone = 59;  // an ESP dummy packet's (RFC 4303 2.6)
constexpr uint16_t kBackgroundPayloadLen = 16;  // as a data plane keepalive's

uint16_t imix_index(uint64_t i) {
  const uint16_t size = kImixPattern[i % kImixPattern.size()];
  return static_cast<uint16_t>(std::find(kImixSizes.begin(), kImixSizes.end(), size) - kImixSizes.begin());
}

}  // namespace

struct Generator::TrialState {
  const Traffic* traffic;
  TrialResult* result;
  uint64_t t0;
  uint64_t bin_cycles;
  double ns_per_cycle;
};

Generator::Generator(std::vector<GenPort> ports, rte_mempool* pool, std::unique_ptr<dp::esp::GcmEngine> engine)
    : ports_(std::move(ports)), pool_(pool), engine_(std::move(engine)), next_link_check_(ports_.size(), 0),
      links_(ports_.size()) {}

namespace {

// Identity of a memif socket file (its change time in ns: a new file may
// reuse the inode number of a deleted one), 0 if there is none.
uint64_t socket_inode(const std::string& path) {
  struct stat st;
  if (path.empty() || stat(path.c_str(), &st) != 0) return 0;
  return static_cast<uint64_t>(st.st_ctim.tv_sec) * 1'000'000'000u + static_cast<uint64_t>(st.st_ctim.tv_nsec) + 1;
}

}  // namespace

unsigned Generator::maintain_links(uint64_t now) {
  unsigned restarted = 0;
  for (size_t p = 0; p < ports_.size(); ++p) {
    if (now < next_link_check_[p]) continue;
    next_link_check_[p] = now + rte_get_tsc_hz() / 50;
    rte_eth_link link{};
    if (rte_eth_link_get_nowait(ports_[p].port_id, &link) != 0) continue;
    LinkWatch& w = links_[p];
    if (link.link_status == RTE_ETH_LINK_UP) {
      if (!w.was_up) w.server_inode = socket_inode(ports_[p].memif_socket);
      w.was_up = true;
      continue;
    }
    // Only a link that was up and went down: at start the memif client
    // connects by itself. And only once a new server listens (a new socket
    // file): DPDK 22.11's memif client does not survive start attempts that
    // fail, nor a restart in the middle of a handshake (seen: segfaults, and
    // in the server a panic on epoll_ctl with a closed fd).
    if (!w.was_up || ports_[p].memif_socket.empty()) continue;  // only memif clients need this
    const uint64_t inode = socket_inode(ports_[p].memif_socket);
    if (inode == 0 || inode == w.server_inode) continue;
    rte_eth_dev_stop(ports_[p].port_id);
    if (rte_eth_dev_start(ports_[p].port_id) == 0) {
      ++restarted;
      ++reconnects_;
    }
    // If the link is still down after the handshake's time (the server's
    // socket exists from its probe on, but its port starts later), retry.
    w.server_inode = 0;
    next_link_check_[p] = now + rte_get_tsc_hz() / 5;  // a local handshake takes milliseconds
  }
  return restarted;
}

Generator::~Generator() {
  for (auto& sa : out_sas_) dp::esp::wipe(&sa->key);
  for (auto& sa : sink_sas_) dp::esp::wipe(&sa->key);
}

void Generator::add_traffic(Traffic t, std::unique_ptr<dp::esp::OutboundSa> out_sa,
                            std::vector<std::unique_ptr<SinkSa>> sink_sas) {
  std::memcpy(t.flows.src_mac, ports_[t.tx_port].mac, 6);
  if (out_sa) {
    t.out_sa = out_sa.get();
    out_sas_.push_back(std::move(out_sa));
  }
  t.sink_sas.clear();
  for (auto& sa : sink_sas) {
    t.sink_sas.push_back(sa.get());
    sink_sas_.push_back(std::move(sa));
  }
  traffic_.push_back(std::move(t));
}

dp::esp::OutboundSa* Generator::add_sender(std::unique_ptr<dp::esp::OutboundSa> sa) {
  out_sas_.push_back(std::move(sa));
  return out_sas_.back().get();
}

bool Generator::answer_control(uint16_t port_index, rte_mbuf* m) {
  const uint8_t* frame = rte_pktmbuf_mtod(m, const uint8_t*);
  const size_t len = m->data_len;
  dp::net::PacketInfo info;
  if (dp::net::parse_frame(frame, len, &info) != dp::net::ParseResult::kOk) return false;
  const GenPort& port = ports_[port_index];
  uint8_t reply[128];
  size_t reply_len = 0;
  if (info.ether_type == dp::net::kEtherTypeArp) {
    dp::net::ArpInfo arp;
    if (dp::net::parse_arp(frame, len, info.l3_offset, &arp) && arp.op == dp::net::kArpOpRequest) {
      reply_len = dp::net::build_arp_reply(arp, port.mac, reply, sizeof(reply));
    }
  } else if (info.ether_type == dp::net::kEtherTypeIpv6 && info.l4_proto == dp::net::kProtoIcmpv6 && info.has_l4) {
    const uint8_t type = frame[info.l4_offset];
    if ((type < kIcmpv6RouterSolicitation || type > kIcmpv6Redirect) && type != kIcmpv6Mld2Report) return false;
    dp::net::NdInfo nd;
    if (dp::net::parse_nd(frame, len, info, &nd) && nd.type == dp::net::kNdNeighborSolicitation) {
      static constexpr uint8_t kUnspecified[16] = {};
      if (std::memcmp(nd.src_ip, kUnspecified, 16) != 0) {
        uint8_t dst_mac[6];
        if (nd.has_lladdr) {
          std::memcpy(dst_mac, nd.lladdr, 6);
        } else {
          std::memcpy(dst_mac, frame + 6, 6);
        }
        reply_len = dp::net::build_na(port.mac, dst_mac, nd.target, nd.src_ip, nd.target, true, false, reply,
                                      sizeof(reply));
      }
    }
  } else {
    return false;
  }
  if (reply_len != 0) {
    rte_mbuf* r = rte_pktmbuf_alloc(pool_);
    if (r != nullptr) {
      std::memcpy(rte_pktmbuf_append(r, static_cast<uint16_t>(reply_len)), reply, reply_len);
      if (rte_eth_tx_burst(port.port_id, 0, &r, 1) != 1) rte_pktmbuf_free(r);
      ++control_answered_;
    }
  }
  return true;
}

unsigned Generator::poll_idle() {
  unsigned handled = 0;
  maintain_links(rte_rdtsc());
  rte_mbuf* pkts[kBurst];
  for (uint16_t p = 0; p < ports_.size(); ++p) {
    for (uint16_t q = 0; q < ports_[p].queues; ++q) {
      const uint16_t n = rte_eth_rx_burst(ports_[p].port_id, q, pkts, kBurst);
      for (uint16_t i = 0; i < n; ++i) answer_control(p, pkts[i]);
      rte_pktmbuf_free_bulk(pkts, n);
      handled += n;
    }
  }
  return handled;
}

void Generator::receive(uint16_t port_index, rte_mbuf** pkts, uint16_t n, TrialState* st, uint64_t now) {
  const Traffic& tr = *st->traffic;
  TrialResult& res = *st->result;
  uint64_t bin = (now - st->t0) / st->bin_cycles;
  if (bin >= res.rx_bins.size()) bin = res.rx_bins.size() - 1;
  const auto record = [&](const Probe& probe) {
    if (probe.trial != res.trial) {
      ++res.stale;
      return false;
    }
    const uint64_t cycles = now > probe.tsc ? now - probe.tsc : 0;  // TSC is invariant; guard anyway
    res.latency.record(static_cast<uint64_t>(static_cast<double>(cycles) * st->ns_per_cycle));
    return true;
  };

  dp::esp::GcmOp ops[kBurst];
  uint8_t aad[kBurst][dp::esp::kAadLen];
  const SinkSa* op_sa[kBurst];
  bool op_short[kBurst];  // too short for a packet of ours: decrypted to see if it is a dummy
  uint16_t nops = 0;

  for (uint16_t i = 0; i < n; ++i) {
    rte_mbuf* m = pkts[i];
    if (answer_control(port_index, m)) {
      ++res.control;
      continue;
    }
    uint8_t* frame = rte_pktmbuf_mtod(m, uint8_t*);
    const size_t len = m->data_len;
    if (port_index != tr.rx_port || m->nb_segs != 1) {
      ++res.unexpected;
      continue;
    }
    if (tr.sink_sas.empty()) {
      Probe probe;
      if (!read_probe_frame(frame, len, &probe)) {
        ++res.unexpected;
      } else if (record(probe)) {
        ++res.received;
        res.received_bytes += len + kFcsLen;
        ++res.rx_bins[bin];
      }
      continue;
    }
    // ESP from the system under test.
    dp::net::PacketInfo info;
    if (dp::net::parse_frame(frame, len, &info) != dp::net::ParseResult::kOk) {
      ++res.unexpected;
      continue;
    }
    uint16_t esp_offset = 0, esp_len = 0;
    if (tr.sink_udp) {
      dp::net::EspView view;
      if (info.l4_proto != dp::net::kProtoUdp || !info.has_l4 ||
          dp::net::load_be16(frame + info.l4_offset + 2) != dp::net::kEspInUdpPort ||
          dp::net::classify_esp_in_udp(frame, info.l3_offset + info.l3_len, info.l4_offset, &view) !=
              dp::net::EspClass::kEsp) {
        ++res.unexpected;
        continue;
      }
      esp_offset = view.esp_offset;
      esp_len = view.esp_len;
    } else {
      esp_offset = info.l4_offset;
      esp_len = static_cast<uint16_t>(info.l3_offset + info.l3_len - info.l4_offset);
      if (info.l4_proto != dp::net::kProtoEsp || esp_len < dp::net::kEspMinLen) {
        ++res.unexpected;
        continue;
      }
    }
    const uint8_t* esp = frame + esp_offset;
    const uint32_t spi = dp::net::load_be32(esp);
    const uint32_t seq = dp::net::load_be32(esp + 4);
    const SinkSa* sa = nullptr;
    for (const SinkSa* s : tr.sink_sas) {
      if (s->spi == spi) sa = s;
    }
    if (sa == nullptr) {
      ++res.unexpected;
      continue;
    }
    SinkTally* tally = sa->label == kNoLabel ? nullptr : &res.sinks[sa->label];
    // esp_len >= kEspMinLen (classify_esp_in_udp, or checked above): no underflow.
    const uint32_t payload_len = esp_len - dp::esp::kEspHeaderLen - dp::esp::kIvLen - dp::esp::kIcvLen;
    const bool too_short = payload_len < kMinProbePacketLen + 2;  // + pad length and next header
    if (!too_short) {
      if (now >= sa->until_tsc) {  // its node is dead: lost
        ++res.ignored;
        if (tally != nullptr) {
          ++tally->ignored;
          ++tally->ignored_bins[bin];
        }
        continue;
      }
      ++res.received;
      res.received_bytes += len + kFcsLen;
      ++res.rx_bins[bin];
      if (tally != nullptr) {
        ++tally->received;
        ++tally->rx_bins[bin];
      }
      if (seq % tr.sample_every != 0) continue;
    }
    dp::esp::GcmOp& op = ops[nops];
    dp::esp::prepare_esp_op(op, &sa->key, frame + esp_offset, payload_len, spi, seq, aad[nops]);
    if (!sa->esn) {  // RFC 4106 without ESN: SPI || 32-bit sequence number
      dp::net::store_be32(aad[nops] + 4, seq);
      op.aad_len = 8;
    }
    op_sa[nops] = sa;
    op_short[nops] = too_short;
    ++nops;
  }
  if (nops != 0) {
    dp::esp::gcm_decrypt_burst(*engine_, ops, nops);
    for (uint16_t k = 0; k < nops; ++k) {
      Probe probe;
      if (!ops[k].ok) {
        ++res.bad_icv;
      } else if (op_short[k]) {
        // The trailer ends the plaintext: pad length, next header.
        if (ops[k].data[ops[k].len - 1] == kNextHeaderNone) {
          ++res.dummies;
          if (op_sa[k]->label != kNoLabel) ++res.sinks[op_sa[k]->label].dummies;
        } else {
          ++res.unexpected;
        }
      } else if (read_probe_ip(ops[k].data, ops[k].len, &probe)) {
        record(probe);
      }
    }
  }
  rte_pktmbuf_free_bulk(pkts, n);
}

TrialResult Generator::run_trial(const TrialRequest& req) {
  TrialResult res;
  res.trial = ++trial_counter_;
  const Traffic& tr = traffic_[req.traffic];
  const GenPort& tx = ports_[tr.tx_port];
  const uint8_t family = tr.flows.src.family;

  // Templates: flow-major, one per size.
  std::vector<uint16_t> sizes;
  if (req.frame_size == 0) {
    for (uint16_t s : kImixSizes) sizes.push_back(effective_frame_size(s, family, tr.flows.l4));
  } else {
    sizes.push_back(effective_frame_size(req.frame_size, family, tr.flows.l4));
    res.frame_size = sizes[0];
  }
  const uint32_t nflows = std::max<uint32_t>(tr.flows.flows, 1);
  const uint16_t nsizes = static_cast<uint16_t>(sizes.size());
  templates_.resize(static_cast<size_t>(nflows) * nsizes);
  for (uint32_t f = 0; f < nflows; ++f) {
    const Flow flow = make_flow(tr.flows, f);
    for (uint16_t k = 0; k < nsizes; ++k) build_template(flow, sizes[k], &templates_[f * nsizes + k]);
  }

  const uint64_t hz = rte_get_tsc_hz();
  const double cycles_to_pkts = req.rate_pps / static_cast<double>(hz);
  const uint64_t send_cycles = static_cast<uint64_t>(req.duration_s * static_cast<double>(hz));
  const uint64_t drain_cycles = static_cast<uint64_t>(req.drain_s * static_cast<double>(hz));
  const uint64_t lead_cycles = static_cast<uint64_t>(req.lead_s * static_cast<double>(hz));
  TrialState st{&tr, &res, 0, std::max<uint64_t>(static_cast<uint64_t>(req.bin_s * static_cast<double>(hz)), 1),
                1e9 / static_cast<double>(hz)};
  const size_t nbins = (send_cycles + drain_cycles) / st.bin_cycles + 1;
  res.rx_bins.assign(nbins, 0);
  res.tx_bins.assign(nbins, 0);
  res.sinks.resize(tr.sink_labels.size());
  for (SinkTally& t : res.sinks) {
    t.rx_bins.assign(nbins, 0);
    t.ignored_bins.assign(nbins, 0);
  }

  dp::esp::EncryptContext ectx{};
  std::memcpy(ectx.src_mac, tx.mac, 6);
  const uint64_t out_mac = dp::pack_mac(tr.out_dst_mac);
  uint64_t dst_macs[kBurst];
  dp::esp::OutboundSa* sas[kBurst];
  for (uint16_t i = 0; i < kBurst; ++i) {
    dst_macs[i] = out_mac;
    sas[i] = tr.out_sa;
  }
  dp::DropReason reasons[kBurst];
  std::vector<uint64_t> per_queue(tx.queues, 0);
  uint64_t pkt_index = 0;
  uint32_t burst_no = 0;
  uint32_t loops = 0;
  rte_mbuf* pkts[kBurst];
  rte_mbuf* rx[kBurst];

  // Background streams: each its own token bucket from the start of the
  // lead, until its until_s into the trial.
  struct BackgroundState {
    const Background* stream;
    dp::esp::EncryptContext ectx;
    uint64_t until_tsc;
    double cycles_to_pkts;
  };
  std::vector<BackgroundState> bg;
  res.background.resize(tr.background.size());
  const uint64_t lead_start = rte_rdtsc();
  const uint64_t t0 = lead_start + lead_cycles;
  for (const Background& b : tr.background) {
    BackgroundState s{&b, {}, b.until_s < 0 ? UINT64_MAX : t0 + static_cast<uint64_t>(b.until_s * static_cast<double>(hz)),
                      b.rate_pps / static_cast<double>(hz)};
    std::memcpy(s.ectx.src_mac, ports_[b.tx_port].mac, 6);
    bg.push_back(s);
  }
  for (SinkSa* sa : tr.sink_sas) {
    sa->until_tsc = sa->until_s < 0 ? UINT64_MAX : t0 + static_cast<uint64_t>(sa->until_s * static_cast<double>(hz));
  }
  const auto send_background = [&](uint64_t now) {
    for (size_t k = 0; k < bg.size(); ++k) {
      BackgroundState& b = bg[k];
      BackgroundTally& bt = res.background[k];
      if (now >= b.until_tsc) continue;
      uint64_t due = static_cast<uint64_t>(static_cast<double>(now - lead_start) * b.cycles_to_pkts) - bt.skipped;
      if (due > bt.attempted + kMaxBacklog) {
        bt.skipped += due - bt.attempted - kMaxBacklog;
        due = bt.attempted + kMaxBacklog;
      }
      if (due <= bt.attempted) continue;
      const uint16_t n = static_cast<uint16_t>(std::min<uint64_t>(kBurst, due - bt.attempted));
      rte_mbuf* bp[kBurst];
      if (rte_pktmbuf_alloc_bulk(pool_, bp, n) != 0) {
        res.alloc_failed += n;
        continue;
      }
      dp::esp::OutboundSa* bsas[kBurst];
      uint64_t bmacs[kBurst];
      const uint64_t mac = dp::pack_mac(b.stream->dst_mac);
      for (uint16_t i = 0; i < n; ++i) {
        std::memset(rte_pktmbuf_append(bp[i], kBackgroundPayloadLen), 0, kBackgroundPayloadLen);
        bsas[i] = b.stream->sa;
        bmacs[i] = mac;
      }
      const uint16_t ready = dp::esp::encrypt_dummy_burst(*engine_, b.ectx, bp, bsas, bmacs, n, reasons);
      if (ready != n) {
        res.alloc_failed += n - ready;
        rte_pktmbuf_free_bulk(bp + ready, n - ready);
      }
      const uint16_t sent = rte_eth_tx_burst(ports_[b.stream->tx_port].port_id, 0, bp, ready);
      if (sent != ready) rte_pktmbuf_free_bulk(bp + sent, ready - sent);
      bt.attempted += ready;
      bt.sent += sent;
    }
  };

  const auto poll_rx = [&](uint64_t now) {
    for (uint16_t p = 0; p < ports_.size(); ++p) {
      for (uint16_t q = 0; q < ports_[p].queues; ++q) {
        const uint16_t n = rte_eth_rx_burst(ports_[p].port_id, q, rx, kBurst);
        if (n != 0) receive(p, rx, n, &st, now);
      }
    }
  };

  uint64_t now = lead_start;
  // The lead: background only; what arrives is answered (ARP/ND) or dropped.
  while (now < t0) {
    send_background(now);
    for (uint16_t p = 0; p < ports_.size(); ++p) {
      for (uint16_t q = 0; q < ports_[p].queues; ++q) {
        const uint16_t n = rte_eth_rx_burst(ports_[p].port_id, q, rx, kBurst);
        for (uint16_t i = 0; i < n; ++i) answer_control(p, rx[i]);
        rte_pktmbuf_free_bulk(rx, n);
      }
    }
    now = rte_rdtsc();
    if ((++loops & 1023) == 0) res.reconnects += maintain_links(now);
  }

  const uint64_t stall_cycles = hz / 20000;  // 50 us: one loop normally takes well under 5
  st.t0 = t0;
  const uint64_t t_end = t0 + send_cycles;
  now = std::max(now, t0);
  while (now < t_end) {
    uint64_t due = req.rate_pps > 0 ? static_cast<uint64_t>(static_cast<double>(now - t0) * cycles_to_pkts) - res.skipped
                                    : res.attempted + kBurst;
    if (due > res.attempted + kMaxBacklog) {
      // The generator fell behind (its CPU was taken away): sending the
      // backlog at full speed would be a burst the rate never asked for.
      res.skipped += due - res.attempted - kMaxBacklog;
      due = res.attempted + kMaxBacklog;
    }
    if (due > res.attempted) {
      const uint16_t n = static_cast<uint16_t>(std::min<uint64_t>(kBurst, due - res.attempted));
      const uint16_t q = static_cast<uint16_t>(burst_no++ % tx.queues);
      if (rte_pktmbuf_alloc_bulk(pool_, pkts, n) != 0) {
        res.alloc_failed += n;
      } else {
        const Probe probe{kProbeMagic, res.trial, now};
        for (uint16_t i = 0; i < n; ++i) {
          const uint32_t flow = static_cast<uint32_t>((per_queue[q]++ * tx.queues + q) % nflows);
          const uint16_t k = nsizes == 1 ? 0 : imix_index(pkt_index++);
          const Template& t = templates_[flow * nsizes + k];
          rte_mbuf* m = pkts[i];
          uint8_t* data = rte_pktmbuf_mtod(m, uint8_t*);
          if (tr.encrypt) {  // the IP packet only: encrypt_burst adds the outer headers
            const uint16_t ip_len = static_cast<uint16_t>(t.len - dp::net::kEtherHdrLen);
            std::memcpy(data, t.bytes.data() + dp::net::kEtherHdrLen, ip_len);
            stamp_probe(data - dp::net::kEtherHdrLen, t, probe);
            m->data_len = ip_len;
          } else {
            std::memcpy(data, t.bytes.data(), t.len);
            stamp_probe(data, t, probe);
            m->data_len = t.len;
          }
          m->pkt_len = m->data_len;
          res.sent_bytes += t.frame_size;
        }
        uint16_t ready = n;
        if (tr.encrypt) {
          ready = dp::esp::encrypt_burst(*engine_, ectx, pkts, sas, dst_macs, n, reasons);
          if (ready != n) {
            res.alloc_failed += n - ready;
            rte_pktmbuf_free_bulk(pkts + ready, n - ready);
          }
        }
        const uint16_t sent = rte_eth_tx_burst(tx.port_id, q, pkts, ready);
        if (sent != ready) rte_pktmbuf_free_bulk(pkts + sent, ready - sent);
        res.attempted += ready;
        res.sent += sent;
        res.tx_bins[std::min<uint64_t>((now - t0) / st.bin_cycles, nbins - 1)] += ready;
      }
    }
    if (!bg.empty()) send_background(now);
    poll_rx(now);
    const uint64_t prev = now;
    now = rte_rdtsc();
    if (now - prev > stall_cycles) {
      ++res.stalls;
      res.max_stall_ns = std::max(res.max_stall_ns, static_cast<uint64_t>(static_cast<double>(now - prev) * st.ns_per_cycle));
    }
    if ((++loops & 1023) == 0) res.reconnects += maintain_links(now);
  }
  res.duration_s = static_cast<double>(now - t0) / static_cast<double>(hz);
  const uint64_t t_stop = now + drain_cycles;
  while (now < t_stop) {
    poll_rx(now);
    now = rte_rdtsc();
    if ((++loops & 1023) == 0) res.reconnects += maintain_links(now);
  }
  return res;
}

}  // namespace meshwire::perf
