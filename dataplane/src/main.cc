// meshwire-dataplane: reads its YAML config, validates all of it, brings up
// DPDK, ports and workers, and forwards until SIGINT/SIGTERM.
#include <sched.h>
#include <sys/resource.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <rte_eal.h>

#include <meshwire/dp/config.h>

#include "api/api_server.h"
#include "app/node.h"
#include "port/port.h"
#include "telemetry/telemetry.h"

namespace {

// The control and API threads' nice value (the workers keep 0).
constexpr int kControlNice = 10;

std::atomic<bool> g_stop{false};

void on_signal(int) { g_stop.store(true); }

bool has_lcore_option(const std::vector<std::string>& args) {
  for (const std::string& a : args) {
    if (a == "-l" || a == "-c" || a == "--lcores" || a.rfind("--lcores=", 0) == 0 || a.rfind("-l", 0) == 0) return true;
  }
  return false;
}

// Without -l/--lcores in the config, lcores come from this process's CPU
// affinity (what the kubelet's CPU manager or taskset gave it): the main
// lcore and each worker get their own CPU when there are enough, otherwise
// all lcores float over the allowed CPUs.
std::string lcores_from_affinity(unsigned workers) {
  cpu_set_t set;
  CPU_ZERO(&set);
  std::vector<int> cpus;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    for (int c = 0; c < CPU_SETSIZE; ++c) {
      if (CPU_ISSET(c, &set)) cpus.push_back(c);
    }
  }
  if (cpus.empty()) cpus.push_back(0);
  std::string out;
  if (cpus.size() >= workers + 1) {
    for (unsigned l = 0; l <= workers; ++l) out += (l ? "," : "") + std::to_string(l) + "@" + std::to_string(cpus[l]);
    return out;
  }
  out = "(0-" + std::to_string(workers) + ")@(";
  for (size_t i = 0; i < cpus.size(); ++i) out += (i ? "," : "") + std::to_string(cpus[i]);
  return out + ")";
}


void announce_ready() {
  std::printf("meshwire-dataplane: ready\n");
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  using namespace meshwire::dp;
  CLI::App app{"meshwire-dataplane: encrypted east-west data plane on DPDK"};
  std::string config_path;
  bool check_only = false;
  std::string api_socket;
  LoadOptions load_options;
  app.add_option("-c,--config", config_path, "YAML configuration file")->required();
  app.add_option("--pod-annotations", load_options.pod_annotations,
                 "the pod's annotations as a downward API file (e.g. /etc/podinfo/annotations): where "
                 "\"network:NAME\" in the config finds Multus's network-status");
  app.add_option("--api-socket", api_socket,
                 "serve the control API (gRPC) on this Unix socket, e.g. /run/meshwire/api.sock");
  app.add_flag("--check", check_only, "validate the configuration and exit");
  app.set_version_flag("--version", "meshwire-dataplane 0.1.0");
  CLI11_PARSE(app, argc, argv);

  load_options.env = process_environment();
  Result<Config> config = load_config(config_path, load_options);
  if (!config.ok()) {
    std::fprintf(stderr, "meshwire-dataplane: %s: %s\n", config_path.c_str(), config.error().c_str());
    return 2;
  }
  if (check_only) {
    std::printf("meshwire-dataplane: %s: valid\n", config_path.c_str());
    return 0;
  }

  std::vector<std::string> eal = config->eal_args;
  if (!has_lcore_option(config->eal_args)) {
    eal.push_back("--lcores");
    eal.push_back(lcores_from_affinity(config->workers));
  }
  std::vector<std::string> devices;
  for (const PortConfig& p : config->ports) devices.push_back(p.device);
  if (!init_eal("meshwire-dataplane", eal, devices)) return 1;
  // The workers' threads exist now. This thread becomes the control
  // thread, and the API server's threads are started from it and inherit
  // its priority: below the workers, so that where a worker shares its CPU
  // with them (no isolated cores) an Apply takes longer instead of taking
  // the CPU from the fast path. With isolated cores it changes nothing.
  if (::setpriority(PRIO_PROCESS, static_cast<id_t>(::gettid()), kControlNice) != 0) {
    std::fprintf(stderr, "meshwire-dataplane: control thread priority: %s (going on)\n", std::strerror(errno));
  }

  int rc = 0;
  {
    auto node = Node::create(*config);
    // The tables hold the expanded keys now; the raw bytes need not stay in memory.
    wipe_keys(config->peers);
    if (!node.ok()) {
      std::fprintf(stderr, "meshwire-dataplane: %s: %s\n", config_path.c_str(), node.error().c_str());
      rc = 1;
    } else {
      std::signal(SIGINT, on_signal);
      std::signal(SIGTERM, on_signal);
      std::unique_ptr<ApiServer> api;
      if (!api_socket.empty()) {
        auto started = ApiServer::start(api_socket, **node);
        if (!started.ok()) {
          std::fprintf(stderr, "meshwire-dataplane: %s\n", started.error().c_str());
          rc = 1;
        } else {
          api = std::move(started.value());
        }
      }
      if (rc == 0) {
        telemetry_register(node->get());
        (*node)->run(g_stop, announce_ready);
        telemetry_unregister();
        api.reset();  // after run(): calls still waiting for the control thread were refused
        std::fprintf(stderr, "meshwire-dataplane: stopped\n");
      }
    }
  }
  rte_eal_cleanup();
  return rc;
}
