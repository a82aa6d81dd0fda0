// The control API's state message to the data plane's routing state: every
// per-field error names the field as the API spells it, and a state survives
// the round trip.
#include "api/convert.h"

#include <gtest/gtest.h>

namespace meshwire::dp::api {
namespace {

v1::State valid() {
  v1::State s;
  s.add_pod_cidrs("10.1.0.0/24");
  s.add_pod_cidrs("fd00:1::/64");
  v1::Peer* p = s.add_peers();
  p->set_name("node2");
  p->set_tunnel_address("192.0.2.2");
  p->add_pod_cidrs("10.2.0.0/24");
  for (auto* sa : {p->add_outbound(), p->add_inbound()}) {
    sa->set_spi(0x1001);
    sa->set_algorithm(v1::AES_128_GCM);
    sa->set_key(std::string(16, 'k'));
    sa->set_salt("salt");
  }
  p->mutable_inbound(0)->set_algorithm(v1::AES_256_GCM);
  p->mutable_inbound(0)->set_key(std::string(32, 'K'));
  return s;
}

TEST(Convert, ReadsEveryField) {
  auto r = routing_from_proto(valid());
  ASSERT_TRUE(r.ok()) << r.error();
  ASSERT_EQ(r->pod_cidrs.size(), 2u);
  EXPECT_EQ(format_prefix(r->pod_cidrs[1]), "fd00:1::/64");
  ASSERT_EQ(r->peers.size(), 1u);
  const PeerConfig& p = r->peers[0];
  EXPECT_EQ(p.name, "node2");
  EXPECT_EQ(format_ip(p.tunnel_address), "192.0.2.2");
  EXPECT_EQ(p.outbound[0].spi, 0x1001u);
  EXPECT_EQ(p.outbound[0].key, std::vector<uint8_t>(16, 'k'));
  EXPECT_EQ(p.inbound[0].algorithm, AeadAlgorithm::kAes256Gcm);
  EXPECT_EQ(p.inbound[0].salt, (std::array<uint8_t, 4>{'s', 'a', 'l', 't'}));
}

TEST(Convert, RoundTrips) {
  auto r = routing_from_proto(valid());
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(routing_to_proto(*r).SerializeAsString(), valid().SerializeAsString());
}

TEST(Convert, NamesTheFieldAndNeverTheKey) {
  struct Case {
    void (*change)(v1::State&);
    const char* error;
  };
  const Case cases[] = {
      {[](v1::State& s) { s.set_pod_cidrs(1, "fd00:1::1/64"); }, "pod_cidrs[1]: "},
      {[](v1::State& s) { s.mutable_peers(0)->set_tunnel_address("node2"); },
       "peers[0].tunnel_address: not an IP address: 'node2'"},
      {[](v1::State& s) { s.mutable_peers(0)->set_pod_cidrs(0, "10.2.0.0"); }, "peers[0].pod_cidrs[0]: "},
      {[](v1::State& s) { s.mutable_peers(0)->mutable_outbound(0)->set_algorithm(v1::ALGORITHM_UNSPECIFIED); },
       "peers[0].outbound[0].algorithm: must be AES_128_GCM or AES_256_GCM"},
      {[](v1::State& s) { s.mutable_peers(0)->mutable_inbound(0)->set_key("secret-bytes"); },
       "peers[0].inbound[0].key: must be 32 bytes for AES_256_GCM, got 12"},
      {[](v1::State& s) { s.mutable_peers(0)->mutable_outbound(0)->set_salt("sa"); },
       "peers[0].outbound[0].salt: must be 4 bytes, got 2"},
  };
  for (const Case& c : cases) {
    v1::State s = valid();
    c.change(s);
    auto r = routing_from_proto(s);
    ASSERT_FALSE(r.ok()) << c.error;
    EXPECT_EQ(r.error().rfind(c.error, 0), 0u) << r.error();
    EXPECT_EQ(r.error().find("secret"), std::string::npos) << r.error();
  }
}

// Three live peers a, b, c; the delta's results checked by name and order.
RoutingState three() {
  v1::State s = valid();
  s.mutable_peers(0)->set_name("a");
  for (const char* name : {"b", "c"}) {
    v1::Peer* p = s.add_peers();
    *p = s.peers(0);
    p->set_name(name);
  }
  return *routing_from_proto(s);
}

std::vector<std::string> names(const RoutingState& r) {
  std::vector<std::string> out;
  for (const PeerConfig& p : r.peers) out.push_back(p.name);
  return out;
}

TEST(ApplyDelta, ReplacesInPlaceAppendsNewRemovesAndSetsPodCidrs) {
  v1::StateDelta d;
  v1::Peer* b = d.add_upsert_peers();
  *b = valid().peers(0);
  b->set_name("b");
  b->set_tunnel_address("192.0.2.22");
  v1::Peer* z = d.add_upsert_peers();
  *z = valid().peers(0);
  z->set_name("z");
  d.add_remove_peers("a");
  auto r = apply_delta(three(), d);
  ASSERT_TRUE(r.ok()) << r.error();
  EXPECT_EQ(names(*r), (std::vector<std::string>{"b", "c", "z"}));  // b kept its place; z after the others
  EXPECT_EQ(format_ip(r->peers[0].tunnel_address), "192.0.2.22");
  EXPECT_EQ(r->peers[1].outbound[0].key, std::vector<uint8_t>(16, 'k'));  // c untouched, keys and all
  EXPECT_EQ(r->pod_cidrs.size(), 2u);  // not set: kept
  v1::StateDelta pods;
  pods.set_set_pod_cidrs(true);
  pods.add_pod_cidrs("10.9.0.0/24");
  auto p = apply_delta(three(), pods);
  ASSERT_TRUE(p.ok()) << p.error();
  ASSERT_EQ(p->pod_cidrs.size(), 1u);
  EXPECT_EQ(format_prefix(p->pod_cidrs[0]), "10.9.0.0/24");
  EXPECT_EQ(names(*p), (std::vector<std::string>{"a", "b", "c"}));
}

TEST(ApplyDelta, TheSameAsTheWholeStateWouldBe) {
  // Upserting every peer as it is, in place, gives back the live state.
  v1::StateDelta d;
  v1::State whole = routing_to_proto(three());
  for (const v1::Peer& p : whole.peers()) *d.add_upsert_peers() = p;
  auto r = apply_delta(three(), d);
  ASSERT_TRUE(r.ok()) << r.error();
  EXPECT_EQ(routing_to_proto(*r).SerializeAsString(), whole.SerializeAsString());
}

TEST(ApplyDelta, ItsOwnErrorsNameItsFields) {
  {
    v1::StateDelta d;
    d.add_remove_peers("nobody");
    auto r = apply_delta(three(), d);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error(), "remove_peers[0]: no peer named 'nobody' is live");
  }
  {
    v1::StateDelta d;
    *d.add_upsert_peers() = valid().peers(0);
    *d.add_upsert_peers() = valid().peers(0);
    auto r = apply_delta(three(), d);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error(), "upsert_peers[1].name: 'node2' already in upsert_peers[0]");
  }
  {
    v1::StateDelta d;
    d.add_remove_peers("b");
    *d.add_upsert_peers() = valid().peers(0);
    d.mutable_upsert_peers(0)->set_name("b");
    auto r = apply_delta(three(), d);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error(), "upsert_peers[0].name: 'b' is removed by the same delta");
  }
  {
    v1::StateDelta d;
    *d.add_upsert_peers() = valid().peers(0);
    d.mutable_upsert_peers(0)->mutable_outbound(0)->set_key("secret");
    auto r = apply_delta(three(), d);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().rfind("upsert_peers[0].outbound[0].key: must be 16 bytes", 0), 0u) << r.error();
    EXPECT_EQ(r.error().find("secret"), std::string::npos);
  }
}

}  // namespace
}  // namespace meshwire::dp::api
