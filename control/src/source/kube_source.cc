#include "source/kube_source.h"

#include <condition_variable>
#include <map>
#include <mutex>
#include <thread>

#include "kube/client.h"
#include "kube/reflector.h"

namespace meshwire::control {
namespace {

using nlohmann::json;
using dp::make_error;

// The Nodes' copy: each parsed once, when it arrives (a snapshot of 5,000
// nodes is then a copy, not 5,000 parses). An object that does not parse is
// kept with its error: snapshot() names it until it is fixed or deleted.
// `changed` wakes the controller's loop.
class NodeStore final : public ReflectorSink {
 public:
  NodeStore(std::mutex& mu, std::condition_variable& cv, bool& changed) : mu_(mu), cv_(cv), changed_(changed) {}

  void replace(std::vector<json> items) override {
    std::map<std::string, Result<NodeObject>> fresh;
    for (const json& o : items) fresh.insert_or_assign(name_of(o), parse_node(o));
    std::lock_guard lock(mu_);
    nodes_ = std::move(fresh);
    synced_ = true;
    touch();
  }
  void upsert(json object) override {
    std::string name = name_of(object);
    Result<NodeObject> node = parse_node(object);
    std::lock_guard lock(mu_);
    nodes_.insert_or_assign(std::move(name), std::move(node));
    touch();
  }
  void remove(const json& object) override {
    std::lock_guard lock(mu_);
    nodes_.erase(name_of(object));
    touch();
  }
  // With mu_ held.
  bool synced() const { return synced_; }
  const std::map<std::string, Result<NodeObject>>& nodes() const { return nodes_; }

 private:
  static std::string name_of(const json& o) {
    auto m = o.find("metadata");
    return m != o.end() && m->is_object() ? m->value("name", "") : std::string();
  }
  void touch() {
    changed_ = true;
    cv_.notify_all();
  }
  std::mutex& mu_;
  std::condition_variable& cv_;
  bool& changed_;
  std::map<std::string, Result<NodeObject>> nodes_;
  bool synced_ = false;
};

class KubeSource final : public Source {
 public:
  KubeSource(KubeEndpoint endpoint, KubeSourceOptions options)
      : client_(std::move(endpoint)),
        log_(options.log ? options.log : [](const std::string&) {}),
        nodes_(mu_, cv_, changed_),
        node_reflector_(client_, "/api/v1/nodes", nodes_, log_) {
    node_reflector_.set_page_size(options.page_size);
    thread_ = std::thread([this] { node_reflector_.run(stop_); });
  }
  ~KubeSource() override {
    stop_.store(true);
    thread_.join();
  }

  std::string describe() const override { return client_.endpoint().where; }

  Result<ClusterObjects> snapshot() override {
    std::lock_guard lock(mu_);
    if (!nodes_.synced()) return make_error("waiting for the first list of nodes from " + describe());
    ClusterObjects out;
    for (const auto& [name, node] : nodes_.nodes()) {
      if (!node.ok()) return make_error(node.error());
      out.nodes.emplace_hint(out.nodes.end(), name, *node);
    }
    return out;
  }

  Status publish_node_annotations(const std::string& node,
                                  const std::map<std::string, std::string>& annotations) override {
    json patch;
    for (const auto& [k, v] : annotations) patch["metadata"]["annotations"][k] = v;
    const std::string path = "/api/v1/nodes/" + KubeClient::escape(node);
    const HttpResponse r = client_.request("PATCH", path, patch.dump(), "application/merge-patch+json", 10000);
    if (!r.ok()) return make_error("PATCH " + path + ": " + r.describe());
    return dp::Ok{};
  }

  bool wait(int timeout_ms) override {
    std::unique_lock lock(mu_);
    cv_.wait_for(lock, std::chrono::milliseconds(timeout_ms), [this] { return changed_; });
    const bool was = changed_;
    changed_ = false;
    return was;
  }

 private:
  KubeClient client_;
  std::function<void(const std::string&)> log_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool changed_ = false;
  NodeStore nodes_;
  Reflector node_reflector_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace

std::unique_ptr<Source> open_kube_source(KubeEndpoint endpoint, KubeSourceOptions options) {
  return std::make_unique<KubeSource>(std::move(endpoint), std::move(options));
}

}  // namespace meshwire::control
