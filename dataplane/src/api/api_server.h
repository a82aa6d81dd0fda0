// The control API (proto/meshwire/v1/dataplane.proto) served over gRPC on a
// Unix domain socket. Every call runs on the node's control thread (through
// Node::tasks()), so that only that thread builds, publishes, reads or frees
// a generation of the tables; gRPC's own threads only convert messages.
#pragma once

#include <memory>
#include <string>

#include <meshwire/dp/result.h>

namespace meshwire::dp {

class Node;

class ApiServer {
 public:
  // Listens on socket_path (mode 0600; a stale socket there is replaced,
  // anything else there is an error). node must outlive the server.
  static Result<std::unique_ptr<ApiServer>> start(const std::string& socket_path, Node& node);
  ~ApiServer();  // stops serving, waits for calls in flight, removes the socket
  ApiServer(const ApiServer&) = delete;
  ApiServer& operator=(const ApiServer&) = delete;

 private:
  struct Impl;
  explicit ApiServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace meshwire::dp
