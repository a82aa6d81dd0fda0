// meshwirectl: the operator's view of a running meshwire-dataplane through
// its control API (gRPC over a Unix domain socket).
//
//   meshwirectl [--socket PATH] [--json] [--timeout S] show
//       interfaces|peers|sas|routes|counters|drops|generation
//   meshwirectl show services|backends [NAME-PREFIX]
//   meshwirectl show flows [NAME-PREFIX | --service NAME-PREFIX] [--limit N]
//   meshwirectl capture --point rx|tx|pre-encrypt|post-decrypt [--port P]
//       [--filter EXPR] [-c N] [--duration S] [--snaplen N] -w FILE|-
//       (ctl/capture.h)
//   meshwirectl apply -f FILE|- [--generation N] [--force]
//       FILE: an ApplyRequest in protobuf's JSON mapping (keys and salts in
//       base64), or the same as YAML, as the controller would send it:
//       manual keying, tests.
//   meshwirectl trace [-c N] [--port NAME] [--wait S]
//       the next N packets received (on one port), each with every step the
//       data plane took with it (route, service and backend, SA, drop
//       reason, punt, the port it left by), like vppctl's trace.
//   meshwirectl apply-services -f FILE|- [--generation N] [--force]
//       FILE: an ApplyServicesRequest, JSON or YAML; without a generation
//       (in the file or --generation), the live services generation + 1.
//   meshwirectl health [--live] [--stall-ms MS] [--all-peers]
//       the DaemonSet's probes (ctl/health.h): readiness, or with --live
//       liveness; exit 0 when it holds, else 1 and one line per failed
//       condition. Default --timeout here: 2 s.
//   meshwirectl doctor [--config FILE] [--sysroot DIR] [--source dir:PATH|kube
//       [--kubeconfig F] [--kube-context C]] [--node NAME] [--controller URL]
//       [--pod-netns NETNS]...
//       checks the node and the mesh (hugepages, isolated cores, devices,
//       MTU, public keys, key epochs, clock skew, the controller, traffic
//       that bypasses the data plane) and prints each finding with its fix;
//       a check whose input is not given says "skipped: needs --X".
//
// Exit status: 0 on success, 1 when the data plane could not answer
// (not running, wrong socket, timeout), 2 on a usage error. doctor: 0 when
// no finding is an error, 1 when one is (the data plane not answering is
// one), 2 on a usage error.
#include <sys/stat.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>

#include <fstream>
#include <iostream>
#include <sstream>

#include <CLI/CLI.hpp>
#include <google/protobuf/util/json_util.h>
#include <grpcpp/grpcpp.h>
#include <nlohmann/json.hpp>

#include "ctl/capture.h"
#include "ctl/format.h"
#include "ctl/health.h"
#include "doctor/checks.h"
#include "doctor/gather.h"
#include "dataplane.grpc.pb.h"
#include "kube/yaml.h"

namespace {

namespace v1 = meshwire::v1;
using meshwire::control::to_json;

constexpr const char* kDefaultSocket = "/run/meshwire/api.sock";

struct Options {
  std::string socket;
  std::string file;
  uint64_t generation = 0;
  bool force = false;
  bool json = false;
  double timeout_s = 5.0;
  bool per_worker = false;
  bool all = false;
  std::string name;      // show services|backends|flows: a frontend name prefix
  std::string service;   // show flows --service
  uint32_t limit = 0;    // show flows --limit
};

// Says why the socket can't be used before gRPC says something vaguer.
bool check_socket(const std::string& path) {
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) {
    std::fprintf(stderr, "meshwirectl: %s: %s (is meshwire-dataplane running with --api-socket %s? "
                 "--socket or MESHWIRE_API_SOCKET name another)\n", path.c_str(), std::strerror(errno), path.c_str());
    return false;
  }
  if (!S_ISSOCK(st.st_mode)) {
    std::fprintf(stderr, "meshwirectl: %s: not a Unix domain socket\n", path.c_str());
    return false;
  }
  return true;
}

grpc::ClientContext* with_deadline(grpc::ClientContext& ctx, const Options& o) {
  ctx.set_deadline(std::chrono::system_clock::now() +
                   std::chrono::milliseconds(static_cast<long>(o.timeout_s * 1000)));
  return &ctx;
}

int report(const grpc::Status& status, const Options& o) {
  std::string text = status.error_message();
  switch (status.error_code()) {
    case grpc::StatusCode::UNAVAILABLE: text += " (is meshwire-dataplane running?)"; break;
    case grpc::StatusCode::DEADLINE_EXCEEDED: text += " (no answer in time)"; break;
    case grpc::StatusCode::UNIMPLEMENTED:
      if (!text.empty()) text += ": ";
      text += "not implemented by this data plane (an older version?)";
      break;
    default: break;
  }
  std::fprintf(stderr, "meshwirectl: %s: %s\n", o.socket.c_str(), text.c_str());
  return 1;
}

// Reads the request of `apply -f` (JSON, or YAML when it does not start
// with '{'). 0, or having said why (naming the field where protobuf's parser
// does) the exit status: 1 when the file cannot be read, 2 when it is not
// such a request.
int read_request(const Options& o, google::protobuf::Message* req) {
  std::stringstream text;
  if (o.file == "-") {
    text << std::cin.rdbuf();
  } else {
    std::ifstream in(o.file);
    if (!in) {
      std::fprintf(stderr, "meshwirectl: %s: %s\n", o.file.c_str(), std::strerror(errno));
      return 1;
    }
    text << in.rdbuf();
  }
  std::string json = text.str();
  const std::string type = req->GetDescriptor()->name();
  const size_t first = json.find_first_not_of(" \t\r\n");
  const bool is_json = first != std::string::npos && json[first] == '{';
  if (!is_json) {
    auto docs = meshwire::control::parse_yaml_documents(json);
    if (!docs.ok()) {
      std::fprintf(stderr, "meshwirectl: %s: not an %s in JSON or YAML: %s\n", o.file.c_str(), type.c_str(),
                   docs.error().c_str());
      return 2;
    }
    if (docs->size() != 1 || !(*docs)[0].is_object()) {
      std::fprintf(stderr, "meshwirectl: %s: not an %s in JSON or YAML: want one document, a map\n", o.file.c_str(),
                   type.c_str());
      return 2;
    }
    json = (*docs)[0].dump();
  }
  const auto parsed = google::protobuf::util::JsonStringToMessage(json, req);
  if (!parsed.ok()) {
    std::fprintf(stderr, "meshwirectl: %s: not an %s in %s: %s\n", o.file.c_str(), type.c_str(),
                 is_json ? "JSON" : "YAML", std::string(parsed.message()).c_str());
    return 2;
  }
  return 0;
}

int apply(v1::Dataplane::Stub& stub, const Options& o, v1::ApplyRequest& req) {
  if (o.generation != 0) req.set_generation(o.generation);
  if (o.force) req.set_force(true);
  grpc::ClientContext ctx;
  v1::ApplyResponse resp;
  const grpc::Status status = stub.Apply(with_deadline(ctx, o), req, &resp);
  if (!status.ok()) return report(status, o);
  if (o.json) {
    std::fputs(meshwire::control::to_json(resp).c_str(), stdout);
  } else {
    std::printf("generation %llu is live (%s; built in %.1f ms)\n",
                static_cast<unsigned long long>(resp.live_generation()), resp.changed() ? "changed" : "already live",
                static_cast<double>(resp.build_us()) / 1000.0);
  }
  return 0;
}

int apply_services(v1::Dataplane::Stub& stub, const Options& o, v1::ApplyServicesRequest& req) {
  if (o.generation != 0) req.set_generation(o.generation);
  if (o.force) req.set_force(true);
  if (req.generation() == 0) {  // the next one
    grpc::ClientContext ctx;
    v1::GetGenerationResponse live;
    const grpc::Status status = stub.GetGeneration(with_deadline(ctx, o), {}, &live);
    if (!status.ok()) return report(status, o);
    req.set_generation(live.services_generation() + 1);
  }
  grpc::ClientContext ctx;
  v1::ApplyServicesResponse resp;
  const grpc::Status status = stub.ApplyServices(with_deadline(ctx, o), req, &resp);
  if (!status.ok()) return report(status, o);
  if (o.json) {
    std::fputs(meshwire::control::to_json(resp).c_str(), stdout);
  } else {
    std::printf("services generation %llu is live (%s; built in %.1f ms)\n",
                static_cast<unsigned long long>(resp.live_generation()), resp.changed() ? "changed" : "unchanged",
                static_cast<double>(resp.build_us()) / 1000.0);
  }
  return 0;
}

// meshwirectl health: one GetHealth call, judged. Probe output goes to
// stdout (the kubelet keeps it in the pod's events).
int health(const Options& o, const meshwire::control::HealthRules& rules) {
  const std::string no = rules.live ? "not live: " : "not ready: ";
  auto fail = [&](const std::string& why) {
    if (o.json) {
      nlohmann::ordered_json doc;
      doc["check"] = rules.live ? "liveness" : "readiness";
      doc["ok"] = false;
      doc["reasons"] = {no + why};
      std::fputs((doc.dump(2) + "\n").c_str(), stdout);
    } else {
      std::printf("%s%s\n", no.c_str(), why.c_str());
    }
    return 1;
  };
  struct stat st {};
  if (stat(o.socket.c_str(), &st) != 0 || !S_ISSOCK(st.st_mode)) {
    return fail("no data plane API socket at " + o.socket);
  }
  auto channel = grpc::CreateChannel("unix:" + o.socket, grpc::InsecureChannelCredentials());
  auto stub = v1::Dataplane::NewStub(channel);
  grpc::ClientContext ctx;
  v1::GetHealthResponse resp;
  const grpc::Status status = stub->GetHealth(with_deadline(ctx, o), {}, &resp);
  if (!status.ok()) {
    char limit[32];
    std::snprintf(limit, sizeof(limit), "%g s", o.timeout_s);
    return fail(status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED
                    ? "the data plane did not answer within " + std::string(limit)
                    : "the data plane's API: " + status.error_message());
  }
  const meshwire::control::HealthVerdict verdict = meshwire::control::judge_health(resp, rules);
  const std::string text = o.json ? meshwire::control::health_json(verdict, rules, resp)
                                  : meshwire::control::format_health(verdict);
  std::fwrite(text.data(), 1, text.size(), stdout);
  return verdict.ok ? 0 : 1;
}

// Calls one read RPC and prints its answer as a table or JSON.
template <typename Request, typename Response, typename Call, typename Format>
int show(v1::Dataplane::Stub& stub, const Options& o, const Request& req, Call call, Format format) {
  grpc::ClientContext ctx;
  Response resp;
  grpc::Status status = (stub.*call)(with_deadline(ctx, o), req, &resp);
  if (!status.ok()) return report(status, o);
  const std::string text = o.json ? to_json(resp) : format(resp);
  std::fwrite(text.data(), 1, text.size(), stdout);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace meshwire::control;
  CLI::App app{"meshwirectl: inspect a running meshwire data plane"};
  app.require_subcommand(1);
  Options o;
  const char* env = std::getenv("MESHWIRE_API_SOCKET");
  o.socket = env && *env ? env : kDefaultSocket;
  app.add_option("-s,--socket", o.socket, "the data plane's API socket (default $MESHWIRE_API_SOCKET or " +
                                              std::string(kDefaultSocket) + ")");
  app.add_flag("--json", o.json, "print JSON (proto3 mapping, .proto field names) instead of a table");
  CLI::Option* timeout_opt =
      app.add_option("--timeout", o.timeout_s, "seconds to wait for an answer (default 5, health 2)")
          ->check(CLI::PositiveNumber);
  app.set_version_flag("--version", "meshwirectl 0.1.0");

  CLI::App* show_cmd = app.add_subcommand("show", "show live state");
  std::string what;
  show_cmd->add_option("what", what, "interfaces|peers|sas|routes|counters|drops|generation|services|backends|flows")
      ->required()
      ->check(CLI::IsMember({"interfaces", "peers", "sas", "routes", "counters", "drops", "generation", "services",
                             "backends", "flows"}));
  show_cmd->add_option("name", o.name, "services, backends, flows: only frontends whose name starts with this");
  show_cmd->add_flag("--per-worker", o.per_worker, "counters: a column per worker and the control thread");
  show_cmd->add_flag("--all", o.all, "drops: every reason, also those never seen");
  CLI::Option* service_opt =
      show_cmd->add_option("--service", o.service, "flows: only those of frontends whose name starts with this");
  CLI::Option* limit_opt = show_cmd->add_option("--limit", o.limit, "flows: at most this many (default 1000)");
  CaptureOptions capture_opts;
  CLI::App* capture_cmd = add_capture_command(app, capture_opts);
  CLI::App* apply_cmd = app.add_subcommand("apply", "apply a desired state (an ApplyRequest as JSON or YAML)");
  apply_cmd->add_option("-f,--file", o.file, "the request's JSON or YAML file, or - for standard input")->required();
  apply_cmd->add_option("--generation", o.generation, "the generation to apply it as (overrides the file's)");
  apply_cmd->add_flag("--force", o.force, "accept a generation older than the live one");
  CLI::App* services_cmd = app.add_subcommand(
      "apply-services", "apply the service frontends (an ApplyServicesRequest as JSON or YAML)");
  services_cmd->add_option("-f,--file", o.file, "the request's JSON or YAML file, or - for standard input")
      ->required();
  services_cmd->add_option("--generation", o.generation,
                           "the services generation to apply it as (default: the file's, else the live one + 1)");
  services_cmd->add_flag("--force", o.force, "accept a generation older than the live one");
  uint32_t trace_count = 10;
  std::string trace_port;
  double trace_wait_s = 10;
  CLI::App* trace_cmd =
      app.add_subcommand("trace", "the next packets the data plane receives, with every step it takes with each");
  trace_cmd->add_option("-c,--count", trace_count, "packets (default 10)")->check(CLI::Range(1, 1000));
  trace_cmd->add_option("--port", trace_port, "only packets received on this port (its name in the config)");
  trace_cmd->add_option("--wait", trace_wait_s, "seconds to wait for them (default 10)")->check(CLI::PositiveNumber);
  meshwire::control::HealthRules health_rules;
  uint32_t stall_ms = 0;
  CLI::App* health_cmd = app.add_subcommand(
      "health", "readiness (exit 0: state applied, links up, workers polling, a peer up) or, with --live, liveness");
  health_cmd->add_flag("--live", health_rules.live, "liveness: the API answers and every worker is polling");
  health_cmd->add_option("--stall-ms", stall_ms,
                         "a worker with no poll round for this long is stuck (default 1000, --live 5000)")
      ->check(CLI::Range(1u, 600000u));
  health_cmd->add_flag("--all-peers", health_rules.all_peers, "readiness: every peer up, not just one");

  meshwire::control::DoctorInputs doctor;
  CLI::App* doctor_cmd = app.add_subcommand("doctor", "check the node and the mesh; print each finding with its fix");
  doctor_cmd->add_option("--config", doctor.config, "the data plane's config file (ports, devices, lcores, memory)");
  doctor_cmd->add_option("--pod-annotations", doctor.pod_annotations,
                         "the pod's annotations file, as given to meshwire-dataplane (for network: in the config)");
  doctor_cmd->add_option("--sysroot", doctor.sysroot, "read sys/ and proc/ under this folder instead of / (tests)");
  doctor_cmd->add_option("--source", doctor.source.source,
                         "the mesh's Node objects, as the controller takes them: dir:PATH or kube");
  doctor_cmd->add_option("--kubeconfig", doctor.source.kubeconfig, "with --source kube: this kubeconfig");
  doctor_cmd->add_option("--kube-context", doctor.source.kube_context, "with --kubeconfig: this context");
  doctor_cmd->add_option("--node", doctor.node,
                         "this node's Node name (default: the Node whose InternalIP is the tunnel address)");
  doctor_cmd->add_option("--controller", doctor.controller,
                         "the controller's metrics URL (e.g. http://127.0.0.1:9464/metrics)");
  doctor_cmd->add_option("--pod-netns", doctor.pod_netns,
                         "a pod's network namespace (a name in /run/netns or a path); repeatable");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;  // --help and --version exit 0
  }
  if (show_cmd->parsed()) {
    const bool named = what == "services" || what == "backends" || what == "flows";
    const char* misplaced = nullptr;
    if (!named && !o.name.empty()) {
      misplaced = "a NAME-PREFIX";
    } else if (what != "flows" && (service_opt->count() != 0 || limit_opt->count() != 0)) {
      misplaced = "--service or --limit";
    } else if (what == "flows" && !o.name.empty() && service_opt->count() != 0) {
      misplaced = "both NAME-PREFIX and --service";
    }
    if (misplaced) {
      std::fprintf(stderr, "meshwirectl: show %s: does not take %s\n", what.c_str(), misplaced);
      return 2;
    }
  }

  if (health_cmd->parsed()) {
    if (health_rules.live && health_rules.all_peers) {
      std::fprintf(stderr, "meshwirectl: health: --all-peers is for readiness, not --live\n");
      return 2;
    }
    health_rules.stall_ms = stall_ms != 0 ? stall_ms : (health_rules.live ? 5000 : 1000);
    if (timeout_opt->count() == 0) o.timeout_s = 2.0;
    return health(o, health_rules);
  }

  if (doctor_cmd->parsed()) {
    if (!doctor.source.source.empty() && doctor.source.source != "kube" &&
        doctor.source.source.rfind("dir:", 0) != 0) {
      std::fprintf(stderr, "meshwirectl: doctor: --source %s: want dir:PATH or kube\n", doctor.source.source.c_str());
      return 2;
    }
    doctor.socket = o.socket;
    doctor.timeout_s = o.timeout_s;
    doctor.source.log = [](const std::string&) {};  // the API server's troubles end in the finding
    const std::vector<Finding> findings = run_checks(gather_facts(doctor));
    const std::string text = o.json ? findings_json(findings) : format_findings(findings);
    std::fwrite(text.data(), 1, text.size(), stdout);
    return doctor_exit_status(findings);
  }

  // The file first: what is wrong with it is said with or without a data plane.
  v1::ApplyRequest apply_req;
  v1::ApplyServicesRequest services_req;
  if (apply_cmd->parsed()) {
    if (int rc = read_request(o, &apply_req); rc != 0) return rc;
  }
  if (services_cmd->parsed()) {
    if (int rc = read_request(o, &services_req); rc != 0) return rc;
  }
  if (!check_socket(o.socket)) return 1;
  auto channel = grpc::CreateChannel("unix:" + o.socket, grpc::InsecureChannelCredentials());
  auto stub = v1::Dataplane::NewStub(channel);
  using S = v1::Dataplane::Stub;
  if (trace_cmd->parsed()) {
    v1::TraceRequest req;
    req.set_count(trace_count);
    req.set_port(trace_port);
    req.set_timeout_ms(static_cast<uint32_t>(trace_wait_s * 1000));
    Options waiting = o;
    waiting.timeout_s = o.timeout_s + trace_wait_s;
    return show<v1::TraceRequest, v1::TraceResponse>(*stub, waiting, req, &S::Trace, format_trace);
  }
  if (apply_cmd->parsed()) return apply(*stub, o, apply_req);
  if (services_cmd->parsed()) return apply_services(*stub, o, services_req);
  if (capture_cmd->parsed()) return run_capture(*stub, capture_opts, o.socket);
  if (what == "services" || what == "backends") {
    v1::ListServicesRequest req;
    req.set_name(o.name);
    return show<v1::ListServicesRequest, v1::ListServicesResponse>(
        *stub, o, req, &S::ListServices, what == "services" ? format_services : format_backends);
  }
  if (what == "flows") {
    v1::ListFlowsRequest req;
    req.set_service(o.name.empty() ? o.service : o.name);
    req.set_limit(o.limit);
    return show<v1::ListFlowsRequest, v1::ListFlowsResponse>(*stub, o, req, &S::ListFlows, format_flows);
  }
  if (what == "generation") {
    return show<v1::GetGenerationRequest, v1::GetGenerationResponse>(*stub, o, {}, &S::GetGeneration,
                                                                      format_generation);
  }
  if (what == "interfaces") {
    return show<v1::ListInterfacesRequest, v1::ListInterfacesResponse>(*stub, o, {}, &S::ListInterfaces,
                                                                        format_interfaces);
  }
  if (what == "peers") return show<v1::ListPeersRequest, v1::ListPeersResponse>(*stub, o, {}, &S::ListPeers, format_peers);
  if (what == "sas") return show<v1::ListSasRequest, v1::ListSasResponse>(*stub, o, {}, &S::ListSas, format_sas);
  if (what == "routes") return show<v1::ListRoutesRequest, v1::ListRoutesResponse>(*stub, o, {}, &S::ListRoutes, format_routes);
  if (what == "counters") {
    v1::GetCountersRequest req;
    req.set_per_worker(o.per_worker);
    return show<v1::GetCountersRequest, v1::GetCountersResponse>(*stub, o, req, &S::GetCounters, format_counters);
  }
  const bool all = o.all;
  return show<v1::GetDropsRequest, v1::GetDropsResponse>(
      *stub, o, {}, &S::GetDrops, [all](const v1::GetDropsResponse& r) { return format_drops(r, all); });
}
