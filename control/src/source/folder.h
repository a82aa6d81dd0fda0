// The embedded source (`--source dir:PATH`): Kubernetes objects as files in
// one folder, as `kubectl get -o yaml|json` prints them (single objects,
// Lists, several YAML documents per file), followed as they change.
//
// Node objects with the same name in several files are merged the way a
// PATCH of annotations merges into the API server's object: annotations
// are united (one key set to two values is an error naming both files), and
// addresses and pod CIDRs come from the file that has them. That is how a
// controller publishes its node's public key in this mode: it writes the
// patch file meshwire-node-<name>.yaml beside the others.
#pragma once

#include <map>
#include <memory>
#include <string>

#include <meshwire/dp/result.h>

#include "kube/objects.h"

namespace meshwire::control {

struct ClusterObjects {
  std::map<std::string, NodeObject> nodes;  // by name
  // By "namespace/name". Shared, immutable: tens of thousands of them are
  // handed to every reconcile without being copied.
  std::map<std::string, std::shared_ptr<const ServiceObject>> services;
  std::map<std::string, std::shared_ptr<const EndpointSliceObject>> endpoint_slices;
};

// Reads every *.yaml, *.yml and *.json file of the folder (not hidden ones).
// Any error (a file that does not parse, an object that is not valid) fails
// the whole read, naming the file and the field: a half-read folder is never
// applied.
Result<ClusterObjects> load_folder(const std::string& folder);

// Writes (atomically: a temporary file renamed) the patch file that carries
// this node's annotations. Status names the file on error.
Status publish_node_annotations(const std::string& folder, const std::string& node,
                                const std::map<std::string, std::string>& annotations);

// Changes to the folder's files, through inotify (no polling).
class FolderWatch {
 public:
  static Result<FolderWatch> open(const std::string& folder);
  FolderWatch(FolderWatch&& other) noexcept;
  FolderWatch& operator=(FolderWatch&&) = delete;
  ~FolderWatch();
  // Waits up to timeout_ms for a change; true when one (or more) came. The
  // events themselves are drained: the caller reads the folder anew.
  bool wait(int timeout_ms);

 private:
  explicit FolderWatch(int fd) : fd_(fd) {}
  int fd_;
};

}  // namespace meshwire::control
