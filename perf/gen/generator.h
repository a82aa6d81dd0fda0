// meshwire-perf's traffic generator and sink: one polling lcore that offers
// frames at a set rate on one port and counts, times and checks what comes
// back on another (or the same) port, while answering ARP and IPv6 neighbour
// solicitations for every address on both ports (it plays all the pods and
// the peer node the system under test talks to).
//
// Threading: everything here runs on the one EAL lcore that owns the ports;
// nothing is shared with other threads.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <rte_mbuf.h>

#include <meshwire/dp/config.h>
#include <meshwire/dp/result.h>

#include "esp/gcm.h"
#include "esp/sa.h"
#include "gen/histogram.h"
#include "gen/traffic.h"

namespace meshwire::perf {

struct GenPort {
  std::string name;
  uint16_t port_id = 0;
  uint16_t queues = 1;
  uint8_t mac[6]{};
  std::string memif_socket;  // a memif client's server socket path ("socket=" of its device), else empty
};

inline constexpr uint16_t kNoLabel = 0xffff;

// An SA whose ESP the sink expects (the system under test's outbound SA).
struct SinkSa {
  uint32_t spi = 0;
  dp::esp::GcmKey key;
  bool esn = true;  // AAD carries the high 32 bits of the sequence number (always 0 here)
  // Index into Traffic::sink_labels: frames of SAs with the same label are
  // also tallied together (TrialResult::sinks). kNoLabel: not tallied apart.
  uint16_t label = kNoLabel;
  // Frames arriving later than this into the trial are not counted as
  // received but as ignored (the node they went to is dead). < 0: never.
  double until_s = -1;
  uint64_t until_tsc = UINT64_MAX;  // the same on the TSC, set by run_trial
};

// A low-rate stream sent beside a trial's main traffic: ESP dummy packets
// (next header 59, RFC 4303 2.6) that the generator encrypts with a peer
// node's SA, as that node's keepalives would be. Any authenticated ESP proves
// the peer alive to the system under test, which discards dummies.
struct Background {
  std::string name;
  uint16_t tx_port = 0;
  double rate_pps = 0;
  double until_s = -1;                // stop sending this long into the trial; < 0: never
  dp::esp::OutboundSa* sa = nullptr;  // owned by the Generator
  uint8_t dst_mac[6]{};
};

// A named traffic profile from the generator's configuration.
struct Traffic {
  std::string name;
  uint16_t tx_port = 0;  // index into the generator's ports
  uint16_t rx_port = 0;
  FlowSet flows;  // src_mac is filled from tx_port's MAC
  // Decrypt path: the generator encrypts each frame's IP packet as the peer
  // node would (ESP-in-UDP/4500, the data plane's own encrypt stage).
  bool encrypt = false;
  dp::esp::OutboundSa* out_sa = nullptr;  // owned by the Generator
  uint8_t out_dst_mac[6]{};
  // Encrypt path: received frames are ESP of these SAs, in UDP/4500 or
  // plain (protocol 50). Every sample_every-th (by ESP sequence number) is
  // decrypted to read its probe; the others count by SPI and length.
  std::vector<SinkSa*> sink_sas;  // owned by the Generator
  std::vector<std::string> sink_labels;  // what SinkSa::label indexes
  bool sink_udp = true;
  uint32_t sample_every = 1;
  std::vector<Background> background;  // sent during the trial beside the flows
};

struct TrialRequest {
  uint16_t traffic = 0;
  uint16_t frame_size = 64;  // 0: IMIX
  double rate_pps = 0;       // 0: as fast as the generator can
  double duration_s = 1;
  double drain_s = 0.1;      // keep receiving after the last frame
  double bin_s = 0.01;       // width of the received-per-bin timeline
  // Background streams only, for this long before the trial's clock starts
  // (and the flows with it): peers whose liveness the system under test
  // tracks are up again when the flows begin.
  double lead_s = 0;
};

// Per sink label (Traffic::sink_labels): frames of that label's SAs.
struct SinkTally {
  uint64_t received = 0;
  uint64_t ignored = 0;  // arrived after their SA's until_s
  uint64_t dummies = 0;  // ESP dummy packets (the system's keepalives)
  std::vector<uint64_t> rx_bins;
  std::vector<uint64_t> ignored_bins;
};

struct BackgroundTally {
  uint64_t attempted = 0;
  uint64_t sent = 0;
  uint64_t skipped = 0;  // owed while the generator's CPU was taken away
};

struct TrialResult {
  uint32_t trial = 0;
  double duration_s = 0;      // measured sending time
  uint64_t attempted = 0;     // frames the generator tried to send (sent + refused by a full TX ring)
  uint64_t sent = 0;
  uint64_t alloc_failed = 0;  // generator out of mbufs: not offered, counts against the generator
  uint64_t stalls = 0;        // loop iterations that took over 50 us (the generator's CPU was taken)
  uint64_t max_stall_ns = 0;
  uint64_t skipped = 0;       // frames the generator was too late to send (its backlog is capped at 64)
  uint64_t received = 0;      // expected frames of this trial that came back
  uint64_t sent_bytes = 0;    // frame bytes with FCS
  uint64_t received_bytes = 0;
  uint64_t stale = 0;         // probe of an earlier trial
  uint64_t unexpected = 0;    // anything else not ARP/ND
  uint64_t bad_icv = 0;       // sampled ESP whose ICV did not verify
  uint64_t ignored = 0;       // ESP of a sink SA after its until_s: not received
  uint64_t dummies = 0;       // ESP dummy packets (next header 59) of a sink SA: not received
  uint64_t control = 0;       // ARP/ND answered during the trial
  uint64_t reconnects = 0;    // ports restarted because their link went down
  uint16_t frame_size = 0;    // effective size (0 for IMIX)
  LatencyHistogram latency;   // ns, from the probes read
  std::vector<uint64_t> rx_bins;
  std::vector<uint64_t> tx_bins;            // frames attempted per bin
  std::vector<SinkTally> sinks;             // by Traffic::sink_labels
  std::vector<BackgroundTally> background;  // by Traffic::background
};

class Generator {
 public:
  // ports: set up and started by the caller; pool: their mbuf pool; engine:
  // this lcore's ipsec-mb manager.
  Generator(std::vector<GenPort> ports, rte_mempool* pool, std::unique_ptr<dp::esp::GcmEngine> engine);
  ~Generator();
  Generator(const Generator&) = delete;
  Generator& operator=(const Generator&) = delete;

  const std::vector<GenPort>& ports() const { return ports_; }
  const std::vector<Traffic>& traffics() const { return traffic_; }
  dp::esp::GcmEngine& engine() { return *engine_; }

  // Adds a profile (validated by the caller). Takes ownership of the SAs.
  void add_traffic(Traffic t, std::unique_ptr<dp::esp::OutboundSa> out_sa,
                   std::vector<std::unique_ptr<SinkSa>> sink_sas);
  // Takes ownership of a sender SA (a background stream's); returns it.
  dp::esp::OutboundSa* add_sender(std::unique_ptr<dp::esp::OutboundSa> sa);

  // Runs one trial: offers frames for duration_s at rate_pps (token bucket on
  // the TSC, bursts of up to 32) with the traffic's background streams beside
  // them (from lead_s before), then only receives for drain_s.
  TrialResult run_trial(const TrialRequest& request);

  // Polls every port once, answering ARP/ND and dropping the rest. Returns
  // the frames handled (0: the caller may sleep).
  unsigned poll_idle();

  uint64_t control_answered() const { return control_answered_; }

  // A memif client does not reconnect by itself when its server restarts: a
  // client port whose link went down is restarted once its server's socket
  // file is a new one (checked every 20 ms). Other ports are left alone (the
  // harness makes the generator the memif server, whose clients simply
  // reconnect). Returns restarts done.
  unsigned maintain_links(uint64_t now);
  uint64_t reconnects() const { return reconnects_; }

 private:
  struct TrialState;
  void receive(uint16_t port_index, rte_mbuf** pkts, uint16_t n, TrialState* st, uint64_t now);
  bool answer_control(uint16_t port_index, rte_mbuf* m);

  std::vector<GenPort> ports_;
  rte_mempool* pool_;
  std::unique_ptr<dp::esp::GcmEngine> engine_;
  std::vector<Traffic> traffic_;
  std::vector<std::unique_ptr<dp::esp::OutboundSa>> out_sas_;
  std::vector<std::unique_ptr<SinkSa>> sink_sas_;
  std::vector<Template> templates_;  // the current trial's: flows x sizes
  uint32_t trial_counter_ = 0;
  uint64_t control_answered_ = 0;
  uint64_t reconnects_ = 0;
  struct LinkWatch {
    bool was_up = false;
    uint64_t server_inode = 0;  // the memif server's socket file when the link was up
  };
  std::vector<uint64_t> next_link_check_;
  std::vector<LinkWatch> links_;
};

}  // namespace meshwire::perf
