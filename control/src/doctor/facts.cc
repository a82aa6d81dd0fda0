// The pure parts of gathering: the data plane's EAL arguments, cpulists,
// Node objects and the controller's Prometheus text, read into facts.
#include "doctor/facts.h"

#include <algorithm>
#include <charconv>
#include <sstream>

#include "keys/keys.h"
#include "kube/objects.h"

namespace meshwire::control {

namespace {

std::optional<uint64_t> to_u64(std::string_view text) {
  uint64_t v = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size() || text.empty()) return std::nullopt;
  return v;
}

std::vector<std::string> split(const std::string& text, char sep) {
  std::vector<std::string> out;
  std::string item;
  std::istringstream in(text);
  while (std::getline(in, item, sep)) out.push_back(item);
  return out;
}

// An EAL option's value: "-l 0-1", "-l0-1", "--lcores=0,1", "--lcores 0,1".
// Returns true (and advances i) when args[i] is `name`.
bool option_value(const std::vector<std::string>& args, size_t& i, const std::string& name, std::string& value) {
  const std::string& a = args[i];
  if (a == name) {
    if (i + 1 >= args.size()) return false;
    value = args[++i];
    return true;
  }
  if (name.size() == 2 && a.size() > 2 && a.compare(0, 2, name) == 0) {  // -l0-1
    value = a.substr(2);
    return true;
  }
  if (a.rfind(name + "=", 0) == 0) {
    value = a.substr(name.size() + 1);
    return true;
  }
  return false;
}

// --lcores: "L[@C]" entries, or groups "(L1,L2)@(C1,C2)" which are not read.
// nullopt when the form is not one of the simple ones.
std::optional<std::vector<std::pair<unsigned, unsigned>>> parse_lcores_map(const std::string& text) {
  if (text.find('(') != std::string::npos) return std::nullopt;
  std::vector<std::pair<unsigned, unsigned>> out;
  for (const std::string& entry : split(text, ',')) {
    const size_t at = entry.find('@');
    const auto lcore = to_u64(entry.substr(0, at));
    const auto cpu = at == std::string::npos ? lcore : to_u64(entry.substr(at + 1));
    if (!lcore || !cpu) return std::nullopt;
    out.emplace_back(static_cast<unsigned>(*lcore), static_cast<unsigned>(*cpu));
  }
  if (out.empty()) return std::nullopt;
  return out;
}

}  // namespace

std::optional<std::vector<unsigned>> parse_cpulist(const std::string& text) {
  std::string t = text;
  while (!t.empty() && (t.back() == '\n' || t.back() == ' ')) t.pop_back();
  std::vector<unsigned> out;
  if (t.empty()) return out;
  for (const std::string& part : split(t, ',')) {
    const size_t dash = part.find('-');
    const auto lo = to_u64(part.substr(0, dash));
    const auto hi = dash == std::string::npos ? lo : to_u64(part.substr(dash + 1));
    if (!lo || !hi || *hi < *lo || *hi > 65535) return std::nullopt;
    for (uint64_t c = *lo; c <= *hi; ++c) out.push_back(static_cast<unsigned>(c));
  }
  return out;
}

ConfigFacts config_facts(const dp::Config& config, const std::string& path) {
  ConfigFacts f;
  f.path = path;
  f.workers = config.workers;
  f.busy_poll = config.idle == dp::IdleMode::kBusyPoll;
  f.gateway_v4 = dp::format_ip(config.gateway_v4);
  f.gateway_v6 = dp::format_ip(config.gateway_v6);
  for (const dp::PortConfig& p : config.ports) {
    f.ports.push_back({p.name, p.device, p.role == dp::PortRole::kUplink, p.mtu});
  }
  std::optional<std::vector<std::pair<unsigned, unsigned>>> lcores;  // (lcore, cpu)
  std::optional<unsigned> main_lcore;
  bool named = false;
  const std::vector<std::string>& args = config.eal_args;
  for (size_t i = 0; i < args.size(); ++i) {
    std::string v;
    if (args[i] == "--no-huge") {
      f.no_huge = true;
    } else if (option_value(args, i, "-m", v)) {
      f.memory_mb = to_u64(v).value_or(0);
    } else if (option_value(args, i, "--socket-mem", v)) {
      for (const std::string& m : split(v, ',')) f.socket_mem_mb.push_back(to_u64(m).value_or(0));
    } else if (option_value(args, i, "-l", v)) {
      named = true;
      const auto cpus = parse_cpulist(v);
      if (cpus) {
        lcores.emplace();
        for (unsigned c : *cpus) lcores->emplace_back(c, c);
      } else {
        f.lcores_note = "cannot read -l " + v;
      }
    } else if (option_value(args, i, "--lcores", v)) {
      named = true;
      lcores = parse_lcores_map(v);
      if (!lcores) f.lcores_note = "cannot read --lcores " + v + " (groups are not read)";
    } else if (option_value(args, i, "--main-lcore", v)) {
      if (const auto m = to_u64(v)) main_lcore = static_cast<unsigned>(*m);
    }
  }
  if (!named) {
    f.lcores_note = "the config names no lcores (-l/--lcores): the data plane takes them from its CPU affinity";
  }
  if (lcores && !lcores->empty()) {
    // DPDK: the main lcore is --main-lcore, else the lowest; the data plane's
    // workers are the others (as many as `workers`).
    unsigned main = lcores->front().first;
    for (const auto& lc : *lcores) main = std::min(main, lc.first);
    if (main_lcore) main = *main_lcore;
    std::vector<unsigned> workers;
    for (const auto& [l, c] : *lcores) {
      if (l == main) {
        f.main_cpu = c;
      } else if (workers.size() < config.workers) {
        workers.push_back(c);
      }
    }
    f.worker_cpus = workers;
  }
  return f;
}

std::vector<NodeFact> node_facts(const std::map<std::string, NodeObject>& nodes) {
  std::vector<NodeFact> out;
  for (const auto& [name, n] : nodes) {
    NodeFact f;
    f.name = name;
    for (const IpAddress& ip : n.internal_ips) f.internal_ips.push_back(dp::format_ip(ip));
    if (auto it = n.annotations.find(kTunnelAddressAnnotation); it != n.annotations.end()) {
      f.tunnel_address = it->second;
    }
    if (auto it = n.annotations.find(kPublicKeyAnnotation); it != n.annotations.end()) {
      f.public_key = it->second;
      f.public_key_valid = decode_public_key(it->second).ok();
    }
    if (auto it = n.annotations.find(kKeyEpochAnnotation); it != n.annotations.end()) f.key_epoch = to_u64(it->second);
    out.push_back(std::move(f));
  }
  return out;
}

ControllerMetrics parse_controller_metrics(const std::string& url, const std::string& text) {
  ControllerMetrics m;
  m.url = url;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    const size_t brace = line.find('{');
    const size_t space = line.find(' ');
    if (space == std::string::npos) continue;
    const size_t name_end = brace != std::string::npos && brace < space ? brace : space;
    const std::string name = line.substr(0, name_end);
    std::string labels;
    size_t value_at = space + 1;
    if (name_end == brace) {
      const size_t close = line.find("} ", brace);
      if (close == std::string::npos) continue;
      labels = line.substr(brace + 1, close - brace - 1);
      value_at = close + 2;
    }
    std::string value_text = line.substr(value_at);
    value_text = value_text.substr(0, value_text.find(' '));  // a timestamp may follow
    double value = 0;
    try {
      value = std::stod(value_text);
    } catch (...) {
      continue;
    }
    if (name == "meshwire_dataplane_up") m.dataplane_up = value;
    else if (name == "meshwire_controller_apply_failures_total") m.apply_failures = value;
    else if (name == "meshwire_controller_applies_total") m.applies = value;
    else if (name == "meshwire_controller_applied_generation") m.applied_generation = value;
    else if (name == "meshwire_controller_key_epoch") m.key_epoch = value;
    else if (name == "meshwire_controller_peer_key_epoch") {
      // peer="NAME" (the exposition escapes \ " and newlines; node names have none)
      const size_t at = labels.find("peer=\"");
      if (at == std::string::npos) continue;
      const size_t end = labels.find('"', at + 6);
      if (end == std::string::npos) continue;
      m.peer_key_epoch[labels.substr(at + 6, end - at - 6)] = value;
    }
  }
  return m;
}

}  // namespace meshwire::control
