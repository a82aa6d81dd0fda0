// Services and EndpointSlices read as kube-proxy reads them: which frontends
// the data plane balances, across which backends.
#include "reconcile/services.h"

#include <gtest/gtest.h>

namespace meshwire::control {
namespace {

using nlohmann::json;

json service(const std::string& name, json spec, json labels = json::object()) {
  return {{"apiVersion", "v1"}, {"kind", "Service"},
          {"metadata", {{"name", name}, {"namespace", "shop"}, {"labels", labels}, {"resourceVersion", "7"}}},
          {"spec", spec}};
}

json slice(const std::string& name, const std::string& svc, const std::string& type, json ports, json endpoints) {
  return {{"apiVersion", "discovery.k8s.io/v1"}, {"kind", "EndpointSlice"},
          {"metadata", {{"name", name}, {"namespace", "shop"}, {"labels", {{"kubernetes.io/service-name", svc}}}}},
          {"addressType", type}, {"ports", ports}, {"endpoints", endpoints}};
}

json endpoint(const std::string& ip, const std::string& node, json conditions = json::object(),
              const std::string& pod = "") {
  json e = {{"addresses", {ip}}, {"nodeName", node}, {"conditions", conditions}};
  if (!pod.empty()) e["targetRef"] = {{"kind", "Pod"}, {"namespace", "shop"}, {"name", pod}};
  return e;
}

const json kTerminating = {{"ready", false}, {"serving", true}, {"terminating", true}};
const json kTerminatingNotServing = {{"ready", false}, {"serving", false}, {"terminating", true}};
const json kNotReady = {{"ready", false}};

class Services : public ::testing::Test {
 protected:
  void add(const json& o) {
    if (o["kind"] == "Service") {
      auto s = parse_service(o);
      ASSERT_TRUE(s.ok()) << s.error();
      cluster_.services[s->ns + "/" + s->name] = std::make_shared<const ServiceObject>(*s);
    } else {
      auto e = parse_endpoint_slice(o);
      ASSERT_TRUE(e.ok()) << e.error();
      cluster_.endpoint_slices[e->ns + "/" + e->name] = std::make_shared<const EndpointSliceObject>(*e);
    }
  }
  // "address:port", "(t)" when an active terminating fallback, " draining: reason" when draining.
  std::vector<std::string> backends(const ServiceFrontend& f) {
    std::vector<std::string> out;
    for (const ServiceBackend& b : f.backends) {
      std::string s = dp::format_ip(b.address);
      s += ":";
      s += std::to_string(b.port);
      if (b.use == BackendUse::kDraining) {
        s += " draining: ";
        s += drain_reason_name(b.reason);
      } else if (b.terminating) {
        s += "(t)";
      }
      out.push_back(s);
    }
    return out;
  }
  ClusterObjects cluster_;
};

const json kWebPorts = json::array({{{"name", "http"}, {"port", 80}, {"protocol", "TCP"}},
                                    {{"name", "sig"}, {"port", 3868}, {"protocol", "SCTP"}}});

TEST_F(Services, ReadyEndpointsFromEverySliceThroughTheNamedPort) {
  add(service("web", {{"clusterIPs", {"10.96.0.10"}}, {"ports", kWebPorts}}));
  add(slice("web-a", "web", "IPv4",
            {{{"name", "http"}, {"port", 8080}, {"protocol", "TCP"}}, {{"name", "sig"}, {"port", 3869}, {"protocol", "SCTP"}}},
            {endpoint("10.1.0.5", "node1"), endpoint("10.1.0.6", "node1", {{"ready", false}})}));
  add(slice("web-b", "web", "IPv4", {{{"name", "http"}, {"port", 8080}, {"protocol", "TCP"}}},
            {endpoint("10.2.0.7", "node2"), endpoint("10.1.0.5", "node1")}));  // a duplicate across slices
  add(slice("other", "api", "IPv4", {{{"name", "http"}, {"port", 9090}}}, {endpoint("10.2.0.9", "node2")}));
  auto d = desired_services(cluster_, "node1");
  ASSERT_EQ(d.frontends.size(), 2u);
  const ServiceFrontend& http = d.frontends[0];
  EXPECT_EQ(http.service, "shop/web");
  EXPECT_EQ(http.protocol, kProtoTcp);
  EXPECT_EQ(http.port, 80);
  EXPECT_EQ(backends(http),
            (std::vector<std::string>{"10.1.0.5:8080", "10.1.0.6:8080 draining: not ready", "10.2.0.7:8080"}));
  EXPECT_EQ(http.backends[2].node, "node2");
  const ServiceFrontend& sig = d.frontends[1];
  EXPECT_EQ(sig.protocol, kProtoSctp);
  EXPECT_EQ(backends(sig), (std::vector<std::string>{"10.1.0.5:3869", "10.1.0.6:3869 draining: not ready"}));
}

TEST_F(Services, TerminatingButServingOnlyWhenNoneIsReady) {
  add(service("web", {{"clusterIP", "10.96.0.10"}, {"ports", kWebPorts}}));
  add(slice("web-a", "web", "IPv4", {{{"name", "http"}, {"port", 8080}, {"protocol", "TCP"}}},
            {endpoint("10.1.0.5", "node1", kTerminating), endpoint("10.1.0.6", "node1", kTerminatingNotServing),
             endpoint("10.1.0.7", "node1")}));
  auto d = desired_services(cluster_, "node1");
  EXPECT_EQ(backends(d.frontends[0]),
            (std::vector<std::string>{"10.1.0.5:8080 draining: terminating", "10.1.0.6:8080 draining: terminating",
                                      "10.1.0.7:8080"}));
  auto changed = std::make_shared<EndpointSliceObject>(*cluster_.endpoint_slices["shop/web-a"]);
  changed->endpoints.pop_back();  // the ready one goes
  cluster_.endpoint_slices["shop/web-a"] = changed;
  d = desired_services(cluster_, "node1");
  // The serving one takes new connections again; the one that no longer serves keeps draining.
  EXPECT_EQ(backends(d.frontends[0]),
            (std::vector<std::string>{"10.1.0.5:8080(t)", "10.1.0.6:8080 draining: terminating"}));
  EXPECT_EQ(d.frontends[0].backends[0].use, BackendUse::kActive);
  EXPECT_EQ(d.frontends[0].backends[0].reason, DrainReason::kNone);
}

TEST_F(Services, DrainingBackendsCarryTheirReasonNodeAndPod) {
  add(service("web", {{"clusterIP", "10.96.0.10"}, {"ports", {{{"name", "http"}, {"port", 80}}}}}));
  add(slice("web-a", "web", "IPv4", {{{"name", "http"}, {"port", 8080}}},
            {endpoint("10.1.0.9", "node2", kNotReady, "web-new"),
             endpoint("10.1.0.5", "node1", json::object(), "web-a1"),
             endpoint("10.1.0.7", "node3", kTerminatingNotServing, "web-old")}));
  auto d = desired_services(cluster_, "node1");
  ASSERT_EQ(d.frontends.size(), 1u);
  const auto& b = d.frontends[0].backends;
  EXPECT_EQ(backends(d.frontends[0]),
            (std::vector<std::string>{"10.1.0.5:8080", "10.1.0.7:8080 draining: terminating",
                                      "10.1.0.9:8080 draining: not ready"}));
  EXPECT_EQ(b[0].target, "shop/web-a1");
  EXPECT_EQ(b[0].node, "node1");
  EXPECT_EQ(b[0].use, BackendUse::kActive);
  EXPECT_EQ(b[1].target, "shop/web-old");
  EXPECT_EQ(b[1].node, "node3");
  EXPECT_TRUE(b[1].terminating);
  EXPECT_EQ(b[2].target, "shop/web-new");
  EXPECT_EQ(b[2].reason, DrainReason::kNotReady);
  EXPECT_FALSE(b[2].terminating);
}

TEST_F(Services, NothingReadyOrServingLeavesEveryBackendDraining) {
  add(service("web", {{"clusterIP", "10.96.0.10"}, {"ports", {{{"name", "http"}, {"port", 80}}}}}));
  add(slice("web-a", "web", "IPv4", {{{"name", "http"}, {"port", 8080}}},
            {endpoint("10.1.0.5", "node1", kTerminatingNotServing), endpoint("10.1.0.6", "node1", kNotReady)}));
  EXPECT_EQ(backends(desired_services(cluster_, "node1").frontends[0]),
            (std::vector<std::string>{"10.1.0.5:8080 draining: terminating", "10.1.0.6:8080 draining: not ready"}));
}

TEST_F(Services, AnEndpointInSeveralSlicesIsOneBackendAsItsMostUsableListing) {
  add(service("web", {{"clusterIP", "10.96.0.10"}, {"ports", {{{"name", "http"}, {"port", 80}}}}}));
  // A slice being rewritten: the same pod terminating in one, ready in the other.
  add(slice("web-a", "web", "IPv4", {{{"name", "http"}, {"port", 8080}}},
            {endpoint("10.1.0.5", "node1", kTerminating, "web-a1"), endpoint("10.1.0.6", "node1", kNotReady)}));
  add(slice("web-b", "web", "IPv4", {{{"name", "http"}, {"port", 8080}}},
            {endpoint("10.1.0.5", "node1", json::object(), "web-a1"),
             endpoint("10.1.0.6", "node1", kTerminatingNotServing)}));
  auto d = desired_services(cluster_, "node1");
  EXPECT_EQ(backends(d.frontends[0]),
            (std::vector<std::string>{"10.1.0.5:8080", "10.1.0.6:8080 draining: terminating"}));
  EXPECT_FALSE(d.frontends[0].backends[0].terminating);
}

TEST_F(Services, TheFallbackLooksAtTheEndpointsLeftByTheLocalPolicy) {
  add(service("web", {{"clusterIP", "10.96.0.10"}, {"internalTrafficPolicy", "Local"},
                      {"ports", {{{"name", "http"}, {"port", 80}}}}}));
  add(slice("web-a", "web", "IPv4", {{{"name", "http"}, {"port", 8080}}},
            {endpoint("10.1.0.5", "node1", kTerminating), endpoint("10.1.0.6", "node1", kNotReady),
             endpoint("10.2.0.7", "node2"), endpoint("10.2.0.8", "node2", kNotReady)}));
  // node2's ready endpoint does not count here: node1's serving-terminating one takes new connections.
  EXPECT_EQ(backends(desired_services(cluster_, "node1").frontends[0]),
            (std::vector<std::string>{"10.1.0.5:8080(t)", "10.1.0.6:8080 draining: not ready"}));
  EXPECT_EQ(backends(desired_services(cluster_, "node2").frontends[0]),
            (std::vector<std::string>{"10.2.0.7:8080", "10.2.0.8:8080 draining: not ready"}));
}

TEST_F(Services, TwoServicesOnOneFrontendTheFirstByNameKeepsIt) {
  add(service("a", {{"clusterIP", "10.96.0.10"},
                    {"ports", {{{"port", 80}}, {{"name", "dns"}, {"port", 53}, {"protocol", "UDP"}}}}}));
  add(service("b", {{"clusterIP", "10.96.0.10"}, {"ports", {{{"port", 80}}, {{"name", "x"}, {"port", 81}}}}}));
  auto d = desired_services(cluster_, "node1");
  ASSERT_EQ(d.frontends.size(), 3u);
  EXPECT_EQ(d.frontends[2].service, "shop/b");
  EXPECT_EQ(d.frontends[2].port, 81);
  EXPECT_EQ(d.skipped, (std::vector<std::string>{"shop/b: 10.96.0.10 port 80/TCP is shop/a's already"}));
}

TEST_F(Services, DualStackGetsAFrontendPerFamilyWithItsOwnSlices) {
  add(service("web", {{"clusterIPs", {"10.96.0.10", "fd00:96::10"}},
                      {"ports", {{{"name", "http"}, {"port", 80}}}}}));
  add(slice("web-v4", "web", "IPv4", {{{"name", "http"}, {"port", 8080}}}, {endpoint("10.1.0.5", "node1")}));
  add(slice("web-v6", "web", "IPv6", {{{"name", "http"}, {"port", 8080}}}, {endpoint("fd00:1::5", "node1")}));
  auto d = desired_services(cluster_, "node1");
  ASSERT_EQ(d.frontends.size(), 2u);
  EXPECT_EQ(dp::format_ip(d.frontends[0].vip), "10.96.0.10");
  EXPECT_EQ(backends(d.frontends[0]), (std::vector<std::string>{"10.1.0.5:8080"}));
  EXPECT_EQ(dp::format_ip(d.frontends[1].vip), "fd00:96::10");
  EXPECT_EQ(backends(d.frontends[1]), (std::vector<std::string>{"fd00:1::5:8080"}));
}

TEST_F(Services, InternalTrafficPolicyLocalKeepsThisNodesEndpointsOnly) {
  add(service("web", {{"clusterIP", "10.96.0.10"}, {"internalTrafficPolicy", "Local"},
                      {"ports", {{{"name", "http"}, {"port", 80}}}}}));
  add(slice("web-a", "web", "IPv4", {{{"name", "http"}, {"port", 8080}}},
            {endpoint("10.1.0.5", "node1"), endpoint("10.2.0.7", "node2")}));
  EXPECT_EQ(backends(desired_services(cluster_, "node1").frontends[0]), (std::vector<std::string>{"10.1.0.5:8080"}));
  EXPECT_TRUE(desired_services(cluster_, "node3").frontends[0].backends.empty());  // dropped, as kube-proxy does
}

TEST_F(Services, HeadlessExternalNameAndOtherProxiesServicesAreLeftOut) {
  add(service("headless", {{"clusterIP", "None"}, {"ports", {{{"port", 80}}}}}));
  add(service("ext", {{"type", "ExternalName"}, {"externalName", "db.example.com"}}));
  add(service("theirs", {{"clusterIP", "10.96.0.11"}, {"ports", {{{"port", 80}}}}},
              {{"service.kubernetes.io/service-proxy-name", "other-proxy"}}));
  add(service("ours", {{"clusterIP", "10.96.0.12"}, {"ports", {{{"port", 80}}}}},
              {{"service.kubernetes.io/service-proxy-name", "meshwire"}}));
  auto d = desired_services(cluster_, "node1");
  ASSERT_EQ(d.frontends.size(), 1u);
  EXPECT_EQ(d.frontends[0].service, "shop/ours");
  ASSERT_EQ(d.skipped.size(), 1u);
  EXPECT_NE(d.skipped[0].find("shop/theirs: handled by proxy 'other-proxy'"), std::string::npos);
}

TEST_F(Services, SessionAffinityAndItsTimeout) {
  add(service("web", {{"clusterIP", "10.96.0.10"}, {"sessionAffinity", "ClientIP"},
                      {"sessionAffinityConfig", {{"clientIP", {{"timeoutSeconds", 600}}}}},
                      {"ports", {{{"port", 80}}}}}));
  add(service("web2", {{"clusterIP", "10.96.0.11"}, {"sessionAffinity", "ClientIP"}, {"ports", {{{"port", 80}}}}}));
  auto d = desired_services(cluster_, "node1");
  EXPECT_TRUE(d.frontends[0].affinity_client_ip);
  EXPECT_EQ(d.frontends[0].affinity_timeout_s, 600u);
  EXPECT_EQ(d.frontends[1].affinity_timeout_s, 10800u);  // the API's default
}

TEST_F(Services, APortWithoutAMatchingSlicePortHasNoBackends) {
  add(service("web", {{"clusterIP", "10.96.0.10"}, {"ports", {{{"name", "http"}, {"port", 80}, {"protocol", "UDP"}}}}}));
  add(slice("web-a", "web", "IPv4", {{{"name", "http"}, {"port", 8080}, {"protocol", "TCP"}}},
            {endpoint("10.1.0.5", "node1")}));
  EXPECT_TRUE(desired_services(cluster_, "node1").frontends[0].backends.empty());
}

TEST(ParseService, ErrorsNameTheObjectAndTheField) {
  auto bad_proto = parse_service(service("web", {{"clusterIP", "10.96.0.10"}, {"ports", {{{"port", 80}, {"protocol", "ICMP"}}}}}));
  ASSERT_FALSE(bad_proto.ok());
  EXPECT_EQ(bad_proto.error(), "Service shop/web: spec.ports[0].protocol: must be TCP, UDP or SCTP, got 'ICMP'");
  auto bad_port = parse_service(service("web", {{"clusterIP", "10.96.0.10"}, {"ports", {{{"port", 70000}}}}}));
  ASSERT_FALSE(bad_port.ok());
  EXPECT_NE(bad_port.error().find("spec.ports[0].port: must be a port number 1..65535"), std::string::npos);
  auto bad_ip = parse_service(service("web", {{"clusterIPs", {"10.96.0.300"}}}));
  ASSERT_FALSE(bad_ip.ok());
  EXPECT_NE(bad_ip.error().find("spec.clusterIPs[0]: not an IP address"), std::string::npos);
  auto bad_slice = parse_endpoint_slice(slice("s", "web", "IPv4", json::array(), {endpoint("fd00::1", "n")}));
  ASSERT_FALSE(bad_slice.ok());
  EXPECT_EQ(bad_slice.error(), "EndpointSlice shop/s: endpoints[0].addresses[0]: not an IPv4 address: 'fd00::1'");
  auto bad_cond = parse_endpoint_slice(slice("s", "web", "IPv4", json::array(),
                                             {endpoint("10.0.0.1", "n", {{"ready", "yes"}})}));
  ASSERT_FALSE(bad_cond.ok());
  EXPECT_NE(bad_cond.error().find("endpoints[0].conditions.ready: must be true or false"), std::string::npos);
}

TEST(ParseEndpointSlice, ConditionsDefaultAsTheApiSays) {
  auto e = parse_endpoint_slice(slice("s", "web", "IPv4", {{{"port", 8080}}},
                                      {endpoint("10.0.0.1", "n"), endpoint("10.0.0.2", "n", {{"ready", false}})}));
  ASSERT_TRUE(e.ok()) << e.error();
  EXPECT_TRUE(e->endpoints[0].ready && e->endpoints[0].serving && !e->endpoints[0].terminating);
  EXPECT_TRUE(!e->endpoints[1].ready && !e->endpoints[1].serving);  // serving follows ready when unset
  EXPECT_EQ(e->service, "web");
  EXPECT_EQ(e->ports[0].protocol, kProtoTcp);
}

}  // namespace
}  // namespace meshwire::control
