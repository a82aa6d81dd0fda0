#include "controller/services_sync.h"

#include <chrono>

#include "reconcile/services_proto.h"

namespace meshwire::control {
namespace {

uint64_t ms_since(std::chrono::steady_clock::time_point t0) {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count());
}

}  // namespace

ServicesSync::ServicesSync(std::string node, uint64_t resync_ms, Apply apply, Log log)
    : node_(std::move(node)), resync_ms_(resync_ms), apply_(std::move(apply)), log_(std::move(log)) {}

bool ServicesSync::due(uint64_t live_generation, uint64_t now_ms) const {
  return dirty_ || (now_ms >= retry_at_ms_ && (send_next() || moved(live_generation)));
}

void ServicesSync::problem(const std::string& what) {
  if (what != last_problem_) log_(what);
  last_problem_ = what;
}

void ServicesSync::run(const ClusterObjects* cluster, uint64_t live_generation, uint64_t now_ms) {
  if (!due(live_generation, now_ms)) return;
  const auto t_compute = std::chrono::steady_clock::now();
  if (dirty_ && cluster) {
    DesiredServices d = desired_services(*cluster, node_);
    std::string skipped;
    for (const std::string& s : d.skipped) {
      if (!skipped.empty()) skipped += "; ";
      skipped += s;
    }
    if (skipped != last_skipped_ && !skipped.empty()) log_("services left out: " + skipped);
    last_skipped_ = skipped;
    if (!has_next_ || d.frontends != next_.frontends) rejected_ = false;  // another set: worth a try
    has_next_ = applied_generation_ == 0 || d.frontends != applied_.frontends;
    next_ = has_next_ ? std::move(d) : DesiredServices{};
    dirty_ = false;
  }
  if (now_ms < retry_at_ms_) return;
  const bool sending_next = send_next();
  if (!sending_next && !moved(live_generation)) return;
  // Otherwise the data plane lost our set (or was given another): the last
  // one it accepted, again.
  const DesiredServices& want = sending_next ? next_ : applied_;
  services_into(want, &req_);
  req_.set_generation(live_generation + 1);
  const uint64_t compute_ms = ms_since(t_compute);
  const auto t_apply = std::chrono::steady_clock::now();
  v1::ApplyServicesResponse resp;
  const grpc::Status st = apply_(req_, &resp);
  if (!st.ok()) {
    const std::string what = "ApplyServices generation " + std::to_string(req_.generation()) + ": ";
    retry_at_ms_ = now_ms + resync_ms_;
    switch (st.error_code()) {
      case grpc::StatusCode::INVALID_ARGUMENT:
        problem(what + st.error_message() + " (not sent again until the services change)");
        if (sending_next) rejected_ = true;
        break;
      case grpc::StatusCode::FAILED_PRECONDITION:
        problem(what + st.error_message() + " (will retry)");
        retry_at_ms_ = 0;  // against the generation read next round
        break;
      case grpc::StatusCode::UNIMPLEMENTED:
        problem("ApplyServices: not implemented by this data plane: services are not programmed (will retry)");
        break;
      default: problem(what + st.error_message() + " (will retry)"); break;
    }
    return;
  }
  const size_t frontends = want.frontends.size();
  const size_t backends = backend_count(want);
  if (sending_next) {
    applied_ = std::move(next_);
    next_ = DesiredServices{};
    has_next_ = false;
  }
  applied_generation_ = resp.live_generation();
  retry_at_ms_ = 0;
  last_problem_.clear();
  log_("applied services generation " + std::to_string(resp.live_generation()) + ": " + std::to_string(frontends) +
       " frontend(s), " + std::to_string(backends) + " backend(s) (computed " + std::to_string(compute_ms) +
       " ms, applied " + std::to_string(ms_since(t_apply)) + " ms, of which the data plane built " +
       std::to_string(resp.build_us() / 1000) + " ms)");
}

}  // namespace meshwire::control
