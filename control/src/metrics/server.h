// The node's /metrics over HTTP (libmicrohttpd, on its own thread: never in
// the controller's loop, never in the data plane). Each scrape calls
// `render`, which returns the exposition text.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include <meshwire/dp/result.h>

struct MHD_Daemon;

namespace meshwire::ctl::metrics {

class Server {
 public:
  using Render = std::function<std::string()>;
  // Listens on listen ("ADDRESS:PORT", "[IPV6]:PORT" or ":PORT" for every
  // address); GET /metrics answers render()'s text, anything else 404.
  static dp::Result<std::unique_ptr<Server>> start(const std::string& listen, Render render);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  uint16_t port() const { return port_; }  // the bound port (useful with port 0)

 private:
  Server() = default;
  MHD_Daemon* daemon_ = nullptr;
  Render render_;
  uint16_t port_ = 0;
};

}  // namespace meshwire::ctl::metrics
