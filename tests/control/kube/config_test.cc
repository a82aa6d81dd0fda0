// Finding the API server: kubeconfig files and in-cluster settings, and the
// reflector's backoff.
#include "kube/config.h"

#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

#include "kube/reflector.h"

namespace meshwire::control {
namespace {

namespace fs = std::filesystem;

class Kubeconfig : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("meshwire-kubeconfig-" + std::to_string(::getpid()) + "-" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string write(const std::string& name, const std::string& text) {
    std::ofstream(dir_ / name) << text;
    return (dir_ / name).string();
  }
  fs::path dir_;
};

constexpr const char* kTwoContexts = R"(apiVersion: v1
kind: Config
current-context: edge
clusters:
- name: edge-cluster
  cluster:
    server: https://[fd00::10]:6443/
    certificate-authority: pki/ca.crt
- name: lab
  cluster:
    server: https://lab.example:443
    certificate-authority-data: aGVsbG8gY2E=
    insecure-skip-tls-verify: false
users:
- name: edge-admin
  user:
    tokenFile: /run/token
- name: lab-admin
  user:
    token: abc.def
    client-certificate-data: Y2VydA==
    client-key: keys/admin.key
contexts:
- name: edge
  context: {cluster: edge-cluster, user: edge-admin}
- name: lab
  context: {cluster: lab, user: lab-admin}
)";

TEST_F(Kubeconfig, CurrentContextWithRelativePathsResolvedFromItsFolder) {
  const std::string path = write("config", kTwoContexts);
  auto ep = kubeconfig_endpoint(path);
  ASSERT_TRUE(ep.ok()) << ep.error();
  EXPECT_EQ(ep->server, "https://[fd00::10]:6443");  // the trailing slash is dropped
  EXPECT_EQ(ep->ca_file, (dir_ / "pki/ca.crt").string());
  EXPECT_EQ(ep->token_file, "/run/token");
  EXPECT_TRUE(ep->token.empty());
  EXPECT_NE(ep->where.find("context edge"), std::string::npos);
}

TEST_F(Kubeconfig, NamedContextWithInlineData) {
  const std::string path = write("config", kTwoContexts);
  auto ep = kubeconfig_endpoint(path, "lab");
  ASSERT_TRUE(ep.ok()) << ep.error();
  EXPECT_EQ(ep->server, "https://lab.example:443");
  EXPECT_EQ(ep->ca_pem, "hello ca");
  EXPECT_EQ(ep->token, "abc.def");
  EXPECT_EQ(ep->client_cert_pem, "cert");
  EXPECT_EQ(ep->client_key_file, (dir_ / "keys/admin.key").string());
  EXPECT_FALSE(ep->insecure_skip_tls_verify);
}

TEST_F(Kubeconfig, ErrorsNameTheFileAndTheField) {
  const std::string path = write("config", kTwoContexts);
  auto missing = kubeconfig_endpoint(path, "prod");
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.error().find(path), std::string::npos) << missing.error();
  EXPECT_NE(missing.error().find("no context named 'prod'"), std::string::npos) << missing.error();

  auto bad_server = kubeconfig_endpoint(write("c2", R"(current-context: a
contexts: [{name: a, context: {cluster: c, user: u}}]
clusters: [{name: c, cluster: {server: "ftp://x"}}]
users: [{name: u, user: {token: t}}]
)"));
  ASSERT_FALSE(bad_server.ok());
  EXPECT_NE(bad_server.error().find("clusters[c].cluster.server"), std::string::npos) << bad_server.error();

  auto bad_b64 = kubeconfig_endpoint(write("c3", R"(current-context: a
contexts: [{name: a, context: {cluster: c, user: u}}]
clusters: [{name: c, cluster: {server: "https://x", certificate-authority-data: "abc"}}]
users: [{name: u, user: {token: t}}]
)"));
  ASSERT_FALSE(bad_b64.ok());
  EXPECT_NE(bad_b64.error().find("certificate-authority-data: not base64"), std::string::npos) << bad_b64.error();

  auto exec = kubeconfig_endpoint(write("c4", R"(current-context: a
contexts: [{name: a, context: {cluster: c, user: u}}]
clusters: [{name: c, cluster: {server: "https://x"}}]
users: [{name: u, user: {exec: {command: aws}}}]
)"));
  ASSERT_FALSE(exec.ok());
  EXPECT_NE(exec.error().find("users[u].user: exec and auth-provider"), std::string::npos) << exec.error();

  auto no_current = kubeconfig_endpoint(write("c5", "clusters: []\n"));
  ASSERT_FALSE(no_current.ok());
  EXPECT_NE(no_current.error().find("no current-context"), std::string::npos) << no_current.error();

  auto absent = kubeconfig_endpoint((dir_ / "nope").string());
  ASSERT_FALSE(absent.ok());
  EXPECT_NE(absent.error().find("No such file"), std::string::npos) << absent.error();

  auto not_yaml = kubeconfig_endpoint(write("c6", "a: [b\n"));
  ASSERT_FALSE(not_yaml.ok());
  EXPECT_NE(not_yaml.error().find("yaml: line"), std::string::npos) << not_yaml.error();
}

TEST_F(Kubeconfig, InClusterBracketsAnIpv6ServiceHost) {
  write("token", "t0k3n\n");
  write("ca.crt", "-----BEGIN CERTIFICATE-----\n");
  auto ep = in_cluster_endpoint({{"KUBERNETES_SERVICE_HOST", "fd00:10:96::1"}, {"KUBERNETES_SERVICE_PORT", "443"}},
                                dir_.string());
  ASSERT_TRUE(ep.ok()) << ep.error();
  EXPECT_EQ(ep->server, "https://[fd00:10:96::1]:443");
  EXPECT_EQ(ep->token_file, (dir_ / "token").string());
  EXPECT_EQ(ep->ca_file, (dir_ / "ca.crt").string());
  auto v4 = in_cluster_endpoint({{"KUBERNETES_SERVICE_HOST", "10.96.0.1"}, {"KUBERNETES_SERVICE_PORT", "443"}},
                                dir_.string());
  ASSERT_TRUE(v4.ok()) << v4.error();
  EXPECT_EQ(v4->server, "https://10.96.0.1:443");
}

TEST_F(Kubeconfig, InClusterSaysWhatIsMissing) {
  auto no_env = in_cluster_endpoint({}, dir_.string());
  ASSERT_FALSE(no_env.ok());
  EXPECT_NE(no_env.error().find("KUBERNETES_SERVICE_HOST"), std::string::npos);
  auto no_token = in_cluster_endpoint({{"KUBERNETES_SERVICE_HOST", "10.96.0.1"}, {"KUBERNETES_SERVICE_PORT", "443"}},
                                      dir_.string());
  ASSERT_FALSE(no_token.ok());
  EXPECT_NE(no_token.error().find((dir_ / "token").string()), std::string::npos) << no_token.error();
}

TEST(Backoff, DoublesWithJitterUpToTheCapAndStartsOverOnReset) {
  using std::chrono::milliseconds;
  Backoff b(milliseconds(100), milliseconds(1000), 7);
  const int64_t expect_max[] = {100, 200, 400, 800, 1000, 1000};
  for (int64_t top : expect_max) {
    const auto d = b.next().count();
    EXPECT_GE(d, top / 2);
    EXPECT_LE(d, top);
  }
  b.reset();
  EXPECT_LE(b.next().count(), 100);
  // Jitter: two nodes that start together do not keep in step.
  Backoff x(milliseconds(1000), milliseconds(60000), 1), y(milliseconds(1000), milliseconds(60000), 2);
  int same = 0;
  for (int i = 0; i < 6; ++i) same += x.next() == y.next();
  EXPECT_LT(same, 6);
}

}  // namespace
}  // namespace meshwire::control
