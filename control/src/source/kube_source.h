// `--source kube`: the cluster's objects from the Kubernetes API server,
// listed and watched on a thread of their own (kube/reflector.h) into a
// local copy that the controller's loop reads whole. This node's
// annotations are published by a JSON merge PATCH of its Node object.
//
// Lists and watches Nodes, Services and EndpointSlices (one thread each).
// Needs, as RBAC: nodes get, list, watch, patch; services and
// endpointslices (discovery.k8s.io) list, watch.
#pragma once

#include <memory>
#include <string>

#include "kube/config.h"
#include "source/source.h"

namespace meshwire::control {

struct KubeSourceOptions {
  unsigned page_size = 500;
  std::function<void(const std::string&)> log;  // problems with the API server, one line each
};

// Starts listing and watching at once; snapshot() fails until the first
// list has come.
std::unique_ptr<Source> open_kube_source(KubeEndpoint endpoint, KubeSourceOptions options);

}  // namespace meshwire::control
