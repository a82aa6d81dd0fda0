// meshwire-perf-scrape: what a Prometheus scraping the node's /metrics asks
// of the data plane, without a controller or Kubernetes objects (the
// controller would also program the data plane, over the benchmark's SAs).
//
// Every --interval-ms, the scrape meshwire-controller --metrics-listen makes
// for each GET /metrics: metrics::scrape_dataplane (GetGeneration,
// ListInterfaces, GetCounters, GetDrops, ListPeers, ListSas, ListServices,
// one after the other) on one channel made at start, rendered to
// Prometheus's text by metrics::render_dataplane. The HTTP leg and the
// controller's own series touch no data plane and are left out.
//
// Runs until SIGINT or SIGTERM, then prints one JSON line:
//   {"scrapes":N,"failures":N,"last_error":"...","total_ms":X,"max_ms":X,"bytes":N}
// (bytes: of the last rendered exposition). Exit status 0, 2 on a usage error.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <string>
#include <thread>

#include <CLI/CLI.hpp>
#include <grpcpp/grpcpp.h>
#include <nlohmann/json.hpp>

#include "dataplane.grpc.pb.h"
#include "metrics/dataplane.h"
#include "metrics/exposition.h"

namespace {

std::atomic<bool> g_stop{false};
void on_signal(int) { g_stop.store(true); }

// Sleeps until `t`, waking early (within 20 ms) once asked to stop.
void sleep_until(std::chrono::steady_clock::time_point t) {
  while (!g_stop.load() && std::chrono::steady_clock::now() < t) {
    std::this_thread::sleep_for(std::min<std::chrono::steady_clock::duration>(
        t - std::chrono::steady_clock::now(), std::chrono::milliseconds(20)));
  }
}

}  // namespace

int main(int argc, char** argv) {
  namespace m = meshwire::ctl::metrics;
  CLI::App app{"meshwire-perf-scrape: the node's /metrics scrape of the data plane, on a timer"};
  std::string socket;
  unsigned interval_ms = 1000;
  app.add_option("--socket", socket, "the data plane's control API socket")->required();
  app.add_option("--interval-ms", interval_ms, "milliseconds from one scrape's start to the next")
      ->check(CLI::Range(1u, 3'600'000u));
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);

  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(256 << 20);  // as the controller's channel
  auto stub = meshwire::v1::Dataplane::NewStub(
      grpc::CreateCustomChannel("unix:" + socket, grpc::InsecureChannelCredentials(), args));
  uint64_t scrapes = 0, failures = 0;
  size_t bytes = 0;
  double total_ms = 0, max_ms = 0;
  std::string last_error;
  auto next = std::chrono::steady_clock::now();
  while (!g_stop.load()) {
    const auto t0 = std::chrono::steady_clock::now();
    auto snap = m::scrape_dataplane(*stub, std::chrono::seconds(2));  // the controller's deadline
    if (snap.ok()) {
      m::Exposition e;
      m::render_dataplane(e, *snap);
      bytes = e.text().size();
    } else {
      ++failures;
      last_error = snap.error();
    }
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    ++scrapes;
    total_ms += ms;
    max_ms = std::max(max_ms, ms);
    next += std::chrono::milliseconds(interval_ms);
    if (next < std::chrono::steady_clock::now()) next = std::chrono::steady_clock::now();  // late: no catching up
    sleep_until(next);
  }
  const nlohmann::json out = {{"scrapes", scrapes}, {"failures", failures}, {"last_error", last_error},
                              {"total_ms", total_ms}, {"max_ms", max_ms}, {"bytes", bytes}};
  std::printf("%s\n", out.dump().c_str());
  return 0;
}
