// Flow logs: a JSON line per service connection when it ends, every
// interval_s while it lasts, and for each attempt retried on another
// backend. Control thread only: the workers count a logged flow's packets
// and bytes in its record (lb::Flow) and queue retries (lb::FlowEvent); the
// connection table's sweep, which removes flows, hands them here.
//
// A line (keys always present unless said; times UTC, RFC 3339 with ms):
//   {"time", "event": "end" | "update" | "retry",
//    "end": "fin" | "rst" | "closed" | "timeout" | "ejected" | "retry"
//           (end and retry events; "update" has none),
//    "why": for "ejected" ("backend_removed", "node_down") and "retry"
//           ("refused", "unanswered"),
//    "node", "service" (the frontend's name, "" when it is gone),
//    "protocol": "tcp" | "udp" | "sctp",
//    "client": "addr:port", "frontend": "vip:port",
//    "backend": "addr:port", "backend_node", "backend_target",
//    "start": connection's first packet, "duration_ms",
//    "attempts", "packets_to_backend", "bytes_to_backend",
//    "packets_to_client", "bytes_to_client"}
// Bytes are IP bytes (header included) as the client and backend see them.
//
// Rate limit: at most max_per_second records a second (a token bucket);
// the rest are dropped and counted (flow_log_rate_limited).
#pragma once

#include <cstdint>
#include <cstdio>
#include <memory>
#include <span>
#include <string>

#include <meshwire/dp/config.h>
#include <meshwire/dp/counters.h>
#include <meshwire/dp/result.h>

#include "lb/conntrack.h"
#include "lb/flow_events.h"
#include "lb/services.h"

namespace meshwire::dp {

class FlowLog {
 public:
  // Opens settings.path for appending ("-": standard output). Errors name
  // the field (flow_logs.path) and the system's reason.
  static Result<std::unique_ptr<FlowLog>> open(const FlowLogSettings& settings, std::string node_name);
  ~FlowLog();
  FlowLog(const FlowLog&) = delete;
  FlowLog& operator=(const FlowLog&) = delete;

  // The clocks: now_ms is the flow clock (lb::flow_clock_ms()), wall_ms the
  // Unix time at the same instant; records convert flow-clock stamps with
  // them. Call before the calls below, once per round.
  void set_time(uint32_t now_ms, uint64_t wall_ms);

  // The sweep's visit of a live flow (held still): an "update" record once
  // interval_s has passed since its last one.
  void visit(lb::Flow& f, const lb::ServiceTable& services);
  // A flow the sweep removes: expired (idle past its state's timeout) or
  // closed because services no longer keep it (ejected).
  void removed(const lb::Flow& f, bool expired, const lb::ServiceTable& services);
  // The workers' events.
  void drain(std::span<lb::FlowEventQueue* const> queues, const lb::ServiceTable& services);
  // Writes out what the calls above buffered.
  void flush();

  // Counted here, for the control thread's counter block.
  uint64_t records() const { return records_; }
  uint64_t rate_limited() const { return rate_limited_; }

 private:
  FlowLog(const FlowLogSettings& settings, std::string node_name, std::FILE* out, bool owned);
  struct Record;
  void emit(const Record& r, const lb::ServiceTable& services);
  bool take_token();

  FlowLogSettings settings_;
  std::string node_;
  std::FILE* out_ = nullptr;
  bool owned_ = false;
  uint32_t now_ms_ = 0;
  uint64_t wall_ms_ = 0;
  double tokens_ = 0;
  uint64_t tokens_at_ms_ = 0;
  uint64_t records_ = 0;
  uint64_t rate_limited_ = 0;
  bool dirty_ = false;
};

}  // namespace meshwire::dp
