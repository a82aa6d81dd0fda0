// The folder source: files as kubectl prints them, Nodes patched by the
// controllers' annotation files, whole-folder failure on any bad file, and
// inotify following changes.
#include "source/folder.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

namespace meshwire::control {
namespace {

namespace fs = std::filesystem;

class FolderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/meshwire-folder-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { fs::remove_all(dir_); }
  void write(const std::string& name, const std::string& text) { std::ofstream(dir_ + "/" + name) << text; }
  std::string dir_;
};

constexpr const char* kNodes = R"(apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Node
  metadata:
    name: node1
  spec:
    podCIDRs: ["10.1.0.0/24"]
  status:
    addresses:
    - {type: InternalIP, address: 192.0.2.1}
---
apiVersion: v1
kind: Node
metadata:
  name: node2
spec:
  podCIDR: 10.2.0.0/24
status:
  addresses:
  - {type: InternalIP, address: 192.0.2.2}
---
apiVersion: v1
kind: Service
metadata: {name: web}
)";

TEST_F(FolderTest, ReadsListsAndDocumentsAndMergesAnnotationPatches) {
  write("nodes.yaml", kNodes);
  write("notes.txt", "not an object file");
  write(".hidden.yaml", "kind: [broken");
  ASSERT_TRUE(publish_node_annotations(dir_, "node2", {{"meshwire.io/public-key", "k2"}, {"meshwire.io/key-epoch", "3"}})
                  .ok());
  auto c = load_folder(dir_);
  ASSERT_TRUE(c.ok()) << c.error();
  ASSERT_EQ(c->nodes.size(), 2u);
  const NodeObject& n2 = c->nodes.at("node2");
  EXPECT_EQ(dp::format_ip(n2.internal_ips.at(0)), "192.0.2.2");
  EXPECT_EQ(n2.annotations.at("meshwire.io/public-key"), "k2");
  EXPECT_EQ(n2.annotations.at("meshwire.io/key-epoch"), "3");  // quoted on write: a string
  EXPECT_TRUE(c->nodes.at("node1").annotations.empty());
}

TEST_F(FolderTest, JsonFilesToo) {
  write("n.json", R"({"kind":"NodeList","items":[{"metadata":{"name":"j"},"spec":{"podCIDR":"10.3.0.0/24"}}]})");
  auto c = load_folder(dir_);
  ASSERT_TRUE(c.ok()) << c.error();
  EXPECT_EQ(c->nodes.count("j"), 1u);
}

TEST_F(FolderTest, AnyBadFileFailsTheWholeReadNamingIt) {
  write("nodes.yaml", kNodes);
  write("zz-bad.yaml", "kind: Node\nmetadata:\n  name: n9\nstatus:\n  addresses:\n  - {type: InternalIP, address: nope}\n");
  auto c = load_folder(dir_);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.error(), "zz-bad.yaml: Node n9: status.addresses[0].address: not an IP address: 'nope'");
  write("zz-bad.yaml", "kind: [Node\n");
  EXPECT_EQ(load_folder(dir_).error().rfind("zz-bad.yaml: yaml: line", 0), 0u) << load_folder(dir_).error();
}

TEST_F(FolderTest, ConflictingAnnotationsNameBothFiles) {
  write("a.yaml", "kind: Node\nmetadata:\n  name: n\n  annotations: {meshwire.io/key-epoch: \"1\"}\n");
  write("b.yaml", "kind: Node\nmetadata:\n  name: n\n  annotations: {meshwire.io/key-epoch: \"2\"}\n");
  auto c = load_folder(dir_);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.error(), "Node n: metadata.annotations.meshwire.io/key-epoch is set differently in a.yaml and b.yaml");
}

TEST_F(FolderTest, ServicesAndEndpointSlicesTooEachOnce) {
  write("svc.yaml", R"(apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  clusterIP: 10.96.0.10
  ports: [{name: http, port: 80}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-a
  namespace: shop
  labels: {kubernetes.io/service-name: web}
addressType: IPv4
ports: [{name: http, port: 8080}]
endpoints:
- addresses: [10.1.0.5]
  nodeName: node1
)");
  write("ns.yaml", "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n");  // read, not used
  auto c = load_folder(dir_);
  ASSERT_TRUE(c.ok()) << c.error();
  ASSERT_EQ(c->services.count("shop/web"), 1u);
  EXPECT_EQ(c->services.at("shop/web")->ports.at(0).port, 80);
  ASSERT_EQ(c->endpoint_slices.count("shop/web-a"), 1u);
  EXPECT_EQ(c->endpoint_slices.at("shop/web-a")->service, "web");
  write("zz-again.yaml", "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: shop}\nspec: {clusterIP: 10.96.0.11}\n");
  auto dup = load_folder(dir_);
  ASSERT_FALSE(dup.ok());
  EXPECT_EQ(dup.error(), "zz-again.yaml: Service shop/web: also in svc.yaml");
}

TEST_F(FolderTest, AMissingFolderIsNamed) {
  auto c = load_folder(dir_ + "/nope");
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.error().find("/nope"), std::string::npos);
}

TEST_F(FolderTest, WatchSeesWritesAndRenames) {
  auto w = FolderWatch::open(dir_);
  ASSERT_TRUE(w.ok()) << w.error();
  EXPECT_FALSE(w->wait(0));
  write("nodes.yaml", kNodes);
  EXPECT_TRUE(w->wait(1000));
  EXPECT_FALSE(w->wait(0));  // drained
  ASSERT_TRUE(publish_node_annotations(dir_, "node1", {{"a", "b"}}).ok());  // a rename into the folder
  EXPECT_TRUE(w->wait(1000));
}

}  // namespace
}  // namespace meshwire::control
