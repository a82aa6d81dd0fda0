#include "gen/generator_config.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <map>

#include <rte_ethdev.h>

#include "config/sa.h"
#include "port/port.h"

namespace meshwire::perf {
namespace {

using dp::make_error;
using dp::Result;
using nlohmann::json;

dp::Error field_error(const std::string& field, const std::string& what) { return make_error(field + ": " + what); }

Result<std::string> get_string(const json& obj, const std::string& key, const std::string& field) {
  if (!obj.contains(key)) return field_error(field + "." + key, "is required");
  if (!obj[key].is_string()) return field_error(field + "." + key, "must be a string");
  return obj[key].get<std::string>();
}

Result<uint64_t> get_uint(const json& obj, const std::string& key, const std::string& field, uint64_t dflt,
                          uint64_t min, uint64_t max) {
  if (!obj.contains(key)) return dflt;
  const json& v = obj[key];
  if (!v.is_number_unsigned() && !(v.is_number_integer() && v.get<int64_t>() >= 0)) {
    return field_error(field + "." + key, "must be a non-negative integer");
  }
  const uint64_t u = v.get<uint64_t>();
  if (u < min || u > max) {
    return field_error(field + "." + key, "must be in " + std::to_string(min) + ".." + std::to_string(max) +
                                              ", got " + std::to_string(u));
  }
  return u;
}

Result<dp::IpAddress> get_ip(const json& obj, const std::string& key, const std::string& field) {
  auto s = get_string(obj, key, field);
  if (!s) return make_error(s.error());
  auto ip = dp::parse_ip_address(*s);
  if (!ip) return field_error(field + "." + key, "'" + *s + "' is not an IPv4 or IPv6 address");
  return *ip;
}

dp::Status get_mac(const json& obj, const std::string& key, const std::string& field, uint8_t out[6]) {
  auto s = get_string(obj, key, field);
  if (!s) return make_error(s.error());
  unsigned b[6];
  char tail;
  if (std::sscanf(s->c_str(), "%2x:%2x:%2x:%2x:%2x:%2x%c", &b[0], &b[1], &b[2], &b[3], &b[4], &b[5], &tail) != 6) {
    return field_error(field + "." + key, "'" + *s + "' is not a MAC address like 02:00:00:00:00:01");
  }
  for (int i = 0; i < 6; ++i) out[i] = static_cast<uint8_t>(b[i]);
  return dp::Ok{};
}

Result<GenSaConfig> get_sa(const json& obj, const std::string& field) {
  if (!obj.is_object()) return field_error(field, "must be an object with spi, key, salt");
  GenSaConfig sa;
  auto spi = get_uint(obj, "spi", field, 0, 256, 0xffffffffu);
  if (!spi) return make_error(spi.error());
  if (*spi == 0) return field_error(field + ".spi", "is required");
  sa.spi = static_cast<uint32_t>(*spi);
  auto key_hex = get_string(obj, "key", field);
  if (!key_hex) return make_error(key_hex.error());
  const size_t key_len = key_hex->size() == 64 ? 32 : 16;
  auto key = dp::parse_hex_secret(*key_hex, key_len, "aes-gcm");
  if (!key) return field_error(field + ".key", key.error());
  sa.key = std::move(*key);
  auto salt_hex = get_string(obj, "salt", field);
  if (!salt_hex) return make_error(salt_hex.error());
  auto salt = dp::parse_hex_secret(*salt_hex, 4, "a salt");
  if (!salt) return field_error(field + ".salt", salt.error());
  std::memcpy(sa.salt.data(), salt->data(), 4);
  return sa;
}

// A number of seconds in min..max (a JSON integer or float).
Result<double> get_seconds(const json& obj, const std::string& key, const std::string& field, double dflt, double min,
                           double max) {
  if (!obj.contains(key)) return dflt;
  if (!obj[key].is_number()) return field_error(field + "." + key, "must be a number");
  const double v = obj[key].get<double>();
  if (!(v >= min && v <= max)) {
    char range[64];
    std::snprintf(range, sizeof(range), "%g..%g", min, max);
    return field_error(field + "." + key, std::string("must be in ") + range);
  }
  return v;
}

Result<GenEncryptConfig> get_encrypt(const json& e, const std::string& f) {
  GenEncryptConfig c;
  auto sa = get_sa(e, f);
  if (!sa) return make_error(sa.error());
  c.sa = std::move(*sa);
  auto ts = get_ip(e, "tunnel_src", f);
  if (!ts) return make_error(ts.error());
  auto td = get_ip(e, "tunnel_dst", f);
  if (!td) return make_error(td.error());
  if (ts->family != td->family) return field_error(f + ".tunnel_dst", "must be of the family of tunnel_src");
  c.tunnel_src = *ts;
  c.tunnel_dst = *td;
  if (auto s = get_mac(e, "dst_mac", f, c.dst_mac); !s) return make_error(s.error());
  return c;
}

Result<uint16_t> port_index(const std::vector<GenPortConfig>& ports, const json& obj, const std::string& key,
                            const std::string& field) {
  auto name = get_string(obj, key, field);
  if (!name) return make_error(name.error());
  for (size_t i = 0; i < ports.size(); ++i) {
    if (ports[i].name == *name) return static_cast<uint16_t>(i);
  }
  return field_error(field + "." + key, "no port named '" + *name + "'");
}

Result<GenTrafficConfig> parse_traffic(const json& t, const std::string& f, const std::vector<GenPortConfig>& ports) {
  if (!t.is_object()) return field_error(f, "must be an object");
  GenTrafficConfig c;
  auto name = get_string(t, "name", f);
  if (!name) return make_error(name.error());
  c.name = *name;
  auto tx = port_index(ports, t, "tx_port", f);
  if (!tx) return make_error(tx.error());
  auto rx = port_index(ports, t, "rx_port", f);
  if (!rx) return make_error(rx.error());
  c.tx_port = *tx;
  c.rx_port = *rx;
  if (auto s = get_mac(t, "dst_mac", f, c.flows.dst_mac); !s) return make_error(s.error());
  auto l4 = t.contains("l4") ? get_string(t, "l4", f) : Result<std::string>(std::string("udp"));
  if (!l4) return make_error(l4.error());
  if (*l4 != "udp" && *l4 != "tcp") return field_error(f + ".l4", "must be udp or tcp, got '" + *l4 + "'");
  c.flows.l4 = *l4 == "udp" ? L4Proto::kUdp : L4Proto::kTcp;
  auto src = get_ip(t, "src", f);
  if (!src) return make_error(src.error());
  auto dst = get_ip(t, "dst", f);
  if (!dst) return make_error(dst.error());
  if (src->family != dst->family) return field_error(f + ".dst", "must be of the same family as src");
  c.flows.src = *src;
  c.flows.dst = *dst;
  auto src_count = get_uint(t, "src_count", f, 1, 1, 65536);
  if (!src_count) return make_error(src_count.error());
  auto dst_count = get_uint(t, "dst_count", f, 1, 1, 65536);
  if (!dst_count) return make_error(dst_count.error());
  auto flows = get_uint(t, "flows", f, 1, 1, 65536);
  if (!flows) return make_error(flows.error());
  c.flows.src_count = static_cast<uint32_t>(*src_count);
  c.flows.dst_count = static_cast<uint32_t>(*dst_count);
  c.flows.flows = static_cast<uint32_t>(*flows);
  auto dst_port = get_uint(t, "dst_port", f, 5001, 1, 65535);
  if (!dst_port) return make_error(dst_port.error());
  auto dst_port_count = get_uint(t, "dst_port_count", f, 7, 1, 65535);
  if (!dst_port_count) return make_error(dst_port_count.error());
  if (*dst_port + *dst_port_count - 1 > 65535) {
    return field_error(f + ".dst_port_count", "runs past port 65535 from dst_port " + std::to_string(*dst_port));
  }
  c.flows.dport = static_cast<uint16_t>(*dst_port);
  c.flows.dport_count = static_cast<uint16_t>(*dst_port_count);

  if (t.contains("encrypt")) {
    auto e = get_encrypt(t["encrypt"], f + ".encrypt");
    if (!e) return make_error(e.error());
    c.encrypt = std::move(e->sa);
    c.tunnel_src = e->tunnel_src;
    c.tunnel_dst = e->tunnel_dst;
    std::memcpy(c.encrypt_dst_mac, e->dst_mac, 6);
  }
  if (t.contains("sink")) {
    const json& s = t["sink"];
    const std::string sf = f + ".sink";
    if (!s.is_object() || !s.contains("sas") || !s["sas"].is_array() || s["sas"].empty()) {
      return field_error(sf + ".sas", "must be a non-empty list of SAs");
    }
    for (size_t i = 0; i < s["sas"].size(); ++i) {
      const std::string saf = sf + ".sas[" + std::to_string(i) + "]";
      auto sa = get_sa(s["sas"][i], saf);
      if (!sa) return make_error(sa.error());
      GenSinkSaConfig sink;
      static_cast<GenSaConfig&>(sink) = std::move(*sa);
      if (s["sas"][i].contains("label")) {
        auto label = get_string(s["sas"][i], "label", saf);
        if (!label) return make_error(label.error());
        if (label->empty() || label->size() > 64) return field_error(saf + ".label", "must be 1..64 characters");
        sink.label = *label;
      }
      auto until = get_seconds(s["sas"][i], "until_s", saf, -1, 0, 600);
      if (!until) return make_error(until.error());
      sink.until_s = *until;
      for (const auto& other : c.sink_sas) {
        if (other.spi == sink.spi) return field_error(saf + ".spi", "is used twice");
      }
      c.sink_sas.push_back(std::move(sink));
    }
    c.sink_udp = s.value("udp", true);
    c.sink_esn = s.value("esn", true);
    auto every = get_uint(s, "sample_every", sf, 16, 1, 1u << 20);
    if (!every) return make_error(every.error());
    c.sample_every = static_cast<uint32_t>(*every);
  }
  if (t.contains("background")) {
    if (!t["background"].is_array()) return field_error(f + ".background", "must be a list");
    for (size_t i = 0; i < t["background"].size(); ++i) {
      const json& b = t["background"][i];
      const std::string bf = f + ".background[" + std::to_string(i) + "]";
      if (!b.is_object()) return field_error(bf, "must be an object");
      GenBackgroundConfig bc;
      auto name = get_string(b, "name", bf);
      if (!name) return make_error(name.error());
      bc.name = *name;
      auto port = port_index(ports, b, "tx_port", bf);
      if (!port) return make_error(port.error());
      bc.tx_port = *port;
      if (!b.contains("rate_pps")) return field_error(bf + ".rate_pps", "is required");
      auto rate = get_seconds(b, "rate_pps", bf, 0, 1, 1e6);
      if (!rate) return make_error(rate.error());
      bc.rate_pps = *rate;
      auto until = get_seconds(b, "until_s", bf, -1, 0, 600);
      if (!until) return make_error(until.error());
      bc.until_s = *until;
      if (!b.contains("encrypt")) return field_error(bf + ".encrypt", "is required");
      auto e = get_encrypt(b["encrypt"], bf + ".encrypt");
      if (!e) return make_error(e.error());
      bc.encrypt = std::move(*e);
      for (const auto& other : c.background) {
        if (other.name == bc.name) return field_error(bf + ".name", "'" + bc.name + "' is used twice");
      }
      c.background.push_back(std::move(bc));
    }
  }
  return c;
}

}  // namespace

Result<GeneratorConfig> parse_generator_config(const json& doc) {
  if (!doc.is_object()) return make_error("config: must be a JSON object");
  GeneratorConfig c;
  if (doc.contains("eal")) {
    if (!doc["eal"].is_array()) return field_error("eal", "must be a list of strings");
    for (const json& a : doc["eal"]) {
      if (!a.is_string()) return field_error("eal", "must be a list of strings");
      c.eal.push_back(a.get<std::string>());
    }
  }
  if (!doc.contains("ports") || !doc["ports"].is_array() || doc["ports"].empty()) {
    return field_error("ports", "must be a non-empty list");
  }
  for (size_t i = 0; i < doc["ports"].size(); ++i) {
    const json& p = doc["ports"][i];
    const std::string f = "ports[" + std::to_string(i) + "]";
    if (!p.is_object()) return field_error(f, "must be an object");
    GenPortConfig pc;
    auto name = get_string(p, "name", f);
    if (!name) return make_error(name.error());
    auto dev = get_string(p, "device", f);
    if (!dev) return make_error(dev.error());
    auto queues = get_uint(p, "queues", f, 1, 1, 64);
    if (!queues) return make_error(queues.error());
    auto mtu = get_uint(p, "mtu", f, 1500, 1280, 9000);
    if (!mtu) return make_error(mtu.error());
    for (const auto& other : c.ports) {
      if (other.name == *name) return field_error(f + ".name", "'" + *name + "' is used twice");
    }
    pc.name = *name;
    pc.device = *dev;
    pc.queues = static_cast<uint16_t>(*queues);
    pc.mtu = static_cast<uint16_t>(*mtu);
    c.ports.push_back(std::move(pc));
  }
  if (doc.contains("traffic")) {
    if (!doc["traffic"].is_array()) return field_error("traffic", "must be a list");
    for (size_t i = 0; i < doc["traffic"].size(); ++i) {
      auto t = parse_traffic(doc["traffic"][i], "traffic[" + std::to_string(i) + "]", c.ports);
      if (!t) return make_error(t.error());
      for (const auto& other : c.traffic) {
        if (other.name == t->name) {
          return field_error("traffic[" + std::to_string(i) + "].name", "'" + t->name + "' is used twice");
        }
      }
      c.traffic.push_back(std::move(*t));
    }
  }
  return c;
}

Result<std::unique_ptr<Generator>> build_generator(const GeneratorConfig& config, rte_mempool* pool) {
  std::vector<GenPort> ports;
  for (size_t i = 0; i < config.ports.size(); ++i) {
    const GenPortConfig& pc = config.ports[i];
    dp::PortConfig port;
    port.name = pc.name;
    port.device = pc.device;
    port.role = dp::PortRole::kLocal;  // promiscuous: it plays every pod
    port.mtu = pc.mtu;
    auto rt = dp::setup_port(port, "ports[" + std::to_string(i) + "]", pc.queues, pool);
    if (!rt) return make_error(rt.error());
    GenPort gp;
    gp.name = pc.name;
    if (pc.device.rfind("net_memif", 0) == 0 && pc.device.find("role=server") == std::string::npos) {
      const size_t at = pc.device.find(",socket=");
      if (at != std::string::npos) {
        const size_t from = at + 8;
        gp.memif_socket = pc.device.substr(from, pc.device.find(',', from) - from);
      }
    }
    gp.port_id = rt->port_id;
    gp.queues = pc.queues;
    std::memcpy(gp.mac, rt->mac, 6);
    ports.push_back(gp);
  }
  auto engine = dp::esp::GcmEngine::create();
  if (!engine) return make_error(engine.error());
  auto gen = std::make_unique<Generator>(std::move(ports), pool, std::move(*engine));
  // One sender SA per SPI, whatever the traffic: the receiver's anti-replay
  // window would drop a second sequence counter on the same SA as replays.
  std::map<uint32_t, dp::esp::OutboundSa*> senders;

  for (size_t i = 0; i < config.traffic.size(); ++i) {
    const GenTrafficConfig& tc = config.traffic[i];
    const std::string f = "traffic[" + std::to_string(i) + "]";
    Traffic t;
    t.name = tc.name;
    t.tx_port = tc.tx_port;
    t.rx_port = tc.rx_port;
    t.flows = tc.flows;
    for (size_t k = 0; k < tc.background.size(); ++k) {
      const GenBackgroundConfig& bc = tc.background[k];
      const std::string bf = f + ".background[" + std::to_string(k) + "].encrypt";
      Background b;
      b.name = bc.name;
      b.tx_port = bc.tx_port;
      b.rate_pps = bc.rate_pps;
      b.until_s = bc.until_s;
      std::memcpy(b.dst_mac, bc.encrypt.dst_mac, 6);
      auto it = senders.find(bc.encrypt.sa.spi);
      if (it != senders.end()) {
        b.sa = it->second;
        if (b.sa->family != bc.encrypt.tunnel_src.family ||
            std::memcmp(b.sa->outer_src, bc.encrypt.tunnel_src.bytes.data(), 16) != 0) {
          return field_error(bf + ".spi", "is used with another tunnel_src by an earlier traffic");
        }
      } else {
        auto sa = std::make_unique<dp::esp::OutboundSa>();
        sa->spi = bc.encrypt.sa.spi;
        sa->udp_sport = dp::esp::udp_source_port_for_spi(sa->spi);
        sa->family = bc.encrypt.tunnel_src.family;
        std::memcpy(sa->outer_src, bc.encrypt.tunnel_src.bytes.data(), 16);
        std::memcpy(sa->outer_dst, bc.encrypt.tunnel_dst.bytes.data(), 16);
        dp::esp::build_outer_template(sa.get());
        auto s = dp::esp::expand_gcm_key(gen->engine(), bc.encrypt.sa.key.data(), bc.encrypt.sa.key.size(),
                                         bc.encrypt.sa.salt.data(), &sa->key);
        if (!s) return field_error(bf + ".key", s.error());
        b.sa = gen->add_sender(std::move(sa));
        senders[b.sa->spi] = b.sa;
      }
      t.background.push_back(std::move(b));
    }
    std::unique_ptr<dp::esp::OutboundSa> out;
    if (tc.encrypt && senders.count(tc.encrypt->spi) != 0) {
      t.out_sa = senders[tc.encrypt->spi];
      if (t.out_sa->family != tc.tunnel_src.family ||
          std::memcmp(t.out_sa->outer_src, tc.tunnel_src.bytes.data(), 16) != 0) {
        return field_error(f + ".encrypt.spi", "is used with another tunnel_src by an earlier traffic");
      }
      t.encrypt = true;
      std::memcpy(t.out_dst_mac, tc.encrypt_dst_mac, 6);
    } else if (tc.encrypt) {
      out = std::make_unique<dp::esp::OutboundSa>();
      out->spi = tc.encrypt->spi;
      out->udp_sport = dp::esp::udp_source_port_for_spi(tc.encrypt->spi);
      out->family = tc.tunnel_src.family;
      std::memcpy(out->outer_src, tc.tunnel_src.bytes.data(), 16);
      std::memcpy(out->outer_dst, tc.tunnel_dst.bytes.data(), 16);
      dp::esp::build_outer_template(out.get());
      auto s = dp::esp::expand_gcm_key(gen->engine(), tc.encrypt->key.data(), tc.encrypt->key.size(),
                                       tc.encrypt->salt.data(), &out->key);
      if (!s) return field_error(f + ".encrypt.key", s.error());
      t.encrypt = true;
      std::memcpy(t.out_dst_mac, tc.encrypt_dst_mac, 6);
      senders[tc.encrypt->spi] = out.get();
    }
    std::vector<std::unique_ptr<SinkSa>> sinks;
    for (size_t k = 0; k < tc.sink_sas.size(); ++k) {
      auto sa = std::make_unique<SinkSa>();
      sa->spi = tc.sink_sas[k].spi;
      sa->esn = tc.sink_esn;
      sa->until_s = tc.sink_sas[k].until_s;
      if (!tc.sink_sas[k].label.empty()) {
        const auto at = std::find(t.sink_labels.begin(), t.sink_labels.end(), tc.sink_sas[k].label);
        sa->label = static_cast<uint16_t>(at - t.sink_labels.begin());
        if (at == t.sink_labels.end()) t.sink_labels.push_back(tc.sink_sas[k].label);
      }
      auto s = dp::esp::expand_gcm_key(gen->engine(), tc.sink_sas[k].key.data(), tc.sink_sas[k].key.size(),
                                       tc.sink_sas[k].salt.data(), &sa->key);
      if (!s) return field_error(f + ".sink.sas[" + std::to_string(k) + "].key", s.error());
      sinks.push_back(std::move(sa));
    }
    t.sink_udp = tc.sink_udp;
    t.sample_every = tc.sample_every;
    gen->add_traffic(std::move(t), std::move(out), std::move(sinks));
  }
  return gen;
}

Result<TrialRequest> parse_trial_request(const json& cmd, const std::vector<Traffic>& traffic) {
  TrialRequest r;
  auto name = get_string(cmd, "traffic", "trial");
  if (!name) return make_error(name.error());
  bool found = false;
  for (size_t i = 0; i < traffic.size(); ++i) {
    if (traffic[i].name == *name) {
      r.traffic = static_cast<uint16_t>(i);
      found = true;
    }
  }
  if (!found) return field_error("trial.traffic", "no traffic named '" + *name + "'");
  if (cmd.contains("frame_size") && cmd["frame_size"].is_string()) {
    if (cmd["frame_size"] != "imix") return field_error("trial.frame_size", "must be 64..1518 or \"imix\"");
    r.frame_size = 0;
  } else {
    auto fs = get_uint(cmd, "frame_size", "trial", 64, 64, kMaxFrameSize);
    if (!fs) return make_error(fs.error());
    r.frame_size = static_cast<uint16_t>(*fs);
  }
  const auto get_seconds = [&](const char* key, double dflt, double min, double max, double* out) -> dp::Status {
    if (!cmd.contains(key)) {
      *out = dflt;
      return dp::Ok{};
    }
    if (!cmd[key].is_number()) return field_error(std::string("trial.") + key, "must be a number");
    const double v = cmd[key].get<double>();
    if (!(v >= min && v <= max)) {
      return field_error(std::string("trial.") + key, "must be in " + std::to_string(min) + ".." + std::to_string(max));
    }
    *out = v;
    return dp::Ok{};
  };
  if (auto s = get_seconds("rate_pps", 0, 0, 1e9, &r.rate_pps); !s) return make_error(s.error());
  if (auto s = get_seconds("duration_s", 1, 0.001, 600, &r.duration_s); !s) return make_error(s.error());
  if (auto s = get_seconds("drain_s", 0.1, 0, 10, &r.drain_s); !s) return make_error(s.error());
  if (auto s = get_seconds("bin_s", 0.01, 0.0001, 10, &r.bin_s); !s) return make_error(s.error());
  if (auto s = get_seconds("lead_s", 0, 0, 10, &r.lead_s); !s) return make_error(s.error());
  if ((r.duration_s + r.drain_s) / r.bin_s > 1e6) return field_error("trial.bin_s", "gives more than 10^6 bins");
  return r;
}

}  // namespace meshwire::perf
