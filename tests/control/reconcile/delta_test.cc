// The controller sends a change as the peers that differ from what it
// applied last.
#include "reconcile/delta.h"

#include <gtest/gtest.h>

namespace meshwire::control {
namespace {

v1::State state(std::initializer_list<std::pair<const char*, const char*>> peers) {
  v1::State s;
  s.add_pod_cidrs("10.1.0.0/24");
  for (const auto& [name, cidr] : peers) {
    v1::Peer* p = s.add_peers();
    p->set_name(name);
    p->set_tunnel_address("192.0.2.9");
    p->add_pod_cidrs(cidr);
    v1::Sa* sa = p->add_outbound();
    sa->set_spi(0x80000040);
    sa->set_key(std::string(16, 'k'));
  }
  return s;
}

TEST(AppliedState, NothingAppliedIsAChangeAndTheSameStateIsNone) {
  AppliedState a;
  v1::StateDelta d;
  EXPECT_TRUE(a.prepare(state({{"b", "10.2.0.0/24"}}), nullptr));
  a.commit();
  EXPECT_FALSE(a.prepare(state({{"b", "10.2.0.0/24"}}), &d));
  EXPECT_EQ(d.upsert_peers_size() + d.remove_peers_size(), 0);
  EXPECT_FALSE(d.set_pod_cidrs());
}

TEST(AppliedState, OnlyThePeersThatDifferAreSent) {
  AppliedState a;
  a.prepare(state({{"b", "10.2.0.0/24"}, {"c", "10.3.0.0/24"}, {"d", "10.4.0.0/24"}}), nullptr);
  a.commit();
  v1::StateDelta d;
  v1::State want = state({{"b", "10.2.0.0/24"}, {"c", "10.33.0.0/24"}, {"e", "10.5.0.0/24"}});
  want.add_pod_cidrs("fd00:1::/64");
  EXPECT_TRUE(a.prepare(want, &d));
  ASSERT_EQ(d.upsert_peers_size(), 2);
  EXPECT_EQ(d.upsert_peers(0).name(), "c");
  EXPECT_EQ(d.upsert_peers(0).pod_cidrs(0), "10.33.0.0/24");
  EXPECT_EQ(d.upsert_peers(1).name(), "e");
  ASSERT_EQ(d.remove_peers_size(), 1);
  EXPECT_EQ(d.remove_peers(0), "d");
  EXPECT_TRUE(d.set_pod_cidrs());
  EXPECT_EQ(d.pod_cidrs_size(), 2);
  // Not committed (the Apply failed): the same delta again.
  v1::StateDelta again;
  EXPECT_TRUE(a.prepare(want, &again));
  EXPECT_EQ(again.SerializeAsString(), d.SerializeAsString());
  a.commit();
  EXPECT_FALSE(a.prepare(want, &again));
}

TEST(AppliedState, AKeyChangeIsAChange) {
  AppliedState a;
  a.prepare(state({{"b", "10.2.0.0/24"}}), nullptr);
  a.commit();
  v1::State rotated = state({{"b", "10.2.0.0/24"}});
  rotated.mutable_peers(0)->mutable_outbound(0)->set_key(std::string(16, 'n'));
  v1::StateDelta d;
  EXPECT_TRUE(a.prepare(rotated, &d));
  EXPECT_EQ(d.upsert_peers_size(), 1);
  a.clear();  // the data plane restarted
  EXPECT_FALSE(a.has_applied());
  EXPECT_TRUE(a.prepare(rotated, nullptr));
}

}  // namespace
}  // namespace meshwire::control
