#include "source/folder.h"

#include "source/source.h"

#include <poll.h>
#include <sys/inotify.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <yaml-cpp/yaml.h>

#include "kube/yaml.h"

namespace meshwire::control {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using dp::make_error;

Result<std::vector<json>> documents_of(const fs::path& file) {
  std::ifstream in(file);
  if (!in) return make_error(std::strerror(errno));
  std::stringstream text;
  text << in.rdbuf();
  std::vector<json> docs;
  if (file.extension() == ".json") {
    try {
      docs.push_back(json::parse(text.str()));
    } catch (const json::exception& e) {
      return make_error(std::string("not JSON: ") + e.what());
    }
    return docs;
  }
  return parse_yaml_documents(text.str());
}

// Merges b (from file_b) into a (from file_a) as described in folder.h.
Status merge_node(NodeObject& a, const std::string& file_a, const NodeObject& b, const std::string& file_b) {
  for (const auto& [k, v] : b.annotations) {
    auto [it, fresh] = a.annotations.emplace(k, v);
    if (!fresh && it->second != v) {
      return make_error("Node " + a.name + ": metadata.annotations." + k + " is set differently in " + file_a +
                        " and " + file_b);
    }
  }
  if (a.internal_ips.empty()) a.internal_ips = b.internal_ips;
  else if (!b.internal_ips.empty() && a.internal_ips != b.internal_ips)
    return make_error("Node " + a.name + ": status.addresses differ between " + file_a + " and " + file_b);
  if (a.pod_cidrs.empty()) a.pod_cidrs = b.pod_cidrs;
  else if (!b.pod_cidrs.empty() && a.pod_cidrs != b.pod_cidrs)
    return make_error("Node " + a.name + ": spec.podCIDRs differ between " + file_a + " and " + file_b);
  return dp::Ok{};
}

bool is_object_file(const fs::directory_entry& e) {
  const std::string name = e.path().filename().string();
  const std::string ext = e.path().extension().string();
  return e.is_regular_file() && !name.empty() && name[0] != '.' && (ext == ".yaml" || ext == ".yml" || ext == ".json");
}

}  // namespace

Result<ClusterObjects> load_folder(const std::string& folder) {
  std::error_code ec;
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(folder, ec)) {
    if (is_object_file(e)) files.push_back(e.path());
  }
  if (ec) return make_error(folder + ": " + ec.message());
  std::sort(files.begin(), files.end());  // a stable order, for stable errors
  ClusterObjects out;
  std::map<std::string, std::string> node_file;  // where each Node was first seen
  std::map<std::string, std::string> seen_in;    // "Service ns/name" -> its file
  for (const fs::path& file : files) {
    const std::string name = file.filename().string();
    auto docs = documents_of(file);
    if (!docs.ok()) return make_error(name + ": " + docs.error());
    for (size_t d = 0; d < docs->size(); ++d) {
      auto objects = objects_of((*docs)[d]);
      if (!objects.ok()) return make_error(name + ": document " + std::to_string(d + 1) + ": " + objects.error());
      for (size_t i = 0; i < objects->size(); ++i) {
        const json& o = (*objects)[i];
        if (o["kind"] == "Service" || o["kind"] == "EndpointSlice") {
          // One object per namespace/name: a second is an error naming both files.
          std::string key;
          if (o["kind"] == "Service") {
            auto parsed = parse_service(o);
            if (!parsed.ok()) return make_error(name + ": " + parsed.error());
            key = parsed->ns + "/" + parsed->name;
            out.services.insert_or_assign(key, std::make_shared<const ServiceObject>(std::move(*parsed)));
          } else {
            auto parsed = parse_endpoint_slice(o);
            if (!parsed.ok()) return make_error(name + ": " + parsed.error());
            key = parsed->ns + "/" + parsed->name;
            out.endpoint_slices.insert_or_assign(key, std::make_shared<const EndpointSliceObject>(std::move(*parsed)));
          }
          const std::string what = o["kind"].get<std::string>() + " " + key;
          if (auto [it, fresh] = seen_in.emplace(what, name); !fresh) {
            return make_error(name + ": " + what + ": also in " + it->second);
          }
          continue;
        }
        if (o["kind"] != "Node") continue;  // other kinds are not read
        auto node = parse_node(o);
        if (!node.ok()) return make_error(name + ": " + node.error());
        auto it = out.nodes.find(node->name);
        if (it == out.nodes.end()) {
          node_file[node->name] = name;
          out.nodes.emplace(node->name, std::move(*node));
        } else if (Status s = merge_node(it->second, node_file[node->name], *node, name); !s.ok()) {
          return make_error(s.error());
        }
      }
    }
  }
  return out;
}

Status publish_node_annotations(const std::string& folder, const std::string& node,
                                const std::map<std::string, std::string>& annotations) {
  YAML::Emitter y;
  y << YAML::BeginMap << YAML::Key << "apiVersion" << YAML::Value << "v1" << YAML::Key << "kind" << YAML::Value
    << "Node" << YAML::Key << "metadata" << YAML::Value << YAML::BeginMap << YAML::Key << "name" << YAML::Value
    << node << YAML::Key << "annotations" << YAML::Value << YAML::BeginMap;
  for (const auto& [k, v] : annotations) y << YAML::Key << k << YAML::Value << YAML::DoubleQuoted << v;
  y << YAML::EndMap << YAML::EndMap << YAML::EndMap;
  const fs::path target = fs::path(folder) / ("meshwire-node-" + node + ".yaml");
  const fs::path tmp = fs::path(folder) / (".meshwire-node-" + node + ".yaml.tmp");
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << "# Written by meshwire-controller on node " << node << ": its annotations, as a PATCH would set them.\n"
        << y.c_str() << "\n";
    if (!out) return make_error(tmp.string() + ": " + std::strerror(errno));
  }
  std::error_code ec;
  fs::rename(tmp, target, ec);
  if (ec) return make_error(target.string() + ": " + ec.message());
  return dp::Ok{};
}

Result<FolderWatch> FolderWatch::open(const std::string& folder) {
  const int fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (fd < 0) return make_error(std::string("inotify: ") + std::strerror(errno));
  if (inotify_add_watch(fd, folder.c_str(), IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE | IN_CREATE) <
      0) {
    const std::string why = std::strerror(errno);
    ::close(fd);
    return make_error(folder + ": " + why);
  }
  return FolderWatch(fd);
}

FolderWatch::FolderWatch(FolderWatch&& other) noexcept : fd_(other.fd_) { other.fd_ = -1; }

FolderWatch::~FolderWatch() {
  if (fd_ >= 0) ::close(fd_);
}

bool FolderWatch::wait(int timeout_ms) {
  pollfd p{fd_, POLLIN, 0};
  if (::poll(&p, 1, timeout_ms) <= 0) return false;
  alignas(inotify_event) char buf[4096];
  while (::read(fd_, buf, sizeof(buf)) > 0) {
  }
  return true;
}

}  // namespace meshwire::control

namespace meshwire::control {
namespace {

class FolderSource final : public Source {
 public:
  FolderSource(std::string folder, FolderWatch watch) : folder_(std::move(folder)), watch_(std::move(watch)) {}
  std::string describe() const override { return "folder " + folder_; }
  Result<ClusterObjects> snapshot() override { return load_folder(folder_); }
  Status publish_node_annotations(const std::string& node,
                                  const std::map<std::string, std::string>& annotations) override {
    return control::publish_node_annotations(folder_, node, annotations);
  }
  // A file changed: it may hold any kind.
  unsigned wait(int timeout_ms) override { return watch_.wait(timeout_ms) ? unsigned{kAllChanged} : 0u; }

 private:
  std::string folder_;
  FolderWatch watch_;
};

}  // namespace

Result<std::unique_ptr<Source>> open_folder_source(const std::string& folder) {
  auto watch = FolderWatch::open(folder);
  if (!watch.ok()) return make_error(watch.error());
  return std::unique_ptr<Source>(std::make_unique<FolderSource>(folder, std::move(*watch)));
}

}  // namespace meshwire::control
