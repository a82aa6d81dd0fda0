#include "api/api_server.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

#include <grpcpp/grpcpp.h>
#include <rte_ethdev.h>

#include "api/capture_call.h"
#include "api/convert.h"
#include "app/node.h"
#include "telemetry/trace.h"
#include "worker/liveness.h"
#include "dataplane.grpc.pb.h"

namespace meshwire::dp {
namespace {

namespace v1 = meshwire::v1;

v1::Algorithm algorithm_of(const esp::GcmKey& key) { return key.key_len == 32 ? v1::AES_256_GCM : v1::AES_128_GCM; }

std::string mac_text(uint64_t packed) {
  if (packed == 0) return "";
  uint8_t bytes[6];
  unpack_mac(packed, bytes);
  return format_mac(bytes);
}

// The device's statistics and xstats (read while the workers run, as
// testpmd's "show port stats" does: drivers keep them per queue and sum on read).
void add_device_stats(uint16_t port_id, meshwire::v1::Interface* out) {
  rte_eth_stats st{};
  if (rte_eth_stats_get(port_id, &st) == 0) {
    out->set_rx_missed(st.imissed);
    out->set_rx_errors(st.ierrors);
    out->set_rx_no_mbuf(st.rx_nombuf);
    out->set_tx_errors(st.oerrors);
  }
  const int n = rte_eth_xstats_get_names(port_id, nullptr, 0);
  if (n <= 0) return;
  std::vector<rte_eth_xstat_name> names(static_cast<size_t>(n));
  std::vector<rte_eth_xstat> values(static_cast<size_t>(n));
  const int got_names = rte_eth_xstats_get_names(port_id, names.data(), static_cast<unsigned>(n));
  const int got = rte_eth_xstats_get(port_id, values.data(), static_cast<unsigned>(n));
  if (got_names != n || got != n) return;  // the driver's set changed between the calls: next time
  auto& map = *out->mutable_xstats();
  for (const rte_eth_xstat& x : values) {
    if (x.id < names.size()) map[names[x.id].name] = x.value;
  }
}

const grpc::Status kStopping(grpc::StatusCode::UNAVAILABLE, "the data plane is stopping");

class Service final : public v1::Dataplane::Service {
 public:
  explicit Service(Node& node) : node_(node) {}

  grpc::Status Apply(grpc::ServerContext*, const v1::ApplyRequest* req, v1::ApplyResponse* resp) override {
    const bool delta = req->has_delta();
    if (delta && (req->state().peers_size() != 0 || req->state().pod_cidrs_size() != 0)) {
      return {grpc::StatusCode::INVALID_ARGUMENT, "state, delta: give one of them, not both"};
    }
    Result<RoutingState> routing = RoutingState{};
    if (!delta) {
      routing = api::routing_from_proto(req->state());
      if (!routing.ok()) return {grpc::StatusCode::INVALID_ARGUMENT, "state." + routing.error()};
    }
    Node::ApplyOutcome out;
    std::string delta_error;  // the delta's own, found on the control thread
    bool stale_base = false;
    uint64_t build_us = 0;
    if (!node_.tasks().run([&] {
          const auto t0 = std::chrono::steady_clock::now();
          if (delta) {
            // Against the live generation, on the thread that changes it.
            const Tables& live = node_.tables();
            if (req->delta().base_generation() != live.generation) {
              stale_base = true;
              delta_error = "delta.base_generation: " + std::to_string(req->delta().base_generation()) +
                            " is not the live generation (" + std::to_string(live.generation) +
                            " is): send the whole state";
              return;
            }
            routing = api::apply_delta(routing_of(live), req->delta());
            if (!routing.ok()) {
              delta_error = "delta." + routing.error();
              return;
            }
          }
          out = node_.apply(*routing, req->generation(), req->force());
          build_us = static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(
                                               std::chrono::steady_clock::now() - t0)
                                               .count());
        })) {
      if (routing.ok()) wipe_keys(routing->peers);
      return kStopping;
    }
    if (!delta_error.empty()) {
      return {stale_base ? grpc::StatusCode::FAILED_PRECONDITION : grpc::StatusCode::INVALID_ARGUMENT, delta_error};
    }
    wipe_keys(routing->peers);
    // A delta's errors name the state it makes (the live peers in their
    // order, then the new ones).
    if (grpc::Status st = status_of(out, delta ? "delta: the state it makes: " : prefixed(out.message), !delta);
        !st.ok()) {
      return st;
    }
    resp->set_live_generation(out.live_generation);
    resp->set_changed(out.changed);
    resp->set_build_us(build_us);
    return grpc::Status::OK;
  }

  grpc::Status GetGeneration(grpc::ServerContext*, const v1::GetGenerationRequest*,
                             v1::GetGenerationResponse* resp) override {
    return on_control([&] {
      resp->set_live_generation(node_.tables().generation);
      resp->set_source(std::string(node_.source()));
      resp->set_applied_unix_ms(node_.applied_unix_ms());
      resp->set_workers(node_.workers());
      resp->set_tunnel_address(format_ip(node_.runtime().tunnel_address));
      uint64_t top = 0;
      for (const auto& per_peer : node_.tables().outbound) {
        for (const esp::OutboundSa* sa : per_peer) top = std::max<uint64_t>(top, read_counter(sa->seq));
      }
      resp->set_max_outbound_seq(top);
      resp->set_services_generation(node_.services().generation);
    });
  }

  grpc::Status ApplyServices(grpc::ServerContext*, const v1::ApplyServicesRequest* req,
                             v1::ApplyServicesResponse* resp) override {
    auto services = api::services_from_proto(req->services());
    if (!services.ok()) return {grpc::StatusCode::INVALID_ARGUMENT, services.error()};
    Node::ApplyOutcome out;
    uint64_t build_us = 0;
    if (!node_.tasks().run([&] {
          const auto t0 = std::chrono::steady_clock::now();
          out = node_.apply_services(std::move(*services), req->generation(), req->force());
          build_us = static_cast<uint64_t>(
              std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - t0).count());
        })) {
      return kStopping;
    }
    if (grpc::Status st = status_of(out, out.message, true); !st.ok()) return st;
    resp->set_live_generation(out.live_generation);
    resp->set_changed(out.changed);
    resp->set_build_us(build_us);
    return grpc::Status::OK;
  }

  grpc::Status ListServices(grpc::ServerContext*, const v1::ListServicesRequest* req,
                            v1::ListServicesResponse* resp) override {
    return on_control([&] {
      const lb::ServiceTable& t = node_.services();
      resp->set_live_generation(t.generation);
      const uint32_t now = lb::flow_clock_ms();
      // Live flows per (frontend, backend), from one pass over the table:
      // only when a frontend is asked for. The pass reads every slot (a
      // few milliseconds at the default 262,144), which a node without
      // services, scraped every few seconds, should not pay.
      std::vector<std::vector<uint64_t>> flows(t.frontends.size());
      bool any = false;
      for (size_t i = 0; i < t.frontends.size(); ++i) {
        flows[i].assign(t.frontends[i].backends.size(), 0);
        any |= t.config[i].name.rfind(req->name(), 0) == 0;
      }
      if (any) {
        node_.conntrack().for_each([&](uint32_t, const lb::Flow& f) {
          const auto place = t.place_of(f);
          if (place.frontend != lb::ServiceTable::kNowhere) flows[place.frontend][place.backend]++;
        });
      }
      for (size_t i = 0; i < t.frontends.size(); ++i) {
        const lb::FrontendConfig& fc = t.config[i];
        if (fc.name.rfind(req->name(), 0) != 0) continue;
        const lb::FrontendRuntime& fr = t.frontends[i];
        v1::ServiceStatus* out = resp->add_services();
        api::frontend_to_proto(fc, out->mutable_frontend(), false);
        out->set_table_size(static_cast<uint32_t>(fr.maglev.size()));
        for (size_t j = 0; j < fr.backends.size(); ++j) {
          const lb::BackendRuntime& b = fr.backends[j];
          v1::BackendStatus* bs = out->add_backends();
          api::backend_to_proto(fc.backends[j], bs->mutable_backend());
          const lb::Selectable sel = lb::backend_selectable(b, now);
          bs->set_selectable(sel == lb::Selectable::kYes);
          bs->set_state(describe(sel, fc.backends[j], b, now));
          bs->set_slots(b.slots);
          bs->set_connections(b.health->connections.load(std::memory_order_relaxed));
          bs->set_failed_connects(b.health->failed_connects.load(std::memory_order_relaxed));
          bs->set_retries_away(b.health->retries_away.load(std::memory_order_relaxed));
          bs->set_ejections(b.health->ejections.load(std::memory_order_relaxed));
          bs->set_active_flows(flows[i][j]);
          for (const std::atomic<uint64_t>& c : b.health->connect_latency) {
            bs->add_connect_latency_counts(c.load(std::memory_order_relaxed));
          }
          bs->set_connect_latency_sum_us(b.health->connect_latency_sum_us.load(std::memory_order_relaxed));
        }
      }
      for (uint32_t bound : lb::kConnectLatencyBoundsUs) resp->add_connect_latency_bounds_us(bound);
    });
  }

  grpc::Status ListFlows(grpc::ServerContext*, const v1::ListFlowsRequest* req, v1::ListFlowsResponse* resp) override {
    return on_control([&] {
      const lb::ServiceTable& t = node_.services();
      lb::ConnTrack& ct = node_.conntrack();
      const uint32_t limit = req->limit() == 0 ? 1000 : req->limit();
      const uint32_t now = lb::flow_clock_ms();
      uint64_t total = 0;
      ct.for_each([&](uint32_t, const lb::Flow& f) {
        if (f.forward.proto == lb::kAffinityProto) return;
        const auto place = t.place_of(f);
        const std::string& name = place.frontend == lb::ServiceTable::kNowhere ? kNoName : t.config[place.frontend].name;
        if (!req->service().empty() && name.rfind(req->service(), 0) != 0) return;
        ++total;
        if (static_cast<uint32_t>(resp->flows_size()) >= limit) return;
        v1::Flow* out = resp->add_flows();
        const lb::FlowTuple& k = f.forward;
        out->set_protocol(k.proto == 6 ? v1::TCP : k.proto == 17 ? v1::UDP : v1::SCTP);
        out->set_client(format_endpoint(k.family, k.src, k.src_port));
        out->set_frontend(format_endpoint(k.family, k.dst, k.dst_port));
        out->set_backend(format_endpoint(k.family, f.backend, f.backend_port));
        out->set_service(name);
        const auto state = static_cast<lb::FlowState>(f.state.load(std::memory_order_relaxed));
        out->set_state(k.proto == 132 && state == lb::FlowState::kSynSent ? std::string("init_sent")
                                                                          : std::string(lb::flow_state_name(state)));
        const uint32_t idle = now - f.last_seen_ms.load(std::memory_order_relaxed);
        out->set_idle_ms(idle);
        const uint32_t timeout = lb::idle_timeout_ms(ct.timeouts(), state, f.affinity_timeout_ms);
        out->set_expires_in_ms(idle >= timeout ? 0 : timeout - idle);
        out->set_attempts(f.attempts.load(std::memory_order_relaxed));
        if (f.log_reported_ms.load(std::memory_order_relaxed) != 0) {
          out->set_logged(true);
          out->set_packets_to_backend(f.fwd_packets.load(std::memory_order_relaxed));
          out->set_bytes_to_backend(f.fwd_bytes.load(std::memory_order_relaxed));
          out->set_packets_to_client(f.rev_packets.load(std::memory_order_relaxed));
          out->set_bytes_to_client(f.rev_bytes.load(std::memory_order_relaxed));
        }
      });
      resp->set_total(total);
      resp->set_capacity(ct.capacity());
    });
  }

  grpc::Status Trace(grpc::ServerContext* context, const v1::TraceRequest* req, v1::TraceResponse* resp) override {
    if (req->count() == 0 || req->count() > 1000) {
      return {grpc::StatusCode::INVALID_ARGUMENT, "count: must be 1..1000, got " + std::to_string(req->count())};
    }
    int32_t port = -1;
    if (!req->port().empty()) {
      grpc::Status found = on_control([&] {
        const auto& ports = node_.runtime().ports;
        for (size_t i = 0; i < ports.size(); ++i) {
          if (ports[i].name == req->port()) port = static_cast<int32_t>(i);
        }
      });
      if (!found.ok()) return found;
      if (port < 0) return {grpc::StatusCode::INVALID_ARGUMENT, "port: no port named " + req->port()};
    }
    std::lock_guard lock(trace_mu_);
    const unsigned workers = node_.workers();
    // What an earlier trace left in flight is not this one's.
    for (unsigned w = 0; w < workers; ++w) node_.trace(w).queue.consume_all([](const TraceEvent&) {});
    uint64_t lost_before = 0;
    for (unsigned w = 0; w < workers; ++w) lost_before += node_.trace(w).lost.load(std::memory_order_relaxed);
    for (unsigned w = 0; w < workers; ++w) {
      node_.trace(w).port.store(port, std::memory_order_relaxed);
      trace_arm(node_.trace(w), req->count());
    }
    struct Traced {
      unsigned worker;
      uint32_t id;
      std::vector<TraceEvent> events;
      bool complete = false;
    };
    std::vector<Traced> packets;
    std::map<std::pair<unsigned, uint32_t>, size_t> index;
    size_t complete = 0;
    const auto deadline = std::chrono::steady_clock::now() +
                          std::chrono::milliseconds(req->timeout_ms() == 0 ? 10000 : req->timeout_ms());
    while (complete < req->count() && std::chrono::steady_clock::now() < deadline && !context->IsCancelled()) {
      bool any = false;
      for (unsigned w = 0; w < workers; ++w) {
        node_.trace(w).queue.consume_all([&](const TraceEvent& e) {
          any = true;
          auto [it, fresh] = index.try_emplace({w, e.packet}, packets.size());
          if (fresh) {
            if (e.step != TraceStep::kRx) return;  // the tail of a packet of an earlier trace
            packets.push_back({w, e.packet, {}, false});
          }
          Traced& t = packets[it->second];
          if (t.complete) return;
          t.events.push_back(e);
          if (trace_step_ends(e.step)) {
            t.complete = true;
            ++complete;
          }
        });
      }
      if (!any) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    for (unsigned w = 0; w < workers; ++w) trace_arm(node_.trace(w), 0);
    uint64_t lost = 0;
    for (unsigned w = 0; w < workers; ++w) lost += node_.trace(w).lost.load(std::memory_order_relaxed);
    resp->set_events_lost(lost - lost_before);
    // The first `count` packets received, complete or not; their steps in words.
    std::stable_sort(packets.begin(), packets.end(), [](const Traced& a, const Traced& b) {
      return a.events.front().tsc < b.events.front().tsc;
    });
    if (packets.size() > req->count()) packets.resize(req->count());
    return on_control([&] {
      const double ns_per_tsc = 1e9 / static_cast<double>(rte_get_tsc_hz());
      for (const Traced& t : packets) {
        v1::TracedPacket* out = resp->add_packets();
        out->set_worker(t.worker);
        out->set_id(t.id);
        out->set_complete(t.complete);
        for (const TraceEvent& e : t.events) {
          v1::TraceStepInfo* step = out->add_steps();
          step->set_at_ns(static_cast<uint64_t>(static_cast<double>(e.tsc - t.events.front().tsc) * ns_per_tsc));
          step->set_step(trace_step_name(e.step));
          step->set_detail(describe_step(e));
        }
      }
    });
  }

  grpc::Status ListInterfaces(grpc::ServerContext*, const v1::ListInterfacesRequest*,
                              v1::ListInterfacesResponse* resp) override {
    // Ports and counters do not change with generations: no need for the control thread.
    const auto& ports = node_.runtime().ports;
    for (size_t p = 0; p < ports.size(); ++p) {
      v1::Interface* i = resp->add_interfaces();
      i->set_name(ports[p].name);
      i->set_role(ports[p].role == PortRole::kUplink ? "uplink" : "local");
      i->set_port_id(ports[p].port_id);
      i->set_mac(format_mac(ports[p].mac));
      i->set_mtu(ports[p].mtu);
      i->set_ipv4_cksum_offload(ports[p].offload_ipv4_cksum);
      i->set_udp_cksum_offload(ports[p].offload_udp_cksum);
      uint64_t rx_packets = 0, rx_bytes = 0, tx_packets = 0, tx_bytes = 0;
      for (unsigned b = 0; b < node_.counter_blocks(); ++b) {
        const WorkerCounters::Port& c = node_.counters()[b].ports[p];
        rx_packets += read_counter(c.rx_packets);
        rx_bytes += read_counter(c.rx_bytes);
        tx_packets += read_counter(c.tx_packets);
        tx_bytes += read_counter(c.tx_bytes);
      }
      i->set_rx_packets(rx_packets);
      i->set_rx_bytes(rx_bytes);
      i->set_tx_packets(tx_packets);
      i->set_tx_bytes(tx_bytes);
      add_device_stats(ports[p].port_id, i);
    }
    return grpc::Status::OK;
  }

  grpc::Status ListPeers(grpc::ServerContext*, const v1::ListPeersRequest*, v1::ListPeersResponse* resp) override {
    return on_control([&] {
      const Tables& t = node_.tables();
      std::vector<uint32_t> inbound(t.peers.size(), 0);
      for (const InboundEntry& e : t.inbound_list) inbound[e.peer]++;
      const uint32_t now_ms = lb::flow_clock_ms();
      for (size_t p = 0; p < t.peers.size(); ++p) {
        const PeerRuntime& peer = *t.peers[p];
        v1::PeerStatus* out = resp->add_peers();
        out->set_name(peer.name);
        out->set_tunnel_address(format_ip(peer.tunnel_address));
        for (const IpPrefix& pfx : peer.pod_cidrs) out->add_pod_cidrs(format_prefix(pfx));
        out->set_mac(mac_text(peer.link->fabric_mac.load(std::memory_order_relaxed)));
        out->set_outbound_sas(static_cast<uint32_t>(t.outbound[p].size()));
        out->set_inbound_sas(inbound[p]);
        out->set_liveness(liveness_name(peer.link->liveness));  // the control thread's: we run on it
        out->set_last_heard_ms_ago(heard_ms_ago(*peer.link, now_ms));
        const PeerTraffic sum = peer_traffic(*peer.link);
        out->set_tx_packets(sum.tx_packets);
        out->set_tx_bytes(sum.tx_bytes);
        out->set_rx_packets(sum.rx_packets);
        out->set_rx_bytes(sum.rx_bytes);
        const uint32_t rtt = peer.link->clock.rtt_us.load(std::memory_order_relaxed);
        out->set_keepalive_rtt_us(rtt);
        out->set_clock_known(rtt != 0);
        if (rtt != 0) {
          out->set_clock_offset_ms(peer.link->clock.clock_offset_us.load(std::memory_order_relaxed) / 1000);
        }
      }
    });
  }

  grpc::Status GetHealth(grpc::ServerContext*, const v1::GetHealthRequest*, v1::GetHealthResponse* resp) override {
    // On the control thread like every call: a control thread that hangs
    // makes the probe time out, which is what liveness should see.
    return on_control([&] {
      const NodeRuntime& rt = node_.runtime();
      resp->set_live_generation(node_.tables().generation);
      for (const PortRuntime& port : rt.ports) {
        v1::PortHealth* out = resp->add_ports();
        out->set_name(port.name);
        out->set_role(port.role == PortRole::kUplink ? "uplink" : "local");
        rte_eth_link link{};
        if (rte_eth_link_get_nowait(port.port_id, &link) == 0) {
          out->set_link_up(link.link_status == RTE_ETH_LINK_UP);
          if (link.link_speed != RTE_ETH_SPEED_NUM_NONE && link.link_speed != RTE_ETH_SPEED_NUM_UNKNOWN) {
            out->set_speed_mbps(link.link_speed);
          }
        }
      }
      const uint32_t now_ms = lb::flow_clock_ms();
      for (unsigned w = 0; w < node_.workers(); ++w) {
        v1::WorkerHealth* out = resp->add_workers();
        out->set_index(w);
        const auto beat = static_cast<uint32_t>(read_counter(node_.counters()[w].heartbeat_ms));
        out->set_started(beat != 0);
        // Signed: the worker's clock, read at the top of its round, may be
        // a little ahead of ours.
        const auto ago = static_cast<int32_t>(now_ms - beat);
        if (beat != 0) out->set_heartbeat_ms_ago(ago > 0 ? static_cast<uint32_t>(ago) : 0);
      }
      const Tables& t = node_.tables();
      for (size_t p = 0; p < t.peers.size(); ++p) {
        const PeerRuntime& peer = *t.peers[p];
        v1::PeerHealth* out = resp->add_peers();
        out->set_name(peer.name);
        out->set_liveness(liveness_name(peer.link->liveness));
        out->set_heard(peer.link->last_heard_ms.load(std::memory_order_relaxed) != 0);
        out->set_last_heard_ms_ago(heard_ms_ago(*peer.link, now_ms));
      }
      resp->set_liveness_interval_ms(rt.liveness.interval_ms);
      resp->set_liveness_misses(rt.liveness.misses);
    });
  }

  grpc::Status ListSas(grpc::ServerContext*, const v1::ListSasRequest*, v1::ListSasResponse* resp) override {
    return on_control([&] {
      const Tables& t = node_.tables();
      for (size_t p = 0; p < t.outbound.size(); ++p) {
        for (size_t w = 0; w < t.outbound[p].size(); ++w) {
          const esp::OutboundSa* sa = t.outbound[p][w];
          v1::SaStatus* out = resp->add_sas();
          out->set_direction("outbound");
          out->set_peer(t.peers[p]->name);
          out->set_spi(sa->spi);
          out->set_algorithm(algorithm_of(sa->key));
          out->set_worker(static_cast<int32_t>(w));
          out->set_seq(read_counter(sa->seq));
          out->set_created_unix_ms(sa->created_unix_ms);
        }
      }
      for (const InboundEntry& e : t.inbound_list) {
        v1::SaStatus* out = resp->add_sas();
        out->set_direction("inbound");
        out->set_peer(t.peers[e.peer]->name);
        out->set_spi(e.sa->spi);
        out->set_algorithm(algorithm_of(e.sa->key));
        out->set_worker(-1);
        out->set_window_top(e.sa->window.top());
        out->set_created_unix_ms(e.sa->created_unix_ms);
      }
    });
  }

  grpc::Status ListRoutes(grpc::ServerContext*, const v1::ListRoutesRequest*, v1::ListRoutesResponse* resp) override {
    return on_control([&] {
      const Tables& t = node_.tables();
      for (const IpPrefix& p : t.local_pod_cidrs) {
        v1::Route* r = resp->add_routes();
        r->set_prefix(format_prefix(p));
        r->set_next_hop("local");
      }
      for (const PeerRuntime* peer : t.peers) {
        for (const IpPrefix& p : peer->pod_cidrs) {
          v1::Route* r = resp->add_routes();
          r->set_prefix(format_prefix(p));
          r->set_next_hop(peer->name);
        }
      }
    });
  }

  grpc::Status GetCounters(grpc::ServerContext*, const v1::GetCountersRequest* req,
                           v1::GetCountersResponse* resp) override {
    const unsigned blocks = node_.counter_blocks();
    auto fill = [&](v1::CounterBlock* out, unsigned first, unsigned last) {
      for (const ScalarCounter& sc : kAllScalarCounters) {
        uint64_t v = 0;
        for (unsigned b = first; b < last; ++b) v += read_counter(node_.counters()[b].*sc.member);
        (*out->mutable_counters())[std::string(sc.name)] = v;
      }
      for (size_t r = 0; r < kDropReasons.size(); ++r) {
        uint64_t v = 0;
        for (unsigned b = first; b < last; ++b) v += read_counter(node_.counters()[b].drops[r]);
        (*out->mutable_drops())[std::string(kDropReasons[r].name)] = v;
      }
    };
    v1::CounterBlock* total = resp->add_blocks();
    total->set_name("total");
    fill(total, 0, blocks);
    if (req->per_worker()) {
      for (unsigned b = 0; b < blocks; ++b) {
        v1::CounterBlock* one = resp->add_blocks();
        one->set_name(b + 1 == blocks ? "control" : "worker" + std::to_string(b));
        fill(one, b, b + 1);
      }
    }
    return grpc::Status::OK;
  }

  grpc::Status Capture(grpc::ServerContext* ctx, const v1::CaptureRequest* req,
                       grpc::ServerWriter<v1::CaptureChunk>* writer) override {
    return serve_capture(node_, stopping_, ctx, req, writer);
  }
  // Set before the server shuts down: streaming calls end instead of
  // keeping it waiting.
  void stop_streams() { stopping_.store(true); }

  grpc::Status GetDrops(grpc::ServerContext*, const v1::GetDropsRequest*, v1::GetDropsResponse* resp) override {
    for (size_t r = 0; r < kDropReasons.size(); ++r) {
      uint64_t v = 0, from_fabric = 0;
      for (unsigned b = 0; b < node_.counter_blocks(); ++b) {
        v += read_counter(node_.counters()[b].drops[r]);
        from_fabric += read_counter(node_.counters()[b].drops_from_fabric[r]);
      }
      v1::DropReason* out = resp->add_reasons();
      out->set_name(std::string(kDropReasons[r].name));
      out->set_help(std::string(kDropReasons[r].help));
      out->set_count(v);
      out->set_from_fabric(from_fabric);
      out->set_control(read_counter(node_.counters()[node_.workers()].drops[r]));
    }
    return grpc::Status::OK;
  }

 private:
  template <typename Fn>
  grpc::Status on_control(Fn&& fn) {
    return node_.tasks().run(std::forward<Fn>(fn)) ? grpc::Status::OK : kStopping;
  }

  // check_routing() names fields as the state's ("peers[0].name"); the
  // request's field is "state.".
  static std::string prefixed(const std::string& message) {
    return message.rfind("generation", 0) == 0 ? message : "state." + message;
  }

  // The status of an apply: `invalid` is the message of kInvalid (or its
  // prefix when !whole).
  static grpc::Status status_of(const Node::ApplyOutcome& out, const std::string& invalid, bool whole) {
    using Code = Node::ApplyOutcome::Code;
    switch (out.code) {
      case Code::kOk: return grpc::Status::OK;
      case Code::kInvalid:
        return {grpc::StatusCode::INVALID_ARGUMENT, whole ? invalid : invalid + out.message};
      case Code::kStale:
      case Code::kConflict: return {grpc::StatusCode::FAILED_PRECONDITION, out.message};
      case Code::kUnavailable: return {grpc::StatusCode::UNAVAILABLE, out.message};
      case Code::kInternal: return {grpc::StatusCode::RESOURCE_EXHAUSTED, out.message};
    }
    return {grpc::StatusCode::INTERNAL, "unknown outcome"};
  }

  static std::string describe(lb::Selectable sel, const lb::BackendConfig& bc, const lb::BackendRuntime& b,
                              uint32_t now) {
    switch (sel) {
      case lb::Selectable::kYes: return "active";
      case lb::Selectable::kDraining: return "draining: " + (bc.reason.empty() ? std::string("not active") : bc.reason);
      case lb::Selectable::kNoRoute: return "no route to its address";
      case lb::Selectable::kNodeDown: return "node down: " + format_ip(b.link->tunnel_address) + " missed its keepalives";
      case lb::Selectable::kEjected: {
        const uint32_t until = b.health->ejected_until_ms.load(std::memory_order_relaxed);
        return "ejected: failed " + std::to_string(b.health->failed_connects.load(std::memory_order_relaxed)) +
               " connects, the last ones in a row; back in " + std::to_string((until - now) / 1000) + " s";
      }
    }
    return "unknown";
  }

  static const char* trace_step_name(TraceStep s) {
    switch (s) {
      case TraceStep::kRx: return "rx";
      case TraceStep::kService: return "service";
      case TraceStep::kRoute: return "route";
      case TraceStep::kEncrypt: return "encrypt";
      case TraceStep::kDecrypt: return "decrypt";
      case TraceStep::kDrop: return "drop";
      case TraceStep::kPunt: return "punt";
      case TraceStep::kTx: return "tx";
      case TraceStep::kConsumed: return "consumed";
      case TraceStep::kFragmented: return "fragmented";
    }
    return "?";
  }

  static const char* punt_name(uint32_t kind) {
    switch (static_cast<PuntKind>(kind)) {
      case PuntKind::kArp: return "ARP";
      case PuntKind::kNd: return "neighbour discovery";
      case PuntKind::kEcho: return "echo request to this node";
      case PuntKind::kTtlExceeded: return "TTL exhausted: ICMP time exceeded to its sender";
      case PuntKind::kTooBig: return "too big for the tunnel: ICMP fragmentation needed / packet too big to its sender";
      case PuntKind::kNeighborMiss: return "pod MAC unknown: held while it is resolved";
      case PuntKind::kPeerDown: return "peer down: ICMP host unreachable to its sender";
    }
    return "?";
  }

  // A trace event in words, with names from the live tables (control thread).
  std::string describe_step(const TraceEvent& e) {
    const Tables& t = node_.tables();
    const lb::ServiceTable& st = node_.services();
    const auto& ports = node_.runtime().ports;
    auto port_name = [&](uint32_t i) { return i < ports.size() ? ports[i].name : "port " + std::to_string(i); };
    auto peer_name = [&](uint32_t i) { return i < t.peers.size() ? t.peers[i]->name : "peer " + std::to_string(i); };
    const std::string head = summarize_head(e.head, e.head_len, e.head_is_ip);
    const std::string len = std::to_string(e.len) + " bytes";
    switch (e.step) {
      case TraceStep::kRx: return "port " + port_name(e.a) + ", " + len + ": " + head;
      case TraceStep::kService: {
        if (e.a >= st.frontends.size()) return "service (changed since)";
        const lb::FrontendConfig& fc = st.config[e.a];
        if (e.b == kTraceNone) return "service " + fc.name + ": a reply, its source set back to the ClusterIP";
        if (e.b >= fc.backends.size()) return "service " + fc.name + ": backend (changed since)";
        const lb::BackendConfig& bc = fc.backends[e.b];
        return "service " + fc.name + ": to backend " + format_endpoint(bc.address.family, bc.address.bytes.data(), bc.port) +
               (bc.target.empty() ? "" : " (" + bc.target + (bc.node.empty() ? "" : " on " + bc.node) + ")");
      }
      case TraceStep::kRoute:
        return e.a == 0 ? std::string("to a pod of this node")
                        : "to peer " + peer_name(e.b) +
                              (e.b < t.peers.size() ? " (" + format_ip(t.peers[e.b]->tunnel_address) + ")" : "");
      case TraceStep::kEncrypt: {
        char spi[16];
        std::snprintf(spi, sizeof(spi), "0x%08x", e.a);
        return std::string("ESP, SA spi ") + spi + ", " + len;
      }
      case TraceStep::kDecrypt: return "authenticated, from peer " + peer_name(e.b) + ": " + head;
      case TraceStep::kDrop: {
        const auto r = static_cast<size_t>(e.a);
        return r < kDropReasons.size() ? std::string(kDropReasons[r].name) + " (" + std::string(kDropReasons[r].help) + ")"
                                       : "?";
      }
      case TraceStep::kPunt: return std::string("to the control thread: ") + punt_name(e.a);
      case TraceStep::kTx: return "port " + port_name(e.a) + ", " + len + ": " + head;
      case TraceStep::kConsumed: return "consumed by the data plane (a keepalive, or a refusal retried elsewhere)";
      case TraceStep::kFragmented: return "split into " + std::to_string(e.a) + " fragments (sent on, not followed)";
    }
    return "";
  }

  inline static const std::string kNoName = "(no longer a service)";
  Node& node_;
  std::mutex trace_mu_;  // one Trace at a time: each worker's queue has one consumer
  std::atomic<bool> stopping_{false};
};

}  // namespace

struct ApiServer::Impl {
  std::string path;
  std::unique_ptr<Service> service;
  std::unique_ptr<grpc::Server> server;
};

ApiServer::ApiServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

ApiServer::~ApiServer() {
  impl_->service->stop_streams();
  impl_->server->Shutdown();
  impl_->server->Wait();
  ::unlink(impl_->path.c_str());
}

Result<std::unique_ptr<ApiServer>> ApiServer::start(const std::string& socket_path, Node& node) {
  struct stat st {};
  if (lstat(socket_path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) return make_error("--api-socket " + socket_path + ": exists and is not a socket");
    ::unlink(socket_path.c_str());  // left by a data plane that did not stop cleanly
  } else if (errno != ENOENT) {
    return make_error("--api-socket " + socket_path + ": " + std::strerror(errno));
  }
  auto impl = std::make_unique<Impl>();
  impl->path = socket_path;
  impl->service = std::make_unique<Service>(node);
  grpc::ServerBuilder builder;
  builder.AddListeningPort("unix:" + socket_path, grpc::InsecureServerCredentials());
  builder.RegisterService(impl->service.get());
  // A full desired state of thousands of peers is tens of megabytes.
  builder.SetMaxReceiveMessageSize(256 << 20);
  // ... and arrives in one go: HTTP/2's flow control window would otherwise
  // start at 64 KB and make the sender wait for window updates.
  builder.AddChannelArgument(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES, 64 << 20);
  const mode_t old_mask = ::umask(0177);  // the socket is born 0600: only root (the controller, meshwirectl)
  impl->server = builder.BuildAndStart();
  ::umask(old_mask);
  if (!impl->server) return make_error("--api-socket " + socket_path + ": cannot listen (is the folder there and writable?)");
  return std::unique_ptr<ApiServer>(new ApiServer(std::move(impl)));
}

}  // namespace meshwire::dp
