#include "kube/reflector.h"

#include <thread>

namespace meshwire::control {
namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

std::string resource_version_of(const json& object) {
  auto m = object.find("metadata");
  if (m == object.end() || !m->is_object()) return {};
  auto rv = m->find("resourceVersion");
  return rv != m->end() && rv->is_string() ? rv->get<std::string>() : std::string();
}

}  // namespace

Backoff::Backoff(std::chrono::milliseconds initial, std::chrono::milliseconds max, uint64_t seed)
    : initial_(initial), max_(max), step_(initial), rng_(seed) {}

std::chrono::milliseconds Backoff::next() {
  const auto d = step_;
  step_ = std::min(max_, step_ * 2);
  std::uniform_int_distribution<int64_t> pick(d.count() / 2, d.count());
  return std::chrono::milliseconds(pick(rng_));
}

Reflector::Reflector(const KubeClient& client, std::string collection, ReflectorSink& sink,
                     std::function<void(const std::string&)> log)
    : client_(client),
      collection_(std::move(collection)),
      sink_(sink),
      log_(std::move(log)),
      backoff_(std::chrono::milliseconds(250), std::chrono::seconds(30), std::random_device{}()),
      rng_(std::random_device{}()) {}

void Reflector::problem(const std::string& what) {
  if (what != last_problem_) log_(collection_ + ": " + what);
  last_problem_ = what;
}

bool Reflector::pause(std::chrono::milliseconds d, const std::atomic<bool>& stop) {
  const auto until = Clock::now() + d;
  while (!stop.load() && Clock::now() < until) {
    std::this_thread::sleep_for(std::min<Clock::duration>(std::chrono::milliseconds(50), until - Clock::now()));
  }
  return !stop.load();
}

Reflector::Outcome Reflector::list(const std::atomic<bool>& stop) {
  std::vector<json> items;
  std::string cont;
  std::string rv;
  do {
    std::string path = collection_ + "?limit=" + std::to_string(page_size_);
    if (!cont.empty()) path += "&continue=" + KubeClient::escape(cont);
    const HttpResponse r = client_.request("GET", path, {}, {}, 60000);
    if (stop.load()) return Outcome::kError;
    if (r.status == 410) {
      // The continue token outlived the server's history: a consistent
      // list must start over.
      counters_.relists_gone.fetch_add(1);
      problem("list: " + r.describe() + " (listing again)");
      return Outcome::kGone;
    }
    if (!r.ok()) {
      counters_.errors.fetch_add(1);
      problem("list: " + r.describe());
      return Outcome::kError;
    }
    json page = json::parse(r.body, nullptr, false);
    if (!page.is_object() || !page.contains("items") || !(page["items"].is_array() || page["items"].is_null())) {
      counters_.errors.fetch_add(1);
      problem("list: the answer is not a List");
      return Outcome::kError;
    }
    // A List's items carry no kind; the List's does ("NodeList").
    std::string kind = page.value("kind", "");
    if (kind.size() > 4 && kind.compare(kind.size() - 4, 4, "List") == 0) kind.resize(kind.size() - 4);
    if (page["items"].is_array()) {
      for (json& item : page["items"]) {
        if (!item.is_object()) continue;
        if (!item.contains("kind") && !kind.empty()) item["kind"] = kind;
        items.push_back(std::move(item));
      }
    }
    rv = resource_version_of(page);
    const json& meta = page["metadata"];
    cont = meta.is_object() && meta.contains("continue") && meta["continue"].is_string()
               ? meta["continue"].get<std::string>()
               : std::string();
  } while (!cont.empty());
  if (rv.empty()) {
    counters_.errors.fetch_add(1);
    problem("list: the List has no metadata.resourceVersion");
    return Outcome::kError;
  }
  sink_.replace(std::move(items));
  resource_version_ = rv;
  counters_.lists.fetch_add(1);
  return Outcome::kProgress;
}

Reflector::Outcome Reflector::watch(const std::atomic<bool>& stop) {
  // Servers end a watch after timeoutSeconds; spread over 5-10 minutes so
  // that a cluster's controllers do not all come back at the same moment.
  const unsigned timeout_s = 300 + static_cast<unsigned>(rng_() % 300);
  const std::string path = collection_ + "?watch=1&allowWatchBookmarks=true&resourceVersion=" +
                           KubeClient::escape(resource_version_) + "&timeoutSeconds=" + std::to_string(timeout_s);
  counters_.watches.fetch_add(1);
  bool gone = false;
  bool received = false;
  std::string bad;  // why the stream was given up
  auto on_line = [&](std::string_view line) {
    json ev = json::parse(line, nullptr, false);
    if (!ev.is_object() || !ev.contains("type") || !ev["type"].is_string() || !ev.contains("object") ||
        !ev["object"].is_object()) {
      bad = "not a watch event: " + std::string(line.substr(0, 80));
      return false;
    }
    const std::string type = ev["type"].get<std::string>();
    json& object = ev["object"];
    if (type == "ERROR") {
      if (object.value("code", 0) == 410) {
        gone = true;
      } else {
        bad = "ERROR event: " + object.value("message", object.dump());
      }
      return false;
    }
    const std::string rv = resource_version_of(object);
    if (type == "ADDED" || type == "MODIFIED") {
      sink_.upsert(std::move(object));
      counters_.events.fetch_add(1);
    } else if (type == "DELETED") {
      sink_.remove(object);
      counters_.events.fetch_add(1);
    } else if (type == "BOOKMARK") {
      counters_.bookmarks.fetch_add(1);
    } else {
      bad = "unknown watch event type '" + type + "'";
      return false;
    }
    if (!rv.empty()) resource_version_ = rv;
    received = true;
    return true;
  };
  const auto started = Clock::now();
  const HttpResponse r = client_.stream(path, on_line, stop, (timeout_s + 30) * 1000L);
  if (stop.load()) return Outcome::kError;
  if (gone || r.status == 410) {
    counters_.relists_gone.fetch_add(1);
    problem("watch from resourceVersion " + resource_version_ + ": 410 Gone (listing again)");
    resource_version_.clear();
    return Outcome::kGone;
  }
  if (!bad.empty() || r.status != 200) {
    counters_.errors.fetch_add(1);
    problem("watch: " + (bad.empty() ? r.describe() : bad));
    return received ? Outcome::kProgress : Outcome::kError;
  }
  // A clean end: the server's timeout, or a restart. Watch again from the
  // last resourceVersion, at once if the stream was worth having.
  return received || Clock::now() - started > std::chrono::seconds(1) ? Outcome::kProgress : Outcome::kNothing;
}

void Reflector::run(const std::atomic<bool>& stop) {
  unsigned gone_in_a_row = 0;
  while (!stop.load()) {
    const bool listing = resource_version_.empty();
    const Outcome o = listing ? list(stop) : watch(stop);
    if (stop.load()) break;
    switch (o) {
      case Outcome::kProgress:
        backoff_.reset();
        gone_in_a_row = 0;
        if (!last_problem_.empty()) {
          log_(collection_ + ": " + (listing ? "listed" : "watching") + " again from resourceVersion " +
               resource_version_);
          last_problem_.clear();
        }
        break;
      case Outcome::kGone:
        // The first 410 is normal (history compacted): list at once. More
        // in a row mean something is wrong: wait between them.
        if (++gone_in_a_row > 1) pause(backoff_.next(), stop);
        break;
      case Outcome::kNothing:
      case Outcome::kError:
        pause(backoff_.next(), stop);
        break;
    }
  }
}

}  // namespace meshwire::control
