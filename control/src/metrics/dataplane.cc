#include "metrics/dataplane.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <map>
#include <vector>

namespace meshwire::ctl::metrics {

namespace v1 = meshwire::v1;

dp::Result<DataplaneSnapshot> scrape_dataplane(v1::Dataplane::Stub& stub, std::chrono::milliseconds deadline) {
  DataplaneSnapshot s;
  auto call = [&](const char* what, auto method, const auto& request, auto* response) -> dp::Status {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + deadline);
    const grpc::Status st = (stub.*method)(&ctx, request, response);
    if (!st.ok()) return dp::make_error(std::string(what) + ": " + st.error_message());
    return dp::Ok{};
  };
  // One after the other: the first that fails ends the scrape (a data plane
  // that is down costs one deadline, not seven).
  dp::Status st = call("GetGeneration", &v1::Dataplane::Stub::GetGeneration, v1::GetGenerationRequest{}, &s.generation);
  if (st.ok()) st = call("ListInterfaces", &v1::Dataplane::Stub::ListInterfaces, v1::ListInterfacesRequest{}, &s.interfaces);
  if (st.ok()) st = call("GetCounters", &v1::Dataplane::Stub::GetCounters, v1::GetCountersRequest{}, &s.counters);
  if (st.ok()) st = call("GetDrops", &v1::Dataplane::Stub::GetDrops, v1::GetDropsRequest{}, &s.drops);
  if (st.ok()) st = call("ListPeers", &v1::Dataplane::Stub::ListPeers, v1::ListPeersRequest{}, &s.peers);
  if (st.ok()) st = call("ListSas", &v1::Dataplane::Stub::ListSas, v1::ListSasRequest{}, &s.sas);
  if (st.ok()) st = call("ListServices", &v1::Dataplane::Stub::ListServices, v1::ListServicesRequest{}, &s.services);
  if (!st.ok()) return dp::make_error(st.error());
  return s;
}

namespace {

std::string backend_name(const v1::Backend& b) { return b.address() + ":" + std::to_string(b.port()); }

}  // namespace

void render_dataplane(Exposition& out, const DataplaneSnapshot& s, const RenderOptions& options) {
  const auto& g = s.generation;
  out.family("meshwire_dataplane_generation", Type::kGauge,
             "Live routing generation of the data plane (0: its startup config only).");
  out.sample(static_cast<double>(g.live_generation()));
  out.family("meshwire_dataplane_services_generation", Type::kGauge,
             "Live services generation of the data plane (0: none applied).");
  out.sample(static_cast<double>(g.services_generation()));
  out.family("meshwire_dataplane_applied_timestamp_seconds", Type::kGauge,
             "When the live generation was applied (Unix time).");
  out.sample(static_cast<double>(g.applied_unix_ms()) / 1000.0);
  out.family("meshwire_dataplane_workers", Type::kGauge, "Worker cores of the data plane.");
  out.sample(g.workers());

  // Ports.
  struct PortSeries {
    const char* name;
    const char* help;
    uint64_t (v1::Interface::*get)() const;
  };
  const PortSeries port_series[] = {
      {"meshwire_port_receive_packets_total", "Packets received on a data plane port.", &v1::Interface::rx_packets},
      {"meshwire_port_receive_bytes_total", "Bytes received on a data plane port.", &v1::Interface::rx_bytes},
      {"meshwire_port_transmit_packets_total", "Packets sent on a data plane port.", &v1::Interface::tx_packets},
      {"meshwire_port_transmit_bytes_total", "Bytes sent on a data plane port.", &v1::Interface::tx_bytes},
  };
  for (const PortSeries& ps : port_series) {
    out.family(ps.name, Type::kCounter, ps.help);
    for (const v1::Interface& i : s.interfaces.interfaces()) {
      out.sample({{"port", i.name()}, {"role", i.role()}}, static_cast<double>((i.*ps.get)()));
    }
  }
  const PortSeries device_series[] = {
      {"meshwire_port_receive_missed_total",
       "Packets the device dropped for want of a free RX descriptor (the workers did not keep up).",
       &v1::Interface::rx_missed},
      {"meshwire_port_receive_errors_total", "Receive errors the device reports.", &v1::Interface::rx_errors},
      {"meshwire_port_receive_no_mbuf_total", "Packets the device could not receive for want of an mbuf.",
       &v1::Interface::rx_no_mbuf},
      {"meshwire_port_transmit_errors_total", "Transmit errors the device reports.", &v1::Interface::tx_errors},
  };
  for (const PortSeries& ps : device_series) {
    out.family(ps.name, Type::kCounter, ps.help);
    for (const v1::Interface& i : s.interfaces.interfaces()) {
      out.sample({{"port", i.name()}, {"role", i.role()}}, static_cast<double>((i.*ps.get)()));
    }
  }
  out.family("meshwire_port_xstats_total", Type::kCounter,
             "The device driver's extended statistics (DPDK xstats), by name: what the driver counts.");
  for (const v1::Interface& i : s.interfaces.interfaces()) {
    const std::map<std::string, uint64_t> sorted(i.xstats().begin(), i.xstats().end());
    for (const auto& [name, value] : sorted) {
      out.sample({{"port", i.name()}, {"role", i.role()}, {"stat", name}}, static_cast<double>(value));
    }
  }
  out.family("meshwire_port_mtu_bytes", Type::kGauge, "MTU of a data plane port.");
  for (const v1::Interface& i : s.interfaces.interfaces()) out.sample({{"port", i.name()}, {"role", i.role()}}, i.mtu());

  // The data plane's counters, summed over its workers and control thread.
  if (s.counters.blocks_size() > 0) {
    const auto& counters = s.counters.blocks(0).counters();
    const std::map<std::string, uint64_t> sorted(counters.begin(), counters.end());
    for (const auto& [name, value] : sorted) {
      out.family("meshwire_dataplane_" + name + "_total", Type::kCounter,
                 "meshwire-dataplane counter " + name + " (summed over its threads; README, Counters).");
      out.sample(static_cast<double>(value));
    }
  }
  out.family("meshwire_dataplane_drops_total", Type::kCounter,
             "Packets the data plane dropped, by reason and where they came from: from_pods, from_fabric (decryption "
             "and after), control (the control thread's).");
  for (const v1::DropReason& r : s.drops.reasons()) {
    const uint64_t from_pods = r.count() - std::min(r.count(), r.from_fabric() + r.control());
    out.sample({{"direction", "from_pods"}, {"reason", r.name()}}, static_cast<double>(from_pods));
    out.sample({{"direction", "from_fabric"}, {"reason", r.name()}}, static_cast<double>(r.from_fabric()));
    out.sample({{"direction", "control"}, {"reason", r.name()}}, static_cast<double>(r.control()));
  }

  // Peers.
  out.family("meshwire_peer_up", Type::kGauge,
             "1 while a peer node answers its keepalives, 0 when it missed them (down) or was never heard from.");
  for (const v1::PeerStatus& p : s.peers.peers()) out.sample({{"peer", p.name()}}, p.liveness() == "up" ? 1 : 0);
  out.family("meshwire_peer_last_heard_seconds", Type::kGauge,
             "Seconds since the last authenticated ESP packet from a peer (peers heard from at least once).");
  for (const v1::PeerStatus& p : s.peers.peers()) {
    if (p.liveness() != "unknown") out.sample({{"peer", p.name()}}, p.last_heard_ms_ago() / 1000.0);
  }
  out.family("meshwire_peer_resolved", Type::kGauge, "1 once a peer's fabric MAC address is known.");
  for (const v1::PeerStatus& p : s.peers.peers()) out.sample({{"peer", p.name()}}, p.mac().empty() ? 0 : 1);
  struct PeerSeries {
    const char* name;
    const char* help;
    uint64_t (v1::PeerStatus::*get)() const;
  };
  const PeerSeries traffic[] = {
      {"meshwire_peer_transmit_packets_total", "ESP packets sent to a peer (keepalives included).",
       &v1::PeerStatus::tx_packets},
      {"meshwire_peer_transmit_bytes_total", "Bytes of the ESP frames sent to a peer, as on the wire.",
       &v1::PeerStatus::tx_bytes},
      {"meshwire_peer_receive_packets_total", "ESP packets from a peer that authenticated and passed anti-replay.",
       &v1::PeerStatus::rx_packets},
      {"meshwire_peer_receive_bytes_total", "Bytes of the ESP frames from a peer that were accepted, as on the wire.",
       &v1::PeerStatus::rx_bytes},
  };
  for (const PeerSeries& series : traffic) {
    out.family(series.name, Type::kCounter, series.help);
    for (const v1::PeerStatus& p : s.peers.peers()) {
      out.sample({{"peer", p.name()}}, static_cast<double>((p.*series.get)()));
    }
  }
  out.family("meshwire_peer_keepalive_rtt_seconds", Type::kGauge,
             "Round trip of the last keepalive a peer echoed (peers that echoed one).");
  for (const v1::PeerStatus& p : s.peers.peers()) {
    if (p.keepalive_rtt_us() != 0) out.sample({{"peer", p.name()}}, p.keepalive_rtt_us() / 1e6);
  }
  out.family("meshwire_peer_clock_offset_seconds", Type::kGauge,
             "A peer's wall clock minus this node's, from the last keepalive exchange.");
  for (const v1::PeerStatus& p : s.peers.peers()) {
    if (p.clock_known()) out.sample({{"peer", p.name()}}, static_cast<double>(p.clock_offset_ms()) / 1000.0);
  }

  // SAs: the outbound sequence number shows how far an SA is from
  // rotation (the controller rotates at --rotate-packets).
  out.family("meshwire_sa_outbound_sequence", Type::kGauge,
             "Last ESP sequence number sent on an outbound SA (64-bit, extended sequence numbers).");
  for (const v1::SaStatus& sa : s.sas.sas()) {
    if (sa.direction() != "outbound") continue;
    out.sample({{"peer", sa.peer()}, {"spi", std::to_string(sa.spi())}, {"worker", std::to_string(sa.worker())}},
               static_cast<double>(sa.seq()));
  }
  out.family("meshwire_sa_inbound_window_top", Type::kGauge,
             "Highest ESP sequence number an inbound SA has accepted.");
  for (const v1::SaStatus& sa : s.sas.sas()) {
    if (sa.direction() != "inbound") continue;
    out.sample({{"peer", sa.peer()}, {"spi", std::to_string(sa.spi())}}, static_cast<double>(sa.window_top()));
  }

  out.family("meshwire_sa_created_timestamp_seconds", Type::kGauge,
             "When the data plane set an SA up (Unix time): time() minus this is the key's age.");
  for (const v1::SaStatus& sa : s.sas.sas()) {
    Labels l = {{"direction", sa.direction()}, {"peer", sa.peer()}, {"spi", std::to_string(sa.spi())}};
    if (sa.direction() == "outbound") l.push_back({"worker", std::to_string(sa.worker())});
    out.sample(l, static_cast<double>(sa.created_unix_ms()) / 1000.0);
  }

  // Services: sums per frontend, and the busiest backends one by one.
  struct Row {
    const v1::ServiceStatus* service;
    const v1::BackendStatus* backend;
  };
  std::vector<Row> rows;
  for (const v1::ServiceStatus& svc : s.services.services()) {
    for (const v1::BackendStatus& b : svc.backends()) rows.push_back({&svc, &b});
  }
  struct Sum {
    const char* name;
    const char* help;
    uint64_t (v1::BackendStatus::*get)() const;
    Type type;
  };
  const Sum sums[] = {
      {"connections_total", "New connections sent to the backends.", &v1::BackendStatus::connections, Type::kCounter},
      {"failed_connects_total", "Connections the backends refused or left unanswered.",
       &v1::BackendStatus::failed_connects, Type::kCounter},
      {"retries_total", "Connections retried on another backend after a backend failed them.",
       &v1::BackendStatus::retries_away, Type::kCounter},
      {"ejections_total", "Times passive outlier detection ejected a backend (failed connects in a row).",
       &v1::BackendStatus::ejections, Type::kCounter},
      {"active_flows", "Tracked connections to the backends.", &v1::BackendStatus::active_flows, Type::kGauge},
  };
  for (const Sum& sum : sums) {
    out.family(std::string("meshwire_service_") + sum.name, sum.type,
               std::string(sum.help) + " Per service frontend (name, ClusterIP:port/protocol).");
    for (const v1::ServiceStatus& svc : s.services.services()) {
      uint64_t total = 0;
      for (const v1::BackendStatus& b : svc.backends()) total += (b.*sum.get)();
      out.sample({{"service", svc.frontend().name()}}, static_cast<double>(total));
    }
  }
  // Connect latency: per service, the sum of its backends' histograms.
  std::vector<double> bounds_s;
  for (uint32_t us : s.services.connect_latency_bounds_us()) bounds_s.push_back(us / 1e6);
  auto add_latency = [&](const v1::BackendStatus& b, std::vector<uint64_t>& counts, double& sum_s) {
    counts.resize(bounds_s.size() + 1, 0);
    for (int i = 0; i < b.connect_latency_counts_size() && static_cast<size_t>(i) < counts.size(); ++i) {
      counts[i] += b.connect_latency_counts(i);
    }
    sum_s += b.connect_latency_sum_us() / 1e6;
  };
  constexpr const char* kLatencyHelp =
      "Connect latency, a TCP SYN or SCTP INIT sent to a backend to the SYN-ACK or INIT-ACK seen coming back";
  out.family("meshwire_service_connect_duration_seconds", Type::kHistogram,
             std::string(kLatencyHelp) + ", per service frontend.");
  for (const v1::ServiceStatus& svc : s.services.services()) {
    std::vector<uint64_t> counts;
    double sum_s = 0;
    for (const v1::BackendStatus& b : svc.backends()) add_latency(b, counts, sum_s);
    counts.resize(bounds_s.size() + 1, 0);
    out.histogram({{"service", svc.frontend().name()}}, bounds_s, counts, sum_s);
  }
  out.family("meshwire_service_selectable_backends", Type::kGauge,
             "Backends of a service frontend that take new connections.");
  for (const v1::ServiceStatus& svc : s.services.services()) {
    const auto n = std::count_if(svc.backends().begin(), svc.backends().end(),
                                 [](const v1::BackendStatus& b) { return b.selectable(); });
    out.sample({{"service", svc.frontend().name()}}, static_cast<double>(n));
  }
  std::sort(rows.begin(), rows.end(), [](const Row& a, const Row& b) {
    if (a.backend->connections() != b.backend->connections()) return a.backend->connections() > b.backend->connections();
    if (a.service->frontend().name() != b.service->frontend().name()) {
      return a.service->frontend().name() < b.service->frontend().name();
    }
    return backend_name(a.backend->backend()) < backend_name(b.backend->backend());
  });
  if (rows.size() > options.top_backends) rows.resize(options.top_backends);
  auto labels = [](const Row& r) {
    return Labels{{"service", r.service->frontend().name()},
                  {"backend", backend_name(r.backend->backend())},
                  {"node", r.backend->backend().node()}};
  };
  for (const Sum& sum : sums) {
    out.family(std::string("meshwire_service_backend_") + sum.name, sum.type,
               std::string(sum.help) + " Per backend, for the busiest --metrics-top-backends.");
    for (const Row& r : rows) out.sample(labels(r), static_cast<double>((r.backend->*sum.get)()));
  }
  out.family("meshwire_service_backend_selectable", Type::kGauge,
             "1 while a backend takes new connections (0: draining, ejected, node down or unrouted).");
  for (const Row& r : rows) out.sample(labels(r), r.backend->selectable() ? 1 : 0);
  out.family("meshwire_service_backend_connect_duration_seconds", Type::kHistogram,
             std::string(kLatencyHelp) + ", per backend, for the busiest --metrics-top-backends.");
  for (const Row& r : rows) {
    std::vector<uint64_t> counts;
    double sum_s = 0;
    add_latency(*r.backend, counts, sum_s);
    out.histogram(labels(r), bounds_s, counts, sum_s);
  }
}

}  // namespace meshwire::ctl::metrics
