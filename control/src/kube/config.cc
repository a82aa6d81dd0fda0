#include "kube/config.h"

#include <openssl/evp.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "kube/yaml.h"

namespace meshwire::control {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using dp::make_error;
using dp::Result;

Result<std::string> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return make_error(path + ": " + std::strerror(errno));
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// Standard base64 with padding, as kubeconfig's *-data fields are written.
Result<std::string> base64_decode(const std::string& text, const std::string& field) {
  std::string in;
  for (char c : text) {
    if (c != '\n' && c != '\r' && c != ' ') in += c;
  }
  if (in.size() % 4 != 0) return make_error(field + ": not base64 (length " + std::to_string(in.size()) + ")");
  std::string out(in.size() / 4 * 3, '\0');
  const int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(in.data()), static_cast<int>(in.size()));
  if (n < 0) return make_error(field + ": not base64");
  size_t len = static_cast<size_t>(n);
  if (!in.empty() && in.back() == '=') --len;
  if (in.size() >= 2 && in[in.size() - 2] == '=') --len;
  out.resize(len);
  return out;
}

// The entry named `name` of a kubeconfig list ("clusters", "users",
// "contexts": [{name, cluster|user|context: {...}}]), or nullptr.
const json* named(const json& config, const char* list, const char* inner, const std::string& name) {
  auto it = config.find(list);
  if (it == config.end() || !it->is_array()) return nullptr;
  for (const json& e : *it) {
    if (e.is_object() && e.value("name", json()) == name) {
      auto in = e.find(inner);
      return in != e.end() && in->is_object() ? &*in : nullptr;
    }
  }
  return nullptr;
}

Result<std::string> string_field(const json& object, const char* key, const std::string& field) {
  auto it = object.find(key);
  if (it == object.end() || it->is_null()) return std::string();
  if (!it->is_string()) return make_error(field + "." + key + ": must be a string");
  return it->get<std::string>();
}

}  // namespace

std::string https_url(const std::string& host, const std::string& port) {
  const bool v6 = host.find(':') != std::string::npos && host.front() != '[';
  return "https://" + (v6 ? "[" + host + "]" : host) + ":" + port;
}

Result<KubeEndpoint> in_cluster_endpoint(const std::map<std::string, std::string>& env,
                                         const std::string& service_account_dir) {
  auto host = env.find("KUBERNETES_SERVICE_HOST");
  auto port = env.find("KUBERNETES_SERVICE_PORT");
  if (host == env.end() || host->second.empty() || port == env.end() || port->second.empty()) {
    return make_error("in-cluster: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT must be set (not in a pod?)");
  }
  KubeEndpoint ep;
  ep.server = https_url(host->second, port->second);
  ep.token_file = service_account_dir + "/token";
  ep.ca_file = service_account_dir + "/ca.crt";
  for (const std::string& f : {ep.token_file, ep.ca_file}) {
    if (::access(f.c_str(), R_OK) != 0) return make_error("in-cluster: " + f + ": " + std::strerror(errno));
  }
  ep.where = "in-cluster (" + ep.server + ")";
  return ep;
}

Result<KubeEndpoint> kubeconfig_endpoint(const std::string& path, const std::string& context) {
  auto text = read_file(path);
  if (!text.ok()) return make_error("kubeconfig " + text.error());
  auto docs = parse_yaml_documents(*text);
  if (!docs.ok()) return make_error("kubeconfig " + path + ": " + docs.error());
  if (docs->size() != 1 || !(*docs)[0].is_object()) return make_error("kubeconfig " + path + ": not a kubeconfig");
  const json& config = (*docs)[0];
  const fs::path base = fs::path(path).parent_path();
  auto relative = [&](const std::string& p) { return p.empty() || p[0] == '/' ? p : (base / p).string(); };

  std::string ctx_name = context;
  if (ctx_name.empty()) {
    auto cur = string_field(config, "current-context", "kubeconfig " + path);
    if (!cur.ok()) return make_error(cur.error());
    ctx_name = *cur;
    if (ctx_name.empty()) return make_error("kubeconfig " + path + ": no current-context (give --kube-context)");
  }
  const std::string where = "kubeconfig " + path + ", context " + ctx_name;
  const json* ctx = named(config, "contexts", "context", ctx_name);
  if (!ctx) return make_error(where + ": contexts: no context named '" + ctx_name + "'");
  auto cluster_name = string_field(*ctx, "cluster", where + ": context");
  auto user_name = string_field(*ctx, "user", where + ": context");
  if (!cluster_name.ok()) return make_error(cluster_name.error());
  if (!user_name.ok()) return make_error(user_name.error());
  const json* cluster = named(config, "clusters", "cluster", *cluster_name);
  if (!cluster) return make_error(where + ": clusters: no cluster named '" + *cluster_name + "'");

  KubeEndpoint ep;
  ep.where = where;
  const std::string cf = where + ": clusters[" + *cluster_name + "].cluster";
  auto server = string_field(*cluster, "server", cf);
  if (!server.ok()) return make_error(server.error());
  if (server->rfind("https://", 0) != 0 && server->rfind("http://", 0) != 0) {
    return make_error(cf + ".server: want an http(s) URL, got '" + *server + "'");
  }
  ep.server = *server;
  while (!ep.server.empty() && ep.server.back() == '/') ep.server.pop_back();
  auto ca = string_field(*cluster, "certificate-authority", cf);
  auto ca_data = string_field(*cluster, "certificate-authority-data", cf);
  if (!ca.ok()) return make_error(ca.error());
  if (!ca_data.ok()) return make_error(ca_data.error());
  ep.ca_file = relative(*ca);
  if (!ca_data->empty()) {
    auto pem = base64_decode(*ca_data, cf + ".certificate-authority-data");
    if (!pem.ok()) return make_error(pem.error());
    ep.ca_pem = *pem;
  }
  if (auto it = cluster->find("insecure-skip-tls-verify"); it != cluster->end()) {
    if (!it->is_boolean()) return make_error(cf + ".insecure-skip-tls-verify: must be true or false");
    ep.insecure_skip_tls_verify = it->get<bool>();
  }

  if (user_name->empty()) return ep;  // no credentials (a proxy, or anonymous)
  const json* user = named(config, "users", "user", *user_name);
  if (!user) return make_error(where + ": users: no user named '" + *user_name + "'");
  const std::string uf = where + ": users[" + *user_name + "].user";
  if (user->contains("exec") || user->contains("auth-provider")) {
    return make_error(uf + ": exec and auth-provider credentials are not supported (use a token, tokenFile or "
                           "client certificate)");
  }
  struct Field {
    const char* key;
    std::string* out;
    bool path;
    bool b64;
  };
  const Field fields[] = {{"token", &ep.token, false, false},
                          {"tokenFile", &ep.token_file, true, false},
                          {"client-certificate", &ep.client_cert_file, true, false},
                          {"client-key", &ep.client_key_file, true, false},
                          {"client-certificate-data", &ep.client_cert_pem, false, true},
                          {"client-key-data", &ep.client_key_pem, false, true}};
  for (const Field& f : fields) {
    auto v = string_field(*user, f.key, uf);
    if (!v.ok()) return make_error(v.error());
    if (f.b64 && !v->empty()) {
      auto d = base64_decode(*v, uf + "." + f.key);
      if (!d.ok()) return make_error(d.error());
      *f.out = *d;
    } else {
      *f.out = f.path ? relative(*v) : *v;
    }
  }
  return ep;
}

}  // namespace meshwire::control
