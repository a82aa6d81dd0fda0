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

// One collection's copy, each object parsed once, when it arrives (a
// snapshot of 5,000 nodes is then a copy, not 5,000 parses). An object that
// does not parse is kept with its error: snapshot() names it until it is
// fixed or deleted. `changed` wakes the controller's loop.
template <typename T>
class Store final : public ReflectorSink {
 public:
  using Parse = Result<T> (*)(const json&);
  using Ptr = std::shared_ptr<const T>;
  Store(std::mutex& mu, std::condition_variable& cv, unsigned& changed, unsigned kind, Parse parse, bool namespaced)
      : mu_(mu), cv_(cv), changed_(changed), kind_(kind), parse_(parse), namespaced_(namespaced) {}

  void replace(std::vector<json> items) override {
    std::map<std::string, Result<Ptr>> fresh;
    for (const json& o : items) fresh.insert_or_assign(key_of(o), parsed(o));
    std::lock_guard lock(mu_);
    objects_ = std::move(fresh);
    synced_ = true;
    touch();
  }
  void upsert(json object) override {
    std::string key = key_of(object);
    Result<Ptr> p = parsed(object);
    std::lock_guard lock(mu_);
    objects_.insert_or_assign(std::move(key), std::move(p));
    touch();
  }
  void remove(const json& object) override {
    std::lock_guard lock(mu_);
    objects_.erase(key_of(object));
    touch();
  }
  // With mu_ held: the objects into `out` (copies, or shared pointers), or
  // the first object's error.
  Status copy_into(std::map<std::string, T>& out) const {
    for (const auto& [key, object] : objects_) {
      if (!object.ok()) return dp::make_error(object.error());
      out.emplace_hint(out.end(), key, **object);
    }
    return dp::Ok{};
  }
  Status copy_into(std::map<std::string, Ptr>& out) const {
    for (const auto& [key, object] : objects_) {
      if (!object.ok()) return dp::make_error(object.error());
      out.emplace_hint(out.end(), key, *object);
    }
    return dp::Ok{};
  }
  bool synced() const { return synced_; }

 private:
  Result<Ptr> parsed(const json& o) const {
    Result<T> t = parse_(o);
    if (!t.ok()) return dp::make_error(t.error());
    return Ptr(std::make_shared<const T>(std::move(*t)));
  }
  std::string key_of(const json& o) const {  // "name", or "namespace/name"
    auto m = o.find("metadata");
    if (m == o.end() || !m->is_object()) return {};
    const std::string name = m->value("name", "");
    if (!namespaced_) return name;
    const std::string ns = m->value("namespace", "");
    return (ns.empty() ? "default" : ns) + "/" + name;
  }
  void touch() {
    changed_ |= kind_;
    cv_.notify_all();
  }
  std::mutex& mu_;
  std::condition_variable& cv_;
  unsigned& changed_;
  unsigned kind_;  // its Changed bit
  Parse parse_;
  bool namespaced_;
  std::map<std::string, Result<Ptr>> objects_;
  bool synced_ = false;
};

class KubeSource final : public Source {
 public:
  KubeSource(KubeEndpoint endpoint, KubeSourceOptions options)
      : client_(std::move(endpoint)),
        log_(options.log ? options.log : [](const std::string&) {}),
        nodes_(mu_, cv_, changed_, kNodesChanged, &parse_node, false),
        services_(mu_, cv_, changed_, kServicesChanged, &parse_service, true),
        slices_(mu_, cv_, changed_, kEndpointSlicesChanged, &parse_endpoint_slice, true) {
    reflectors_.push_back(std::make_unique<Reflector>(client_, "/api/v1/nodes", nodes_, log_));
    reflectors_.push_back(std::make_unique<Reflector>(client_, "/api/v1/services", services_, log_));
    reflectors_.push_back(
        std::make_unique<Reflector>(client_, "/apis/discovery.k8s.io/v1/endpointslices", slices_, log_));
    for (auto& r : reflectors_) {
      r->set_page_size(options.page_size);
      threads_.emplace_back([this, reflector = r.get()] { reflector->run(stop_); });
    }
  }
  ~KubeSource() override {
    stop_.store(true);
    for (std::thread& t : threads_) t.join();
  }

  std::string describe() const override { return client_.endpoint().where; }

  std::vector<WatchStats> watch_stats() const override {
    static constexpr const char* kResources[] = {"nodes", "services", "endpointslices"};  // reflectors_' order
    std::vector<WatchStats> out;
    for (size_t i = 0; i < reflectors_.size(); ++i) {
      const ReflectorCounters& c = reflectors_[i]->counters();
      out.push_back({kResources[i], c.lists.load(), c.relists_gone.load(), c.watches.load(), c.events.load(),
                     c.errors.load()});
    }
    return out;
  }

  Result<ClusterObjects> snapshot() override {
    std::lock_guard lock(mu_);
    for (const auto& [synced, what] : {std::pair{nodes_.synced(), "nodes"}, std::pair{services_.synced(), "services"},
                                       std::pair{slices_.synced(), "endpoint slices"}}) {
      if (!synced) return make_error(std::string("waiting for the first list of ") + what);
    }
    ClusterObjects out;
    if (Status s = nodes_.copy_into(out.nodes); !s.ok()) return make_error(s.error());
    if (Status s = services_.copy_into(out.services); !s.ok()) return make_error(s.error());
    if (Status s = slices_.copy_into(out.endpoint_slices); !s.ok()) return make_error(s.error());
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

  unsigned wait(int timeout_ms) override {
    std::unique_lock lock(mu_);
    cv_.wait_for(lock, std::chrono::milliseconds(timeout_ms), [this] { return changed_ != 0; });
    const unsigned was = changed_;
    changed_ = 0;
    return was;
  }

 private:
  KubeClient client_;
  std::function<void(const std::string&)> log_;
  std::mutex mu_;
  std::condition_variable cv_;
  unsigned changed_ = 0;  // Changed bits since the last wait()
  Store<NodeObject> nodes_;
  Store<ServiceObject> services_;
  Store<EndpointSliceObject> slices_;
  std::vector<std::unique_ptr<Reflector>> reflectors_;
  std::atomic<bool> stop_{false};
  std::vector<std::thread> threads_;
};

}  // namespace

std::unique_ptr<Source> open_kube_source(KubeEndpoint endpoint, KubeSourceOptions options) {
  return std::make_unique<KubeSource>(std::move(endpoint), std::move(options));
}

}  // namespace meshwire::control
