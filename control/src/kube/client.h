// HTTPS to the Kubernetes API server on libcurl: plain requests (list,
// PATCH) and streamed GETs (watch), authenticated as the KubeEndpoint says.
// The bearer token file is read anew for every request, so a rotated
// service-account token (kubelet replaces it about hourly) is used at once.
//
// Thread-safe: every call has its own curl handle; reflectors stream on
// their threads while the controller PATCHes on its own.
#pragma once

#include <atomic>
#include <functional>
#include <string>
#include <string_view>

#include "kube/config.h"

namespace meshwire::control {

struct HttpResponse {
  long status = 0;     // the HTTP status; 0 when none came (error says why)
  std::string body;    // the body (for a stream: only when status is not 200)
  std::string error;   // a transport error, empty when an HTTP answer came

  bool ok() const { return status >= 200 && status < 300; }
  // "HTTP 410: too old resource version: 5 (12)" or "connect: Connection refused":
  // the Status message of an error body when there is one.
  std::string describe() const;
};

class KubeClient {
 public:
  explicit KubeClient(KubeEndpoint endpoint);
  const KubeEndpoint& endpoint() const { return endpoint_; }

  // One request to path (with its query), answered within timeout_ms.
  HttpResponse request(const std::string& method, const std::string& path, const std::string& body = {},
                       const std::string& content_type = {}, long timeout_ms = 30000) const;

  // A streamed GET: on_line receives every complete line of a 200 answer as
  // it arrives (the stream may split lines anywhere). Returns when the server
  // ends the stream, on a transport error, when on_line returns false, or
  // when stop becomes true (noticed within about a second).
  HttpResponse stream(const std::string& path, const std::function<bool(std::string_view line)>& on_line,
                      const std::atomic<bool>& stop, long timeout_ms) const;

  // Percent-encodes a query value (continue tokens, resource versions).
  static std::string escape(const std::string& value);

 private:
  HttpResponse perform(const std::string& method, const std::string& path, const std::string& body,
                       const std::string& content_type, long timeout_ms,
                       const std::function<bool(std::string_view)>* on_line, const std::atomic<bool>* stop) const;
  KubeEndpoint endpoint_;
};

}  // namespace meshwire::control
