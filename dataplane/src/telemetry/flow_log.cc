#include "telemetry/flow_log.h"

#include <cerrno>
#include <cstring>
#include <ctime>
#include <utility>

#include <nlohmann/json.hpp>

namespace meshwire::dp {

namespace {

const char* protocol_name(uint8_t proto) {
  switch (proto) {
    case 6: return "tcp";
    case 17: return "udp";
    case 132: return "sctp";
  }
  return "other";
}

// How a flow that idled out ended, from the state its packets left it in.
const char* end_of_expired(const lb::Flow& f) {
  switch (static_cast<lb::FlowState>(f.state.load(std::memory_order_relaxed))) {
    case lb::FlowState::kFinSeen: return "fin";
    case lb::FlowState::kClosed: return f.forward.proto == 6 ? "rst" : "closed";
    default: return "timeout";  // established, UDP, SCTP, or a connect never answered
  }
}

std::string rfc3339_ms(uint64_t unix_ms) {
  const time_t secs = static_cast<time_t>(unix_ms / 1000);
  tm t{};
  gmtime_r(&secs, &t);
  char buf[96];
  std::snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%03uZ", t.tm_year + 1900, t.tm_mon + 1, t.tm_mday,
                t.tm_hour, t.tm_min, t.tm_sec, static_cast<unsigned>(unix_ms % 1000));
  return buf;
}

}  // namespace

struct FlowLog::Record {
  const char* event;
  const char* end;  // nullptr: none
  const char* why;  // nullptr: none
  const lb::FlowTuple* forward;
  const uint8_t* backend;
  uint16_t backend_port;
  unsigned attempts;
  uint32_t created_ms;
  uint32_t until_ms;  // the end of its duration
  uint64_t fwd_packets, fwd_bytes, rev_packets, rev_bytes;
};

Result<std::unique_ptr<FlowLog>> FlowLog::open(const FlowLogSettings& settings, std::string node_name) {
  if (settings.path == "-") return std::unique_ptr<FlowLog>(new FlowLog(settings, std::move(node_name), stdout, false));
  std::FILE* f = std::fopen(settings.path.c_str(), "ae");
  if (f == nullptr) {
    return make_error("flow_logs.path: cannot open " + settings.path + " for appending: " + std::strerror(errno));
  }
  return std::unique_ptr<FlowLog>(new FlowLog(settings, std::move(node_name), f, true));
}

FlowLog::FlowLog(const FlowLogSettings& settings, std::string node_name, std::FILE* out, bool owned)
    : settings_(settings), node_(std::move(node_name)), out_(out), owned_(owned) {
  tokens_ = settings_.max_per_second;
}

FlowLog::~FlowLog() {
  flush();
  if (owned_) std::fclose(out_);
}

void FlowLog::set_time(uint32_t now_ms, uint64_t wall_ms) {
  now_ms_ = now_ms;
  wall_ms_ = wall_ms;
}

bool FlowLog::take_token() {
  const double rate = settings_.max_per_second;
  if (tokens_at_ms_ != 0 && wall_ms_ > tokens_at_ms_) tokens_ += rate * static_cast<double>(wall_ms_ - tokens_at_ms_) / 1000.0;
  if (tokens_ > rate) tokens_ = rate;
  tokens_at_ms_ = wall_ms_;
  if (tokens_ < 1.0) {
    ++rate_limited_;
    return false;
  }
  tokens_ -= 1.0;
  return true;
}

void FlowLog::emit(const Record& r, const lb::ServiceTable& services) {
  if (!take_token()) return;
  const lb::FlowTuple& t = *r.forward;
  nlohmann::ordered_json j;
  j["time"] = rfc3339_ms(wall_ms_);
  j["event"] = r.event;
  if (r.end != nullptr) j["end"] = r.end;
  if (r.why != nullptr) j["why"] = r.why;
  j["node"] = node_;
  // The frontend and backend as this generation of services knows them.
  std::string service, backend_node, backend_target;
  const uint32_t fi = services.by_frontend.find(lb::endpoint_key(t.family, t.proto, t.dst, t.dst_port));
  if (fi != lb::EndpointIndex::kNone) {
    service = services.config[fi].name;
    const uint32_t bi =
        services.frontends[fi].backend_index.find(lb::endpoint_key(t.family, t.proto, r.backend, r.backend_port));
    if (bi != lb::EndpointIndex::kNone) {
      backend_node = services.config[fi].backends[bi].node;
      backend_target = services.config[fi].backends[bi].target;
    }
  }
  j["service"] = service;
  j["protocol"] = protocol_name(t.proto);
  j["client"] = format_endpoint(t.family, t.src, t.src_port);
  j["frontend"] = format_endpoint(t.family, t.dst, t.dst_port);
  j["backend"] = format_endpoint(t.family, r.backend, r.backend_port);
  j["backend_node"] = backend_node;
  j["backend_target"] = backend_target;
  j["start"] = rfc3339_ms(wall_ms_ - static_cast<uint32_t>(now_ms_ - r.created_ms));
  j["duration_ms"] = static_cast<uint32_t>(r.until_ms - r.created_ms);
  j["attempts"] = r.attempts;
  j["packets_to_backend"] = r.fwd_packets;
  j["bytes_to_backend"] = r.fwd_bytes;
  j["packets_to_client"] = r.rev_packets;
  j["bytes_to_client"] = r.rev_bytes;
  const std::string line = j.dump() + "\n";
  std::fwrite(line.data(), 1, line.size(), out_);
  ++records_;
  dirty_ = true;
}

void FlowLog::visit(lb::Flow& f, const lb::ServiceTable& services) {
  const uint32_t last = f.log_reported_ms.load(std::memory_order_relaxed);
  if (last == 0 || settings_.interval_s == 0 || f.forward.proto == lb::kAffinityProto) return;
  if (now_ms_ - last < settings_.interval_s * 1000u) return;
  f.log_reported_ms.store(now_ms_ | 1, std::memory_order_relaxed);
  const Record r{"update", nullptr, nullptr, &f.forward, f.backend, f.backend_port,
                 f.attempts.load(std::memory_order_relaxed), f.created_ms, now_ms_,
                 f.fwd_packets.load(std::memory_order_relaxed), f.fwd_bytes.load(std::memory_order_relaxed),
                 f.rev_packets.load(std::memory_order_relaxed), f.rev_bytes.load(std::memory_order_relaxed)};
  emit(r, services);
}

void FlowLog::removed(const lb::Flow& f, bool expired, const lb::ServiceTable& services) {
  if (f.log_reported_ms.load(std::memory_order_relaxed) == 0 || f.forward.proto == lb::kAffinityProto) return;
  const char* end = "ejected";
  const char* why = nullptr;
  if (expired) {
    end = end_of_expired(f);
  } else {
    // Closed because services no longer keep it (lb::ServiceTable::keeps):
    // its backend is gone from the service, or its node went down.
    const lb::ServiceTable::Place p = services.place_of(f);
    why = p.frontend == lb::ServiceTable::kNowhere ? "backend_removed" : "node_down";
  }
  const Record r{"end", end, why, &f.forward, f.backend, f.backend_port,
                 f.attempts.load(std::memory_order_relaxed), f.created_ms,
                 f.last_seen_ms.load(std::memory_order_relaxed),
                 f.fwd_packets.load(std::memory_order_relaxed), f.fwd_bytes.load(std::memory_order_relaxed),
                 f.rev_packets.load(std::memory_order_relaxed), f.rev_bytes.load(std::memory_order_relaxed)};
  emit(r, services);
}

void FlowLog::drain(std::span<lb::FlowEventQueue* const> queues, const lb::ServiceTable& services) {
  for (lb::FlowEventQueue* q : queues) {
    if (q == nullptr) continue;
    q->consume_all([&](const lb::FlowEvent& e) {
      const bool refused = e.kind == lb::FlowEventKind::kRetryRefused;
      const Record r{"retry", "retry", refused ? "refused" : "unanswered", &e.forward, e.backend, e.backend_port,
                     e.attempts, e.created_ms, e.at_ms, e.fwd_packets, e.fwd_bytes, e.rev_packets, e.rev_bytes};
      emit(r, services);
    });
  }
}

void FlowLog::flush() {
  if (!dirty_) return;
  std::fflush(out_);
  dirty_ = false;
}

}  // namespace meshwire::dp
