// List-then-watch of one Kubernetes collection, kept in a local copy, the
// way client-go's reflector does it:
//
//   list (paged, limit 500, continue tokens) -> replace the copy
//   watch from the list's resourceVersion, with bookmarks -> apply events
//   the watch ends (server timeout, dropped connection) -> watch again from
//     the last resourceVersion seen (an event's or a bookmark's)
//   "410 Gone" (HTTP status, or an ERROR event in a 200 stream), or an
//     expired continue token -> list again
//   any other error -> wait (exponential backoff with jitter) and retry
//
// A loop that makes no progress always waits first: a server that closes
// every stream at once, or answers every request with an error, is not
// hammered.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "kube/client.h"

namespace meshwire::control {

// Delays that double from `initial` up to `max`, each drawn uniformly from
// [d/2, d] so that many nodes that lost the API server at once do not come
// back in step.
class Backoff {
 public:
  Backoff(std::chrono::milliseconds initial, std::chrono::milliseconds max, uint64_t seed);
  std::chrono::milliseconds next();
  void reset() { step_ = initial_; }

 private:
  std::chrono::milliseconds initial_, max_, step_;
  std::mt19937_64 rng_;
};

// Where a reflector's copy lives. Called on the reflector's thread.
class ReflectorSink {
 public:
  virtual ~ReflectorSink() = default;
  virtual void replace(std::vector<nlohmann::json> items) = 0;  // after every (re)list
  virtual void upsert(nlohmann::json object) = 0;               // ADDED, MODIFIED
  virtual void remove(const nlohmann::json& object) = 0;        // DELETED
};

struct ReflectorCounters {
  std::atomic<uint64_t> lists{0};         // completed (all pages)
  std::atomic<uint64_t> relists_gone{0};  // lists forced by 410 (watch or continue token)
  std::atomic<uint64_t> watches{0};       // watch requests made
  std::atomic<uint64_t> events{0};        // ADDED, MODIFIED, DELETED applied
  std::atomic<uint64_t> bookmarks{0};
  std::atomic<uint64_t> errors{0};        // failed requests and broken streams
};

class Reflector {
 public:
  // collection: "/api/v1/nodes" and the like. log: one line per problem
  // (not per retry of the same problem).
  Reflector(const KubeClient& client, std::string collection, ReflectorSink& sink,
            std::function<void(const std::string&)> log);

  // Lists and watches until stop becomes true (noticed within a second).
  void run(const std::atomic<bool>& stop);

  const ReflectorCounters& counters() const { return counters_; }
  // Page size of lists (tests make it small).
  void set_page_size(unsigned n) { page_size_ = n; }

 private:
  enum class Outcome { kProgress, kNothing, kGone, kError };
  Outcome list(const std::atomic<bool>& stop);
  Outcome watch(const std::atomic<bool>& stop);
  void problem(const std::string& what);
  bool pause(std::chrono::milliseconds d, const std::atomic<bool>& stop);

  const KubeClient& client_;
  std::string collection_;
  ReflectorSink& sink_;
  std::function<void(const std::string&)> log_;
  std::string resource_version_;  // empty: a list is needed
  unsigned page_size_ = 500;
  Backoff backoff_;
  std::mt19937_64 rng_;
  std::string last_problem_;
  ReflectorCounters counters_;
};

}  // namespace meshwire::control
