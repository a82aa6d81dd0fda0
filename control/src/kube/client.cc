#include "kube/client.h"

#include <curl/curl.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <memory>
#include <mutex>
#include <sstream>

#include <nlohmann/json.hpp>

namespace meshwire::control {
namespace {

void global_init() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

struct CurlDeleter {
  void operator()(CURL* c) const { curl_easy_cleanup(c); }
};
struct SlistDeleter {
  void operator()(curl_slist* l) const { curl_slist_free_all(l); }
};
using Curl = std::unique_ptr<CURL, CurlDeleter>;
using Slist = std::unique_ptr<curl_slist, SlistDeleter>;

// What a transfer's callbacks share.
struct Transfer {
  CURL* curl = nullptr;
  std::string body;
  std::string partial;  // a stream's line not yet complete
  const std::function<bool(std::string_view)>* on_line = nullptr;
  const std::atomic<bool>* stop = nullptr;
  bool streaming = false;   // decided at the first byte: a 200 is read line by line
  bool decided = false;
  bool line_refused = false;
};

size_t on_write(char* data, size_t size, size_t n, void* user) {
  Transfer& t = *static_cast<Transfer*>(user);
  const size_t len = size * n;
  if (!t.decided) {
    long status = 0;
    curl_easy_getinfo(t.curl, CURLINFO_RESPONSE_CODE, &status);
    t.streaming = t.on_line != nullptr && status == 200;
    t.decided = true;
  }
  if (!t.streaming) {
    t.body.append(data, len);
    return len;
  }
  t.partial.append(data, len);
  size_t start = 0;
  for (size_t nl; (nl = t.partial.find('\n', start)) != std::string::npos; start = nl + 1) {
    if (nl > start && !(*t.on_line)(std::string_view(t.partial).substr(start, nl - start))) {
      t.line_refused = true;
      return 0;  // ends the transfer (CURLE_WRITE_ERROR)
    }
  }
  t.partial.erase(0, start);
  return len;
}

int on_progress(void* user, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
  const Transfer& t = *static_cast<const Transfer*>(user);
  return t.stop != nullptr && t.stop->load(std::memory_order_relaxed) ? 1 : 0;
}

std::string read_token(const std::string& path, std::string* error) {
  std::ifstream in(path);
  if (!in) {
    *error = "token file " + path + ": " + std::strerror(errno);
    return {};
  }
  std::stringstream s;
  s << in.rdbuf();
  std::string token = s.str();
  while (!token.empty() && (token.back() == '\n' || token.back() == '\r' || token.back() == ' ')) token.pop_back();
  return token;
}

}  // namespace

std::string HttpResponse::describe() const {
  if (status == 0) return error;
  std::string what = "HTTP " + std::to_string(status);
  auto j = nlohmann::json::parse(body, nullptr, false);
  if (j.is_object() && j.value("kind", "") == "Status" && j.contains("message") && j["message"].is_string()) {
    what += ": " + j["message"].get<std::string>();
  } else if (!body.empty() && body.size() < 200) {
    what += ": " + body;
  }
  return what;
}

KubeClient::KubeClient(KubeEndpoint endpoint) : endpoint_(std::move(endpoint)) { global_init(); }

std::string KubeClient::escape(const std::string& value) {
  global_init();
  char* e = curl_easy_escape(nullptr, value.data(), static_cast<int>(value.size()));
  std::string out = e ? e : "";
  curl_free(e);
  return out;
}

HttpResponse KubeClient::perform(const std::string& method, const std::string& path, const std::string& body,
                                 const std::string& content_type, long timeout_ms,
                                 const std::function<bool(std::string_view)>* on_line,
                                 const std::atomic<bool>* stop) const {
  HttpResponse r;
  Curl curl(curl_easy_init());
  if (!curl) {
    r.error = "curl_easy_init failed";
    return r;
  }
  Transfer t;
  t.curl = curl.get();
  t.on_line = on_line;
  t.stop = stop;
  Slist headers;
  auto add = [&](const std::string& h) { headers.reset(curl_slist_append(headers.release(), h.c_str())); };
  add("Accept: application/json");
  if (!content_type.empty()) add("Content-Type: " + content_type);
  std::string token = endpoint_.token;
  if (!endpoint_.token_file.empty()) {
    token = read_token(endpoint_.token_file, &r.error);
    if (!r.error.empty()) return r;
  }
  if (!token.empty()) add("Authorization: Bearer " + token);
  CURL* c = curl.get();
  const std::string url = endpoint_.server + path;
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers.get());
  curl_easy_setopt(c, CURLOPT_USERAGENT, "meshwire-controller/0.1");
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, timeout_ms);
  // A silently dead peer (a node that lost its route to the API server)
  // must not hold a watch open for ever: TCP keepalive finds it.
  curl_easy_setopt(c, CURLOPT_TCP_KEEPALIVE, 1L);
  curl_easy_setopt(c, CURLOPT_TCP_KEEPIDLE, 30L);
  curl_easy_setopt(c, CURLOPT_TCP_KEEPINTVL, 10L);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_write);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &t);
  // The progress callback runs at least once a second, also on an idle
  // watch: that is where a stop is noticed.
  curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
  curl_easy_setopt(c, CURLOPT_XFERINFODATA, &t);
  if (method == "GET") {
    curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
  } else {
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method.c_str());
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body.c_str());
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, static_cast<long>(body.size()));
  }
  if (!endpoint_.ca_file.empty()) curl_easy_setopt(c, CURLOPT_CAINFO, endpoint_.ca_file.c_str());
  curl_blob ca{const_cast<char*>(endpoint_.ca_pem.data()), endpoint_.ca_pem.size(), CURL_BLOB_COPY};
  if (!endpoint_.ca_pem.empty()) curl_easy_setopt(c, CURLOPT_CAINFO_BLOB, &ca);
  if (endpoint_.insecure_skip_tls_verify) {
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 0L);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 0L);
  }
  curl_blob cert{const_cast<char*>(endpoint_.client_cert_pem.data()), endpoint_.client_cert_pem.size(),
                 CURL_BLOB_COPY};
  curl_blob key{const_cast<char*>(endpoint_.client_key_pem.data()), endpoint_.client_key_pem.size(), CURL_BLOB_COPY};
  if (!endpoint_.client_cert_file.empty()) curl_easy_setopt(c, CURLOPT_SSLCERT, endpoint_.client_cert_file.c_str());
  if (!endpoint_.client_key_file.empty()) curl_easy_setopt(c, CURLOPT_SSLKEY, endpoint_.client_key_file.c_str());
  if (!endpoint_.client_cert_pem.empty()) curl_easy_setopt(c, CURLOPT_SSLCERT_BLOB, &cert);
  if (!endpoint_.client_key_pem.empty()) curl_easy_setopt(c, CURLOPT_SSLKEY_BLOB, &key);

  char errbuf[CURL_ERROR_SIZE] = {0};
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
  const CURLcode rc = curl_easy_perform(c);
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
  r.body = std::move(t.body);
  if (rc == CURLE_OK && t.streaming && !t.partial.empty()) (*on_line)(t.partial);  // a last line without '\n'
  if (rc == CURLE_OK || t.line_refused) return r;
  // Anything else is a transport error, also a 200 stream cut in the middle.
  r.status = 0;
  r.error = rc == CURLE_ABORTED_BY_CALLBACK ? "stopped" : std::string(errbuf[0] ? errbuf : curl_easy_strerror(rc));
  return r;
}

HttpResponse KubeClient::request(const std::string& method, const std::string& path, const std::string& body,
                                 const std::string& content_type, long timeout_ms) const {
  return perform(method, path, body, content_type, timeout_ms, nullptr, nullptr);
}

HttpResponse KubeClient::stream(const std::string& path, const std::function<bool(std::string_view)>& on_line,
                                const std::atomic<bool>& stop, long timeout_ms) const {
  return perform("GET", path, {}, {}, timeout_ms, &on_line, &stop);
}

}  // namespace meshwire::control
