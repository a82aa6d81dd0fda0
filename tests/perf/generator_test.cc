// The generator's background streams and per-SA sink tallies, run for real
// on a looped net_ring port (what the generator sends comes back to it): a
// peer node's ESP with the SA whose frames stop counting at until_s (its node
// "dies"), ESP dummy packets beside it as the peers' proof of life, and the
// lead before the trial's clock. And the new fields' errors naming the field.
#include <gtest/gtest.h>

#include <numeric>
#include <string>

#include <nlohmann/json.hpp>
#include <rte_dev.h>
#include <rte_ethdev.h>
#include <rte_mbuf.h>

#include "gen/generator.h"
#include "gen/generator_config.h"

namespace meshwire::perf {
namespace {

using nlohmann::json;

constexpr const char* kKeyA = "000102030405060708090a0b0c0d0e0f";
constexpr const char* kKeyB = "101112131415161718191a1b1c1d1e1f";

json sa(uint32_t spi, const char* key) { return {{"spi", spi}, {"key", key}, {"salt", "01020304"}}; }

json encrypt(uint32_t spi, const char* key, const char* tunnel_src) {
  json e = sa(spi, key);
  e["tunnel_src"] = tunnel_src;
  e["tunnel_dst"] = "192.0.2.1";
  e["dst_mac"] = "02:00:00:00:01:02";
  return e;
}

// One looped port; "self": UDP to 10.96.0.10:80 that the generator encrypts
// with SA 0x2101 (node2's) and its sink knows, labelled node2 and counted
// until 0.1 s; background dummies of node2 (the same SA, until 0.1 s) and of
// node3 (SA 0x3101, labelled node3 in the sink, the whole trial).
json loop_config(const std::string& device) {
  json self = {{"name", "self"}, {"tx_port", "loop"}, {"rx_port", "loop"}, {"dst_mac", "02:00:00:00:01:01"},
               {"src", "10.11.0.100"}, {"src_count", 4}, {"dst", "10.96.0.10"}, {"dst_port", 80},
               {"dst_port_count", 1}, {"flows", 64}, {"encrypt", encrypt(0x2101, kKeyA, "192.0.2.2")}};
  json node2 = sa(0x2101, kKeyA);
  node2["label"] = "node2";
  node2["until_s"] = 0.1;
  json node3 = sa(0x3101, kKeyB);
  node3["label"] = "node3";
  self["sink"] = {{"sas", {node2, node3}}, {"sample_every", 1}};
  self["background"] = {
      {{"name", "node2-alive"}, {"tx_port", "loop"}, {"rate_pps", 1000}, {"until_s", 0.1},
       {"encrypt", encrypt(0x2101, kKeyA, "192.0.2.2")}},
      {{"name", "node3-alive"}, {"tx_port", "loop"}, {"rate_pps", 1000}, {"encrypt", encrypt(0x3101, kKeyB, "192.0.2.3")}}};
  return {{"ports", {{{"name", "loop"}, {"device", device}}}}, {"traffic", {self}}};
}

uint64_t sum(const std::vector<uint64_t>& v) { return std::accumulate(v.begin(), v.end(), uint64_t{0}); }

TEST(PerfGenerator, BackgroundStreamsAndSinkSasStopAtTheirTimeOnALoopedPort) {
  const std::string device = "net_ring_gentest0";
  ASSERT_EQ(rte_dev_probe(device.c_str()), 0) << "net_ring is needed for this test";
  rte_mempool* pool = rte_pktmbuf_pool_create("gentest_pool", 8191, 256, 0, RTE_MBUF_DEFAULT_BUF_SIZE, SOCKET_ID_ANY);
  ASSERT_NE(pool, nullptr);
  {
    auto config = parse_generator_config(loop_config(device));
    ASSERT_TRUE(config) << config.error();
    auto gen = build_generator(*config, pool);
    ASSERT_TRUE(gen) << gen.error();
    const Traffic& t = (*gen)->traffics()[0];
    ASSERT_EQ(t.sink_labels, (std::vector<std::string>{"node2", "node3"}));
    ASSERT_EQ(t.background.size(), 2u);
    // node2's background stream and the main traffic share one sender SA
    // (one sequence counter, as the receiver's anti-replay window needs).
    EXPECT_EQ(t.background[0].sa, t.out_sa);
    EXPECT_NE(t.background[1].sa, t.out_sa);
    EXPECT_EQ(make_flow(t.flows, 5).dport, 80);

    TrialRequest req;
    req.rate_pps = 20'000;
    req.duration_s = 0.2;
    req.drain_s = 0.05;
    req.bin_s = 0.01;
    req.lead_s = 0.05;
    const TrialResult r = (*gen)->run_trial(req);

    ASSERT_EQ(r.sinks.size(), 2u);
    ASSERT_EQ(r.background.size(), 2u);
    const SinkTally& n2 = r.sinks[0];
    const SinkTally& n3 = r.sinks[1];
    // Every main frame came back: before 0.1 s received, after it ignored.
    EXPECT_GT(r.attempted, 3000u);
    EXPECT_EQ(r.received + r.ignored, r.attempted);
    EXPECT_EQ(sum(r.tx_bins), r.attempted);
    EXPECT_EQ(n2.received, r.received);
    EXPECT_EQ(n2.ignored, r.ignored);
    EXPECT_EQ(n3.received, 0u);
    EXPECT_EQ(sum(n2.rx_bins), n2.received);
    EXPECT_EQ(sum(n2.ignored_bins), n2.ignored);
    EXPECT_EQ(sum(r.rx_bins), r.received);
    EXPECT_GT(r.received, r.attempted / 4);
    EXPECT_GT(r.ignored, r.attempted / 4);
    for (size_t b = 0; b < n2.rx_bins.size(); ++b) {
      if (b < 10) {
        EXPECT_EQ(n2.ignored_bins[b], 0u) << "bin " << b;  // [0, 100 ms): counted
      } else if (b > 10) {
        EXPECT_EQ(n2.rx_bins[b], 0u) << "bin " << b;  // after: ignored
      }
    }
    // Every received frame was decrypted (sample_every 1) and its probe read.
    EXPECT_EQ(r.latency.count(), r.received);
    EXPECT_EQ(r.bad_icv, 0u);
    EXPECT_EQ(r.unexpected, 0u);

    // Background: 1000/s from the start of the lead (50 ms before the
    // trial's clock), node2's until 100 ms into the trial, node3's to its end.
    const BackgroundTally& b2 = r.background[0];
    const BackgroundTally& b3 = r.background[1];
    EXPECT_NEAR(static_cast<double>(b2.attempted + b2.skipped), 150.0, 2.0);
    EXPECT_NEAR(static_cast<double>(b3.attempted + b3.skipped), 250.0, 2.0);
    EXPECT_EQ(b2.sent, b2.attempted);
    EXPECT_EQ(b3.sent, b3.attempted);
    // Dummies are told apart from data by their next header (59): counted
    // by label, never as received. Those of the lead are not the trial's.
    EXPECT_EQ(r.dummies, n2.dummies + n3.dummies);
    EXPECT_GT(n2.dummies, 0u);
    EXPECT_LE(n2.dummies, b2.sent);
    EXPECT_GT(n3.dummies, n2.dummies);
    EXPECT_LE(n3.dummies, b3.sent);
    EXPECT_GE(n3.dummies + 60, b3.sent);  // all but the lead's ~50
  }
  uint16_t port_id = 0;
  ASSERT_EQ(rte_eth_dev_get_port_by_name(device.c_str(), &port_id), 0);
  rte_eth_dev_stop(port_id);
  rte_eth_dev_close(port_id);
  EXPECT_EQ(rte_eal_hotplug_remove("vdev", device.c_str()), 0);
  rte_mempool_free(pool);
}

TEST(PerfConfig, BackgroundSinkLabelsAndPortsNameTheirField) {
  const json base = loop_config("net_null0");
  ASSERT_TRUE(parse_generator_config(base));
  const auto error_of = [&](const char* path, json value) {
    json doc = base;
    doc[json::json_pointer(path)] = value;
    auto r = parse_generator_config(doc);
    return r ? std::string("accepted") : r.error();
  };
  EXPECT_EQ(error_of("/traffic/0/sink/sas/0/until_s", -1), "traffic[0].sink.sas[0].until_s: must be in 0..600");
  EXPECT_EQ(error_of("/traffic/0/sink/sas/0/until_s", "1"), "traffic[0].sink.sas[0].until_s: must be a number");
  EXPECT_EQ(error_of("/traffic/0/sink/sas/1/label", ""), "traffic[0].sink.sas[1].label: must be 1..64 characters");
  EXPECT_EQ(error_of("/traffic/0/sink/sas/1/spi", 0x2101), "traffic[0].sink.sas[1].spi: is used twice");
  EXPECT_EQ(error_of("/traffic/0/background/1/rate_pps", 0), "traffic[0].background[1].rate_pps: must be in 1..1e+06");
  EXPECT_EQ(error_of("/traffic/0/background/0/tx_port", "fabric"),
            "traffic[0].background[0].tx_port: no port named 'fabric'");
  EXPECT_EQ(error_of("/traffic/0/background/1/name", "node2-alive"),
            "traffic[0].background[1].name: 'node2-alive' is used twice");
  EXPECT_EQ(error_of("/traffic/0/background/1/encrypt/tunnel_dst", "fd00::1"),
            "traffic[0].background[1].encrypt.tunnel_dst: must be of the family of tunnel_src");
  EXPECT_EQ(error_of("/traffic/0/background", json::object()), "traffic[0].background: must be a list");
  EXPECT_EQ(error_of("/traffic/0/dst_port", 0), "traffic[0].dst_port: must be in 1..65535, got 0");
  EXPECT_EQ(error_of("/traffic/0/dst_port_count", 65535),
            "traffic[0].dst_port_count: runs past port 65535 from dst_port 80");
  json no_encrypt = base;
  no_encrypt["traffic"][0]["background"][0].erase("encrypt");
  auto r = parse_generator_config(no_encrypt);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), "traffic[0].background[0].encrypt: is required");
  json no_rate = base;
  no_rate["traffic"][0]["background"][1].erase("rate_pps");
  r = parse_generator_config(no_rate);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), "traffic[0].background[1].rate_pps: is required");
}

TEST(PerfConfig, DestinationPortsDefaultToSevenFrom5001) {
  json doc = loop_config("net_null0");
  doc["traffic"][0].erase("dst_port");
  doc["traffic"][0].erase("dst_port_count");
  auto c = parse_generator_config(doc);
  ASSERT_TRUE(c) << c.error();
  EXPECT_EQ(make_flow(c->traffic[0].flows, 0).dport, 5001);
  EXPECT_EQ(make_flow(c->traffic[0].flows, 6).dport, 5007);
  EXPECT_EQ(make_flow(c->traffic[0].flows, 7).dport, 5001);
}

TEST(PerfConfig, TrialLeadIsChecked) {
  std::vector<Traffic> traffic(1);
  traffic[0].name = "self";
  auto r = parse_trial_request(json::parse(R"({"traffic":"self","lead_s":0.25})"), traffic);
  ASSERT_TRUE(r) << r.error();
  EXPECT_EQ(r->lead_s, 0.25);
  EXPECT_EQ(parse_trial_request(json::parse(R"({"traffic":"self"})"), traffic)->lead_s, 0.0);
  auto bad = parse_trial_request(json::parse(R"({"traffic":"self","lead_s":-1})"), traffic);
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().find("trial.lead_s: must be in"), std::string::npos);
}

}  // namespace
}  // namespace meshwire::perf
