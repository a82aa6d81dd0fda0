// meshwire-controller: programs one node's data plane from the cluster's
// objects, with keys derived per node pair. The objects come from a folder
// of files (`--source dir:PATH`, followed with inotify) or from the
// Kubernetes API server (`--source kube`, listed and watched).
//
// The loop: read the objects, compute the whole desired routing state,
// Apply it as a new generation when it differs from what the data plane
// runs; then wait for a change or a second, whichever comes first, and
// check that the data plane is still the one we programmed.
//
// Services (ClusterIP frontends and their backends, reconcile/services.h)
// go through ApplyServices, apart from the routing state: they have their
// own generation, change with every endpoint rather than with nodes, and
// are computed and applied only when Services, EndpointSlices or Nodes
// changed, or when the data plane runs another set (restarted: 0). The
// objects are read once per round for both.
//
// Keys: the node's X25519 pair and its sending epoch live in --state-dir.
// A data plane that comes up fresh (running its startup config) has lost its
// sequence numbers, so the controller moves to the next epoch before it
// programs it: the same keys with sequence numbers from 1 again would repeat
// AES-GCM nonces. Peers have that epoch's inbound SAs in place already.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include <CLI/CLI.hpp>
#include <grpcpp/grpcpp.h>

#include "controller/services_sync.h"
#include "dataplane.grpc.pb.h"
#include "keys/keys.h"
#include "metrics/dataplane.h"
#include "metrics/server.h"
#include "reconcile/delta.h"
#include "reconcile/desired.h"
#include "source/kube_source.h"
#include "source/open.h"
#include "source/source.h"

namespace {

namespace v1 = meshwire::v1;
using namespace meshwire::control;

std::atomic<bool> g_stop{false};
void on_signal(int) { g_stop.store(true); }

uint64_t now_ms() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count());
}

void log(const std::string& msg) {
  std::fprintf(stderr, "meshwire-controller: %s\n", msg.c_str());
  std::fflush(stderr);
}

// The sending epoch, when it began, and the epoch the data plane last came
// up fresh under, persisted before the epoch is used (write, fsync,
// rename): "EPOCH STARTED_UNIX_MS BOOT_EPOCH".
struct Epochs {
  uint64_t epoch = 0;
  uint64_t started_ms = 0;
  uint64_t boot = 0;
};

class EpochFile {
 public:
  explicit EpochFile(std::string path) : path_(std::move(path)) {}
  Epochs load() {
    std::ifstream in(path_);
    Epochs e;
    in >> e.epoch >> e.started_ms >> e.boot;
    return e;
  }
  bool store(const Epochs& e) {
    const std::string tmp = path_ + ".tmp";
    const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) return false;
    const std::string text =
        std::to_string(e.epoch) + " " + std::to_string(e.started_ms) + " " + std::to_string(e.boot) + "\n";
    const bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) && ::fsync(fd) == 0;
    ::close(fd);
    return ok && ::rename(tmp.c_str(), path_.c_str()) == 0;
  }

 private:
  std::string path_;
};

// Milliseconds since t0, for the phase timings in the log.
uint64_t ms_since(std::chrono::steady_clock::time_point t0) {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count());
}

struct Options {
  std::string node;
  std::string source = "";
  std::string kubeconfig;
  std::string kube_context;
  std::string service_account_dir = kServiceAccountDir;
  std::string api_socket = "/run/meshwire/api.sock";
  std::string state_dir = "/var/lib/meshwire";
  std::string cluster_id = "default";
  double grace_s = 30;
  double resync_s = 0.25;
  double rotate_after_s = 3600;
  uint64_t rotate_packets = uint64_t{1} << 31;
  std::string metrics_listen;  // empty: no /metrics
  size_t metrics_top_backends = 100;
};

// What the controller's loop did, for /metrics (read on the HTTP thread).
struct ControllerStats {
  std::atomic<uint64_t> applies{0};
  std::atomic<uint64_t> apply_failures{0};
  std::atomic<uint64_t> problems{0};
  std::atomic<uint64_t> last_apply_us{0};
  std::atomic<uint64_t> applied_generation{0};
  std::atomic<uint64_t> epoch{0};
  std::atomic<uint64_t> epoch_started_ms{0};
  // Each peer's sending epoch as its Node annotations say, and whether its
  // previous one is still accepted (grace). Copied after every reconcile.
  struct Peer {
    uint64_t epoch = 0;
    bool in_grace = false;
  };
  std::mutex peers_mu;
  std::map<std::string, Peer> peers;
  // The last problem logged, and when (Unix ms); under peers_mu.
  std::string last_problem;
  uint64_t last_problem_ms = 0;
};

std::string render_metrics(v1::Dataplane::Stub& stub, ControllerStats& stats, const Source& source,
                           const Options& o) {
  namespace m = meshwire::ctl::metrics;
  m::Exposition e;
  auto snap = m::scrape_dataplane(stub, std::chrono::seconds(2));
  e.family("meshwire_dataplane_up", m::Type::kGauge,
           "1 when the controller read the data plane through its control API for this scrape.");
  e.sample(snap.ok() ? 1 : 0);
  if (snap.ok()) m::render_dataplane(e, *snap, m::RenderOptions{.top_backends = o.metrics_top_backends});
  auto get = [](const std::atomic<uint64_t>& v) { return static_cast<double>(v.load(std::memory_order_relaxed)); };
  e.family("meshwire_controller_applies_total", m::Type::kCounter, "Routing states (whole or deltas) the data plane took.");
  e.sample(get(stats.applies));
  e.family("meshwire_controller_apply_failures_total", m::Type::kCounter, "Applies the data plane refused or missed.");
  e.sample(get(stats.apply_failures));
  e.family("meshwire_controller_problems_total", m::Type::kCounter,
           "Problems the controller logged (data plane unreachable, Apply refused, annotations not published...).");
  e.sample(get(stats.problems));
  e.family("meshwire_controller_last_apply_duration_seconds", m::Type::kGauge, "How long the last Apply took.");
  e.sample(get(stats.last_apply_us) / 1e6);
  e.family("meshwire_controller_applied_generation", m::Type::kGauge, "The generation the controller applied last.");
  e.sample(get(stats.applied_generation));
  e.family("meshwire_controller_key_epoch", m::Type::kGauge, "This node's sending key epoch.");
  e.sample(get(stats.epoch));
  const uint64_t started = stats.epoch_started_ms.load(std::memory_order_relaxed);
  e.family("meshwire_controller_key_epoch_start_timestamp_seconds", m::Type::kGauge,
           "When this node's sending key epoch began (Unix time).");
  e.sample(static_cast<double>(started) / 1000.0);
  e.family("meshwire_controller_rotate_packets", m::Type::kGauge,
           "Packets an outbound SA may carry before this node rotates (--rotate-packets).");
  e.sample(static_cast<double>(o.rotate_packets));
  std::map<std::string, ControllerStats::Peer> peers;
  std::string last_problem;
  uint64_t last_problem_ms = 0;
  {
    std::lock_guard lock(stats.peers_mu);
    peers = stats.peers;
    last_problem = stats.last_problem;
    last_problem_ms = stats.last_problem_ms;
  }
  if (last_problem_ms != 0) {
    e.family("meshwire_controller_last_problem_timestamp_seconds", m::Type::kGauge,
             "When the controller last logged a problem (Unix time).");
    e.sample(static_cast<double>(last_problem_ms) / 1000.0);
    e.family("meshwire_controller_last_problem_info", m::Type::kGauge,
             "The last problem the controller logged, as its label (1; one series).");
    e.sample({{"problem", last_problem}}, 1);
  }
  e.family("meshwire_controller_peer_key_epoch", m::Type::kGauge,
           "A peer's sending key epoch, from its Node's annotations (what this node accepts from it).");
  for (const auto& [name, p] : peers) e.sample({{"peer", name}}, static_cast<double>(p.epoch));
  e.family("meshwire_controller_peer_key_in_grace", m::Type::kGauge,
           "1 while a peer's previous epoch is still accepted (--grace after it moved on).");
  for (const auto& [name, p] : peers) e.sample({{"peer", name}}, p.in_grace ? 1 : 0);
  // --source kube: the watches of the API server.
  const std::vector<Source::WatchStats> watches = source.watch_stats();
  struct Series {
    const char* name;
    const char* help;
    uint64_t Source::WatchStats::*field;
  };
  const Series series[] = {
      {"meshwire_controller_kube_lists_total", "Lists of a resource completed (all pages).", &Source::WatchStats::lists},
      {"meshwire_controller_kube_relists_total", "Lists forced by 410 Gone (the watch fell behind).",
       &Source::WatchStats::relists_gone},
      {"meshwire_controller_kube_watches_total", "Watch requests made: the first, and every restart.",
       &Source::WatchStats::watches},
      {"meshwire_controller_kube_events_total", "Watch events applied (ADDED, MODIFIED, DELETED).",
       &Source::WatchStats::events},
      {"meshwire_controller_kube_errors_total", "Failed requests and broken watch streams.", &Source::WatchStats::errors},
  };
  if (!watches.empty()) {
    for (const Series& s : series) {
      e.family(s.name, m::Type::kCounter, s.help);
      for (const Source::WatchStats& w : watches) e.sample({{"resource", w.resource}}, static_cast<double>(w.*s.field));
    }
  }
  return e.text();
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"meshwire-controller: programs this node's meshwire data plane from Kubernetes objects"};
  Options o;
  app.add_option("--node", o.node, "this node's name (its Node object)")->required();
  app.add_option("--source", o.source,
                 "where the objects come from: dir:PATH (a folder of YAML/JSON files) or kube (the API server)")
      ->required();
  app.add_option("--kubeconfig", o.kubeconfig,
                 "with --source kube: this kubeconfig (default: $KUBECONFIG, else in-cluster, else ~/.kube/config)");
  app.add_option("--kube-context", o.kube_context, "with --kubeconfig: this context instead of current-context");
  app.add_option("--service-account-dir", o.service_account_dir,
                 "in-cluster: where the service account's token and ca.crt are");
  app.add_option("--api-socket", o.api_socket, "the data plane's control API socket");
  app.add_option("--state-dir", o.state_dir, "where the node's private key and epoch are kept");
  app.add_option("--cluster-id", o.cluster_id, "salts every key of this cluster (the same on every node)");
  app.add_option("--grace", o.grace_s, "seconds a peer's previous epoch stays accepted after it moved on");
  app.add_option("--resync", o.resync_s,
                 "seconds between checks of the data plane when nothing changes (a restarted one is programmed "
                 "again within about this)");
  app.add_option("--rotate-after", o.rotate_after_s, "seconds after which this node moves to its next epoch (new keys)");
  app.add_option("--rotate-packets", o.rotate_packets,
                 "packets one outbound SA may carry before this node moves to its next epoch");
  app.add_option("--metrics-listen", o.metrics_listen,
                 "serve the node's Prometheus metrics at http://ADDRESS:PORT/metrics (e.g. 0.0.0.0:9464)");
  app.add_option("--metrics-top-backends", o.metrics_top_backends,
                 "per-backend metric series for at most this many backends, the busiest (default 100)");
  app.set_version_flag("--version", "meshwire-controller 0.1.0");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }

  if (::mkdir(o.state_dir.c_str(), 0700) != 0 && errno != EEXIST) {
    log("--state-dir " + o.state_dir + ": " + std::strerror(errno));
    return 1;
  }
  auto keys = load_or_create_key_pair(o.state_dir + "/node.key");
  if (!keys.ok()) {
    log(keys.error());
    return 1;
  }
  EpochFile epoch_file(o.state_dir + "/epoch");
  Epochs ep = epoch_file.load();
  // Moves to the next sending epoch, persisted first; false if it could not be.
  auto next_epoch = [&](bool fresh_data_plane) {
    Epochs next = ep;
    next.epoch += 1;
    next.started_ms = now_ms();
    if (fresh_data_plane) next.boot = next.epoch;
    if (!epoch_file.store(next)) return false;
    ep = next;
    return true;
  };
  auto source = open_source(SourceSpec{.source = o.source,
                                        .kubeconfig = o.kubeconfig,
                                        .kube_context = o.kube_context,
                                        .service_account_dir = o.service_account_dir,
                                        .log = [](const std::string& what) { log("API server: " + what); }});
  if (!source.ok()) {
    log(source.error());
    return source.error().find(": want dir:PATH or kube") != std::string::npos ? 2 : 1;
  }
  Source& objects = **source;
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);

  // gRPC's reconnect backoff grows to two minutes by default: a data plane
  // that restarts must be found again within a second, and the socket is
  // local, so retrying often costs nothing. The "minimum backoff" is also
  // how long one connection attempt may take (gRPC's min connect timeout):
  // a data plane still starting up on a busy node may take longer than
  // 100 ms to answer, and an attempt given up is a retry later.
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 1000);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 250);
  args.SetMaxReceiveMessageSize(256 << 20);  // ListSas of thousands of peers
  args.SetInt(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES, 64 << 20);
  auto channel = grpc::CreateCustomChannel("unix:" + o.api_socket, grpc::InsecureChannelCredentials(), args);
  auto stub = v1::Dataplane::NewStub(channel);
  ControllerStats stats;
  std::unique_ptr<meshwire::ctl::metrics::Server> metrics_server;  // stopped before stub and stats go
  if (!o.metrics_listen.empty()) {
    auto server = meshwire::ctl::metrics::Server::start(o.metrics_listen,
                                                        [&] { return render_metrics(*stub, stats, objects, o); });
    if (!server.ok()) {
      log(server.error());
      return 2;
    }
    metrics_server = std::move(*server);
    log("metrics at http://" + o.metrics_listen + "/metrics");
  }
  std::map<std::string, PeerEpoch> peer_epochs;
  KeyCache key_cache;
  AppliedState applied;            // the state last applied, peer by peer
  v1::ApplyRequest delta_req;      // a change sent as the peers that differ
  Desired desired;                 // reused by every reconcile, like the request that carries it
  bool full_next = true;           // send the whole state next time
  v1::ApplyRequest req;
  uint64_t applied_generation = 0;  // ... and the generation it went live as
  bool dirty = true;               // the objects (or epochs) changed since the last reconcile
  uint64_t recheck_at_ms = 0;      // when a peer's previous epoch leaves grace: reconcile then
  std::string last_problem;        // said once, until it changes
  std::string last_skipped;
  bool published = false;
  bool fresh_handled = false;  // the fresh data plane seen has its new epoch
  std::map<std::string, std::string> annotations;
  ServicesSync services(
      o.node, static_cast<uint64_t>(o.resync_s * 1000),
      [&](const v1::ApplyServicesRequest& r, v1::ApplyServicesResponse* resp) {
        grpc::ClientContext sctx;
        sctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
        return stub->ApplyServices(&sctx, r, resp);
      },
      [](const std::string& line) { log(line); });
  log("node " + o.node + ", public key " + encode_public_key(keys->public_key) + ", objects from " +
      objects.describe());

  while (!g_stop.load()) {
    auto problem = [&](const std::string& what) {
      if (what != last_problem) log(what);
      last_problem = what;
      stats.problems.fetch_add(1, std::memory_order_relaxed);
      std::lock_guard lock(stats.peers_mu);
      stats.last_problem = what.substr(0, 300);
      stats.last_problem_ms = static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                                        std::chrono::system_clock::now().time_since_epoch())
                                                        .count());
    };
    stats.epoch.store(ep.epoch, std::memory_order_relaxed);
    stats.epoch_started_ms.store(ep.started_ms, std::memory_order_relaxed);
    // Waits for a change of the objects (or resync_s), and takes a burst
    // of changes as one: another within 5 ms extends the wait, up to 100 ms.
    // Only Nodes change the routing state: at 100,000 endpoints the churn
    // of Services and EndpointSlices would otherwise recompute the whole
    // routing state again and again for nothing. They (and Nodes) change
    // the services.
    auto wait_for_change = [&](int timeout_ms) {
      unsigned changed = objects.wait(timeout_ms);
      if (!changed) return;
      const auto t0 = std::chrono::steady_clock::now();
      while (ms_since(t0) < 100) {
        const unsigned more = objects.wait(5);
        if (!more) break;
        changed |= more;
      }
      if (changed & kNodesChanged) dirty = true;
      if (changed & (kServicesChanged | kEndpointSlicesChanged | kNodesChanged)) services.objects_changed();
    };
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
    // Wait for the connection rather than fail at once while it is being
    // made (a data plane that just started): the deadline still bounds it.
    ctx.set_wait_for_ready(true);
    v1::GetGenerationResponse live;
    grpc::Status st = stub->GetGeneration(&ctx, {}, &live);
    if (!st.ok()) {
      problem("data plane at " + o.api_socket + ": " + st.error_message() + " (will retry)");
      wait_for_change(200);
      continue;
    }
    if (live.source() != "config") {
      fresh_handled = false;
    } else if (!fresh_handled) {
      // Fresh (or restarted): its SAs' sequence numbers start over, so the
      // keys must be new ones. Its replay windows are empty too: the boot
      // epoch it publishes tells the peers to move on as well.
      if (!next_epoch(true)) {
        problem(o.state_dir + "/epoch: cannot write: " + std::strerror(errno));
        wait_for_change(1000);
        continue;
      }
      applied.clear();
      full_next = true;
      fresh_handled = true;
      log("data plane is fresh (generation " + std::to_string(live.live_generation()) + "): sending epoch " +
          std::to_string(ep.epoch));
    }
    // Rotation: on time or volume, but never sooner than --grace after the
    // epoch began: by then every peer has seen it published and has the
    // next epoch's inbound SAs in place.
    if (live.source() == "api" && applied.has_applied()) {
      const uint64_t age = now_ms() - ep.started_ms;
      const bool due = age >= static_cast<uint64_t>(o.rotate_after_s * 1000) ||
                       live.max_outbound_seq() >= o.rotate_packets;
      if (due && age >= static_cast<uint64_t>(o.grace_s * 1000)) {
        if (!next_epoch(false)) {
          problem(o.state_dir + "/epoch: cannot write: " + std::strerror(errno));
        } else {
          log("rotating: sending epoch " + std::to_string(ep.epoch));
        }
      }
    }
    const std::map<std::string, std::string> want = {
        {kPublicKeyAnnotation, encode_public_key(keys->public_key)},
        {kKeyEpochAnnotation, std::to_string(ep.epoch)},
        {kBootEpochAnnotation, std::to_string(ep.boot)},
        {kWorkersAnnotation, std::to_string(live.workers())},
        {kTunnelAddressAnnotation, live.tunnel_address()}};
    if (!published || want != annotations) {
      if (Status s = objects.publish_node_annotations(o.node, want); !s.ok()) {
        problem("publishing this node's annotations: " + s.error());
      } else {
        annotations = want;
        published = true;
        dirty = true;
      }
    }
    // Nothing to do unless the objects or epochs changed, a peer's grace
    // ended, or the data plane runs something else than what we applied
    // (restarted, or programmed by hand): the state would come out the same.
    if (!applied.has_applied() || live.live_generation() != applied_generation ||
        (recheck_at_ms != 0 && now_ms() >= recheck_at_ms)) {
      dirty = true;
    }
    if (!dirty && !services.due(live.services_generation(), now_ms())) {
      wait_for_change(static_cast<int>(o.resync_s * 1000));
      continue;
    }
    // Read once for both, and only when one of them computes anew (a
    // services retry applies the set at hand).
    std::optional<ClusterObjects> cluster;
    uint64_t read_ms = 0;
    if (dirty || services.needs_objects()) {
      const auto t_read = std::chrono::steady_clock::now();
      auto snapshot = objects.snapshot();
      if (!snapshot.ok()) {
        problem(objects.describe() + ": " + snapshot.error() + " (keeping the state applied last)");
        wait_for_change(static_cast<int>(o.resync_s * 1000));
        continue;
      }
      cluster = std::move(*snapshot);
      read_ms = ms_since(t_read);
    }
    services.run(cluster ? &*cluster : nullptr, live.services_generation(), now_ms());
    if (!dirty) {
      wait_for_change(static_cast<int>(o.resync_s * 1000));
      continue;
    }
    const auto t_compute = std::chrono::steady_clock::now();
    SelfNode self;
    self.name = o.node;
    self.cluster_id = o.cluster_id;
    self.keys = &*keys;
    self.workers = live.workers();
    self.tunnel_address = *meshwire::dp::parse_ip_address(live.tunnel_address());
    self.epoch = ep.epoch;
    if (Status s = desired_state_into(desired, *cluster, self, peer_epochs, now_ms(),
                                      static_cast<uint64_t>(o.grace_s * 1000), &key_cache);
        !s.ok()) {
      problem(s.error());
      wait_for_change(static_cast<int>(o.resync_s * 1000));
      continue;
    }
    {
      std::lock_guard lock(stats.peers_mu);
      stats.peers.clear();
      for (const auto& [name, pe] : peer_epochs) stats.peers[name] = {pe.epoch, pe.has_previous};
    }
    recheck_at_ms = 0;
    for (const auto& [name, pe] : peer_epochs) {
      if (pe.has_previous && (recheck_at_ms == 0 || pe.grace_until_ms < recheck_at_ms)) {
        recheck_at_ms = pe.grace_until_ms;
      }
    }
    if (!desired.restarted.empty()) {
      // A peer's data plane came up fresh: what this node sent it under the
      // current epoch must not be accepted there again.
      if (next_epoch(false)) {
        log("peer data plane restarted (" + desired.restarted.front() + "): sending epoch " +
            std::to_string(ep.epoch));
        continue;  // publish and apply the new epoch at once
      }
      problem(o.state_dir + "/epoch: cannot write: " + std::strerror(errno));
    }
    std::string skipped;
    for (const std::string& s : desired.skipped) skipped += (skipped.empty() ? "" : "; ") + s;
    if (skipped != last_skipped && !skipped.empty()) log("not (yet) a peer: " + skipped);
    last_skipped = skipped;
    // The data plane runs what we applied last: send the peers that differ.
    // Otherwise (fresh, restarted, programmed by hand, a delta refused), the
    // whole state.
    const bool full = full_next || !applied.has_applied() || live.live_generation() != applied_generation;
    const bool changed = applied.prepare(desired.state, full ? nullptr : delta_req.mutable_delta());
    const uint64_t compute_ms = ms_since(t_compute);
    if (changed || full) {
      const auto t_apply = std::chrono::steady_clock::now();
      v1::ApplyRequest& r = full ? req : delta_req;
      r.set_generation(live.live_generation() + 1);
      if (full) {
        req.mutable_state()->Swap(&desired.state);  // not a copy; swapped back below for reuse
      } else {
        delta_req.mutable_delta()->set_base_generation(applied_generation);
      }
      grpc::ClientContext actx;
      actx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
      v1::ApplyResponse resp;
      st = stub->Apply(&actx, r, &resp);
      if (full) req.mutable_state()->Swap(&desired.state);
      if (!st.ok()) {
        if (!full && st.error_code() == grpc::StatusCode::FAILED_PRECONDITION) {
          full_next = true;  // the live generation moved under us: the whole state, at once
          continue;
        }
        stats.apply_failures.fetch_add(1, std::memory_order_relaxed);
        problem("Apply generation " + std::to_string(r.generation()) + ": " + st.error_message());
        wait_for_change(static_cast<int>(o.resync_s * 1000));
        continue;
      }
      applied.commit();
      full_next = false;
      applied_generation = resp.live_generation();
      stats.applies.fetch_add(1, std::memory_order_relaxed);
      stats.applied_generation.store(applied_generation, std::memory_order_relaxed);
      stats.last_apply_us.store(static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(
                                                          std::chrono::steady_clock::now() - t_apply)
                                                          .count()),
                                std::memory_order_relaxed);
      const std::string what = full ? std::to_string(desired.state.peers_size()) + " peer(s)"
                                    : std::to_string(delta_req.delta().upsert_peers_size()) + " peer(s) changed, " +
                                          std::to_string(delta_req.delta().remove_peers_size()) + " removed";
      log("applied generation " + std::to_string(resp.live_generation()) + ": " + what + ", sending epoch " +
          std::to_string(ep.epoch) + " (read " + std::to_string(read_ms) + " ms, computed " +
          std::to_string(compute_ms) + " ms, applied " +
          std::to_string(ms_since(t_apply)) + " ms, of which the data plane built " +
          std::to_string(resp.build_us() / 1000) + " ms)");
    }
    dirty = false;
    last_problem.clear();
    wait_for_change(static_cast<int>(o.resync_s * 1000));
  }
  log("stopped");
  return 0;
}
