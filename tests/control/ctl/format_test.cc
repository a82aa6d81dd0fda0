// meshwirectl's output: the tables an operator reads and the JSON a script
// parses, from canned API answers.
#include "ctl/format.h"

#include <gtest/gtest.h>

namespace meshwire::control {
namespace {

TEST(RenderTable, AlignsColumnsAndRightAlignsNumbers) {
  const std::string out = render_table({"NAME", "COUNT", "NOTE"}, {{"a", "5", "x"}, {"longer", "12345", ""}});
  EXPECT_EQ(out,
            "NAME    COUNT  NOTE\n"
            "a           5  x\n"
            "longer  12345\n");
}

TEST(RenderTable, HeaderOnlyWhenNoRows) { EXPECT_EQ(render_table({"PREFIX", "NEXT-HOP"}, {}), "PREFIX  NEXT-HOP\n"); }

TEST(FormatSas, ShowsSpiInHexAndSeqOrWindowByDirection) {
  v1::ListSasResponse r;
  v1::SaStatus* out = r.add_sas();
  out->set_direction("outbound");
  out->set_peer("node2");
  out->set_spi(0x1201);
  out->set_algorithm(v1::AES_128_GCM);
  out->set_worker(0);
  out->set_seq(42);
  v1::SaStatus* in = r.add_sas();
  in->set_direction("inbound");
  in->set_peer("node2");
  in->set_spi(0x2101);
  in->set_algorithm(v1::AES_256_GCM);
  in->set_worker(-1);
  in->set_window_top(7);
  EXPECT_EQ(format_sas(r),
            "DIRECTION  PEER   SPI         ALGORITHM    WORKER  SEQ/WINDOW-TOP\n"
            "outbound   node2  0x00001201  aes-128-gcm       0              42\n"
            "inbound    node2  0x00002101  aes-256-gcm  -                    7\n");
}

TEST(FormatPeers, UnresolvedMacAndCidrList) {
  v1::ListPeersResponse r;
  v1::PeerStatus* p = r.add_peers();
  p->set_name("node2");
  p->set_tunnel_address("192.0.2.2");
  p->add_pod_cidrs("10.12.0.0/24");
  p->add_pod_cidrs("fd00:12::/64");
  p->set_outbound_sas(2);
  p->set_inbound_sas(4);
  const std::string out = format_peers(r);
  EXPECT_NE(out.find("unresolved"), std::string::npos) << out;
  EXPECT_NE(out.find("2/4"), std::string::npos) << out;
  EXPECT_NE(out.find("10.12.0.0/24,fd00:12::/64"), std::string::npos) << out;
}

TEST(FormatPeers, LivenessAndWhenLastHeard) {
  v1::ListPeersResponse r;
  auto add = [&](const char* name, const char* liveness, uint32_t ago) {
    v1::PeerStatus* p = r.add_peers();
    p->set_name(name);
    p->set_tunnel_address("192.0.2.2");
    p->set_mac("02:bb:00:00:00:02");
    p->add_pod_cidrs("10.12.0.0/24");
    p->set_outbound_sas(1);
    p->set_inbound_sas(1);
    p->set_liveness(liveness);
    p->set_last_heard_ms_ago(ago);
  };
  add("node2", "up", 42);
  // Keepalives came back from node2: its round trip, clock and traffic.
  r.mutable_peers(0)->set_keepalive_rtt_us(250);
  r.mutable_peers(0)->set_clock_known(true);
  r.mutable_peers(0)->set_clock_offset_ms(-3);
  r.mutable_peers(0)->set_tx_packets(10);
  r.mutable_peers(0)->set_rx_packets(12);
  r.mutable_peers(0)->set_tx_bytes(1000);
  r.mutable_peers(0)->set_rx_bytes(1300);
  add("node3", "down", 1500);
  add("node4", "unknown", 0);  // never heard from
  add("node5", "up", 0);       // heard this very millisecond
  EXPECT_EQ(format_peers(r),
            "NAME   TUNNEL     MAC                LIVENESS  HEARD     SAS(OUT/IN)  RTT    CLOCK  PKTS(TX/RX)  BYTES(TX/RX)  POD-CIDRS\n"
            "node2  192.0.2.2  02:bb:00:00:00:02  up        42ms ago  1/1          250us  -3ms   10/12        1000/1300     10.12.0.0/24\n"
            "node3  192.0.2.2  02:bb:00:00:00:02  down      1.5s ago  1/1          -      -      0/0          0/0           10.12.0.0/24\n"
            "node4  192.0.2.2  02:bb:00:00:00:02  unknown   -         1/1          -      -      0/0          0/0           10.12.0.0/24\n"
            "node5  192.0.2.2  02:bb:00:00:00:02  up        0ms ago   1/1          -      -      0/0          0/0           10.12.0.0/24\n");
  const std::string json = to_json(r);
  EXPECT_NE(json.find("\"liveness\": \"down\""), std::string::npos) << json;
  EXPECT_NE(json.find("\"last_heard_ms_ago\": 1500"), std::string::npos) << json;
}

TEST(FormatTrace, EachPacketThenItsStepsWithTheirTimes) {
  v1::TraceResponse r;
  v1::TracedPacket* p = r.add_packets();
  p->set_worker(0);
  p->set_id(7);
  p->set_complete(true);
  auto step = [](v1::TracedPacket* p, uint64_t ns, const char* name, const char* detail) {
    v1::TraceStepInfo* s = p->add_steps();
    s->set_at_ns(ns);
    s->set_step(name);
    s->set_detail(detail);
  };
  step(p, 0, "rx", "port pods, 98 bytes: IPv4 10.11.0.2 > 10.12.0.2 ttl 64 ICMP type 8 code 0");
  step(p, 1250, "tx", "port fabric, 150 bytes");
  v1::TracedPacket* q = r.add_packets();
  q->set_worker(1);
  q->set_id(3);
  step(q, 0, "rx", "port fabric");
  r.set_events_lost(2);
  EXPECT_EQ(format_trace(r),
            "Packet 7 (worker 0)\n"
            "      0.000 us  rx         port pods, 98 bytes: IPv4 10.11.0.2 > 10.12.0.2 ttl 64 ICMP type 8 code 0\n"
            "      1.250 us  tx         port fabric, 150 bytes\n"
            "Packet 3 (worker 1), its last step not seen\n"
            "      0.000 us  rx         port fabric\n"
            "2 packet(s) traced; 2 step(s) lost (queue full)\n");
}

TEST(FormatCounters, OneColumnPerBlockAndOnlyDropsThatHappened) {
  v1::GetCountersResponse r;
  for (const char* name : {"total", "worker0"}) {
    v1::CounterBlock* b = r.add_blocks();
    b->set_name(name);
    (*b->mutable_counters())["encrypted_packets"] = 10;
    (*b->mutable_drops())["replay"] = 3;
    (*b->mutable_drops())["no_route"] = 0;
  }
  const std::string out = format_counters(r);
  EXPECT_NE(out.find("COUNTER            total  worker0"), std::string::npos) << out;
  EXPECT_NE(out.find("drop.replay"), std::string::npos) << out;
  EXPECT_EQ(out.find("no_route"), std::string::npos) << out;
}

TEST(FormatDrops, HidesZeroCountsUnlessAll) {
  v1::GetDropsResponse r;
  v1::DropReason* d = r.add_reasons();
  d->set_name("replay");
  d->set_help("sequence number already seen or too old");
  d->set_count(0);
  EXPECT_EQ(format_drops(r, false), "no drops\n");
  EXPECT_NE(format_drops(r, true).find("replay"), std::string::npos);
  d->set_count(9);
  EXPECT_NE(format_drops(r, false).find("replay      9  sequence"), std::string::npos) << format_drops(r, false);
}

TEST(FormatGeneration, GivesTheServicesGenerationToo) {
  v1::GetGenerationResponse r;
  r.set_live_generation(9);
  r.set_source("api");
  r.set_workers(2);
  r.set_tunnel_address("192.0.2.1");
  r.set_services_generation(4);
  EXPECT_EQ(format_generation(r),
            "generation:          9\n"
            "source:              api\n"
            "applied_unix_ms:     0\n"
            "workers:             2\n"
            "tunnel_address:      192.0.2.1\n"
            "max_outbound_seq:    0\n"
            "services_generation: 4\n");
}

// Two frontends as ListServices gives them: one with ClientIP affinity, an
// active and a draining backend; one over IPv6 with none.
v1::ListServicesResponse two_services() {
  v1::ListServicesResponse r;
  r.set_live_generation(3);
  v1::ServiceStatus* web = r.add_services();
  web->mutable_frontend()->set_name("shop/web:http");
  web->mutable_frontend()->set_vip("10.96.0.10");
  web->mutable_frontend()->set_port(80);
  web->mutable_frontend()->set_protocol(v1::TCP);
  web->mutable_frontend()->set_affinity_timeout_s(10800);
  web->set_table_size(65537);
  v1::BackendStatus* a = web->add_backends();
  a->mutable_backend()->set_address("10.1.0.5");
  a->mutable_backend()->set_port(8080);
  a->mutable_backend()->set_node("node1");
  a->mutable_backend()->set_target("shop/web-a1");
  a->set_state("active");
  a->set_selectable(true);
  a->set_slots(65537);
  a->set_connections(120);
  a->set_active_flows(3);
  v1::BackendStatus* d = web->add_backends();
  d->mutable_backend()->set_address("10.1.0.6");
  d->mutable_backend()->set_port(8080);
  d->mutable_backend()->set_use(v1::Backend::DRAINING);
  d->mutable_backend()->set_reason("terminating");
  d->set_state("draining: terminating");
  d->set_connections(40);
  d->set_failed_connects(2);
  d->set_retries_away(1);
  d->set_active_flows(1);
  v1::ServiceStatus* dns = r.add_services();
  dns->mutable_frontend()->set_name("kube-system/dns:53");
  dns->mutable_frontend()->set_vip("fd00:96::a");
  dns->mutable_frontend()->set_port(53);
  dns->mutable_frontend()->set_protocol(v1::UDP);
  dns->set_table_size(251);
  return r;
}

TEST(FormatServices, AHeaderPerFrontendAndItsBackendsTable) {
  const std::string want =
      "shop/web:http  10.96.0.10:80/TCP  affinity ClientIP 10800s  table 65537\n"
      "  ADDRESS:PORT   NODE   TARGET       STATE                  SLOTS  CONNECTIONS  FAILED  RETRIED-AWAY  FLOWS\n"
      "  10.1.0.5:8080  node1  shop/web-a1  active                 65537          120       0             0      3\n"
      "  10.1.0.6:8080  -      -            draining: terminating      0           40       2             1      1\n"
      "\n"
      "kube-system/dns:53  [fd00:96::a]:53/UDP  table 251\n"
      "  no backends\n";
  EXPECT_EQ(format_services(two_services()), want);
  EXPECT_EQ(format_services(v1::ListServicesResponse()), "no services\n");
}

TEST(FormatBackends, OneFlatRowPerBackendWithTheStateLast) {
  EXPECT_EQ(format_backends(two_services()),
            "SERVICE        FRONTEND           BACKEND        NODE   SELECTABLE  FLOWS  CONNECTIONS  FAILED  STATE\n"
            "shop/web:http  10.96.0.10:80/TCP  10.1.0.5:8080  node1  yes             3          120       0  active\n"
            "shop/web:http  10.96.0.10:80/TCP  10.1.0.6:8080  -      no              1           40       2  "
            "draining: terminating\n");
  EXPECT_EQ(format_backends(v1::ListServicesResponse()), "no services\n");
}

TEST(FormatFlows, TheFlowsThenHowManyOfHowMany) {
  v1::ListFlowsResponse r;
  v1::Flow* tcp = r.add_flows();
  tcp->set_protocol(v1::TCP);
  tcp->set_client("10.1.0.9:40112");
  tcp->set_frontend("10.96.0.10:80");
  tcp->set_backend("10.1.0.5:8080");
  tcp->set_service("shop/web:http");
  tcp->set_state("established");
  tcp->set_idle_ms(850);
  tcp->set_expires_in_ms(7'199'150);
  tcp->set_attempts(1);
  v1::Flow* udp = r.add_flows();
  udp->set_protocol(v1::UDP);
  udp->set_client("[fd00:1::9]:5353");
  udp->set_frontend("[fd00:96::a]:53");
  udp->set_backend("[fd00:1::5]:53");
  udp->set_service("kube-system/dns:53");
  udp->set_state("udp");
  udp->set_idle_ms(12'345);
  udp->set_expires_in_ms(432'000);
  udp->set_attempts(2);
  r.set_total(5);
  r.set_capacity(65536);
  EXPECT_EQ(format_flows(r),
            "PROTO  CLIENT            FRONTEND         BACKEND         SERVICE             STATE        IDLE   "
            "EXPIRES  ATTEMPTS\n"
            "TCP    10.1.0.9:40112    10.96.0.10:80    10.1.0.5:8080   shop/web:http       established  850ms  "
            "1h59m           1\n"
            "UDP    [fd00:1::9]:5353  [fd00:96::a]:53  [fd00:1::5]:53  kube-system/dns:53  udp          12.3s  "
            "7m12s           2\n"
            "2 of 5 flows (capacity 65536)\n");
  v1::ListFlowsResponse none;
  none.set_capacity(65536);
  EXPECT_EQ(format_flows(none), "0 of 0 flows (capacity 65536)\n");
}

TEST(FormatHelpers, AddressesProtocolsAndDurations) {
  EXPECT_EQ(host_port("10.0.0.1", 80), "10.0.0.1:80");
  EXPECT_EQ(host_port("fd00::1", 443), "[fd00::1]:443");
  EXPECT_EQ(protocol_name(v1::SCTP), "SCTP");
  EXPECT_EQ(protocol_name(v1::PROTOCOL_UNSPECIFIED), "-");
  EXPECT_EQ(format_duration_ms(0), "0ms");
  EXPECT_EQ(format_duration_ms(999), "999ms");
  EXPECT_EQ(format_duration_ms(1000), "1.0s");
  EXPECT_EQ(format_duration_ms(59'999), "59.9s");
  EXPECT_EQ(format_duration_ms(60'000), "1m00s");
  EXPECT_EQ(format_duration_ms(3'600'000), "1h00m");
}

TEST(ToJson, ServicesWithEnumsByName) {
  const std::string json = to_json(two_services());
  EXPECT_NE(json.find("\"protocol\": \"TCP\""), std::string::npos) << json;
  EXPECT_NE(json.find("\"use\": \"DRAINING\""), std::string::npos) << json;
  EXPECT_NE(json.find("\"affinity_timeout_s\": 10800"), std::string::npos) << json;
}

TEST(ToJson, UsesProtoFieldNamesAndKeepsZeroValues) {
  v1::GetGenerationResponse r;
  r.set_live_generation(0);
  r.set_source("config");
  const std::string json = to_json(r);
  EXPECT_NE(json.find("\"live_generation\": \"0\""), std::string::npos) << json;
  EXPECT_NE(json.find("\"source\": \"config\""), std::string::npos) << json;
}

}  // namespace
}  // namespace meshwire::control
