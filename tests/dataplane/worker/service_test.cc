// Services through the worker stages: a client pod on node A connects to a
// VIP whose backends live on A and on B; the first packet picks a backend,
// every later one of the connection goes to the same, and replies come back
// from the VIP, whether the backend answered on this node or through the
// tunnel. Frames are compared whole with frames the test builder makes (so
// every checksum is checked too).
#include <map>
#include <set>

#include "worker/control.h"
#include "worker_fixture.h"

namespace meshwire::dp {
namespace {

using test::ip6;
using test::kTcpAck;
using test::kTcpFin;
using test::kTcpRst;
using test::kTcpSyn;

constexpr const char* kClientMac = "02:00:00:00:11:02";
constexpr const char* kLocalBackendMac = "02:00:00:00:11:07";
constexpr const char* kRemoteBackendMac = "02:00:00:00:12:05";

lb::BackendConfig backend(const char* address, uint16_t port, bool draining = false) {
  lb::BackendConfig b;
  b.address = test::addr(address);
  b.port = port;
  b.draining = draining;
  if (draining) b.reason = "terminating";
  return b;
}

lb::FrontendConfig web(std::vector<lb::BackendConfig> backends, uint8_t protocol = net::kProtoTcp,
                       uint32_t affinity_s = 0) {
  lb::FrontendConfig f;
  f.name = "default/web:http";
  f.vip = test::addr("10.96.0.10");
  f.port = 80;
  f.protocol = protocol;
  f.affinity_timeout_s = affinity_s;
  f.backends = std::move(backends);
  return f;
}

// 10.12.0.5:8080 on B and 10.11.0.7:8080 here on A.
std::vector<lb::BackendConfig> two_backends() { return {backend("10.12.0.5", 8080), backend("10.11.0.7", 8080)}; }

class ServiceTest : public WorkerTest {
 protected:
  void SetUp() override {
    WorkerTest::SetUp();
    a_->learn("10.11.0.2", kClientMac);
    a_->learn("10.11.0.7", kLocalBackendMac);
    b_->learn("10.12.0.5", kRemoteBackendMac);
  }

  static Bytes to_vip(uint16_t sport, uint8_t flags, uint8_t ttl = 64) {
    return PacketBuilder()
        .eth(mac(kClientMac), mac("02:aa:00:00:00:01"))
        .ipv4(ip4("10.11.0.2"), ip4("10.96.0.10"))
        .ttl(ttl)
        .tcp(sport, 80, flags)
        .build();
  }
  // What a backend receives: the client's packet with the backend as destination.
  static Bytes at_backend(const char* backend_ip, const char* backend_mac, const char* gw_mac, uint16_t sport,
                          uint8_t flags, uint8_t ttl) {
    return PacketBuilder()
        .eth(mac(gw_mac), mac(backend_mac))
        .ipv4(ip4("10.11.0.2"), ip4(backend_ip))
        .ttl(ttl)
        .tcp(sport, 8080, flags)
        .build();
  }
  static Bytes from_backend(const char* backend_ip, const char* backend_mac, const char* gw_mac, uint16_t dport,
                            uint8_t flags) {
    return PacketBuilder()
        .eth(mac(backend_mac), mac(gw_mac))
        .ipv4(ip4(backend_ip), ip4("10.11.0.2"))
        .tcp(8080, dport, flags, 5000, 1001)
        .build();
  }
  // What the client receives: the reply from the VIP.
  static Bytes reply_at_client(uint16_t dport, uint8_t flags, uint8_t ttl) {
    return PacketBuilder()
        .eth(mac("02:aa:00:00:00:01"), mac(kClientMac))
        .ipv4(ip4("10.96.0.10"), ip4("10.11.0.2"))
        .ttl(ttl)
        .tcp(80, dport, flags, 5000, 1001)
        .build();
  }

  // Sends a client packet from `sport`; says where it went: 'L' the local
  // backend, 'R' the tunnel to B, '-' nowhere.
  char send(uint16_t sport, uint8_t flags) {
    local_rx(*a_, {to_vip(sport, flags)});
    auto local = a_->take(kLocal);
    auto wire = a_->take(kUplink);
    if (local.size() == 1 && wire.empty()) return 'L';
    if (wire.size() == 1 && local.empty()) return 'R';
    return '-';
  }
};

TEST_F(ServiceTest, ConnectionsSpreadOverBothNodesAndEachStaysOnItsBackend) {
  ASSERT_EQ(a_->apply_services({web(two_backends())}, 1), "");
  std::map<uint16_t, char> first;
  for (uint16_t p = 40000; p < 40200; ++p) first[p] = send(p, kTcpSyn);
  int local = 0, remote = 0;
  for (const auto& [port, where] : first) {
    ASSERT_NE(where, '-') << port;
    (where == 'L' ? local : remote)++;
  }
  // Equal weights: about half each (Maglev shares are within one slot; the
  // flows are 200 draws).
  EXPECT_GT(local, 60);
  EXPECT_GT(remote, 60);
  EXPECT_EQ(a_->counters.service_new_flows, 200u);
  EXPECT_EQ(a_->conntrack->size(), 200u);
  // Every later packet of a connection goes where its first did.
  for (const auto& [port, where] : first) ASSERT_EQ(send(port, kTcpAck), where) << port;
  EXPECT_EQ(a_->counters.service_new_flows, 200u);
  EXPECT_EQ(a_->counters.service_dnat_packets, 400u);
}

TEST_F(ServiceTest, ALocalBackendGetsTheConnectionAndItsReplyComesFromTheVip) {
  ASSERT_EQ(a_->apply_services({web({backend("10.11.0.7", 8080)})}, 1), "");
  local_rx(*a_, {to_vip(40000, kTcpSyn)});
  auto at = a_->take(kLocal);
  ASSERT_EQ(at.size(), 1u);
  EXPECT_EQ(at[0], at_backend("10.11.0.7", kLocalBackendMac, "02:aa:00:00:00:01", 40000, kTcpSyn, 63));

  local_rx(*a_, {from_backend("10.11.0.7", kLocalBackendMac, "02:aa:00:00:00:01", 40000, kTcpSyn | kTcpAck)});
  auto back = a_->take(kLocal);
  ASSERT_EQ(back.size(), 1u);
  EXPECT_EQ(back[0], reply_at_client(40000, kTcpSyn | kTcpAck, 63));
  EXPECT_EQ(a_->counters.service_reverse_packets, 1u);
  // The SYN-ACK made the connection established.
  bool seen = false;
  a_->conntrack->for_each([&](uint32_t, const lb::Flow& f) {
    seen = true;
    EXPECT_EQ(static_cast<lb::FlowState>(f.state.load()), lb::FlowState::kEstablished);
  });
  EXPECT_TRUE(seen);
}

// Just after a data plane starts (its first services generation), its
// connection table is empty: a backend's reply met before the client's next
// packet is dropped, not delivered untranslated (which draws a RST from the
// client); the client's packet recreates the connection, and the backend's
// next one is translated. After the grace, or towards a pod of another
// node, a backend's packet without a connection passes untouched.
TEST_F(ServiceTest, AnUntrackedReplyJustAfterTheStartIsDroppedUntilTheClientsPacketComes) {
  a_->ctx.now_ms = 5000;
  ASSERT_EQ(a_->apply_services({web({backend("10.11.0.7", 8080)})}, 1), "");
  const Bytes reply = from_backend("10.11.0.7", kLocalBackendMac, "02:aa:00:00:00:01", 40000, kTcpAck);
  local_rx(*a_, {reply});
  EXPECT_TRUE(a_->take(kLocal).empty());
  EXPECT_EQ(a_->drops(DropReason::kServiceReplyUntracked), 1u);
  // To a client on another node: that node translates it; it passes here.
  local_rx(*a_, {PacketBuilder()
                     .eth(mac(kLocalBackendMac), mac("02:aa:00:00:00:01"))
                     .ipv4(ip4("10.11.0.7"), ip4("10.12.0.9"))
                     .tcp(8080, 40000, kTcpAck, 5000, 1001)
                     .build()});
  EXPECT_EQ(a_->take(kUplink).size(), 1u);
  EXPECT_EQ(a_->drops(DropReason::kServiceReplyUntracked), 1u);
  // The client's packet, mid-stream, is picked up; then the reply is translated.
  local_rx(*a_, {to_vip(40000, kTcpAck)});
  ASSERT_EQ(a_->take(kLocal).size(), 1u);
  local_rx(*a_, {reply});
  auto back = a_->take(kLocal);
  ASSERT_EQ(back.size(), 1u);
  EXPECT_EQ(back[0], reply_at_client(40000, kTcpAck, 63));
  // A later generation keeps the grace's end; once it has passed, an
  // untracked packet from the backend goes through as it is.
  ASSERT_EQ(a_->apply_services({web({backend("10.11.0.7", 8080), backend("10.12.0.5", 8080)})}, 2), "");
  EXPECT_EQ(a_->services->untracked_reply_until_ms, (5000 + lb::kUntrackedReplyGraceMs) | 1u);
  a_->ctx.now_ms = 5000 + lb::kUntrackedReplyGraceMs + 1;
  const Bytes other = from_backend("10.11.0.7", kLocalBackendMac, "02:aa:00:00:00:01", 40001, kTcpAck);
  local_rx(*a_, {other});
  auto through = a_->take(kLocal);
  ASSERT_EQ(through.size(), 1u);
  EXPECT_EQ(a_->drops(DropReason::kServiceReplyUntracked), 1u);
}

TEST_F(ServiceTest, ARemoteBackendIsReachedThroughTheTunnelAndAnswersFromTheVip) {
  ASSERT_EQ(a_->apply_services({web({backend("10.12.0.5", 8080)})}, 1), "");
  local_rx(*a_, {to_vip(40001, kTcpSyn)});
  auto wire = a_->take(kUplink);
  ASSERT_EQ(wire.size(), 1u);
  // B sees plain pod-to-pod traffic: it has no service state at all.
  uplink_rx(*b_, wire);
  auto at = b_->take(kLocal);
  ASSERT_EQ(at.size(), 1u);
  EXPECT_EQ(at[0], at_backend("10.12.0.5", kRemoteBackendMac, "02:bb:00:00:00:01", 40001, kTcpSyn, 62));

  local_rx(*b_, {from_backend("10.12.0.5", kRemoteBackendMac, "02:bb:00:00:00:01", 40001, kTcpSyn | kTcpAck)});
  auto back_wire = b_->take(kUplink);
  ASSERT_EQ(back_wire.size(), 1u);
  uplink_rx(*a_, back_wire);
  auto back = a_->take(kLocal);
  ASSERT_EQ(back.size(), 1u);
  EXPECT_EQ(back[0], reply_at_client(40001, kTcpSyn | kTcpAck, 62));
  EXPECT_EQ(a_->counters.service_reverse_packets, 1u);
}

TEST_F(ServiceTest, ADrainingBackendKeepsItsConnectionsButTakesNoNewOnes) {
  ASSERT_EQ(a_->apply_services({web(two_backends())}, 1), "");
  std::map<uint16_t, char> first;
  for (uint16_t p = 41000; p < 41040; ++p) first[p] = send(p, kTcpSyn);
  // B's backend starts terminating.
  ASSERT_EQ(a_->apply_services({web({backend("10.12.0.5", 8080, true), backend("10.11.0.7", 8080)})}, 2), "");
  for (const auto& [port, where] : first) ASSERT_EQ(send(port, kTcpAck), where) << port;
  for (uint16_t p = 42000; p < 42040; ++p) EXPECT_EQ(send(p, kTcpSyn), 'L') << p;
}

TEST_F(ServiceTest, ConnectionsToARemovedBackendAreClosedAndTheClientsNextPacketChoosesAgain) {
  ASSERT_EQ(a_->apply_services({web(two_backends())}, 1), "");
  std::vector<uint16_t> on_remote;
  for (uint16_t p = 43000; p < 43040; ++p) {
    if (send(p, kTcpSyn) == 'R') on_remote.push_back(p);
  }
  ASSERT_FALSE(on_remote.empty());
  ASSERT_EQ(a_->apply_services({web({backend("10.11.0.7", 8080)})}, 2), "");
  const lb::ServiceTable& live = *a_->services;
  const lb::SweepStats s =
      a_->conntrack->sweep(a_->ctx.now_ms, a_->conntrack->capacity(), [&](const lb::Flow& f) { return !live.keeps(f); });
  EXPECT_EQ(s.closed, on_remote.size());
  for (uint16_t p : on_remote) EXPECT_EQ(send(p, kTcpAck), 'L') << p;
}

TEST_F(ServiceTest, ClientIpAffinitySendsEveryConnectionOfAClientToOneBackend) {
  ASSERT_EQ(a_->apply_services({web(two_backends(), net::kProtoTcp, 10800)}, 1), "");
  std::set<char> seen;
  for (uint16_t p = 44000; p < 44050; ++p) seen.insert(send(p, kTcpSyn));
  EXPECT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen.count('-'), 0u);
}

TEST_F(ServiceTest, WithoutABackendANewConnectionIsDroppedAndCounted) {
  ASSERT_EQ(a_->apply_services({web({backend("10.12.0.5", 8080, true)})}, 1), "");
  EXPECT_EQ(send(45000, kTcpSyn), '-');
  EXPECT_EQ(a_->drops(DropReason::kNoBackend), 1u);
  ASSERT_EQ(a_->apply_services({web({})}, 2), "");
  EXPECT_EQ(send(45001, kTcpSyn), '-');
  EXPECT_EQ(a_->drops(DropReason::kNoBackend), 2u);
}

TEST_F(ServiceTest, ALaterFragmentToAVipIsDroppedAndCounted) {
  ASSERT_EQ(a_->apply_services({web(two_backends(), net::kProtoUdp)}, 1), "");
  const Bytes frag = PacketBuilder()
                         .eth(mac(kClientMac), mac("02:aa:00:00:00:01"))
                         .ipv4(ip4("10.11.0.2"), ip4("10.96.0.10"))
                         .fragment(1480, false)
                         .ip_proto(net::kProtoUdp)
                         .payload(Bytes(100, 1))
                         .build();
  local_rx(*a_, {frag});
  EXPECT_EQ(a_->drops(DropReason::kServiceFragment), 1u);
}

TEST_F(ServiceTest, UdpAndTcpOnOnePortAreTwoFrontends) {
  lb::FrontendConfig dns_udp = web({backend("10.11.0.7", 53)}, net::kProtoUdp);
  dns_udp.port = 53;
  lb::FrontendConfig dns_tcp = web({backend("10.12.0.5", 53)}, net::kProtoTcp);
  dns_tcp.port = 53;
  ASSERT_EQ(a_->apply_services({dns_udp, dns_tcp}, 1), "");
  const Bytes query = PacketBuilder()
                          .eth(mac(kClientMac), mac("02:aa:00:00:00:01"))
                          .ipv4(ip4("10.11.0.2"), ip4("10.96.0.10"))
                          .udp(5353, 53)
                          .payload(Bytes(20, 7))
                          .build();
  local_rx(*a_, {query});
  auto at = a_->take(kLocal);
  ASSERT_EQ(at.size(), 1u);
  const Bytes expect = PacketBuilder()
                           .eth(mac("02:aa:00:00:00:01"), mac(kLocalBackendMac))
                           .ipv4(ip4("10.11.0.2"), ip4("10.11.0.7"))
                           .ttl(63)
                           .udp(5353, 53)
                           .payload(Bytes(20, 7))
                           .build();
  EXPECT_EQ(at[0], expect);
  local_rx(*a_, {PacketBuilder()
                     .eth(mac(kClientMac), mac("02:aa:00:00:00:01"))
                     .ipv4(ip4("10.11.0.2"), ip4("10.96.0.10"))
                     .tcp(5353, 53, kTcpSyn)
                     .build()});
  EXPECT_EQ(a_->take(kUplink).size(), 1u);
}

TEST_F(ServiceTest, AnIpv6VipIsBalancedLikeAnIpv4One) {
  a_->learn("fd00:11::2", kClientMac);
  a_->learn("fd00:11::7", kLocalBackendMac);
  lb::FrontendConfig f;
  f.name = "default/web:http";
  f.vip = test::addr("fd00:96::10");
  f.port = 80;
  f.backends = {backend("fd00:11::7", 8080)};
  ASSERT_EQ(a_->apply_services({f}, 1), "");
  local_rx(*a_, {PacketBuilder()
                     .eth(mac(kClientMac), mac("02:aa:00:00:00:01"))
                     .ipv6(ip6("fd00:11::2"), ip6("fd00:96::10"))
                     .tcp(40000, 80, kTcpSyn)
                     .build()});
  auto at = a_->take(kLocal);
  ASSERT_EQ(at.size(), 1u);
  EXPECT_EQ(at[0], PacketBuilder()
                       .eth(mac("02:aa:00:00:00:01"), mac(kLocalBackendMac))
                       .ipv6(ip6("fd00:11::2"), ip6("fd00:11::7"))
                       .ttl(63)
                       .tcp(40000, 8080, kTcpSyn)
                       .build());
  local_rx(*a_, {PacketBuilder()
                     .eth(mac(kLocalBackendMac), mac("02:aa:00:00:00:01"))
                     .ipv6(ip6("fd00:11::7"), ip6("fd00:11::2"))
                     .tcp(8080, 40000, kTcpSyn | kTcpAck)
                     .build()});
  auto back = a_->take(kLocal);
  ASSERT_EQ(back.size(), 1u);
  EXPECT_EQ(back[0], PacketBuilder()
                         .eth(mac("02:aa:00:00:00:01"), mac(kClientMac))
                         .ipv6(ip6("fd00:96::10"), ip6("fd00:11::2"))
                         .ttl(63)
                         .tcp(80, 40000, kTcpSyn | kTcpAck)
                         .build());
}

TEST_F(ServiceTest, FinAndRstShortenAConnectionsLifeInTheTable) {
  ASSERT_EQ(a_->apply_services({web({backend("10.11.0.7", 8080)})}, 1), "");
  ASSERT_EQ(send(46000, kTcpSyn), 'L');
  ASSERT_EQ(send(46001, kTcpSyn), 'L');
  ASSERT_EQ(send(46000, kTcpFin | kTcpAck), 'L');
  ASSERT_EQ(send(46001, kTcpRst), 'L');
  std::map<uint16_t, lb::FlowState> states;
  a_->conntrack->for_each([&](uint32_t, const lb::Flow& f) {
    states[f.forward.src_port] = static_cast<lb::FlowState>(f.state.load());
  });
  EXPECT_EQ(states[46000], lb::FlowState::kFinSeen);
  EXPECT_EQ(states[46001], lb::FlowState::kClosed);
  // Past the closing timeout both are gone; an idle established one would stay.
  const uint32_t later = a_->ctx.now_ms + a_->conntrack->timeouts().fin_seen_ms + 1;
  const lb::SweepStats s = a_->conntrack->sweep(later, a_->conntrack->capacity());
  EXPECT_EQ(s.expired, 2u);
}

TEST_F(ServiceTest, AnIcmpErrorFromABackendReachesTheClientFromTheVip) {
  lb::FrontendConfig dns = web({backend("10.11.0.7", 5353)}, net::kProtoUdp);
  dns.port = 53;
  ASSERT_EQ(a_->apply_services({dns}, 1), "");
  auto udp = [](const char* dst, uint16_t dport, uint8_t ttl) {
    const Bytes f = PacketBuilder()
                        .eth(mac(kClientMac), mac("02:aa:00:00:00:01"))
                        .ipv4(ip4("10.11.0.2"), ip4(dst))
                        .ttl(ttl)
                        .udp(5353, dport)
                        .payload(Bytes(12, 9))
                        .build();
    return Bytes(f.begin() + 14, f.end());  // the IP packet, as an ICMP error quotes it
  };
  local_rx(*a_, {PacketBuilder()
                     .eth(mac(kClientMac), mac("02:aa:00:00:00:01"))
                     .ipv4(ip4("10.11.0.2"), ip4("10.96.0.10"))
                     .udp(5353, 53)
                     .payload(Bytes(12, 9))
                     .build()});
  ASSERT_EQ(a_->take(kLocal).size(), 1u);
  // Nothing listens there: port unreachable, quoting what the backend got.
  local_rx(*a_, {PacketBuilder()
                     .eth(mac(kLocalBackendMac), mac("02:aa:00:00:00:01"))
                     .ipv4(ip4("10.11.0.7"), ip4("10.11.0.2"))
                     .icmp(3, 3)
                     .payload(udp("10.11.0.7", 5353, 63))
                     .build()});
  auto back = a_->take(kLocal);
  ASSERT_EQ(back.size(), 1u);
  EXPECT_EQ(back[0], PacketBuilder()
                         .eth(mac("02:aa:00:00:00:01"), mac(kClientMac))
                         .ipv4(ip4("10.96.0.10"), ip4("10.11.0.2"))
                         .ttl(63)
                         .icmp(3, 3)
                         .payload(udp("10.96.0.10", 53, 63))
                         .build());
  EXPECT_EQ(a_->counters.service_reverse_packets, 1u);
}

// Connect retries, with two backends on this node: 10.11.0.7 and 10.11.0.8.
class RetryTest : public ServiceTest {
 protected:
  void SetUp() override {
    ServiceTest::SetUp();
    a_->learn("10.11.0.8", "02:00:00:00:11:08");
    ASSERT_EQ(a_->apply_services({web({backend("10.11.0.7", 8080), backend("10.11.0.8", 8080)})}, 1), "");
  }
  // The backend a client's SYN reached (its IPv4 destination), or "".
  std::string syn_at() {
    auto out = a_->take(kLocal);
    if (out.size() != 1) return "";
    const Bytes& f = out[0];
    return std::to_string(f[30]) + "." + std::to_string(f[31]) + "." + std::to_string(f[32]) + "." +
           std::to_string(f[33]);
  }
  static const char* mac_of(const std::string& ip) { return ip == "10.11.0.7" ? kLocalBackendMac : "02:00:00:00:11:08"; }
  void refuse(const std::string& backend_ip, uint16_t client_port) {
    local_rx(*a_, {from_backend(backend_ip.c_str(), mac_of(backend_ip), "02:aa:00:00:00:01", client_port,
                                kTcpRst | kTcpAck)});
  }
  const lb::BackendHealth& health(const std::string& ip) {
    const lb::FrontendRuntime& f = a_->services->frontends[0];
    return *f.backends[ip == "10.11.0.7" ? 0 : 1].health;
  }
};

TEST_F(RetryTest, ARefusedConnectionGoesToTheNextBackendAndTheClientSeesNoRefusal) {
  local_rx(*a_, {to_vip(47000, kTcpSyn)});
  const std::string first = syn_at();
  ASSERT_FALSE(first.empty());
  refuse(first, 47000);
  EXPECT_TRUE(a_->take(kLocal).empty()) << "the RST must not reach the client";
  run_connect_retries(a_->ctx, a_->tx);
  const std::string second = syn_at();
  ASSERT_FALSE(second.empty());
  EXPECT_NE(second, first);
  EXPECT_EQ(a_->counters.service_connect_failures, 1u);
  EXPECT_EQ(a_->counters.service_connect_retries, 1u);
  EXPECT_EQ(health(first).failed_connects.load(), 1u);
  EXPECT_EQ(health(first).retries_away.load(), 1u);
  // The second backend answers: the client gets the SYN-ACK from the VIP,
  // and the connection stays there.
  local_rx(*a_, {from_backend(second.c_str(), mac_of(second), "02:aa:00:00:00:01", 47000, kTcpSyn | kTcpAck)});
  auto back = a_->take(kLocal);
  ASSERT_EQ(back.size(), 1u);
  EXPECT_EQ(back[0], reply_at_client(47000, kTcpSyn | kTcpAck, 63));
  run_connect_retries(a_->ctx, a_->tx);
  EXPECT_EQ(a_->ctx.pending.count, 0u);
  local_rx(*a_, {to_vip(47000, kTcpAck)});
  EXPECT_EQ(syn_at(), second);
}

TEST_F(RetryTest, AnUnansweredConnectionGoesToTheNextBackendAfterTheTimeout) {
  local_rx(*a_, {to_vip(47100, kTcpSyn)});
  const std::string first = syn_at();
  ASSERT_FALSE(first.empty());
  run_connect_retries(a_->ctx, a_->tx);
  EXPECT_TRUE(a_->take(kLocal).empty()) << "not yet: the timeout has not passed";
  a_->ctx.now_ms += a_->node.services.connect_timeout_ms;
  run_connect_retries(a_->ctx, a_->tx);
  const std::string second = syn_at();
  EXPECT_NE(second, first);
  EXPECT_FALSE(second.empty());
  EXPECT_EQ(health(first).failed_connects.load(), 1u);
}

TEST_F(RetryTest, AnIcmpUnreachableForTheSynIsRetriedToo) {
  local_rx(*a_, {PacketBuilder()
                     .eth(mac(kClientMac), mac("02:aa:00:00:00:01"))
                     .ipv4(ip4("10.11.0.2"), ip4("10.96.0.10"))
                     .tcp(47200, 80, kTcpSyn)
                     .build()});
  const std::string first = syn_at();
  ASSERT_FALSE(first.empty());
  const Bytes syn = PacketBuilder()
                        .eth(mac(kClientMac), mac("02:aa:00:00:00:01"))
                        .ipv4(ip4("10.11.0.2"), ip4(first.c_str()))
                        .ttl(63)
                        .tcp(47200, 8080, kTcpSyn)
                        .build();
  local_rx(*a_, {PacketBuilder()
                     .eth(mac(mac_of(first)), mac("02:aa:00:00:00:01"))
                     .ipv4(ip4(first.c_str()), ip4("10.11.0.2"))
                     .icmp(3, 3)
                     .payload(Bytes(syn.begin() + 14, syn.begin() + 14 + 28))
                     .build()});
  EXPECT_TRUE(a_->take(kLocal).empty());
  run_connect_retries(a_->ctx, a_->tx);
  EXPECT_NE(syn_at(), first);
}

TEST_F(RetryTest, WhenEveryAttemptIsUsedTheLastRefusalReachesTheClient) {
  a_->node.services.connect_attempts = 2;
  local_rx(*a_, {to_vip(47300, kTcpSyn)});
  const std::string first = syn_at();
  refuse(first, 47300);
  run_connect_retries(a_->ctx, a_->tx);
  const std::string second = syn_at();
  ASSERT_NE(second, first);
  refuse(second, 47300);
  auto back = a_->take(kLocal);
  ASSERT_EQ(back.size(), 1u);
  EXPECT_EQ(back[0], reply_at_client(47300, kTcpRst | kTcpAck, 63));
  run_connect_retries(a_->ctx, a_->tx);
  EXPECT_EQ(a_->ctx.pending.count, 0u);
}

TEST_F(RetryTest, ABackendThatKeepsRefusingIsEjectedForAWhile) {
  a_->node.services.outlier_failures = 3;
  // Connections until one backend has refused three in a row.
  std::string bad;
  int refused = 0;
  for (uint16_t p = 47400; p < 47500 && refused < 3; ++p) {
    local_rx(*a_, {to_vip(p, kTcpSyn)});
    const std::string at = syn_at();
    if (bad.empty()) bad = at;
    if (at == bad) {
      refuse(at, p);
      ++refused;
      run_connect_retries(a_->ctx, a_->tx);
      a_->clear_tx();
    }
  }
  ASSERT_EQ(refused, 3);
  EXPECT_EQ(a_->counters.service_outlier_ejections, 1u);
  EXPECT_NE(health(bad).ejected_until_ms.load(), 0u);
  for (uint16_t p = 47600; p < 47640; ++p) {
    local_rx(*a_, {to_vip(p, kTcpSyn)});
    EXPECT_NE(syn_at(), bad) << p;
  }
  // Back after the ejection.
  a_->ctx.now_ms += a_->node.services.outlier_ejection_s * 1000 + 1;
  std::set<std::string> seen;
  for (uint16_t p = 47700; p < 47760; ++p) {
    local_rx(*a_, {to_vip(p, kTcpSyn)});
    seen.insert(syn_at());
  }
  EXPECT_EQ(seen.count(bad), 1u);
}

TEST_F(ServiceTest, OneClientPortToTwoFrontendsOfOneBackendGetsTwoReplyTuples) {
  a_->learn("10.11.0.8", "02:00:00:00:11:08");
  lb::FrontendConfig one = web({backend("10.11.0.7", 8080)});
  lb::FrontendConfig two = web({backend("10.11.0.7", 8080), backend("10.11.0.8", 8080)});
  two.vip = test::addr("10.96.0.11");
  ASSERT_EQ(a_->apply_services({one, two}, 1), "");
  auto syn_to = [&](const char* vip) {
    local_rx(*a_, {PacketBuilder()
                       .eth(mac(kClientMac), mac("02:aa:00:00:00:01"))
                       .ipv4(ip4("10.11.0.2"), ip4(vip))
                       .tcp(48000, 80, kTcpSyn)
                       .build()});
    auto out = a_->take(kLocal);
    return out.size() == 1 ? static_cast<int>(out[0][33]) : -1;  // the last byte of the destination
  };
  EXPECT_EQ(syn_to("10.96.0.10"), 7);
  // Whatever Maglev says, 10.11.0.7:8080 -> 10.11.0.2:48000 is taken.
  EXPECT_EQ(syn_to("10.96.0.11"), 8);
  EXPECT_EQ(a_->conntrack->size(), 2u);
}

TEST_F(ServiceTest, ANewConnectionOnAClosedOnesTupleChoosesItsBackendAgain) {
  ASSERT_EQ(a_->apply_services({web(two_backends())}, 1), "");
  uint16_t port = 49000;
  while (send(port, kTcpSyn) != 'R') ++port;  // a connection to B's backend
  ASSERT_EQ(send(port, kTcpFin | kTcpAck), 'R');
  // B's backend drains; the client reuses the port for a new connection.
  ASSERT_EQ(a_->apply_services({web({backend("10.12.0.5", 8080, true), backend("10.11.0.7", 8080)})}, 2), "");
  EXPECT_EQ(send(port, kTcpSyn), 'L');
  EXPECT_EQ(send(port, kTcpAck), 'L');
}

// An ICMP error the data plane itself sends about a service connection's
// packet (here "fragmentation needed": the packet does not fit the tunnel to
// the backend's node) reaches the client about its packet to the ClusterIP,
// so that its kernel takes it (path MTU discovery works through services).
TEST_F(ServiceTest, AnIcmpErrorTheDataPlaneSendsAboutAServicePacketQuotesTheVip) {
  ASSERT_EQ(a_->apply_services({web({backend("10.12.0.5", 8080)}, net::kProtoUdp)}, 1), "");
  auto big = [](const char* dst, uint16_t dport, uint8_t ttl) {
    return PacketBuilder()
        .eth(mac(kClientMac), mac("02:aa:00:00:00:01"))
        .ipv4(ip4("10.11.0.2"), ip4(dst))
        .ttl(ttl)
        .dont_fragment()
        .udp(5000, dport)
        .payload(Bytes(1460, 3))
        .build();
  };
  local_rx(*a_, {big("10.96.0.10", 80, 64)});
  EXPECT_EQ(a_->drops(DropReason::kTooBig), 1u);
  std::vector<WorkerContext> workers{a_->ctx};
  WorkerCounters control_counters{};
  Control control(a_->node, a_->live, workers, pool_, &control_counters);
  control.poll();
  // The control thread hands the error to the worker as if the pod had sent it.
  void* v = nullptr;
  ASSERT_EQ(rte_ring_dequeue(a_->ctx.inject, &v), 0);
  auto* m = static_cast<rte_mbuf*>(v);
  ASSERT_EQ(static_cast<InjectKind>(m->hash.usr), InjectKind::kLocalRx);
  process_local_burst(a_->ctx, a_->tx, m->port, &m, 1);
  auto out = a_->take(kLocal);
  ASSERT_EQ(out.size(), 1u);
  const Bytes& f = out[0];
  net::PacketInfo info;
  ASSERT_EQ(net::parse_frame(f.data(), f.size(), &info), net::ParseResult::kOk);
  ASSERT_EQ(info.l4_proto, net::kProtoIcmp);
  EXPECT_EQ(f[info.l4_offset], 3);      // destination unreachable
  EXPECT_EQ(f[info.l4_offset + 1], 4);  // fragmentation needed
  // The quote: the client's packet to the ClusterIP, as the pod sent it
  // (refused before its TTL was decremented), checksums whole.
  const Bytes sent = big("10.96.0.10", 80, 64);
  const size_t quote = info.l4_offset + 8;
  EXPECT_EQ(Bytes(f.begin() + quote, f.begin() + quote + 28), Bytes(sent.begin() + 14, sent.begin() + 14 + 28));
  EXPECT_EQ(net::load_be16(f.data() + info.l3_offset + 12) >> 0, 0xA9FEu);  // from the gateway, 169.254.1.1
}

// A connection's two directions on two workers of one node: the client's
// packets on worker 0, the backend's replies on worker 1 (RSS is not
// symmetric), both find the one flow in the shared table.
TEST(ServiceWorkers, TheRepliesOfAConnectionMadeOnOneWorkerAreTranslatedOnAnother) {
  rte_mempool* pool = rte_pktmbuf_pool_create("svcw_pool", 512, 0, 0, RTE_MBUF_DEFAULT_BUF_SIZE, 0);
  ASSERT_NE(pool, nullptr);
  {
    test::TestNode a("svcwa", false, 0, 2);
    a.learn("10.11.0.2", kClientMac);
    a.learn("10.11.0.7", kLocalBackendMac);
    ASSERT_EQ(a.apply_services({web({backend("10.11.0.7", 8080)})}, 1), "");
    test::TestWorkers w(a, "svcww", 2);
    auto run = [&](WorkerContext& ctx, TxBuffers& tx, const Bytes& frame) {
      rte_mbuf* m = rte_pktmbuf_alloc(pool);
      std::memcpy(rte_pktmbuf_append(m, static_cast<uint16_t>(frame.size())), frame.data(), frame.size());
      process_local_burst(ctx, tx, kLocal, &m, 1);
      std::vector<Bytes> out;
      for (uint16_t i = 0; i < tx.count[kLocal]; ++i) {
        const uint8_t* d = rte_pktmbuf_mtod(tx.pkts[kLocal][i], const uint8_t*);
        out.emplace_back(d, d + tx.pkts[kLocal][i]->data_len);
        rte_pktmbuf_free(tx.pkts[kLocal][i]);
      }
      tx.count[kLocal] = 0;
      return out;
    };
    TxBuffers tx0, tx1;
    const Bytes syn = PacketBuilder()
                          .eth(mac(kClientMac), mac("02:aa:00:00:00:01"))
                          .ipv4(ip4("10.11.0.2"), ip4("10.96.0.10"))
                          .tcp(40000, 80, kTcpSyn)
                          .build();
    ASSERT_EQ(run(w.ctx[0], tx0, syn).size(), 1u);
    const Bytes syn_ack = PacketBuilder()
                              .eth(mac(kLocalBackendMac), mac("02:aa:00:00:00:01"))
                              .ipv4(ip4("10.11.0.7"), ip4("10.11.0.2"))
                              .tcp(8080, 40000, kTcpSyn | kTcpAck, 5000, 1001)
                              .build();
    auto back = run(w.ctx[1], tx1, syn_ack);
    ASSERT_EQ(back.size(), 1u);
    EXPECT_EQ(back[0], PacketBuilder()
                           .eth(mac("02:aa:00:00:00:01"), mac(kClientMac))
                           .ipv4(ip4("10.96.0.10"), ip4("10.11.0.2"))
                           .ttl(63)
                           .tcp(80, 40000, kTcpSyn | kTcpAck, 5000, 1001)
                           .build());
    EXPECT_EQ(w.counters[0].service_new_flows, 1u);
    EXPECT_EQ(w.counters[1].service_reverse_packets, 1u);
    for (WorkerContext& c : w.ctx) {
      release_connect_retries(c);
      a.conntrack->release(c.ct_cache);
    }
  }
  rte_mempool_free(pool);
}

TEST_F(ServiceTest, TrafficThatIsNotForAServiceIsUntouched) {
  ASSERT_EQ(a_->apply_services({web(two_backends())}, 1), "");
  local_rx(*a_, {pod_a_to_b()});
  EXPECT_EQ(a_->take(kUplink).size(), 1u);
  // A packet from a backend's address but another port is not a reply.
  local_rx(*a_, {PacketBuilder()
                     .eth(mac(kLocalBackendMac), mac("02:aa:00:00:00:01"))
                     .ipv4(ip4("10.11.0.7"), ip4("10.11.0.2"))
                     .tcp(9999, 40000, kTcpAck)
                     .build()});
  auto local = a_->take(kLocal);
  ASSERT_EQ(local.size(), 1u);
  EXPECT_EQ(a_->counters.service_new_flows, 0u);
  EXPECT_EQ(a_->counters.service_reverse_packets, 0u);
  EXPECT_EQ(a_->counters.service_dnat_packets, 0u);
}

}  // namespace
}  // namespace meshwire::dp
