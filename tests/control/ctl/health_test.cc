#include "ctl/health.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace meshwire::control {
namespace {

// A node that is ready: generation 3, both links up, two worker(s) polling,
// two peer(s) up, keepalives on.
v1::GetHealthResponse healthy() {
  v1::GetHealthResponse h;
  h.set_live_generation(3);
  for (const char* role : {"local", "uplink"}) {
    v1::PortHealth* p = h.add_ports();
    p->set_name(std::string(role) == "local" ? "pods" : "fabric");
    p->set_role(role);
    p->set_link_up(true);
  }
  for (uint32_t w = 0; w < 2; ++w) {
    v1::WorkerHealth* out = h.add_workers();
    out->set_index(w);
    out->set_started(true);
    out->set_heartbeat_ms_ago(0);
  }
  for (const char* name : {"node2", "node3"}) {
    v1::PeerHealth* p = h.add_peers();
    p->set_name(name);
    p->set_liveness("up");
    p->set_heard(true);
    p->set_last_heard_ms_ago(40);
  }
  h.set_liveness_interval_ms(100);
  h.set_liveness_misses(3);
  return h;
}

const HealthRules kReady{};
const HealthRules kLive{true, 5000, false};

TEST(HealthTest, ReadyWhenEverythingHolds) {
  const HealthVerdict v = judge_health(healthy(), kReady);
  EXPECT_TRUE(v.ok);
  EXPECT_TRUE(v.reasons.empty());
  EXPECT_EQ(format_health(v), "ready: generation 3, 2 port(s) up, 2 worker(s) polling, 2/2 peer(s) up\n");
}

TEST(HealthTest, EveryFailedConditionHasItsLine) {
  v1::GetHealthResponse h = healthy();
  h.set_live_generation(0);
  h.mutable_ports(1)->set_link_up(false);
  h.mutable_workers(0)->set_started(false);
  h.mutable_workers(1)->set_heartbeat_ms_ago(1500);
  h.mutable_peers(0)->set_liveness("down");
  h.mutable_peers(0)->set_last_heard_ms_ago(2300);
  h.mutable_peers(1)->set_liveness("unknown");
  h.mutable_peers(1)->set_heard(false);
  h.mutable_peers(1)->set_last_heard_ms_ago(0);
  const HealthVerdict v = judge_health(h, kReady);
  EXPECT_FALSE(v.ok);
  EXPECT_EQ(format_health(v),
            "not ready: worker 0 has not started polling\n"
            "not ready: worker 1 stalled: no poll round for 1500 ms (limit 1000 ms)\n"
            "not ready: no state applied yet (live generation 0: is the controller running?)\n"
            "not ready: port fabric (uplink) link down\n"
            "not ready: peer node2 down (silent for 2.3s); no peer is up\n"
            "not ready: peer node3 never heard from; no peer is up\n");
}

TEST(HealthTest, OnePeerUpIsEnoughUnlessAllPeersAreAskedFor) {
  v1::GetHealthResponse h = healthy();
  h.mutable_peers(1)->set_liveness("down");
  h.mutable_peers(1)->set_last_heard_ms_ago(900);
  const HealthVerdict one = judge_health(h, kReady);
  EXPECT_TRUE(one.ok);
  EXPECT_EQ(one.summary, "ready: generation 3, 2 port(s) up, 2 worker(s) polling, 1/2 peer(s) up");
  const HealthVerdict all = judge_health(h, HealthRules{false, 1000, true});
  EXPECT_FALSE(all.ok);
  EXPECT_EQ(all.reasons, std::vector<std::string>{"not ready: peer node3 down (silent for 900ms)"});
}

TEST(HealthTest, PeersDoNotCountWithoutKeepalivesOrWithoutPeers) {
  v1::GetHealthResponse h = healthy();
  for (auto& p : *h.mutable_peers()) {
    p.set_liveness("unknown");
    p.set_heard(false);
  }
  h.set_liveness_interval_ms(0);
  const HealthVerdict off = judge_health(h, kReady);
  EXPECT_TRUE(off.ok);
  EXPECT_EQ(off.summary, "ready: generation 3, 2 port(s) up, 2 worker(s) polling, 0/2 peer(s) up (keepalives off)");
  v1::GetHealthResponse alone = healthy();
  alone.clear_peers();
  EXPECT_TRUE(judge_health(alone, kReady).ok);
}

TEST(HealthTest, LivenessLooksAtWorkersOnly) {
  v1::GetHealthResponse h = healthy();
  h.set_live_generation(0);
  h.mutable_ports(0)->set_link_up(false);
  h.clear_peers();
  HealthVerdict v = judge_health(h, kLive);
  EXPECT_TRUE(v.ok);
  EXPECT_EQ(format_health(v), "live: 2 worker(s) polling\n");
  h.mutable_workers(1)->set_heartbeat_ms_ago(5001);
  v = judge_health(h, kLive);
  EXPECT_FALSE(v.ok);
  EXPECT_EQ(format_health(v), "not live: worker 1 stalled: no poll round for 5001 ms (limit 5000 ms)\n");
  h.clear_workers();
  EXPECT_EQ(judge_health(h, kLive).reasons, std::vector<std::string>{"not live: the data plane reports no workers"});
}

TEST(HealthTest, Json) {
  v1::GetHealthResponse h = healthy();
  h.set_live_generation(0);
  const HealthVerdict v = judge_health(h, kReady);
  const auto doc = nlohmann::json::parse(health_json(v, kReady, h));
  EXPECT_EQ(doc["check"], "readiness");
  EXPECT_EQ(doc["ok"], false);
  ASSERT_EQ(doc["reasons"].size(), 1u);
  EXPECT_EQ(doc["reasons"][0], "not ready: no state applied yet (live generation 0: is the controller running?)");
  EXPECT_EQ(doc["health"]["workers"].size(), 2u);
  EXPECT_EQ(doc["health"]["peers"][0]["name"], "node2");
  EXPECT_EQ(nlohmann::json::parse(health_json(judge_health(h, kLive), kLive, h))["check"], "liveness");
}

}  // namespace
}  // namespace meshwire::control
