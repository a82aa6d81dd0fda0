#include "metrics/dataplane.h"

#include <curl/curl.h>
#include <gtest/gtest.h>

#include <sstream>
#include <string>

#include "metrics/server.h"

namespace meshwire::ctl::metrics {
namespace {

namespace v1 = meshwire::v1;

DataplaneSnapshot snapshot(int backends) {
  DataplaneSnapshot s;
  s.generation.set_live_generation(7);
  s.generation.set_services_generation(3);
  s.generation.set_applied_unix_ms(1700000000500);
  s.generation.set_workers(2);
  v1::Interface* i = s.interfaces.add_interfaces();
  i->set_name("pods");
  i->set_role("local");
  i->set_rx_packets(100);
  i->set_tx_bytes(6400);
  i->set_mtu(1500);
  i->set_rx_missed(4);
  (*i->mutable_xstats())["rx_good_packets"] = 100;
  (*i->mutable_xstats())["rx_q0_errors"] = 1;
  v1::CounterBlock* total = s.counters.add_blocks();
  total->set_name("total");
  (*total->mutable_counters())["encrypted_packets"] = 90;
  (*total->mutable_counters())["decrypted_packets"] = 80;
  v1::DropReason* d = s.drops.add_reasons();
  d->set_name("no_route");
  d->set_count(3);
  v1::PeerStatus* up = s.peers.add_peers();
  up->set_name("node2");
  up->set_liveness("up");
  up->set_last_heard_ms_ago(40);
  up->set_mac("02:00:00:00:00:02");
  v1::PeerStatus* never = s.peers.add_peers();
  never->set_name("node3");
  never->set_liveness("unknown");
  v1::SaStatus* out = s.sas.add_sas();
  out->set_direction("outbound");
  out->set_peer("node2");
  out->set_spi(0x1201);
  out->set_worker(0);
  out->set_seq(12345);
  out->set_created_unix_ms(1700000000000);
  v1::ServiceStatus* svc = s.services.add_services();
  svc->mutable_frontend()->set_name("default/web:http");
  for (int b = 0; b < backends; ++b) {
    v1::BackendStatus* bs = svc->add_backends();
    bs->mutable_backend()->set_address("10.12.0." + std::to_string(b + 1));
    bs->mutable_backend()->set_port(8080);
    bs->mutable_backend()->set_node("node2");
    bs->set_connections(static_cast<uint64_t>(10 * (b + 1)));
    bs->set_failed_connects(b == 0 ? 2 : 0);
    bs->set_selectable(b != 0);
    bs->set_active_flows(1);
  }
  return s;
}

bool has_line(const std::string& text, const std::string& line) {
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);) {
    if (l == line) return true;
  }
  return false;
}

TEST(DataplaneMetrics, EveryPartOfTheStateIsASeries) {
  Exposition e;
  render_dataplane(e, snapshot(3));
  const std::string& t = e.text();
  EXPECT_TRUE(has_line(t, "meshwire_dataplane_generation 7")) << t;
  EXPECT_TRUE(has_line(t, "meshwire_dataplane_applied_timestamp_seconds 1700000000.5"));
  EXPECT_TRUE(has_line(t, "# TYPE meshwire_port_receive_packets_total counter"));
  EXPECT_TRUE(has_line(t, "meshwire_port_receive_packets_total{port=\"pods\",role=\"local\"} 100"));
  EXPECT_TRUE(has_line(t, "meshwire_port_transmit_bytes_total{port=\"pods\",role=\"local\"} 6400"));
  EXPECT_TRUE(has_line(t, "meshwire_port_receive_missed_total{port=\"pods\",role=\"local\"} 4"));
  EXPECT_TRUE(has_line(t, "meshwire_port_transmit_errors_total{port=\"pods\",role=\"local\"} 0"));
  EXPECT_TRUE(has_line(t, "meshwire_port_xstats_total{port=\"pods\",role=\"local\",stat=\"rx_good_packets\"} 100"));
  EXPECT_TRUE(has_line(t, "meshwire_port_xstats_total{port=\"pods\",role=\"local\",stat=\"rx_q0_errors\"} 1"));
  EXPECT_TRUE(has_line(t, "meshwire_dataplane_encrypted_packets_total 90"));
  EXPECT_TRUE(has_line(t, "meshwire_dataplane_drops_total{direction=\"from_pods\",reason=\"no_route\"} 3"));
  EXPECT_TRUE(has_line(t, "meshwire_dataplane_drops_total{direction=\"from_fabric\",reason=\"no_route\"} 0"));
  EXPECT_TRUE(has_line(t, "meshwire_peer_up{peer=\"node2\"} 1"));
  EXPECT_TRUE(has_line(t, "meshwire_peer_up{peer=\"node3\"} 0"));
  EXPECT_TRUE(has_line(t, "meshwire_peer_last_heard_seconds{peer=\"node2\"} 0.04"));
  EXPECT_EQ(t.find("meshwire_peer_last_heard_seconds{peer=\"node3\"}"), std::string::npos);  // never heard
  EXPECT_TRUE(has_line(t, "meshwire_sa_outbound_sequence{peer=\"node2\",spi=\"4609\",worker=\"0\"} 12345"));
  EXPECT_TRUE(has_line(
      t, "meshwire_sa_created_timestamp_seconds{direction=\"outbound\",peer=\"node2\",spi=\"4609\",worker=\"0\"} 1700000000"));
  EXPECT_TRUE(has_line(t, "meshwire_service_connections_total{service=\"default/web:http\"} 60"));
  EXPECT_TRUE(has_line(t, "meshwire_service_failed_connects_total{service=\"default/web:http\"} 2"));
  EXPECT_TRUE(has_line(t, "meshwire_service_selectable_backends{service=\"default/web:http\"} 2"));
  EXPECT_TRUE(has_line(
      t, "meshwire_service_backend_connections_total{service=\"default/web:http\",backend=\"10.12.0.3:8080\",node=\"node2\"} 30"));
  EXPECT_TRUE(has_line(
      t, "meshwire_service_backend_selectable{service=\"default/web:http\",backend=\"10.12.0.1:8080\",node=\"node2\"} 0"));
}

TEST(DataplaneMetrics, PerBackendSeriesAreTheBusiestOnes) {
  Exposition e;
  render_dataplane(e, snapshot(250), RenderOptions{.top_backends = 5});
  const std::string& t = e.text();
  size_t rows = 0;
  for (size_t at = 0; (at = t.find("\nmeshwire_service_backend_connections_total{", at)) != std::string::npos; ++at) {
    ++rows;
  }
  EXPECT_EQ(rows, 5u);
  // The busiest (250 x 10 connections) is in, the quietest out; the sum covers all.
  EXPECT_NE(t.find("backend=\"10.12.0.250:8080\""), std::string::npos);
  EXPECT_EQ(t.find("backend=\"10.12.0.1:8080\""), std::string::npos);
  EXPECT_TRUE(has_line(t, "meshwire_service_connections_total{service=\"default/web:http\"} 313750"));
}

size_t collect(char* data, size_t size, size_t n, void* out) {
  static_cast<std::string*>(out)->append(data, size * n);
  return size * n;
}

long get(const std::string& url, std::string* body, std::string* type) {
  CURL* c = curl_easy_init();
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, body);
  curl_easy_setopt(c, CURLOPT_TIMEOUT, 5L);
  long code = 0;
  if (curl_easy_perform(c) == CURLE_OK) {
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    char* ct = nullptr;
    curl_easy_getinfo(c, CURLINFO_CONTENT_TYPE, &ct);
    if (ct) *type = ct;
  }
  curl_easy_cleanup(c);
  return code;
}

TEST(MetricsServer, ServesTheTextOnMetricsAndNothingElse) {
  int scrapes = 0;
  auto server = Server::start("127.0.0.1:0", [&] {
    ++scrapes;
    return std::string("# HELP m h\n# TYPE m gauge\nm 1\n");
  });
  ASSERT_TRUE(server.ok()) << server.error();
  ASSERT_NE((*server)->port(), 0);
  const std::string base = "http://127.0.0.1:" + std::to_string((*server)->port());
  std::string body, type;
  EXPECT_EQ(get(base + "/metrics", &body, &type), 200);
  EXPECT_EQ(body, "# HELP m h\n# TYPE m gauge\nm 1\n");
  EXPECT_EQ(type, "text/plain; version=0.0.4; charset=utf-8");
  body.clear();
  EXPECT_EQ(get(base + "/", &body, &type), 404);
  EXPECT_EQ(scrapes, 1);
}

TEST(MetricsServer, BadListenAddressesNameTheFlag) {
  for (const char* bad : {"9464", "localhost:9464", "127.0.0.1:70000", "127.0.0.1:x"}) {
    auto s = Server::start(bad, [] { return std::string(); });
    ASSERT_FALSE(s.ok()) << bad;
    EXPECT_EQ(s.error().rfind("--metrics-listen ", 0), 0u) << s.error();
  }
  auto first = Server::start("127.0.0.1:0", [] { return std::string(); });
  ASSERT_TRUE(first.ok());
  auto clash = Server::start("127.0.0.1:" + std::to_string((*first)->port()), [] { return std::string(); });
  ASSERT_FALSE(clash.ok());
  EXPECT_NE(clash.error().find("cannot listen"), std::string::npos);
}

}  // namespace
}  // namespace meshwire::ctl::metrics
