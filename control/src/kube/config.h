// Where the Kubernetes API server is and how to authenticate to it: from a
// kubeconfig file, or from inside a pod (the service-account token, CA and
// KUBERNETES_SERVICE_HOST/PORT), as kubectl and client-go find them.
// Pure apart from reading the files named: any thread.
#pragma once

#include <map>
#include <string>

#include <meshwire/dp/result.h>

namespace meshwire::control {

inline constexpr const char* kServiceAccountDir = "/var/run/secrets/kubernetes.io/serviceaccount";

struct KubeEndpoint {
  std::string server;        // "https://host:port", IPv6 hosts in brackets
  std::string ca_file;       // PEM file of the CA(s) to trust, or empty
  std::string ca_pem;        // the same given inline (certificate-authority-data)
  bool insecure_skip_tls_verify = false;
  std::string token;         // a bearer token given inline
  std::string token_file;    // a bearer token read from a file, re-read when it changes
  std::string client_cert_file, client_key_file;  // TLS client authentication
  std::string client_cert_pem, client_key_pem;
  std::string where;         // "kubeconfig /root/.kube/config, context x" or "in-cluster": for messages
};

// "https://host:port"; an IPv6 literal host gets brackets.
std::string https_url(const std::string& host, const std::string& port);

// In-cluster: the environment's KUBERNETES_SERVICE_HOST and
// KUBERNETES_SERVICE_PORT (env lets tests give their own) and the
// service-account folder's token and ca.crt. Errors name what is missing.
dp::Result<KubeEndpoint> in_cluster_endpoint(const std::map<std::string, std::string>& env,
                                             const std::string& service_account_dir = kServiceAccountDir);

// A kubeconfig file's context (its current-context when context is empty).
// Relative file paths in it are relative to the kubeconfig's folder, as
// kubectl reads them. Errors name the file and the field.
dp::Result<KubeEndpoint> kubeconfig_endpoint(const std::string& path, const std::string& context = "");

}  // namespace meshwire::control
