// Where meshwire-controller reads the cluster's objects from, and where it
// publishes its own node's annotations: a folder of files (`dir:PATH`) or
// the Kubernetes API server (`kube`). The controller's loop is the same
// for both.
#pragma once

#include <map>
#include <memory>
#include <string>

#include <meshwire/dp/result.h>

#include "source/folder.h"

namespace meshwire::control {

// What changed, as wait() reports it.
enum Changed : unsigned {
  kNodesChanged = 1,
  kServicesChanged = 2,
  kEndpointSlicesChanged = 4,
  kAllChanged = 7,
};

class Source {
 public:
  virtual ~Source() = default;
  // "folder /etc/meshwire/objects", "kubeconfig /root/.kube/config, context x": for messages.
  virtual std::string describe() const = 0;
  // The cluster's objects as they are now, whole, or an error naming the
  // file or object at fault (or saying the first list has not come yet).
  virtual Result<ClusterObjects> snapshot() = 0;
  // Sets these annotations on this node's Node object (a merge: others stay).
  virtual Status publish_node_annotations(const std::string& node,
                                          const std::map<std::string, std::string>& annotations) = 0;
  // Waits up to timeout_ms for a change; the kinds of objects that changed
  // since the last call (Changed bits), 0 when none did.
  virtual unsigned wait(int timeout_ms) = 0;
};

// `dir:PATH`: the files of one folder, followed through inotify.
Result<std::unique_ptr<Source>> open_folder_source(const std::string& folder);

}  // namespace meshwire::control
