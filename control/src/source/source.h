// Where meshwire-controller reads the cluster's objects from, and where it
// publishes its own node's annotations: a folder of files (`dir:PATH`) or
// the Kubernetes API server (`kube`). The controller's loop is the same
// for both.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

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

  // How the watches of a Kubernetes source are going, per resource ("nodes",
  // "services", "endpointslices"), for metrics; empty for other sources. Any
  // thread.
  struct WatchStats {
    std::string resource;
    uint64_t lists = 0;         // completed lists (all pages)
    uint64_t relists_gone = 0;  // lists forced by 410 Gone
    uint64_t watches = 0;       // watch requests made (the first, and every restart)
    uint64_t events = 0;        // ADDED, MODIFIED, DELETED applied
    uint64_t errors = 0;        // failed requests and broken streams
  };
  virtual std::vector<WatchStats> watch_stats() const { return {}; }
};

// `dir:PATH`: the files of one folder, followed through inotify.
Result<std::unique_ptr<Source>> open_folder_source(const std::string& folder);

}  // namespace meshwire::control
