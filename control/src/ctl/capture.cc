#include "ctl/capture.h"

#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <thread>

#include <grpcpp/grpcpp.h>

namespace meshwire::control {
namespace {

namespace v1 = meshwire::v1;

std::atomic<bool> g_interrupted{false};
void on_signal(int) { g_interrupted.store(true); }

v1::CapturePoint point_of(const std::string& name) {
  if (name == "rx") return v1::CAPTURE_POINT_RX;
  if (name == "tx") return v1::CAPTURE_POINT_TX;
  if (name == "pre-encrypt") return v1::CAPTURE_POINT_PRE_ENCRYPT;
  return v1::CAPTURE_POINT_POST_DECRYPT;
}

}  // namespace

CLI::App* add_capture_command(CLI::App& app, CaptureOptions& o) {
  CLI::App* cmd = app.add_subcommand("capture", "capture packets at a point of the data path into a pcapng file");
  cmd->add_option("--point", o.point, "rx|tx (frames on a port), pre-encrypt|post-decrypt (pods' IP packets)")
      ->required()
      ->check(CLI::IsMember({"rx", "tx", "pre-encrypt", "post-decrypt"}));
  cmd->add_option("--port", o.port, "only this port (its name in the data plane's config); default all");
  cmd->add_option("--filter", o.filter, "pcap-filter(7) expression, e.g. 'udp port 5000'");
  cmd->add_option("-c,--count", o.count, "stop after this many packets")->check(CLI::PositiveNumber);
  cmd->add_option("--duration", o.duration_s, "stop after this many seconds")->check(CLI::PositiveNumber);
  cmd->add_option("--snaplen", o.snaplen, "bytes kept of each packet (1-2048, default 2048)")
      ->check(CLI::Range(1, 2048));
  cmd->add_option("--ring-size", o.ring_size, "copies each worker may queue before it drops them (default 1024)")
      ->check(CLI::Range(1, 65536));
  cmd->add_option("-w,--write", o.file, "the pcapng file to write, or - for standard output")->required();
  return cmd;
}

int run_capture(v1::Dataplane::Stub& stub, const CaptureOptions& o, const std::string& socket) {
  v1::CaptureRequest req;
  req.set_point(point_of(o.point));
  req.set_port(o.port);
  req.set_filter(o.filter);
  req.set_count(o.count);
  req.set_duration_ms(static_cast<uint32_t>(o.duration_s * 1000));
  req.set_snaplen(o.snaplen);
  req.set_ring_size(o.ring_size);

  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  grpc::ClientContext ctx;
  std::atomic<bool> finished{false};
  // Ctrl-C cancels the call; what was written so far is a valid file.
  std::thread watcher([&] {
    while (!finished.load()) {
      if (g_interrupted.load()) {
        ctx.TryCancel();
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  });
  auto stream = stub.Capture(&ctx, req);
  FILE* out = nullptr;  // opened with the first chunk: a refused capture leaves no file
  v1::CaptureChunk chunk;
  uint64_t packets = 0, dropped = 0;
  std::string stopped_by = "interrupted";
  bool write_failed = false;
  while (stream->Read(&chunk)) {
    if (out == nullptr) {
      out = o.file == "-" ? stdout : std::fopen(o.file.c_str(), "wb");
      if (out == nullptr) {
        std::fprintf(stderr, "meshwirectl: %s: %s\n", o.file.c_str(), std::strerror(errno));
        write_failed = true;
        ctx.TryCancel();
        break;
      }
    }
    if (!chunk.data().empty() &&
        (std::fwrite(chunk.data().data(), 1, chunk.data().size(), out) != chunk.data().size() || std::fflush(out) != 0)) {
      std::fprintf(stderr, "meshwirectl: %s: %s\n", o.file.c_str(), std::strerror(errno));
      write_failed = true;
      ctx.TryCancel();
      break;
    }
    if (chunk.done()) {
      packets = chunk.packets();
      dropped = chunk.dropped();
      stopped_by = chunk.stopped_by();
    }
  }
  const grpc::Status status = stream->Finish();
  finished.store(true);
  watcher.join();
  if (out != nullptr && out != stdout && std::fclose(out) != 0) write_failed = true;
  if (write_failed) return 1;
  const bool interrupted = status.error_code() == grpc::StatusCode::CANCELLED && g_interrupted.load();
  if (!status.ok() && !interrupted) {
    std::string text = status.error_message();
    if (status.error_code() == grpc::StatusCode::UNAVAILABLE) text += " (is meshwire-dataplane running?)";
    if (status.error_code() == grpc::StatusCode::UNIMPLEMENTED) text += " (a data plane without capture?)";
    std::fprintf(stderr, "meshwirectl: %s: capture: %s\n", socket.c_str(), text.c_str());
    return status.error_code() == grpc::StatusCode::INVALID_ARGUMENT ? 2 : 1;
  }
  if (interrupted) {
    std::fprintf(stderr, "meshwirectl: capture interrupted; %s holds what came before\n", o.file.c_str());
  } else {
    std::fprintf(stderr, "meshwirectl: %llu packets written to %s (stopped by %s; %llu copies dropped by the data plane)\n",
                 static_cast<unsigned long long>(packets), o.file.c_str(), stopped_by.c_str(),
                 static_cast<unsigned long long>(dropped));
  }
  return 0;
}

}  // namespace meshwire::control
