// kube_probe: the controller's Kubernetes source (list/watch client and its
// local copy) on its own, for the integration tests that run it against
// tests/integration/fake_apiserver.py. Prints one JSON line on stdout for
// every change it sees:
//   {"nodes": {"node1": {"annotations": {...}, "pod_cidrs": [...], "rv": "12"}},
//    "services": {"ns/name": ["10.96.0.10"]}, "endpoint_slices": {"ns/name": ["10.1.0.5", ...]}}
//   {"error": "..."}                       (snapshot not available)
//   {"patched": "node1"} / {"patch_error": "..."}  (after --patch)
// and the source's log on stderr. Runs until stdin is closed or --seconds.
#include <poll.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <map>
#include <string>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "source/kube_source.h"

using namespace meshwire::control;
using nlohmann::json;

namespace {

void emit(const json& j) {
  std::cout << j.dump() << std::endl;
}

bool stdin_closed() {
  pollfd p{0, POLLIN, 0};
  if (::poll(&p, 1, 0) <= 0) return false;
  char c;
  return ::read(0, &c, 1) <= 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"kube_probe: list/watch Nodes through meshwire-controller's Kubernetes source"};
  std::string kubeconfig, context, sa_dir = kServiceAccountDir, patch_node;
  std::vector<std::string> patch_kv;
  bool in_cluster = false;
  unsigned page_size = 500;
  double seconds = 60;
  app.add_option("--kubeconfig", kubeconfig);
  app.add_option("--kube-context", context);
  app.add_flag("--in-cluster", in_cluster, "KUBERNETES_SERVICE_HOST/PORT and --service-account-dir");
  app.add_option("--service-account-dir", sa_dir);
  app.add_option("--page-size", page_size);
  app.add_option("--patch-node", patch_node, "after the first list, PATCH these annotations onto this node");
  app.add_option("--annotation", patch_kv, "KEY=VALUE for --patch-node");
  app.add_option("--seconds", seconds);
  CLI11_PARSE(app, argc, argv);

  meshwire::dp::Result<KubeEndpoint> ep = meshwire::dp::make_error("give --kubeconfig or --in-cluster");
  if (in_cluster) {
    std::map<std::string, std::string> env;
    for (const char* n : {"KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT"}) {
      if (const char* v = std::getenv(n)) env[n] = v;
    }
    ep = in_cluster_endpoint(env, sa_dir);
  } else if (!kubeconfig.empty()) {
    ep = kubeconfig_endpoint(kubeconfig, context);
  }
  if (!ep.ok()) {
    std::cerr << "kube_probe: " << ep.error() << std::endl;
    return 2;
  }
  KubeSourceOptions options;
  options.page_size = page_size;
  options.log = [](const std::string& what) { std::cerr << "kube_probe: " << what << std::endl; };
  auto source = open_kube_source(std::move(*ep), options);
  const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  std::string last;
  bool patched = patch_node.empty();
  while (std::chrono::steady_clock::now() < end && !stdin_closed()) {
    auto snap = source->snapshot();
    json out;
    if (!snap.ok()) {
      out["error"] = snap.error();
    } else {
      out["nodes"] = json::object();
      for (const auto& [name, node] : snap->nodes) {
        json n;
        n["annotations"] = node.annotations;
        n["rv"] = node.resource_version;
        n["pod_cidrs"] = json::array();
        for (const auto& p : node.pod_cidrs) n["pod_cidrs"].push_back(meshwire::dp::format_prefix(p));
        out["nodes"][name] = n;
      }
      out["services"] = json::object();
      for (const auto& [key, svc] : snap->services) {
        json ips = json::array();
        for (const auto& ip : svc->cluster_ips) ips.push_back(meshwire::dp::format_ip(ip));
        out["services"][key] = ips;
      }
      out["endpoint_slices"] = json::object();
      for (const auto& [key, slice] : snap->endpoint_slices) {
        json ips = json::array();
        for (const auto& ep : slice->endpoints) {
          if (!ep.addresses.empty()) ips.push_back(meshwire::dp::format_ip(ep.addresses.front()));
        }
        out["endpoint_slices"][key] = ips;
      }
    }
    if (out.dump() != last) {
      emit(out);
      last = out.dump();
    }
    if (!patched && snap.ok()) {
      std::map<std::string, std::string> annotations;
      for (const std::string& kv : patch_kv) {
        const size_t eq = kv.find('=');
        annotations[kv.substr(0, eq)] = eq == std::string::npos ? "" : kv.substr(eq + 1);
      }
      auto s = source->publish_node_annotations(patch_node, annotations);
      emit(s.ok() ? json{{"patched", patch_node}} : json{{"patch_error", s.error()}});
      patched = true;
    }
    source->wait(100);
  }
  return 0;
}
