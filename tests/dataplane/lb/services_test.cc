// Service snapshots: the checks with the field they name, the lookup
// indexes, each backend's node, and which backends a new connection may get.
#include "lb/services.h"

#include <gtest/gtest.h>

#include <map>
#include <set>

#include "support/two_nodes.h"

namespace meshwire::dp::lb {
namespace {

BackendConfig backend(const char* address, uint16_t port) {
  BackendConfig b;
  b.address = test::addr(address);
  b.port = port;
  return b;
}

FrontendConfig frontend(const char* vip, uint16_t port, std::vector<BackendConfig> backends,
                        uint8_t protocol = net::kProtoTcp) {
  FrontendConfig f;
  f.name = "ns/svc:p";
  f.vip = test::addr(vip);
  f.port = port;
  f.protocol = protocol;
  f.backends = std::move(backends);
  return f;
}

TEST(ServicesCheck, EachRuleNamesItsField) {
  struct Case {
    ServicesConfig services;
    std::string error;
  };
  FrontendConfig ok = frontend("10.96.0.1", 80, {backend("10.11.0.2", 8080)});
  auto with = [&](auto change) {
    FrontendConfig f = ok;
    change(f);
    return ServicesConfig{f};
  };
  const std::vector<Case> cases = {
      {with([](FrontendConfig& f) { f.protocol = 1; }), "services[0].protocol: must be TCP, UDP or SCTP"},
      {with([](FrontendConfig& f) { f.port = 0; }), "services[0].port: must be 1..65535"},
      {with([](FrontendConfig& f) { f.vip = test::addr("0.0.0.0"); }),
       "services[0].vip: 0.0.0.0 is not a usable address"},
      {with([](FrontendConfig& f) { f.backends[0].address = test::addr("fd00::2"); }),
       "services[0].backends[0].address: fd00::2 is not of the VIP's family (IPv4)"},
      {with([](FrontendConfig& f) { f.backends[0].port = 0; }), "services[0].backends[0].port: must be 1..65535"},
      {with([](FrontendConfig& f) { f.backends[0].weight = 1001; }),
       "services[0].backends[0].weight: must be 1..1000"},
      {with([](FrontendConfig& f) { f.backends.push_back(f.backends[0]); }),
       "services[0].backends[1]: 10.11.0.2:8080 is listed twice"},
      {ServicesConfig{ok, ok}, "services[1]: 10.96.0.1:80/TCP is already a frontend"},
  };
  for (const Case& c : cases) {
    Status s = check_services(c.services);
    ASSERT_FALSE(s.ok()) << c.error;
    EXPECT_EQ(s.error(), c.error);
  }
  EXPECT_TRUE(check_services({ok}).ok());
  FrontendConfig udp = ok;
  udp.protocol = net::kProtoUdp;
  EXPECT_TRUE(check_services({ok, udp}).ok()) << "the same VIP and port over another protocol";
}

class ServicesBuild : public ::testing::Test {
 protected:
  test::TestNode node_{"svcb", false, 0};
};

TEST_F(ServicesBuild, BackendsKnowTheirNodeAndTheIndexesFindFrontendsAndBackends) {
  ASSERT_EQ(node_.apply_services({frontend("10.96.0.1", 80,
                                           {backend("10.11.0.2", 8080), backend("10.12.0.9", 8080),
                                            backend("10.99.0.1", 8080)})},
                                 1),
            "");
  const ServiceTable& t = *node_.services;
  ASSERT_EQ(t.frontends.size(), 1u);
  const FrontendRuntime& f = t.frontends[0];
  EXPECT_EQ(f.backends[0].link, nullptr);  // this node's pod
  EXPECT_TRUE(f.backends[0].routed);
  ASSERT_NE(f.backends[1].link, nullptr);  // peer b's pod
  EXPECT_EQ(f.backends[1].link, node_.tables->peers[0]->link);
  EXPECT_FALSE(f.backends[2].routed);  // nobody's
  EXPECT_EQ(f.maglev.size(), maglev_table_size(3));
  EXPECT_EQ(f.backends[0].slots + f.backends[1].slots + f.backends[2].slots, f.maglev.size());

  const IpAddress vip = test::addr("10.96.0.1");
  EXPECT_EQ(t.by_frontend.find(endpoint_key(4, net::kProtoTcp, vip.bytes.data(), 80)), 0u);
  EXPECT_EQ(t.by_frontend.find(endpoint_key(4, net::kProtoUdp, vip.bytes.data(), 80)), EndpointIndex::kNone);
  EXPECT_EQ(t.by_frontend.find(endpoint_key(4, 0, vip.bytes.data(), 0)), 0u);  // fragments
  const IpAddress b1 = test::addr("10.12.0.9");
  EXPECT_EQ(t.by_backend.find(endpoint_key(4, net::kProtoTcp, b1.bytes.data(), 8080)), 0u);
  EXPECT_EQ(t.by_backend.find(endpoint_key(4, net::kProtoTcp, b1.bytes.data(), 8081)), EndpointIndex::kNone);
}

TEST_F(ServicesBuild, NewConnectionsAvoidBackendsThatAreDrainingDownOrEjected) {
  std::vector<BackendConfig> bs = {backend("10.11.0.2", 8080), backend("10.12.0.9", 8080), backend("10.11.0.3", 8080)};
  bs[2].draining = true;
  ASSERT_EQ(node_.apply_services({frontend("10.96.0.1", 80, bs)}, 1), "");
  const FrontendRuntime& f = node_.services->frontends[0];
  EXPECT_EQ(f.backends[2].slots, 0u);
  auto spread = [&](uint32_t now) {
    std::map<uint16_t, int> n;
    for (uint64_t h = 0; h < 3000; ++h) n[select_backend(f, h * 0x9E3779B97F4A7C15ull, now)]++;
    return n;
  };
  auto all = spread(1000);
  EXPECT_GT(all[0], 1000);
  EXPECT_GT(all[1], 1000);
  EXPECT_EQ(all.count(2), 0u);
  // B stops answering its keepalives: its backend is skipped.
  f.backends[1].link->down.store(true);
  auto no_b = spread(1000);
  EXPECT_EQ(no_b[0], 3000);
  f.backends[1].link->down.store(false);
  // Ejected until 2000: skipped until then.
  f.backends[0].health->ejected_until_ms.store(2000);
  EXPECT_EQ(spread(1500)[1], 3000);
  EXPECT_GT(spread(2500)[0], 1000);
  // Nothing selectable: no backend.
  f.backends[1].link->down.store(true);
  EXPECT_EQ(spread(1500)[kNoBackend], 3000);
  f.backends[1].link->down.store(false);
}

TEST_F(ServicesBuild, HealthOutlivesSnapshotsOfTheSameFrontendAndBackend) {
  ASSERT_EQ(node_.apply_services({frontend("10.96.0.1", 80, {backend("10.11.0.2", 8080)})}, 1), "");
  node_.services->frontends[0].backends[0].health->connections.store(7);
  ASSERT_EQ(node_.apply_services({frontend("10.96.0.1", 80, {backend("10.11.0.2", 8080), backend("10.11.0.3", 80)})}, 2),
            "");
  EXPECT_EQ(node_.services->frontends[0].backends[0].health->connections.load(), 7u);
  EXPECT_EQ(node_.services->frontends[0].backends[1].health->connections.load(), 0u);
  ASSERT_EQ(node_.apply_services({}, 3), "");
  EXPECT_EQ(node_.service_shared->health_entries(), 0u);
}

TEST_F(ServicesBuild, AFlowsPlaceIsItsFrontendAndBackendWhileBothExist) {
  ASSERT_EQ(node_.apply_services({frontend("10.96.0.1", 80, {backend("10.11.0.2", 8080), backend("10.11.0.3", 8080)})}, 1),
            "");
  Flow f;
  f.forward.family = 4;
  f.forward.proto = net::kProtoTcp;
  f.forward.dst_port = 80;
  const IpAddress vip = test::addr("10.96.0.1");
  std::memcpy(f.forward.dst, vip.bytes.data(), 4);
  const IpAddress b = test::addr("10.11.0.3");
  std::memcpy(f.backend, b.bytes.data(), 16);
  f.backend_port = 8080;
  auto place = node_.services->place_of(f);
  EXPECT_EQ(place.frontend, 0u);
  EXPECT_EQ(place.backend, 1u);
  f.backend_port = 8081;
  EXPECT_FALSE(node_.services->serves(f));
  f.backend_port = 8080;
  f.forward.dst_port = 81;
  EXPECT_FALSE(node_.services->serves(f));
}

TEST_F(ServicesBuild, UdpFlowsAndAffinityToADownNodeMoveOnWhileConnectionsStay) {
  // 10.11.0.2 is this node's pod, 10.12.0.9 node b's.
  ASSERT_EQ(node_.apply_services({frontend("10.96.0.1", 53, {backend("10.11.0.2", 5353), backend("10.12.0.9", 5353)},
                                           net::kProtoUdp),
                                  frontend("10.96.0.1", 80, {backend("10.11.0.2", 8080), backend("10.12.0.9", 8080)})},
                                 1),
            "");
  const IpAddress vip = test::addr("10.96.0.1");
  auto fill = [&](Flow& f, uint8_t proto, uint16_t port, const char* backend_address, uint16_t backend_port,
                  FlowState state) {
    f.forward.family = 4;
    f.forward.proto = proto;
    f.forward.dst_port = port;
    std::memcpy(f.forward.dst, vip.bytes.data(), 4);
    const IpAddress b = test::addr(backend_address);
    std::memcpy(f.backend, b.bytes.data(), 16);
    f.backend_port = backend_port;
    f.state.store(static_cast<uint8_t>(state));
  };
  Flow udp_remote, udp_local, tcp_remote, affinity_remote;
  fill(udp_remote, net::kProtoUdp, 53, "10.12.0.9", 5353, FlowState::kUdp);
  fill(udp_local, net::kProtoUdp, 53, "10.11.0.2", 5353, FlowState::kUdp);
  fill(tcp_remote, net::kProtoTcp, 80, "10.12.0.9", 8080, FlowState::kEstablished);
  fill(affinity_remote, kAffinityProto, 80, "10.12.0.9", 8080, FlowState::kAffinity);
  affinity_remote.forward.src_port = net::kProtoTcp;  // affinity_key() keeps the protocol there
  for (const Flow* f : {&udp_remote, &udp_local, &tcp_remote, &affinity_remote}) {
    EXPECT_TRUE(node_.services->keeps(*f));
  }
  node_.services->frontends[0].backends[1].link->down.store(true);  // one link per peer: both frontends'
  EXPECT_FALSE(node_.services->keeps(udp_remote));
  EXPECT_FALSE(node_.services->keeps(affinity_remote));
  EXPECT_TRUE(node_.services->keeps(udp_local));
  EXPECT_TRUE(node_.services->keeps(tcp_remote));
  node_.services->frontends[0].backends[1].link->down.store(false);
  EXPECT_TRUE(node_.services->keeps(udp_remote));
}

}  // namespace
}  // namespace meshwire::dp::lb

namespace meshwire::dp::lb {
namespace {

// 1,000 VIPs of one /16 on one port: their keys differ only in two address
// bytes, which must still spread them over the index (they once fell on
// two slots, and a lookup walked up to a thousand).
TEST(EndpointIndex, VipsOfOneSubnetSpreadOverTheTable) {
  std::vector<std::pair<EndpointKey, uint32_t>> entries;
  for (uint32_t i = 0; i < 1000; ++i) {
    const uint8_t addr[4] = {10, 96, static_cast<uint8_t>(i >> 8), static_cast<uint8_t>(i)};
    entries.push_back({endpoint_key(4, net::kProtoTcp, addr, 80), i});
  }
  EndpointIndex index;
  index.build(entries);
  std::set<uint64_t> homes;
  for (const auto& [key, value] : entries) {
    EXPECT_EQ(index.find(key), value);
    homes.insert(endpoint_hash(key) & 2047);  // the index has 2048 slots for 1,000 keys
  }
  // A uniform hash puts 1,000 keys on about 790 distinct slots of 2,048.
  EXPECT_GT(homes.size(), 700u);
  const uint8_t other[4] = {10, 96, 9, 9};
  EXPECT_EQ(index.find(endpoint_key(4, net::kProtoTcp, other, 80)), EndpointIndex::kNone);
}

}  // namespace
}  // namespace meshwire::dp::lb
