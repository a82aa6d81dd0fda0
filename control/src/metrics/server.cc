#include "metrics/server.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstring>

namespace meshwire::ctl::metrics {

namespace {

constexpr const char* kContentType = "text/plain; version=0.0.4; charset=utf-8";

MHD_Result respond(MHD_Connection* c, unsigned status, const std::string& body, const char* type) {
  MHD_Response* r = MHD_create_response_from_buffer(body.size(), const_cast<char*>(body.data()), MHD_RESPMEM_MUST_COPY);
  if (!r) return MHD_NO;
  MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
  const MHD_Result ok = MHD_queue_response(c, status, r);
  MHD_destroy_response(r);
  return ok;
}

MHD_Result on_request(void* cls, MHD_Connection* c, const char* url, const char* method, const char*,
                      const char*, size_t*, void**) {
  const auto& render = *static_cast<const Server::Render*>(cls);
  if (std::strcmp(method, "GET") != 0 && std::strcmp(method, "HEAD") != 0) {
    return respond(c, MHD_HTTP_METHOD_NOT_ALLOWED, "GET /metrics\n", "text/plain");
  }
  if (std::strcmp(url, "/metrics") != 0) return respond(c, MHD_HTTP_NOT_FOUND, "GET /metrics\n", "text/plain");
  return respond(c, MHD_HTTP_OK, render(), kContentType);
}

// "ADDRESS:PORT", "[IPV6]:PORT" or ":PORT".
dp::Result<sockaddr_storage> parse_listen(const std::string& listen, socklen_t* len) {
  sockaddr_storage ss{};
  const size_t colon = listen.rfind(':');
  if (colon == std::string::npos) return dp::make_error("--metrics-listen " + listen + ": want ADDRESS:PORT");
  std::string host = listen.substr(0, colon);
  const std::string port_text = listen.substr(colon + 1);
  char* end = nullptr;
  const unsigned long port = std::strtoul(port_text.c_str(), &end, 10);
  if (port_text.empty() || *end != '\0' || port > 65535) {
    return dp::make_error("--metrics-listen " + listen + ": the port must be 0..65535");
  }
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  if (host.empty() || host.find(':') != std::string::npos) {
    auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
    a->sin6_family = AF_INET6;
    a->sin6_port = htons(static_cast<uint16_t>(port));
    a->sin6_addr = in6addr_any;
    if (!host.empty() && inet_pton(AF_INET6, host.c_str(), &a->sin6_addr) != 1) {
      return dp::make_error("--metrics-listen " + listen + ": " + host + " is not an IP address");
    }
    *len = sizeof(sockaddr_in6);
  } else {
    auto* a = reinterpret_cast<sockaddr_in*>(&ss);
    a->sin_family = AF_INET;
    a->sin_port = htons(static_cast<uint16_t>(port));
    if (inet_pton(AF_INET, host.c_str(), &a->sin_addr) != 1) {
      return dp::make_error("--metrics-listen " + listen + ": " + host + " is not an IP address");
    }
    *len = sizeof(sockaddr_in);
  }
  return ss;
}

}  // namespace

dp::Result<std::unique_ptr<Server>> Server::start(const std::string& listen, Render render) {
  socklen_t len = 0;
  auto addr = parse_listen(listen, &len);
  if (!addr.ok()) return dp::make_error(addr.error());
  std::unique_ptr<Server> s(new Server());
  s->render_ = std::move(render);
  unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG;
  if (addr->ss_family == AF_INET6) flags |= MHD_USE_IPv6 | MHD_USE_DUAL_STACK;
  s->daemon_ = MHD_start_daemon(flags, 0, nullptr, nullptr, &on_request, &s->render_, MHD_OPTION_SOCK_ADDR,
                                reinterpret_cast<sockaddr*>(&addr.value()), MHD_OPTION_CONNECTION_LIMIT, 16u,
                                MHD_OPTION_CONNECTION_TIMEOUT, 10u, MHD_OPTION_END);
  if (!s->daemon_) return dp::make_error("--metrics-listen " + listen + ": cannot listen there (in use?)");
  const MHD_DaemonInfo* info = MHD_get_daemon_info(s->daemon_, MHD_DAEMON_INFO_BIND_PORT);
  s->port_ = info ? info->port : 0;
  return s;
}

Server::~Server() {
  if (daemon_) MHD_stop_daemon(daemon_);
}

}  // namespace meshwire::ctl::metrics
