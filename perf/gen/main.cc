// meshwire-perf: the benchmark traffic generator and sink. Started by the
// harness (perf/meshwire_perf) with a JSON configuration; it brings up its
// DPDK ports, prints one JSON "ready" line, then runs the JSON commands it
// reads on stdin, one per line, answering each with one JSON line:
//   {"cmd":"trial","traffic":NAME,"frame_size":64|"imix","rate_pps":R,
//    "duration_s":T,"drain_s":D,"bin_s":B,"lead_s":L}
//                                                offer R frames/s for T s (the
//                                                traffic's background streams
//                                                alone for L s before)
//   {"cmd":"info"}                               ports, traffic, counters
//   {"cmd":"quit"}
// Between commands it keeps answering ARP/ND on its ports. Everything DPDK
// logs goes to stderr, so stdout carries only the protocol.
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <deque>
#include <fstream>
#include <iostream>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <rte_cycles.h>
#include <rte_eal.h>
#include <rte_ethdev.h>
#include <rte_log.h>
#include <rte_mbuf.h>

#include "esp/sa.h"
#include "gen/generator.h"
#include "gen/generator_config.h"
#include "port/port.h"

namespace {

using json = nlohmann::json;
using namespace meshwire;

// Commands from the reader thread to the lcore.
class Inbox {
 public:
  void push(std::string line) {
    std::lock_guard<std::mutex> lock(mu_);
    lines_.push_back(std::move(line));
    pending_.store(true, std::memory_order_release);
  }
  bool pop(std::string* line) {
    if (!pending_.load(std::memory_order_acquire)) return false;
    std::lock_guard<std::mutex> lock(mu_);
    if (lines_.empty()) {
      pending_.store(false, std::memory_order_relaxed);
      return false;
    }
    *line = std::move(lines_.front());
    lines_.pop_front();
    if (lines_.empty()) pending_.store(false, std::memory_order_relaxed);
    return true;
  }

 private:
  std::mutex mu_;
  std::deque<std::string> lines_;
  std::atomic<bool> pending_{false};
};

void emit(const json& j) {
  std::string s = j.dump();
  s.push_back('\n');
  std::fwrite(s.data(), 1, s.size(), stdout);
  std::fflush(stdout);
}

std::string format_mac(const uint8_t mac[6]) {
  char buf[18];
  std::snprintf(buf, sizeof(buf), "%02x:%02x:%02x:%02x:%02x:%02x", mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]);
  return buf;
}

json latency_json(const perf::LatencyHistogram& h) {
  json j{{"samples", h.count()}};
  if (h.count() == 0) return j;
  j["min"] = h.min();
  j["mean"] = h.mean();
  j["p50"] = h.value_at_percentile(50);
  j["p90"] = h.value_at_percentile(90);
  j["p99"] = h.value_at_percentile(99);
  j["p99.9"] = h.value_at_percentile(99.9);
  j["max"] = h.max();
  j["saturated"] = h.saturated();
  return j;
}

json trial_json(const perf::TrialResult& r, const perf::TrialRequest& req, const perf::Traffic& traffic) {
  const double d = r.duration_s > 0 ? r.duration_s : 1e-9;
  const double loss = r.attempted == 0 ? 0.0
                      : r.received >= r.attempted
                          ? 0.0
                          : static_cast<double>(r.attempted - r.received) / static_cast<double>(r.attempted);
  json j{{"ok", true},
         {"trial", r.trial},
         {"traffic", traffic.name},
         {"frame_size", req.frame_size == 0 ? json("imix") : json(r.frame_size)},
         {"rate_pps", req.rate_pps},
         {"duration_s", r.duration_s},
         {"attempted", r.attempted},
         {"sent", r.sent},
         {"alloc_failed", r.alloc_failed},
         {"skipped", r.skipped},
         {"stalls", r.stalls},
         {"max_stall_ns", r.max_stall_ns},
         {"received", r.received},
         {"sent_bytes", r.sent_bytes},
         {"received_bytes", r.received_bytes},
         {"stale", r.stale},
         {"unexpected", r.unexpected},
         {"bad_icv", r.bad_icv},
         {"control", r.control},
         {"reconnects", r.reconnects},
         {"offered_pps", static_cast<double>(r.attempted) / d},
         {"received_pps", static_cast<double>(r.received) / d},
         {"loss", loss},
         {"latency_ns", latency_json(r.latency)},
         {"bin_s", req.bin_s},
         {"rx_bins", r.rx_bins},
         {"tx_bins", r.tx_bins}};
  if (req.lead_s > 0) j["lead_s"] = req.lead_s;
  if (!traffic.sink_labels.empty()) {
    j["ignored"] = r.ignored;
    j["dummies"] = r.dummies;
    json sinks = json::object();
    for (size_t i = 0; i < traffic.sink_labels.size(); ++i) {
      const perf::SinkTally& t = r.sinks[i];
      sinks[traffic.sink_labels[i]] = {{"received", t.received}, {"ignored", t.ignored}, {"dummies", t.dummies},
                                       {"rx_bins", t.rx_bins}, {"ignored_bins", t.ignored_bins}};
    }
    j["sinks"] = sinks;
  } else if (r.ignored != 0 || r.dummies != 0) {
    j["ignored"] = r.ignored;
    j["dummies"] = r.dummies;
  }
  if (!traffic.background.empty()) {
    json bg = json::array();
    for (size_t i = 0; i < traffic.background.size(); ++i) {
      const perf::BackgroundTally& b = r.background[i];
      bg.push_back({{"name", traffic.background[i].name}, {"attempted", b.attempted}, {"sent", b.sent},
                    {"skipped", b.skipped}});
    }
    j["background"] = bg;
  }
  return j;
}

json handle(perf::Generator& gen, const std::string& line, bool* quit) {
  json cmd;
  try {
    cmd = json::parse(line);
  } catch (const json::exception& e) {
    return json{{"ok", false}, {"error", std::string("command: not JSON: ") + e.what()}};
  }
  const std::string name = cmd.value("cmd", "");
  if (name == "quit") {
    *quit = true;
    return json{{"ok", true}};
  }
  if (name == "info") {
    json ports = json::array();
    for (const perf::GenPort& p : gen.ports()) {
      rte_eth_stats s{};
      rte_eth_stats_get(p.port_id, &s);
      ports.push_back({{"name", p.name},
                       {"mac", format_mac(p.mac)},
                       {"queues", p.queues},
                       {"ipackets", s.ipackets},
                       {"opackets", s.opackets},
                       {"imissed", s.imissed},
                       {"oerrors", s.oerrors}});
    }
    json traffic = json::array();
    for (const perf::Traffic& t : gen.traffics()) traffic.push_back(t.name);
    return json{{"ok", true},
                {"ports", ports},
                {"traffic", traffic},
                {"tsc_hz", rte_get_tsc_hz()},
                {"crypto_arch", std::string(gen.engine().arch())},
                {"control_answered", gen.control_answered()},
                {"reconnects", gen.reconnects()}};
  }
  if (name == "trial") {
    auto req = perf::parse_trial_request(cmd, gen.traffics());
    if (!req) return json{{"ok", false}, {"error", req.error()}};
    perf::TrialResult r = gen.run_trial(*req);
    return trial_json(r, *req, gen.traffics()[req->traffic]);
  }
  return json{{"ok", false}, {"error", "cmd: unknown command '" + name + "' (trial, info, quit)"}};
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"meshwire-perf: benchmark traffic generator and sink (driven by perf/meshwire_perf)"};
  std::string config_path;
  bool check_only = false;
  app.add_option("--config", config_path, "JSON configuration: eal, ports, traffic")->required();
  app.add_flag("--check", check_only, "validate the configuration and exit");
  CLI11_PARSE(app, argc, argv);

  std::ifstream in(config_path);
  if (!in) {
    std::fprintf(stderr, "meshwire-perf: --config: cannot open %s\n", config_path.c_str());
    return 2;
  }
  json doc;
  try {
    doc = json::parse(in);
  } catch (const json::exception& e) {
    std::fprintf(stderr, "meshwire-perf: --config: not JSON: %s\n", e.what());
    return 2;
  }
  auto config = perf::parse_generator_config(doc);
  if (!config) {
    std::fprintf(stderr, "meshwire-perf: %s\n", config.error().c_str());
    return 2;
  }
  if (check_only) {
    std::printf("meshwire-perf: configuration is valid\n");
    return 0;
  }

  rte_openlog_stream(stderr);
  std::vector<std::string> devices;
  for (const auto& p : config->ports) devices.push_back(p.device);
  if (!dp::init_eal("meshwire-perf", config->eal, devices)) return 1;

  int rc = 0;
  {
    unsigned mbufs = 16384;
    for (const auto& p : config->ports) mbufs += 2048u * p.queues;
    rte_mempool* pool =
        rte_pktmbuf_pool_create("gen_pool", mbufs, 256, 0, RTE_MBUF_DEFAULT_BUF_SIZE, static_cast<int>(rte_socket_id()));
    if (pool == nullptr) {
      std::fprintf(stderr, "meshwire-perf: memory: cannot create the mbuf pool: %s\n", rte_strerror(rte_errno));
      rte_eal_cleanup();
      return 1;
    }
    auto gen = perf::build_generator(*config, pool);
    if (!gen) {
      std::fprintf(stderr, "meshwire-perf: %s\n", gen.error().c_str());
      rte_eal_cleanup();
      return 1;
    }
    json ports = json::array();
    for (const perf::GenPort& p : (*gen)->ports()) ports.push_back({{"name", p.name}, {"mac", format_mac(p.mac)}});
    emit(json{{"event", "ready"}, {"ports", ports}, {"tsc_hz", rte_get_tsc_hz()},
              {"crypto_arch", std::string((*gen)->engine().arch())}});

    Inbox inbox;
    std::atomic<bool> eof{false};
    std::thread reader([&] {
      std::string line;
      while (std::getline(std::cin, line)) {
        if (!line.empty()) inbox.push(line);
      }
      eof.store(true, std::memory_order_release);
    });
    reader.detach();  // blocked in a read at exit; the process ends anyway

    bool quit = false;
    std::string line;
    while (!quit) {
      if (inbox.pop(&line)) {
        emit(handle(**gen, line, &quit));
        continue;
      }
      if (eof.load(std::memory_order_acquire)) break;
      if ((*gen)->poll_idle() == 0) usleep(200);
    }
    for (const perf::GenPort& p : (*gen)->ports()) {
      rte_eth_dev_stop(p.port_id);
      rte_eth_dev_close(p.port_id);
    }
  }
  rte_eal_cleanup();
  return rc;
}
