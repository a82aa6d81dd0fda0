// meshwirectl: the operator's view of a running meshwire-dataplane through
// its control API (gRPC over a Unix domain socket).
//
//   meshwirectl [--socket PATH] [--json] [--timeout S] show
//       interfaces|peers|sas|routes|counters|drops|generation
//   meshwirectl apply -f FILE|- [--generation N] [--force]
//       FILE: an ApplyRequest in protobuf's JSON mapping (keys and salts in
//       base64), as the controller would send it: manual keying, tests.
//
// Exit status: 0 on success, 1 when the data plane could not answer
// (not running, wrong socket, timeout), 2 on a usage error.
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

#include "ctl/format.h"
#include "dataplane.grpc.pb.h"

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
  const char* hint = status.error_code() == grpc::StatusCode::UNAVAILABLE ? " (is meshwire-dataplane running?)"
                     : status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED ? " (no answer in time)" : "";
  std::fprintf(stderr, "meshwirectl: %s: %s%s\n", o.socket.c_str(), status.error_message().c_str(), hint);
  return 1;
}

int apply(v1::Dataplane::Stub& stub, const Options& o) {
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
  v1::ApplyRequest req;
  const auto parsed = google::protobuf::util::JsonStringToMessage(text.str(), &req);
  if (!parsed.ok()) {
    std::fprintf(stderr, "meshwirectl: %s: not an ApplyRequest in JSON: %s\n", o.file.c_str(),
                 std::string(parsed.message()).c_str());
    return 2;
  }
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
  app.add_option("--timeout", o.timeout_s, "seconds to wait for an answer")->check(CLI::PositiveNumber);
  app.set_version_flag("--version", "meshwirectl 0.1.0");

  CLI::App* show_cmd = app.add_subcommand("show", "show live state");
  std::string what;
  show_cmd->add_option("what", what, "interfaces|peers|sas|routes|counters|drops|generation")
      ->required()
      ->check(CLI::IsMember({"interfaces", "peers", "sas", "routes", "counters", "drops", "generation"}));
  show_cmd->add_flag("--per-worker", o.per_worker, "counters: a column per worker and the control thread");
  show_cmd->add_flag("--all", o.all, "drops: every reason, also those never seen");
  CLI::App* apply_cmd = app.add_subcommand("apply", "apply a desired state (an ApplyRequest as JSON)");
  apply_cmd->add_option("-f,--file", o.file, "the request's JSON file, or - for standard input")->required();
  apply_cmd->add_option("--generation", o.generation, "the generation to apply it as (overrides the file's)");
  apply_cmd->add_flag("--force", o.force, "accept a generation older than the live one");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;  // --help and --version exit 0
  }

  if (!check_socket(o.socket)) return 1;
  auto channel = grpc::CreateChannel("unix:" + o.socket, grpc::InsecureChannelCredentials());
  auto stub = v1::Dataplane::NewStub(channel);
  using S = v1::Dataplane::Stub;
  if (apply_cmd->parsed()) return apply(*stub, o);
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
