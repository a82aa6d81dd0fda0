// The mesh's checks of meshwirectl doctor on fabricated facts: public keys,
// key epochs (from SPIs), clock skew, the controller, bypass routes.
#include <gtest/gtest.h>

#include "doctor/checks.h"
#include "findings_test_util.h"
#include "keys/keys.h"

namespace meshwire::control {
namespace {

const std::string kKey = "3p7bfXt9wbTTW2HC7OQ1Nz+DQ8hbeGdNrfx+FG+IK08=";  // RFC 7748's Alice, base64

NodeFact node(const std::string& name, const std::string& ip, std::optional<uint64_t> epoch) {
  NodeFact n;
  n.name = name;
  n.internal_ips = {ip};
  n.public_key = kKey;
  n.public_key_valid = true;
  n.key_epoch = epoch;
  return n;
}

void add_sa(DataplaneFacts& d, const std::string& dir, const std::string& peer, uint32_t spi) {
  auto* sa = d.sas.add_sas();
  sa->set_direction(dir);
  sa->set_peer(peer);
  sa->set_spi(spi);
}

// node1 (192.0.2.1) sends to node2 under epoch `out`, accepts node2's `in`.
Facts mesh(uint64_t out, std::vector<uint64_t> in, uint64_t node1_epoch, uint64_t node2_epoch) {
  Facts f;
  f.now_ms = 1'800'000'000'000;
  DataplaneFacts d;
  d.generation.set_live_generation(5);
  d.generation.set_source("api");
  d.generation.set_tunnel_address("192.0.2.1");
  d.generation.set_applied_unix_ms(f.now_ms - 1000);
  auto* p = d.peers.add_peers();
  p->set_name("node2");
  p->set_outbound_sas(1);
  p->set_inbound_sas(static_cast<uint32_t>(in.size()));
  p->add_pod_cidrs("10.12.0.0/24");
  add_sa(d, "outbound", "node2", derived_spi(out, 0));
  for (uint64_t e : in) add_sa(d, "inbound", "node2", derived_spi(e, 0));
  f.dataplane = d;
  f.nodes = std::vector<NodeFact>{node("node1", "192.0.2.1", node1_epoch), node("node2", "192.0.2.2", node2_epoch)};
  return f;
}

TEST(DoctorPublicKeys, ANodeWithoutKeyOrWithABadOne) {
  Facts f = mesh(1, {4, 5}, 1, 4);
  EXPECT_TRUE(has(check_public_keys(f), Severity::kOk, "public-keys", "2 Node(s) publish a public key"));
  f.nodes->push_back(node("node3", "192.0.2.3", 1));
  f.nodes->back().public_key.reset();
  auto out = check_public_keys(f);
  EXPECT_TRUE(has(out, Severity::kError, "public-keys", "Node node3 has no meshwire.io/public-key")) << dump(out);
  EXPECT_TRUE(has(out, Severity::kError, "public-keys", "meshwire-controller on node3")) << dump(out);
  f.nodes->back().public_key = "not base64";
  f.nodes->back().public_key_valid = false;
  out = check_public_keys(f);
  EXPECT_TRUE(has(out, Severity::kError, "public-keys", "not 32 bytes in canonical base64: 'not base64'")) << dump(out);
  f.nodes->back().public_key_valid = true;  // keyed, but not a peer of the data plane
  EXPECT_TRUE(has(check_public_keys(f), Severity::kWarning, "public-keys", "node3 publishes a key but is no peer"));
}

// On an SR-IOV node the data plane's address is not the Node's InternalIP:
// doctor finds this node by its meshwire.io/tunnel-address.
TEST(DoctorPublicKeys, ThisNodeIsFoundByItsTunnelAddressAnnotation) {
  Facts f = mesh(1, {4, 5}, 1, 4);
  (*f.nodes)[0].internal_ips = {"203.0.113.1"};
  auto out = check_public_keys(f);
  EXPECT_TRUE(has(out, Severity::kWarning, "public-keys", "node1 publishes a key but is no peer")) << dump(out);
  (*f.nodes)[0].tunnel_address = "192.0.2.1";
  out = check_public_keys(f);
  EXPECT_TRUE(has(out, Severity::kOk, "public-keys", "2 Node(s) publish a public key")) << dump(out);
}

TEST(DoctorPublicKeys, APeerWithoutSas) {
  Facts f = mesh(1, {4, 5}, 1, 4);
  f.nodes.reset();
  f.dataplane->peers.mutable_peers(0)->set_inbound_sas(0);
  const auto out = check_public_keys(f);
  EXPECT_TRUE(has(out, Severity::kError, "public-keys", "peer node2 has 1 outbound and 0 inbound SA(s): traffic from it"))
      << dump(out);
  EXPECT_TRUE(has(out, Severity::kSkipped, "public-keys", "needs --source")) << dump(out);
}

TEST(DoctorKeyEpochs, AgreeingEpochs) {
  const auto out = check_key_epochs(mesh(7, {4, 5}, 7, 4));
  EXPECT_TRUE(has(out, Severity::kOk, "key-epochs", "outbound SAs of epoch 7; inbound SAs match the 1 epoch(s)"))
      << dump(out);
}

TEST(DoctorKeyEpochs, SendingUnderAnEpochItDoesNotPublish) {
  auto out = check_key_epochs(mesh(9, {4, 5}, 7, 4));
  EXPECT_TRUE(has(out, Severity::kError, "key-epochs", "node1 sends to node2 under epoch 9 but publishes epoch 7"))
      << dump(out);
  out = check_key_epochs(mesh(8, {4, 5}, 7, 4));  // one ahead: a rotation in flight
  EXPECT_TRUE(has(out, Severity::kWarning, "key-epochs", "a rotation in flight")) << dump(out);
  EXPECT_FALSE(any_of(out, Severity::kError)) << dump(out);
}

TEST(DoctorKeyEpochs, InboundWithoutThePeersEpoch) {
  auto out = check_key_epochs(mesh(7, {2, 3}, 7, 4));
  EXPECT_TRUE(has(out, Severity::kError, "key-epochs",
                  "node2 publishes epoch 4 (its Node) but node1 accepts from it epoch(s) 2, 3 only"))
      << dump(out);
  out = check_key_epochs(mesh(7, {3, 4}, 7, 4));  // the next not installed ahead
  EXPECT_TRUE(has(out, Severity::kWarning, "key-epochs", "accepts node2's epoch 4 but not the next, 5")) << dump(out);
}

TEST(DoctorKeyEpochs, EpochsWrapAt24Bits) {
  const uint64_t big = (uint64_t{1} << 24) + 3;  // SPIs keep epoch mod 2^24
  EXPECT_FALSE(any_of(check_key_epochs(mesh(big, {3, 4}, big, 3)), Severity::kError));
}

TEST(DoctorKeyEpochs, FromTheControllersMetricsWithoutNodes) {
  Facts f = mesh(7, {4, 5}, 7, 4);
  f.nodes.reset();
  EXPECT_TRUE(has(check_key_epochs(f), Severity::kSkipped, "key-epochs", "--controller"));
  f.controller = ControllerMetrics{};
  f.controller->key_epoch = 7;
  f.controller->peer_key_epoch["node2"] = 6;
  EXPECT_TRUE(has(check_key_epochs(f), Severity::kError, "key-epochs", "node2 publishes epoch 6 (the controller's"));
}

TEST(DoctorKeyEpochs, ManualSasAreNotJudged) {
  Facts f = mesh(7, {4, 5}, 7, 4);
  f.dataplane->sas.clear_sas();
  add_sa(*f.dataplane, "outbound", "node2", 0x1201);
  add_sa(*f.dataplane, "inbound", "node2", 0x2101);
  EXPECT_TRUE(has(check_key_epochs(f), Severity::kOk, "key-epochs", "2 manual SA(s) not judged"));
}

TEST(DoctorClockSkew, ThresholdsAndUnknown) {
  Facts f = mesh(7, {4, 5}, 7, 4);
  EXPECT_TRUE(has(check_clock_skew(f), Severity::kSkipped, "clock-skew", "no peer's clock offset is known"));
  auto* p = f.dataplane->peers.mutable_peers(0);
  p->set_clock_known(true);
  p->set_clock_offset_ms(400);
  EXPECT_TRUE(has(check_clock_skew(f), Severity::kOk, "clock-skew", "1 peer clock(s) within 400 ms"));
  p->set_clock_offset_ms(-2500);
  EXPECT_TRUE(has(check_clock_skew(f), Severity::kWarning, "clock-skew", "node2's clock is 2500 ms behind"));
  p->set_clock_offset_ms(kClockErrorMs);
  EXPECT_TRUE(has(check_clock_skew(f), Severity::kError, "clock-skew", "30000 ms ahead of this node's"));
}

TEST(DoctorController, StartupConfigOnlyIsNotConnected) {
  Facts f = mesh(7, {4, 5}, 7, 4);
  EXPECT_TRUE(has(check_controller(f), Severity::kOk, "controller", "generation 5 applied through the API"));
  f.dataplane->generation.set_live_generation(0);
  f.dataplane->generation.set_source("config");
  f.dataplane->peers.clear_peers();
  EXPECT_TRUE(has(check_controller(f), Severity::kError, "controller", "runs its startup config only (generation 0"));
}

TEST(DoctorController, LongWithoutApply) {
  Facts f = mesh(7, {4, 5}, 7, 4);
  f.dataplane->generation.set_applied_unix_ms(f.now_ms - 3 * 3600 * 1000);
  EXPECT_TRUE(has(check_controller(f), Severity::kWarning, "controller", "no Apply for 180 minutes"));
}

TEST(DoctorController, Metrics) {
  Facts f = mesh(7, {4, 5}, 7, 4);
  f.controller = ControllerMetrics{};
  f.controller->url = "http://127.0.0.1:9464/metrics";
  f.controller->error = "Failed to connect to 127.0.0.1 port 9464";
  EXPECT_TRUE(has(check_controller(f), Severity::kError, "controller", "cannot read the controller's metrics"));
  f.controller->error.clear();
  f.controller->dataplane_up = 0;
  EXPECT_TRUE(has(check_controller(f), Severity::kError, "controller", "meshwire_dataplane_up 0"));
  f.controller->dataplane_up = 1;
  f.controller->apply_failures = 2;
  f.controller->applied_generation = 4;
  const auto out = check_controller(f);
  EXPECT_TRUE(has(out, Severity::kWarning, "controller", "2 Apply(s) failed")) << dump(out);
  EXPECT_TRUE(has(out, Severity::kWarning, "controller", "applied generation 4 last, the data plane runs 5")) << dump(out);
}

TEST(DoctorBypass, APodRouteThroughAnotherDevice) {
  Facts f = mesh(7, {4, 5}, 7, 4);
  EXPECT_TRUE(has(check_bypass(f), Severity::kSkipped, "bypass", "needs --pod-netns"));
  PodNetnsFact pod;
  pod.netns = "pod-a";
  pod.dataplane_dev = "eth0";
  pod.routes = {{"node2", "10.12.0.0/24", "10.12.0.1", "eth0", "169.254.1.1", ""}};
  f.pods = {pod};
  EXPECT_TRUE(has(check_bypass(f), Severity::kOk, "bypass", "1 remote pod CIDR(s) routed through eth0"));
  f.pods[0].routes[0].dev = "net1";
  f.pods[0].routes[0].gateway = "";
  auto out = check_bypass(f);
  EXPECT_TRUE(has(out, Severity::kError, "bypass",
                  "pod netns pod-a: 10.12.0.1 (node2's pod CIDR 10.12.0.0/24) leaves through net1, not the data "
                  "plane's eth0"))
      << dump(out);
  f.pods[0].routes[0] = {"node2", "10.12.0.0/24", "10.12.0.1", "", "", "Network is unreachable"};
  EXPECT_TRUE(has(check_bypass(f), Severity::kError, "bypass", "has no route: Network is unreachable"));
  f.pods[0].dataplane_dev.clear();
  EXPECT_TRUE(has(check_bypass(f), Severity::kError, "bypass", "no route via the data plane's gateway 169.254.1.1"));
  f.pods[0].error = "Cannot open network namespace \"x\"";
  EXPECT_TRUE(has(check_bypass(f), Severity::kError, "bypass", "cannot inspect pod netns pod-a"));
}

TEST(DoctorBypass, AHostRouteThroughTheFabric) {
  Facts f = mesh(7, {4, 5}, 7, 4);
  f.host_routes = HostRouteFacts{{"fab0"}, {{"node2", "10.12.0.0/24", "10.12.0.1", "mgmt0", "10.0.0.1", ""}}};
  EXPECT_TRUE(has(check_bypass(f), Severity::kOk, "bypass", "host: no route to the 1 remote pod address(es)"));
  f.host_routes->routes[0].dev = "fab0";
  EXPECT_TRUE(has(check_bypass(f), Severity::kError, "bypass",
                  "host route to 10.12.0.1 (node2's pod CIDR 10.12.0.0/24) leaves through fab0"));
}

}  // namespace
}  // namespace meshwire::control
