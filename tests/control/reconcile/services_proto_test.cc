// The desired services as ApplyServices takes them: names, protocols,
// draining backends, affinity, and an order that does not depend on how the
// objects came.
#include "reconcile/services_proto.h"

#include <gtest/gtest.h>

namespace meshwire::control {
namespace {

IpAddress ip(const char* text) { return *dp::parse_ip_address(text); }

ServiceBackend backend(const char* address, uint16_t port, const char* node, const char* target,
                       DrainReason reason = DrainReason::kNone) {
  ServiceBackend b;
  b.address = ip(address);
  b.port = port;
  b.node = node;
  b.target = target;
  if (reason != DrainReason::kNone) {
    b.use = BackendUse::kDraining;
    b.reason = reason;
    b.terminating = reason == DrainReason::kTerminating;
  }
  return b;
}

DesiredServices two_frontends() {
  DesiredServices d;
  ServiceFrontend web;
  web.service = "shop/web";
  web.port_name = "http";
  web.protocol = kProtoTcp;
  web.vip = ip("10.96.0.10");
  web.port = 80;
  web.affinity_client_ip = true;
  web.affinity_timeout_s = 10800;
  web.backends = {backend("10.1.0.5", 8080, "node1", "shop/web-a1"),
                  backend("10.1.0.6", 8080, "node2", "shop/web-b2", DrainReason::kTerminating),
                  backend("10.1.0.7", 8080, "", "", DrainReason::kNotReady)};
  d.frontends.push_back(web);
  ServiceFrontend dns;
  dns.service = "kube-system/dns";
  dns.protocol = kProtoUdp;
  dns.vip = ip("fd00:96::a");
  dns.port = 53;
  dns.affinity_timeout_s = 10800;  // as the parser leaves it without ClientIP affinity
  d.frontends.push_back(dns);
  ServiceFrontend sig = dns;
  sig.service = "tel/sig";
  sig.protocol = kProtoSctp;
  sig.port = 3868;
  d.frontends.push_back(sig);
  return d;
}

TEST(ServicesProto, FrontendsWithNamesProtocolsAndAffinity) {
  v1::ApplyServicesRequest req;
  services_into(two_frontends(), &req);
  ASSERT_EQ(req.services_size(), 3);
  const v1::ServiceFrontend& web = req.services(0);
  EXPECT_EQ(web.name(), "shop/web:http");
  EXPECT_EQ(web.vip(), "10.96.0.10");
  EXPECT_EQ(web.port(), 80u);
  EXPECT_EQ(web.protocol(), v1::TCP);
  EXPECT_EQ(web.affinity_timeout_s(), 10800u);
  const v1::ServiceFrontend& dns = req.services(1);
  EXPECT_EQ(dns.name(), "kube-system/dns:53");  // no port name: its number
  EXPECT_EQ(dns.vip(), "fd00:96::a");
  EXPECT_EQ(dns.protocol(), v1::UDP);
  EXPECT_EQ(dns.affinity_timeout_s(), 0u);  // no affinity, whatever the timeout says
  EXPECT_EQ(dns.backends_size(), 0);
  EXPECT_EQ(req.services(2).protocol(), v1::SCTP);
  EXPECT_EQ(static_cast<int>(v1::TCP), kProtoTcp);
  EXPECT_EQ(static_cast<int>(v1::UDP), kProtoUdp);
  EXPECT_EQ(static_cast<int>(v1::SCTP), kProtoSctp);
}

TEST(ServicesProto, BackendsActiveAndDrainingWithWhatOperatorsRead) {
  v1::ApplyServicesRequest req;
  services_into(two_frontends(), &req);
  const auto& b = req.services(0).backends();
  ASSERT_EQ(b.size(), 3);
  EXPECT_EQ(b[0].address(), "10.1.0.5");
  EXPECT_EQ(b[0].port(), 8080u);
  EXPECT_EQ(b[0].weight(), 1u);
  EXPECT_EQ(b[0].use(), v1::Backend::ACTIVE);
  EXPECT_EQ(b[0].reason(), "");
  EXPECT_EQ(b[0].node(), "node1");
  EXPECT_EQ(b[0].target(), "shop/web-a1");
  EXPECT_EQ(b[1].use(), v1::Backend::DRAINING);
  EXPECT_EQ(b[1].reason(), "terminating");
  EXPECT_EQ(b[1].node(), "node2");
  EXPECT_EQ(b[2].use(), v1::Backend::DRAINING);
  EXPECT_EQ(b[2].reason(), "not ready");
  EXPECT_EQ(b[2].node(), "");
  EXPECT_EQ(b[2].target(), "");
  EXPECT_EQ(backend_count(two_frontends()), 3u);
}

TEST(ServicesProto, ReplacesTheServicesAndKeepsGenerationAndForce) {
  v1::ApplyServicesRequest req;
  req.set_generation(7);
  req.set_force(true);
  req.add_services()->set_name("stale");
  services_into(two_frontends(), &req);
  EXPECT_EQ(req.services_size(), 3);
  EXPECT_EQ(req.services(0).name(), "shop/web:http");
  EXPECT_EQ(req.generation(), 7u);
  EXPECT_TRUE(req.force());
  services_into(DesiredServices{}, &req);
  EXPECT_EQ(req.services_size(), 0);
}

// The controller compares sets and the data plane says "unchanged" for the
// live one: objects that come in another order give the same bytes.
TEST(ServicesProto, TheSameObjectsInAnotherOrderGiveTheSameBytes) {
  auto make = [](bool reversed) {
    ClusterObjects c;
    std::vector<std::pair<std::string, std::shared_ptr<const EndpointSliceObject>>> slices;
    for (const char* name : {"web-a", "web-b"}) {
      EndpointSliceObject s;
      s.ns = "shop";
      s.name = name;
      s.service = "web";
      s.family = 4;
      s.ports = {{"http", kProtoTcp, 8080}};
      Endpoint ready;
      ready.addresses = {ip(name[4] == 'a' ? "10.1.0.9" : "10.1.0.2")};
      ready.node_name = "node1";
      Endpoint gone;
      gone.addresses = {ip(name[4] == 'a' ? "10.1.0.4" : "10.1.0.3")};
      gone.ready = gone.serving = false;
      gone.terminating = true;
      s.endpoints = reversed ? std::vector<Endpoint>{gone, ready} : std::vector<Endpoint>{ready, gone};
      c.endpoint_slices["shop/" + std::string(name)] = std::make_shared<const EndpointSliceObject>(s);
    }
    ServiceObject svc;
    svc.ns = "shop";
    svc.name = "web";
    svc.cluster_ips = {ip("10.96.0.10")};
    svc.ports = {{"http", kProtoTcp, 80}, {"alt", kProtoTcp, 8000}};
    if (reversed) std::swap(svc.ports[0], svc.ports[1]);
    c.services["shop/web"] = std::make_shared<const ServiceObject>(svc);
    return c;
  };
  v1::ApplyServicesRequest a, b;
  services_into(desired_services(make(false), "node1"), &a);
  services_into(desired_services(make(true), "node1"), &b);
  std::string bytes_a, bytes_b;
  ASSERT_TRUE(a.SerializeToString(&bytes_a));
  ASSERT_TRUE(b.SerializeToString(&bytes_b));
  EXPECT_EQ(bytes_a, bytes_b);
  ASSERT_EQ(a.services_size(), 2);
  EXPECT_EQ(a.services(0).name(), "shop/web:http");  // port 80 before 8000
  ASSERT_EQ(a.services(0).backends_size(), 4);
  EXPECT_EQ(a.services(0).backends(0).address(), "10.1.0.2");
  EXPECT_EQ(a.services(0).backends(1).reason(), "terminating");
}

}  // namespace
}  // namespace meshwire::control
