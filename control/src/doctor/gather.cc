#include "doctor/gather.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <thread>

#include <curl/curl.h>
#include <grpcpp/grpcpp.h>
#include <nlohmann/json.hpp>

#include "dataplane.grpc.pb.h"

extern char** environ;

namespace meshwire::control {

namespace fs = std::filesystem;

namespace {

std::optional<std::string> read_text(const std::string& path) {
  std::ifstream in(path);
  if (!in) return std::nullopt;
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

uint64_t read_u64(const std::string& path) {
  const auto text = read_text(path);
  if (!text) return 0;
  try {
    return std::stoull(*text);
  } catch (...) {
    return 0;
  }
}

std::string link_name(const std::string& path) {
  std::error_code ec;
  const fs::path target = fs::read_symlink(path, ec);
  return ec ? "" : target.filename().string();
}

bool exists(const std::string& path) {
  std::error_code ec;
  return fs::exists(path, ec);
}

// The pools of one hugepages folder (hugepages-2048kB/...).
void read_pools(const std::string& dir, int numa_node, std::vector<HugepagePool>& out) {
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind("hugepages-", 0) != 0) continue;
    HugepagePool p;
    p.size_kb = std::strtoull(name.c_str() + 10, nullptr, 10);
    p.numa_node = numa_node;
    p.total = read_u64(entry.path().string() + "/nr_hugepages");
    p.free = read_u64(entry.path().string() + "/free_hugepages");
    out.push_back(p);
  }
}

struct Run {
  int status = -1;  // exit status, -1 when it could not run
  std::string out, err;
};

// Runs argv (searched in PATH) and collects its output; no shell.
Run run(const std::vector<std::string>& argv) {
  Run r;
  int out_pipe[2], err_pipe[2];
  if (pipe(out_pipe) != 0) return r;
  if (pipe(err_pipe) != 0) {
    close(out_pipe[0]);
    close(out_pipe[1]);
    return r;
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, out_pipe[1], 1);
  posix_spawn_file_actions_adddup2(&actions, err_pipe[1], 2);
  posix_spawn_file_actions_addclose(&actions, out_pipe[0]);
  posix_spawn_file_actions_addclose(&actions, err_pipe[0]);
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = 0;
  const int rc = posix_spawnp(&pid, args[0], &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  close(out_pipe[1]);
  close(err_pipe[1]);
  auto drain = [](int fd, std::string& into) {
    char buf[4096];
    ssize_t n;
    while ((n = read(fd, buf, sizeof buf)) > 0) into.append(buf, static_cast<size_t>(n));
    close(fd);
  };
  drain(out_pipe[0], r.out);  // ip's answers are small: stderr cannot fill its pipe meanwhile
  drain(err_pipe[0], r.err);
  if (rc != 0) {
    r.err = argv[0] + ": " + std::strerror(rc);
    return r;
  }
  int status = 0;
  if (waitpid(pid, &status, 0) == pid && WIFEXITED(status)) r.status = WEXITSTATUS(status);
  while (!r.err.empty() && r.err.back() == '\n') r.err.pop_back();
  return r;
}

// `ip` in a network namespace: a name (ip -n) or a path (nsenter --net=).
std::vector<std::string> ip_in(const std::string& netns) {
  if (netns.empty()) return {"ip"};
  if (netns[0] == '/') return {"nsenter", "--net=" + netns, "ip"};
  return {"ip", "-n", netns};
}

// `ip -j route get DST`: the device and gateway, or the error.
RouteFact route_get(const std::string& netns, RouteFact r) {
  std::vector<std::string> argv = ip_in(netns);
  for (const char* a : {"-j", "route", "get"}) argv.push_back(a);
  argv.push_back(r.dst);
  const Run out = run(argv);
  if (out.status != 0) {
    r.error = out.err.empty() ? "ip route get failed" : out.err;
    return r;
  }
  try {
    const auto j = nlohmann::json::parse(out.out);
    if (j.is_array() && !j.empty()) {
      r.dev = j[0].value("dev", "");
      r.gateway = j[0].value("gateway", "");
      if (j[0].value("type", "") == "unreachable" || j[0].value("type", "") == "blackhole") {
        r.error = j[0].value("type", "");
        r.dev.clear();
      }
    }
  } catch (const std::exception& e) {
    r.error = std::string("cannot read ip's JSON: ") + e.what();
  }
  return r;
}

size_t collect(char* data, size_t size, size_t n, void* into) {
  static_cast<std::string*>(into)->append(data, size * n);
  return size * n;
}

ControllerMetrics read_controller_metrics(const std::string& url, double timeout_s) {
  ControllerMetrics m;
  CURL* curl = curl_easy_init();
  if (curl == nullptr) {
    m.url = url;
    m.error = "libcurl did not initialise";
    return m;
  }
  std::string body;
  char error[CURL_ERROR_SIZE] = {};
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, collect);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &body);
  curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, error);
  curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, static_cast<long>(timeout_s * 1000));
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  const CURLcode rc = curl_easy_perform(curl);
  long code = 0;
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &code);
  curl_easy_cleanup(curl);
  if (rc != CURLE_OK) {
    m.url = url;
    m.error = error[0] ? error : curl_easy_strerror(rc);
    return m;
  }
  if (code != 200) {
    m.url = url;
    m.error = "HTTP status " + std::to_string(code);
    return m;
  }
  return parse_controller_metrics(url, body);
}

std::optional<DataplaneFacts> read_dataplane(const DoctorInputs& in, std::string& error) {
  struct stat st {};
  if (stat(in.socket.c_str(), &st) != 0) {
    error = in.socket + ": " + std::strerror(errno);
    return std::nullopt;
  }
  if (!S_ISSOCK(st.st_mode)) {
    error = in.socket + ": not a Unix domain socket";
    return std::nullopt;
  }
  auto stub = v1::Dataplane::NewStub(grpc::CreateChannel("unix:" + in.socket, grpc::InsecureChannelCredentials()));
  DataplaneFacts f;
  auto call = [&](auto method, const auto& req, auto* resp) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() +
                     std::chrono::milliseconds(static_cast<long>(in.timeout_s * 1000)));
    const grpc::Status s = ((*stub).*method)(&ctx, req, resp);
    if (!s.ok() && error.empty()) error = in.socket + ": " + s.error_message();
    return s.ok();
  };
  using S = v1::Dataplane::Stub;
  const bool ok = call(&S::GetGeneration, v1::GetGenerationRequest{}, &f.generation) &&
                  call(&S::ListInterfaces, v1::ListInterfacesRequest{}, &f.interfaces) &&
                  call(&S::ListPeers, v1::ListPeersRequest{}, &f.peers) &&
                  call(&S::ListSas, v1::ListSasRequest{}, &f.sas) &&
                  call(&S::ListRoutes, v1::ListRoutesRequest{}, &f.routes);
  if (!ok) return std::nullopt;
  return f;
}

std::optional<std::vector<NodeFact>> read_nodes(const DoctorInputs& in, std::string& error) {
  auto source = open_source(in.source);
  if (!source.ok()) {
    error = source.error();
    return std::nullopt;
  }
  // The API server's first list comes on another thread: wait for it.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(static_cast<long>(in.timeout_s * 1000));
  while (true) {
    auto snap = (*source)->snapshot();
    if (snap.ok()) return node_facts(snap->nodes);
    if (in.source.source.rfind("dir:", 0) == 0 || std::chrono::steady_clock::now() > deadline) {
      error = (*source)->describe() + ": " + snap.error();
      return std::nullopt;
    }
    (*source)->wait(200);
  }
}

}  // namespace

HugepageFacts read_hugepages(const std::string& sysroot) {
  HugepageFacts h;
  read_pools(sysroot + "/sys/kernel/mm/hugepages", -1, h.pools);
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(sysroot + "/sys/devices/system/node", ec)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind("node", 0) != 0 || name.size() == 4 || !std::isdigit(static_cast<unsigned char>(name[4]))) continue;
    read_pools(entry.path().string() + "/hugepages", std::atoi(name.c_str() + 4), h.pools);
  }
  const auto mounts = read_text(sysroot + "/proc/mounts");
  h.hugetlbfs_mounted = mounts && mounts->find(" hugetlbfs ") != std::string::npos;
  return h;
}

CpuFacts read_cpus(const std::string& sysroot) {
  CpuFacts c;
  const std::string dir = sysroot + "/sys/devices/system/cpu/";
  if (auto text = read_text(dir + "isolated")) c.isolated = parse_cpulist(*text).value_or(std::vector<unsigned>{});
  if (auto text = read_text(dir + "nohz_full")) c.nohz_full = parse_cpulist(*text).value_or(std::vector<unsigned>{});
  return c;
}

std::vector<DeviceFact> read_devices(const std::string& sysroot, const ConfigFacts& config) {
  static const std::regex kPci("^([0-9a-fA-F]{4}:)?[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\\.[0-7]$");
  std::vector<DeviceFact> out;
  for (const ConfigFacts::Port& p : config.ports) {
    DeviceFact d;
    d.port = p.name;
    d.device = p.device;
    d.pci = std::regex_match(p.device, kPci);
    if (d.pci) {
      const std::string addr = p.device.size() == 7 ? "0000:" + p.device : p.device;
      const std::string dir = sysroot + "/sys/bus/pci/devices/" + addr;
      d.device = addr;
      d.present = exists(dir);
      d.driver = link_name(dir + "/driver");
      d.iommu_group = exists(dir + "/iommu_group");
      d.physfn = link_name(dir + "/physfn");
    } else {
      const size_t at = p.device.find(",iface=");
      if (at != std::string::npos) {
        d.iface = p.device.substr(at + 7, p.device.find(',', at + 7) - (at + 7));
        d.iface_present = exists(sysroot + "/sys/class/net/" + d.iface);
      }
    }
    out.push_back(std::move(d));
  }
  return out;
}

std::vector<RouteFact> remote_pod_addresses(const v1::ListPeersResponse& peers) {
  std::vector<RouteFact> out;
  for (const auto& peer : peers.peers()) {
    for (const std::string& cidr : peer.pod_cidrs()) {
      auto prefix = dp::parse_ip_prefix(cidr);
      if (!prefix.ok()) continue;
      dp::IpAddress a = prefix->address;
      const size_t last = a.is_v4() ? 3 : 15;
      if (prefix->length < (a.is_v4() ? 32 : 128)) a.bytes[last] = static_cast<uint8_t>(a.bytes[last] + 1);
      RouteFact r;
      r.peer = peer.name();
      r.cidr = cidr;
      r.dst = dp::format_ip(a);
      out.push_back(std::move(r));
    }
  }
  return out;
}

Facts gather_facts(const DoctorInputs& in) {
  Facts f;
  f.now_ms = static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
          .count());
  f.self_node = in.node;
  f.dataplane = read_dataplane(in, f.dataplane_error);
  if (!in.config.empty()) {
    // Read as the data plane reads it: ${VAR} and sriov: from this
    // process's environment (run doctor in the data plane's container).
    auto config = dp::load_config(in.config, dp::LoadOptions{dp::process_environment(), in.pod_annotations});
    if (config.ok()) {
      f.config = config_facts(*config, in.config);
      dp::wipe_keys(config->peers);
      f.devices = read_devices(in.sysroot, *f.config);
    } else {
      f.config_error = in.config + ": " + config.error();
    }
  }
  f.hugepages = read_hugepages(in.sysroot);
  f.cpus = read_cpus(in.sysroot);
  if (!in.source.source.empty()) f.nodes = read_nodes(in, f.nodes_error);
  if (!in.controller.empty()) f.controller = read_controller_metrics(in.controller, in.timeout_s);
  const std::vector<RouteFact> remote =
      f.dataplane ? remote_pod_addresses(f.dataplane->peers) : std::vector<RouteFact>{};
  for (const std::string& netns : in.pod_netns) {
    PodNetnsFact pod;
    pod.netns = netns;
    RouteFact gw;
    gw.dst = f.config ? f.config->gateway_v4 : "169.254.1.1";
    gw = route_get(netns, gw);
    if (!gw.error.empty() && gw.error.rfind("RTNETLINK", 0) != 0) {  // not a missing route: no such netns...
      pod.error = gw.error;
    } else if (gw.error.empty()) {
      pod.dataplane_dev = gw.dev;
      std::vector<std::string> argv = ip_in(netns);
      for (const char* a : {"-j", "link", "show", "dev"}) argv.push_back(a);
      argv.push_back(gw.dev);
      const Run link = run(argv);
      try {
        if (link.status == 0) pod.dataplane_dev_mtu = nlohmann::json::parse(link.out).at(0).value("mtu", 0u);
      } catch (const std::exception&) {
      }
      for (const RouteFact& r : remote) pod.routes.push_back(route_get(netns, r));
    }
    f.pods.push_back(std::move(pod));
  }
  // The host's routes, when the config says which kernel interfaces face
  // the fabric (an af_packet uplink's iface, a kernel-bound uplink PCI
  // device's netdevs).
  if (f.config && f.dataplane) {
    HostRouteFacts host;
    for (size_t i = 0; i < f.config->ports.size() && i < f.devices.size(); ++i) {
      if (!f.config->ports[i].uplink) continue;
      const DeviceFact& d = f.devices[i];
      if (!d.iface.empty()) host.fabric_ifaces.push_back(d.iface);
      std::error_code ec;
      if (d.pci) {
        for (const auto& e : fs::directory_iterator(in.sysroot + "/sys/bus/pci/devices/" + d.device + "/net", ec)) {
          host.fabric_ifaces.push_back(e.path().filename().string());
        }
      }
    }
    if (!host.fabric_ifaces.empty()) {
      for (const RouteFact& r : remote) host.routes.push_back(route_get("", r));
      f.host_routes = std::move(host);
    }
  }
  return f;
}

}  // namespace meshwire::control
