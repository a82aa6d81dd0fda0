#include "source/open.h"

#include <cstdlib>
#include <map>

#include "kube/config.h"
#include "source/kube_source.h"

namespace meshwire::control {

dp::Result<std::unique_ptr<Source>> open_source(const SourceSpec& spec) {
  if (spec.source.rfind("dir:", 0) == 0) {
    auto folder = open_folder_source(spec.source.substr(4));
    if (!folder.ok()) return dp::make_error("--source " + spec.source + ": " + folder.error());
    return folder;
  }
  if (spec.source != "kube") {
    return dp::make_error("--source " + spec.source + ": want dir:PATH or kube");
  }
  // As client-go looks: the flag, $KUBECONFIG, in-cluster, ~/.kube/config.
  std::map<std::string, std::string> env;
  for (const char* name : {"KUBECONFIG", "KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT", "HOME"}) {
    if (const char* v = std::getenv(name)) env[name] = v;
  }
  std::string kubeconfig = spec.kubeconfig;
  if (kubeconfig.empty() && !env["KUBECONFIG"].empty()) {
    kubeconfig = env["KUBECONFIG"].substr(0, env["KUBECONFIG"].find(':'));
  }
  dp::Result<KubeEndpoint> endpoint = dp::make_error("");
  if (kubeconfig.empty() && !env["KUBERNETES_SERVICE_HOST"].empty()) {
    endpoint = in_cluster_endpoint(env, spec.service_account_dir);
  } else {
    if (kubeconfig.empty()) kubeconfig = env["HOME"] + "/.kube/config";
    endpoint = kubeconfig_endpoint(kubeconfig, spec.kube_context);
  }
  if (!endpoint.ok()) return dp::make_error("--source kube: " + endpoint.error());
  KubeSourceOptions options;
  options.log = spec.log;
  return open_kube_source(std::move(*endpoint), std::move(options));
}

}  // namespace meshwire::control
