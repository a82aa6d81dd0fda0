// Opens the source a `--source` flag names (`dir:PATH` or `kube`), as
// meshwire-controller and `meshwirectl doctor` take it.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include <meshwire/dp/result.h>

#include "kube/config.h"
#include "source/source.h"

namespace meshwire::control {

struct SourceSpec {
  std::string source;               // "dir:PATH" or "kube"
  std::string kubeconfig;           // --kubeconfig ("" : $KUBECONFIG, in-cluster, ~/.kube/config)
  std::string kube_context;         // --kube-context
  std::string service_account_dir = kServiceAccountDir;  // in-cluster: the token and CA
  std::function<void(const std::string&)> log;  // problems with the API server, one line each
};

// Errors begin with "--source VALUE: "; one that is neither form ends with
// ": want dir:PATH or kube" (a usage error).
dp::Result<std::unique_ptr<Source>> open_source(const SourceSpec& spec);

}  // namespace meshwire::control
