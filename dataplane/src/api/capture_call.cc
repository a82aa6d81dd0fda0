#include "api/capture_call.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include <rte_lcore.h>
#include <rte_rcu_qsbr.h>

#include "app/node.h"
#include "capture/pcapng_writer.h"
#include "capture/session.h"

namespace meshwire::dp {
namespace {

namespace v1 = meshwire::v1;
using Clock = std::chrono::steady_clock;

// How long a stopped capture waits for the workers to leave its taps
// before it gives up freeing them (a worker stuck for that long).
constexpr auto kGraceLimit = std::chrono::seconds(10);
constexpr unsigned kDrainBatch = 64;
// How long an emptied capture sleeps at most before it looks at its client,
// its duration and the node again (a nudge wakes it sooner).
constexpr auto kIdleWait = std::chrono::milliseconds(100);

Result<capture::Spec> spec_of(const Node& node, const v1::CaptureRequest& req) {
  capture::Spec spec;
  switch (req.point()) {
    case v1::CAPTURE_POINT_RX: spec.point = capture::Point::kRx; break;
    case v1::CAPTURE_POINT_TX: spec.point = capture::Point::kTx; break;
    case v1::CAPTURE_POINT_PRE_ENCRYPT: spec.point = capture::Point::kPreEncrypt; break;
    case v1::CAPTURE_POINT_POST_DECRYPT: spec.point = capture::Point::kPostDecrypt; break;
    default: return make_error("point: give one of rx, tx, pre-encrypt, post-decrypt");
  }
  const auto& ports = node.runtime().ports;
  if (req.port().empty()) {
    spec.port_mask = (1u << ports.size()) - 1;
  } else {
    std::string names;
    for (size_t i = 0; i < ports.size(); ++i) {
      if (ports[i].name == req.port()) spec.port_mask = 1u << i;
      names += (i ? ", " : "") + ports[i].name;
    }
    if (spec.port_mask == 0) return make_error("port: '" + req.port() + "' is not a port of this data plane (" + names + ")");
  }
  spec.filter = req.filter();
  if (req.snaplen() != 0) spec.snaplen = req.snaplen();
  if (req.ring_size() != 0) spec.ring_size = req.ring_size();
  return spec;
}

uint64_t capture_dropped(const Node& node) {
  uint64_t v = 0;
  for (unsigned b = 0; b < node.counter_blocks(); ++b) v += read_counter(node.counters()[b].capture_dropped);
  return v;
}

std::string describe(const v1::CaptureRequest& req) {
  std::string point = capture::kPointNames[static_cast<size_t>(req.point()) - 1].data();
  return "meshwire-dataplane capture: point " + point + ", port " + (req.port().empty() ? "all" : req.port()) +
         ", filter '" + req.filter() + "'";
}

}  // namespace

grpc::Status serve_capture(Node& node, const std::atomic<bool>& stopping, grpc::ServerContext* ctx,
                           const v1::CaptureRequest* req, grpc::ServerWriter<v1::CaptureChunk>* writer) {
  auto spec = spec_of(node, *req);
  if (!spec.ok()) return {grpc::StatusCode::INVALID_ARGUMENT, spec.error()};

  // Start: on the control thread, which alone starts captures, so that
  // "is one running" and taking the slot are one step.
  std::unique_ptr<capture::Session> session;
  grpc::Status refused;
  const uint64_t dropped_before = capture_dropped(node);
  const grpc::Status busy{grpc::StatusCode::FAILED_PRECONDITION,
                          "a capture is already running on this data plane (one at a time): stop it first"};
  const bool ran = node.tasks().run([&] {
    if (node.capture_slot().busy.load()) {  // before making a pool for nothing
      refused = busy;
      return;
    }
    auto made = capture::Session::create(*spec, node.workers(), static_cast<int>(rte_socket_id()));
    if (!made.ok()) {
      const bool memory = made.error().rfind("memory:", 0) == 0;
      refused = {memory ? grpc::StatusCode::RESOURCE_EXHAUSTED : grpc::StatusCode::INVALID_ARGUMENT, made.error()};
      return;
    }
    if (!capture::publish(node.capture_slot(), *made.value())) {
      refused = busy;
      return;
    }
    session = std::move(made.value());
  });
  if (!ran) return {grpc::StatusCode::UNAVAILABLE, "the data plane is stopping"};
  if (!session) return refused;

  std::vector<uint16_t> port_ids;
  for (const PortRuntime& p : node.runtime().ports) port_ids.push_back(p.port_id);
  auto file = capture::PcapngWriter::open(spec->point, std::move(port_ids), session->pool(), describe(*req));

  enum class Stop { kCount, kDuration, kClient, kStopping, kError };
  Stop why = Stop::kError;
  grpc::Status status = grpc::Status::OK;
  // Sends what the file holds since the last chunk; false: the caller is gone.
  auto send = [&](v1::CaptureChunk& chunk) {
    auto bytes = (*file)->take();
    if (!bytes.ok()) {
      status = {grpc::StatusCode::INTERNAL, bytes.error()};
      return false;
    }
    chunk.set_data(std::move(*bytes));
    return writer->Write(chunk);
  };
  if (!file.ok()) {
    status = {grpc::StatusCode::INTERNAL, file.error()};
  } else {
    const auto end = req->duration_ms() != 0 ? Clock::now() + std::chrono::milliseconds(req->duration_ms())
                                             : Clock::time_point::max();
    v1::CaptureChunk header;
    why = send(header) ? Stop::kError : Stop::kClient;  // the section and interface blocks first
    rte_mbuf* batch[kDrainBatch];
    // Emptied rings: sleep until the control thread, which looks at them
    // every millisecond, says copies came (a 1024-copy ring holds 8 ms at
    // 128 kpps of matches), or for at most kIdleWait to look at the client,
    // the duration and the node. An idle capture (its filter matching
    // nothing) thus wakes ten times a second, not a thousand.
    while (why == Stop::kError && status.ok()) {
      if (ctx->IsCancelled()) {
        why = Stop::kClient;
        break;
      }
      if (stopping.load()) {
        why = Stop::kStopping;
        status = {grpc::StatusCode::UNAVAILABLE,
                  "the data plane stopped during the capture (what came before was sent)"};
        break;
      }
      if (Clock::now() >= end) {
        why = Stop::kDuration;
        break;
      }
      const uint64_t left = req->count() == 0 ? kDrainBatch : req->count() - (*file)->written();
      const unsigned n = session->drain(batch, static_cast<unsigned>(std::min<uint64_t>(kDrainBatch, left)));
      if (n == 0) {
        const auto most = std::min<Clock::duration>(kIdleWait, end - Clock::now());
        capture::wait_for_copies(node.capture_slot(),
                                 std::chrono::duration_cast<std::chrono::microseconds>(most));
        continue;
      }
      (*file)->write(batch, n);
      if (req->count() != 0 && (*file)->written() >= req->count()) {
        why = Stop::kCount;
        break;
      }
      v1::CaptureChunk chunk;
      if (!send(chunk)) why = Stop::kClient;
    }
    if (!status.ok() && why != Stop::kStopping) why = Stop::kError;
  }

  // Stop: withdraw the taps (on the control thread; on this one when the
  // node is stopping and the control thread no longer takes work: the slot
  // is this capture's either way), then wait until no worker can read them.
  capture::CaptureSlot& slot = node.capture_slot();
  uint64_t token = 0;
  if (!node.tasks().run([&] { token = capture::withdraw(slot, node.qsbr()); })) {
    token = capture::withdraw(slot, node.qsbr());
  }
  const auto give_up = Clock::now() + kGraceLimit;
  while (rte_rcu_qsbr_check(node.qsbr(), token, false) != 1) {
    if (Clock::now() > give_up) {
      std::fprintf(stderr, "meshwire-dataplane: capture: a worker did not pass a quiescent state in %lld s: "
                   "its rings and pool are left allocated\n",
                   static_cast<long long>(std::chrono::duration_cast<std::chrono::seconds>(kGraceLimit).count()));
      (void)session.release();
      if (file.ok()) (void)file->release();
      release(slot);
      return {grpc::StatusCode::INTERNAL, "capture: the workers did not let go of the capture in time"};
    }
    ::usleep(200);
  }

  if (why == Stop::kCount || why == Stop::kDuration) {
    // What the workers queued before they let go, up to the count.
    rte_mbuf* batch[kDrainBatch];
    for (;;) {
      const uint64_t left = req->count() == 0 ? kDrainBatch : req->count() - (*file)->written();
      if (left == 0) break;
      const unsigned n = session->drain(batch, static_cast<unsigned>(std::min<uint64_t>(kDrainBatch, left)));
      if (n == 0) break;
      (*file)->write(batch, n);
    }
    const uint64_t dropped = capture_dropped(node) - dropped_before + (*file)->lost();
    const std::string note = "meshwire: " + std::to_string((*file)->written()) + " packets written, " +
                             std::to_string(dropped) + " copies dropped (ring or pool full)";
    for (uint16_t p = 0; p < node.runtime().ports.size(); ++p) {
      if (spec->port_mask >> p & 1u) (*file)->write_stats(p, UINT64_MAX, UINT64_MAX, note);
    }
    v1::CaptureChunk last;
    last.set_done(true);
    last.set_packets((*file)->written());
    last.set_dropped(dropped);
    last.set_stopped_by(why == Stop::kCount ? "count" : "duration");
    send(last);
  }
  if (file.ok()) file->reset();
  session.reset();
  capture::release(slot);
  return status;
}

}  // namespace meshwire::dp
