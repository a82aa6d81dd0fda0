// The desired routing state from the cluster's objects. The property that
// matters: what node A derives to send to B is exactly what B derives to
// receive from A, each from its own private key and the other's public one.
#include "reconcile/desired.h"

#include <gtest/gtest.h>

namespace meshwire::control {
namespace {

struct TestCluster {
  KeyPair a = *generate_key_pair();
  KeyPair b = *generate_key_pair();
  ClusterObjects objects;

  TestCluster() {
    add("node-a", "192.0.2.1", "10.1.0.0/24", a, 4, 2);
    add("node-b", "192.0.2.2", "10.2.0.0/24", b, 9, 1);
  }
  void add(const std::string& name, const char* ip, const char* cidr, const KeyPair& k, uint64_t epoch,
           unsigned workers) {
    NodeObject n;
    n.name = name;
    n.internal_ips = {*dp::parse_ip_address(ip)};
    n.pod_cidrs = {*dp::parse_ip_prefix(cidr)};
    n.annotations = {{kPublicKeyAnnotation, encode_public_key(k.public_key)},
                     {kKeyEpochAnnotation, std::to_string(epoch)},
                     {kWorkersAnnotation, std::to_string(workers)}};
    objects.nodes[name] = n;
  }
  SelfNode self(const std::string& name) const {
    SelfNode s;
    s.name = name;
    s.cluster_id = "test";
    const NodeObject& n = objects.nodes.at(name);
    s.keys = name == "node-a" ? &a : &b;
    s.workers = static_cast<unsigned>(std::stoul(n.annotations.at(kWorkersAnnotation)));
    s.tunnel_address = n.internal_ips[0];
    s.epoch = std::stoull(n.annotations.at(kKeyEpochAnnotation));
    return s;
  }
};

Desired desired_of(const TestCluster& c, const std::string& name, std::map<std::string, PeerEpoch>& epochs,
                   uint64_t now = 1000) {
  auto d = desired_state(c.objects, c.self(name), epochs, now, 30000);
  EXPECT_TRUE(d.ok()) << d.error();
  return d.ok() ? *d : Desired{};
}

TEST(DesiredState, BothEndsOfAPairAgreeOnEverySa) {
  TestCluster c;
  std::map<std::string, PeerEpoch> ea, eb;
  const Desired a = desired_of(c, "node-a", ea);
  const Desired b = desired_of(c, "node-b", eb);
  ASSERT_EQ(a.state.peers_size(), 1);
  ASSERT_EQ(b.state.peers_size(), 1);
  const v1::Peer& a_sees_b = a.state.peers(0);
  const v1::Peer& b_sees_a = b.state.peers(0);
  EXPECT_EQ(a_sees_b.name(), "node-b");
  EXPECT_EQ(a_sees_b.tunnel_address(), "192.0.2.2");
  EXPECT_EQ(a.state.pod_cidrs(0), "10.1.0.0/24");
  // A sends with 2 workers at its epoch 4; B accepts A's epochs 4 and 5 for both workers.
  ASSERT_EQ(a_sees_b.outbound_size(), 2);
  ASSERT_EQ(b_sees_a.inbound_size(), 4);
  for (int w = 0; w < 2; ++w) {
    EXPECT_EQ(a_sees_b.outbound(w).SerializeAsString(), b_sees_a.inbound(w).SerializeAsString()) << w;
    EXPECT_EQ(a_sees_b.outbound(w).spi(), derived_spi(4, static_cast<unsigned>(w)));
  }
  EXPECT_EQ(b_sees_a.inbound(2).spi(), derived_spi(5, 0));
  // B sends with 1 worker at its epoch 9; A accepts 9 and 10.
  ASSERT_EQ(b_sees_a.outbound_size(), 1);
  ASSERT_EQ(a_sees_b.inbound_size(), 2);
  EXPECT_EQ(b_sees_a.outbound(0).SerializeAsString(), a_sees_b.inbound(0).SerializeAsString());
  // Directions have their own keys.
  EXPECT_NE(a_sees_b.outbound(0).key(), a_sees_b.inbound(0).key());
}

TEST(DesiredState, ThePreviousEpochStaysForTheGracePeriodOnly) {
  TestCluster c;
  std::map<std::string, PeerEpoch> ea;
  desired_of(c, "node-a", ea, 1000);
  // B moves on to epoch 10 (its data plane restarted, or it rotated).
  c.objects.nodes["node-b"].annotations[kKeyEpochAnnotation] = "10";
  Desired d = desired_of(c, "node-a", ea, 2000);
  ASSERT_EQ(d.state.peers(0).inbound_size(), 3);  // 9 (grace), 10, 11
  EXPECT_EQ(d.state.peers(0).inbound(0).spi(), derived_spi(9, 0));
  EXPECT_EQ(d.state.peers(0).inbound(2).spi(), derived_spi(11, 0));
  d = desired_of(c, "node-a", ea, 2000 + 29999);
  EXPECT_EQ(d.state.peers(0).inbound_size(), 3);
  d = desired_of(c, "node-a", ea, 2000 + 30000);
  ASSERT_EQ(d.state.peers(0).inbound_size(), 2);  // 9 is gone
  EXPECT_EQ(d.state.peers(0).inbound(0).spi(), derived_spi(10, 0));
}

TEST(DesiredState, PeersNotReadyAreSkippedWithTheReason) {
  TestCluster c;
  c.objects.nodes["node-c"].name = "node-c";  // nothing else yet
  NodeObject d = c.objects.nodes["node-b"];
  d.name = "node-d";
  d.internal_ips = {*dp::parse_ip_address("192.0.2.4")};
  d.pod_cidrs = {*dp::parse_ip_prefix("10.4.0.0/24")};
  d.annotations[kPublicKeyAnnotation] = "not base64";
  c.objects.nodes["node-d"] = d;
  NodeObject e = d;
  e.name = "node-e";
  e.annotations.erase(kPublicKeyAnnotation);
  c.objects.nodes["node-e"] = e;
  std::map<std::string, PeerEpoch> ea;
  const Desired got = desired_of(c, "node-a", ea);
  ASSERT_EQ(got.state.peers_size(), 1);
  ASSERT_EQ(got.skipped.size(), 3u);
  EXPECT_EQ(got.skipped[0], "node-c: no InternalIP of the fabric's family (IPv4) and no meshwire.io/tunnel-address");
  EXPECT_EQ(got.skipped[1].rfind("node-d: meshwire.io/public-key: not a base64 X25519 public key", 0), 0u)
      << got.skipped[1];
  EXPECT_EQ(got.skipped[2], "node-e: no meshwire.io/public-key yet");
}

// A node whose data plane has its own address on a data network (an
// SR-IOV VF) publishes it: peers send there, not to the InternalIP. A bad
// or wrong-family annotation leaves the peer out, saying why.
TEST(DesiredState, ThePublishedTunnelAddressWinsOverTheInternalIp) {
  TestCluster c;
  c.objects.nodes["node-b"].annotations[kTunnelAddressAnnotation] = "198.51.100.2";
  std::map<std::string, PeerEpoch> ea;
  Desired got = desired_of(c, "node-a", ea);
  ASSERT_EQ(got.state.peers_size(), 1);
  EXPECT_EQ(got.state.peers(0).tunnel_address(), "198.51.100.2");

  c.objects.nodes["node-b"].annotations[kTunnelAddressAnnotation] = "2001:db8::2";
  got = desired_of(c, "node-a", ea);
  EXPECT_EQ(got.state.peers_size(), 0);
  ASSERT_EQ(got.skipped.size(), 1u);
  EXPECT_EQ(got.skipped[0], "node-b: meshwire.io/tunnel-address: 2001:db8::2 is IPv6, the fabric IPv4");

  c.objects.nodes["node-b"].annotations[kTunnelAddressAnnotation] = "vf0";
  got = desired_of(c, "node-a", ea);
  ASSERT_EQ(got.skipped.size(), 1u);
  EXPECT_EQ(got.skipped[0], "node-b: meshwire.io/tunnel-address: not an IP address: 'vf0'");

  // Published as this node's own address: not a peer.
  c.objects.nodes["node-b"].annotations[kTunnelAddressAnnotation] = "192.0.2.1";
  got = desired_of(c, "node-a", ea);
  ASSERT_EQ(got.skipped.size(), 1u);
  EXPECT_EQ(got.skipped[0], "node-b: its fabric address is this node's tunnel address");
}

TEST(DesiredState, TheKeyCacheGivesTheSameStateAndForgetsWhatIsGone) {
  TestCluster c;
  std::map<std::string, PeerEpoch> e1, e2;
  KeyCache cache;
  const Desired fresh = desired_of(c, "node-a", e1);
  auto cached = desired_state(c.objects, c.self("node-a"), e2, 1000, 30000, &cache);
  ASSERT_TRUE(cached.ok());
  EXPECT_EQ(cached->state.SerializeAsString(), fresh.state.SerializeAsString());
  EXPECT_EQ(cache.size(), 4u);  // 2 outbound + 2 inbound
  cached = desired_state(c.objects, c.self("node-a"), e2, 1000, 30000, &cache);  // again: all from the cache
  EXPECT_EQ(cached->state.SerializeAsString(), fresh.state.SerializeAsString());
  // node-b gets a new key pair: new SAs, and the old ones are dropped.
  c.b = *generate_key_pair();
  c.objects.nodes["node-b"].annotations[kPublicKeyAnnotation] = encode_public_key(c.b.public_key);
  cached = desired_state(c.objects, c.self("node-a"), e2, 1000, 30000, &cache);
  ASSERT_TRUE(cached.ok());
  EXPECT_NE(cached->state.peers(0).outbound(0).key(), fresh.state.peers(0).outbound(0).key());
  EXPECT_EQ(cache.size(), 4u);
  std::map<std::string, PeerEpoch> e3;
  EXPECT_EQ(cached->state.SerializeAsString(), desired_of(c, "node-a", e3).state.SerializeAsString());
}

TEST(DesiredState, APeersBootEpochMovingSaysItRestarted) {
  TestCluster c;
  std::map<std::string, PeerEpoch> ea;
  c.objects.nodes["node-b"].annotations[kBootEpochAnnotation] = "9";
  EXPECT_TRUE(desired_of(c, "node-a", ea).restarted.empty());  // first sighting: nothing moved
  EXPECT_TRUE(desired_of(c, "node-a", ea).restarted.empty());
  c.objects.nodes["node-b"].annotations[kKeyEpochAnnotation] = "10";  // a rotation is no restart
  EXPECT_TRUE(desired_of(c, "node-a", ea).restarted.empty());
  c.objects.nodes["node-b"].annotations[kKeyEpochAnnotation] = "11";
  c.objects.nodes["node-b"].annotations[kBootEpochAnnotation] = "11";
  EXPECT_EQ(desired_of(c, "node-a", ea).restarted, std::vector<std::string>{"node-b"});
  EXPECT_TRUE(desired_of(c, "node-a", ea).restarted.empty());  // said once
}

TEST(DesiredState, ThisNodeMustExistWithPodCidrs) {
  TestCluster c;
  std::map<std::string, PeerEpoch> e;
  SelfNode s = c.self("node-a");
  s.name = "node-x";
  EXPECT_EQ(desired_state(c.objects, s, e, 0, 0).error(), "Node node-x: not found (is --node right?)");
  c.objects.nodes["node-a"].pod_cidrs.clear();
  EXPECT_EQ(desired_state(c.objects, c.self("node-a"), e, 0, 0).error(), "Node node-a: spec.podCIDRs: none yet");
}

}  // namespace
}  // namespace meshwire::control
