// Flow logs: the lines the control thread writes for flows the sweep
// removes, visits and the workers' retry events, read back as JSON.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "lb/conntrack.h"
#include "lb/flow_events.h"
#include "support/two_nodes.h"
#include "telemetry/flow_log.h"

namespace meshwire::dp {
namespace {

using nlohmann::json;

lb::BackendConfig backend(const char* address, uint16_t port, const char* node, const char* target) {
  lb::BackendConfig b;
  b.address = test::addr(address);
  b.port = port;
  b.node = node;
  b.target = target;
  return b;
}

class FlowLogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char dir[] = "/tmp/mw-flowlog-XXXXXX";
    ASSERT_NE(mkdtemp(dir), nullptr);
    dir_ = dir;
    path_ = dir_ + "/flows.jsonl";
    lb::FrontendConfig web;
    web.name = "shop/web:http";
    web.vip = test::addr("10.96.0.10");
    web.port = 80;
    web.protocol = net::kProtoTcp;
    web.backends = {backend("10.11.0.2", 8080, "node-a", "shop/web-1"), backend("10.12.0.9", 8080, "node-b", "shop/web-2")};
    lb::FrontendConfig dns = web;
    dns.name = "kube-system/dns:dns";
    dns.vip = test::addr("10.96.0.53");
    dns.port = 53;
    dns.protocol = net::kProtoUdp;
    dns.backends = {backend("10.11.0.3", 53, "node-a", "kube-system/dns-1")};
    ASSERT_EQ(node_.apply_services({web, dns}, 1), "");
  }
  void TearDown() override {
    log_.reset();
    std::remove(path_.c_str());
    rmdir(dir_.c_str());
  }

  void open(FlowLogSettings s = {}) {
    if (s.path.empty()) s.path = path_;
    auto log = FlowLog::open(s, "node-a");
    ASSERT_TRUE(log.ok()) << log.error();
    log_ = std::move(log.value());
  }

  // The lines written so far, each parsed.
  std::vector<json> lines() {
    log_->flush();
    std::vector<json> out;
    std::ifstream in(path_);
    for (std::string line; std::getline(in, line);) out.push_back(json::parse(line));
    return out;
  }

  // A logged TCP flow client 10.11.0.7:40000 -> VIP -> the web backend at
  // index `b`, created at flow clock 1000, last seen at 4000.
  void web_flow(lb::Flow& f, size_t b, lb::FlowState state) {
    f.forward.family = 4;
    f.forward.proto = net::kProtoTcp;
    f.forward.src_port = 40000;
    f.forward.dst_port = 80;
    std::memcpy(f.forward.src, test::addr("10.11.0.7").bytes.data(), 4);
    std::memcpy(f.forward.dst, test::addr("10.96.0.10").bytes.data(), 4);
    const IpAddress be = test::addr(b == 0 ? "10.11.0.2" : "10.12.0.9");
    std::memcpy(f.backend, be.bytes.data(), 16);
    f.backend_port = 8080;
    f.state.store(static_cast<uint8_t>(state));
    f.attempts.store(1);
    f.created_ms = 1000;
    f.last_seen_ms.store(4000);
    f.log_reported_ms.store(1001);
    f.fwd_packets.store(10);
    f.fwd_bytes.store(800);
    f.rev_packets.store(8);
    f.rev_bytes.store(12000);
  }

  test::TestNode node_{"flowlog", false, 0};
  std::string dir_, path_;
  std::unique_ptr<FlowLog> log_;
};

TEST_F(FlowLogTest, AnEndRecordSaysWhoTalkedHowMuchAndHowItEnded) {
  open();
  // Flow clock 5000 is 2026-12-01T00:00:05.000Z.
  log_->set_time(5000, 1'796'083'205'000);
  lb::Flow f;
  web_flow(f, 1, lb::FlowState::kFinSeen);
  log_->removed(f, true, *node_.services);
  const std::vector<json> got = lines();
  ASSERT_EQ(got.size(), 1u);
  const json& j = got[0];
  EXPECT_EQ(j["time"], "2026-12-01T00:00:05.000Z");
  EXPECT_EQ(j["start"], "2026-12-01T00:00:01.000Z");
  EXPECT_EQ(j["event"], "end");
  EXPECT_EQ(j["end"], "fin");
  EXPECT_FALSE(j.contains("why"));
  EXPECT_EQ(j["node"], "node-a");
  EXPECT_EQ(j["service"], "shop/web:http");
  EXPECT_EQ(j["protocol"], "tcp");
  EXPECT_EQ(j["client"], "10.11.0.7:40000");
  EXPECT_EQ(j["frontend"], "10.96.0.10:80");
  EXPECT_EQ(j["backend"], "10.12.0.9:8080");
  EXPECT_EQ(j["backend_node"], "node-b");
  EXPECT_EQ(j["backend_target"], "shop/web-2");
  EXPECT_EQ(j["duration_ms"], 3000);  // created to last seen
  EXPECT_EQ(j["attempts"], 1);
  EXPECT_EQ(j["packets_to_backend"], 10);
  EXPECT_EQ(j["bytes_to_backend"], 800);
  EXPECT_EQ(j["packets_to_client"], 8);
  EXPECT_EQ(j["bytes_to_client"], 12000);
  EXPECT_EQ(log_->records(), 1u);
}

TEST_F(FlowLogTest, HowAFlowEndedFollowsItsStateOrWhyServicesDroppedIt) {
  open();
  log_->set_time(5000, 1'796'083'205'000);
  struct Case {
    lb::FlowState state;
    uint8_t proto;
    const char* end;
  };
  const Case cases[] = {
      {lb::FlowState::kFinSeen, net::kProtoTcp, "fin"},   {lb::FlowState::kClosed, net::kProtoTcp, "rst"},
      {lb::FlowState::kEstablished, net::kProtoTcp, "timeout"}, {lb::FlowState::kSynSent, net::kProtoTcp, "timeout"},
      {lb::FlowState::kUdp, net::kProtoUdp, "timeout"},    {lb::FlowState::kClosed, net::kProtoSctp, "closed"},
  };
  for (const Case& c : cases) {
    lb::Flow f;
  web_flow(f, 0, c.state);
    f.forward.proto = c.proto;
    log_->removed(f, true, *node_.services);
  }
  // Closed by the sweep: its backend still in the service (so its node is
  // down), or gone from it.
  lb::Flow down;
  web_flow(down, 0, lb::FlowState::kUdp);
  log_->removed(down, false, *node_.services);
  lb::Flow gone;
  web_flow(gone, 0, lb::FlowState::kEstablished);
  gone.backend_port = 9999;
  log_->removed(gone, false, *node_.services);
  const std::vector<json> got = lines();
  ASSERT_EQ(got.size(), std::size(cases) + 2);
  for (size_t i = 0; i < std::size(cases); ++i) EXPECT_EQ(got[i]["end"], cases[i].end) << i;
  EXPECT_EQ(got[1]["service"], "shop/web:http");
  EXPECT_EQ(got[4]["protocol"], "udp");
  EXPECT_EQ(got[4]["service"], "");  // no UDP frontend on the web VIP's port 80
  EXPECT_EQ(got[std::size(cases)]["end"], "ejected");
  EXPECT_EQ(got[std::size(cases)]["why"], "node_down");
  EXPECT_EQ(got[std::size(cases) + 1]["why"], "backend_removed");
  EXPECT_EQ(got[std::size(cases) + 1]["backend_node"], "");
}

TEST_F(FlowLogTest, FlowsNotSampledAndAffinityRecordsWriteNothing) {
  open();
  log_->set_time(5000, 1'796'083'205'000);
  lb::Flow quiet;
  web_flow(quiet, 0, lb::FlowState::kFinSeen);
  quiet.log_reported_ms.store(0);
  log_->removed(quiet, true, *node_.services);
  log_->visit(quiet, *node_.services);
  lb::Flow affinity;
  web_flow(affinity, 0, lb::FlowState::kAffinity);
  affinity.forward.proto = lb::kAffinityProto;
  log_->removed(affinity, true, *node_.services);
  EXPECT_TRUE(lines().empty());
  EXPECT_EQ(log_->records(), 0u);
}

TEST_F(FlowLogTest, LongConnectionsGetAnUpdateEveryInterval) {
  open(FlowLogSettings{.path = "", .interval_s = 60});
  lb::Flow f;
  web_flow(f, 0, lb::FlowState::kEstablished);
  log_->set_time(60'000, 1'796'083'260'000);  // 58.999 s after its start record
  log_->visit(f, *node_.services);
  EXPECT_TRUE(lines().empty());
  log_->set_time(61'001, 1'796'083'261'001);
  log_->visit(f, *node_.services);
  log_->visit(f, *node_.services);  // the next one is 60 s away again
  std::vector<json> got = lines();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0]["event"], "update");
  EXPECT_FALSE(got[0].contains("end"));
  EXPECT_EQ(got[0]["duration_ms"], 60'001);
  EXPECT_EQ(f.log_reported_ms.load(), 61'001u);
  log_->set_time(121'001, 1'796'083'321'001);
  log_->visit(f, *node_.services);
  EXPECT_EQ(lines().size(), 2u);
  // interval_s 0: only the end.
  open(FlowLogSettings{.path = "", .interval_s = 0});
  log_->set_time(900'000, 1'796'084'100'000);
  log_->visit(f, *node_.services);
  EXPECT_EQ(lines().size(), 2u);
}

TEST_F(FlowLogTest, RecordsOverTheRateAreDroppedAndCounted) {
  open(FlowLogSettings{.path = "", .max_per_second = 3});
  log_->set_time(5000, 1'796'083'205'000);
  lb::Flow f;
  web_flow(f, 0, lb::FlowState::kFinSeen);
  for (int i = 0; i < 10; ++i) log_->removed(f, true, *node_.services);
  EXPECT_EQ(lines().size(), 3u);
  EXPECT_EQ(log_->rate_limited(), 7u);
  log_->set_time(5500, 1'796'083'205'500);  // half a second: 1.5 more
  for (int i = 0; i < 10; ++i) log_->removed(f, true, *node_.services);
  EXPECT_EQ(lines().size(), 4u);
  log_->set_time(7000, 1'796'083'207'000);  // the bucket holds 3 at most
  for (int i = 0; i < 10; ++i) log_->removed(f, true, *node_.services);
  EXPECT_EQ(lines().size(), 7u);
  EXPECT_EQ(log_->records(), 7u);
  EXPECT_EQ(log_->rate_limited(), 23u);
}

TEST_F(FlowLogTest, RetriesComeFromTheWorkersQueues) {
  open();
  log_->set_time(5000, 1'796'083'205'000);
  lb::FlowEventQueue q0, q1;
  lb::Flow f;
  web_flow(f, 1, lb::FlowState::kConnectFailed);
  f.fwd_packets.store(1);
  EXPECT_TRUE(q0.push(lb::flow_event(f, lb::FlowEventKind::kRetryRefused, 1200)));
  f.attempts.store(2);
  EXPECT_TRUE(q1.push(lb::flow_event(f, lb::FlowEventKind::kRetryTimedOut, 1700)));
  lb::FlowEventQueue* queues[] = {&q0, nullptr, &q1};
  log_->drain(queues, *node_.services);
  const std::vector<json> got = lines();
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0]["event"], "retry");
  EXPECT_EQ(got[0]["end"], "retry");
  EXPECT_EQ(got[0]["why"], "refused");
  EXPECT_EQ(got[0]["backend"], "10.12.0.9:8080");
  EXPECT_EQ(got[0]["duration_ms"], 200);
  EXPECT_EQ(got[0]["attempts"], 1);
  EXPECT_EQ(got[0]["packets_to_backend"], 1);
  EXPECT_EQ(got[1]["why"], "unanswered");
  EXPECT_EQ(got[1]["attempts"], 2);
  EXPECT_TRUE(q0.empty() && q1.empty());
}

TEST_F(FlowLogTest, AFileThatCannotBeOpenedIsAnErrorNamingTheField) {
  auto log = FlowLog::open(FlowLogSettings{.path = dir_ + "/no/such/dir/flows.jsonl"}, "node-a");
  ASSERT_FALSE(log.ok());
  EXPECT_EQ(log.error().rfind("flow_logs.path: cannot open " + dir_ + "/no/such/dir/flows.jsonl for appending: ", 0), 0u)
      << log.error();
}

}  // namespace
}  // namespace meshwire::dp
