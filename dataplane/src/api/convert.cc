#include "api/convert.h"

#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>

namespace meshwire::dp::api {
namespace {

std::string at(const std::string& path, int i) { return path + "[" + std::to_string(i) + "]"; }

// Paths for errors are built only for the error (at thousands of peers,
// building one per field cost more than the conversion). `path()` gives it.
template <typename PathFn>
Result<std::vector<IpPrefix>> prefixes(const google::protobuf::RepeatedPtrField<std::string>& in, PathFn path) {
  std::vector<IpPrefix> out;
  out.reserve(static_cast<size_t>(in.size()));
  for (int i = 0; i < in.size(); ++i) {
    auto p = parse_ip_prefix(in[i]);
    if (!p.ok()) return make_error(at(path(), i) + ": " + p.error());
    out.push_back(*p);
  }
  return out;
}

template <typename PathFn>
Result<SaConfig> sa_from(const v1::Sa& in, PathFn path_of) {
  SaConfig sa;
  sa.spi = in.spi();
  switch (in.algorithm()) {
    case v1::AES_128_GCM: sa.algorithm = AeadAlgorithm::kAes128Gcm; break;
    case v1::AES_256_GCM: sa.algorithm = AeadAlgorithm::kAes256Gcm; break;
    default: return make_error(path_of() + ".algorithm: must be AES_128_GCM or AES_256_GCM");
  }
  const size_t want = sa.algorithm == AeadAlgorithm::kAes256Gcm ? 32 : 16;
  if (in.key().size() != want) {
    return make_error(path_of() + ".key: must be " + std::to_string(want) + " bytes for " +
                      (want == 32 ? "AES_256_GCM" : "AES_128_GCM") + ", got " + std::to_string(in.key().size()));
  }
  if (in.salt().size() != sa.salt.size()) {
    return make_error(path_of() + ".salt: must be 4 bytes, got " + std::to_string(in.salt().size()));
  }
  sa.key.assign(in.key().begin(), in.key().end());
  std::memcpy(sa.salt.data(), in.salt().data(), sa.salt.size());  // size checked above
  return sa;
}

}  // namespace

namespace {

// One peer; `path()` names it ("peers[3]").
template <typename PathFn>
Result<PeerConfig> peer_from_proto(const v1::Peer& in, PathFn path) {
  PeerConfig peer;
  peer.name = in.name();
  auto address = parse_ip_address(in.tunnel_address());
  if (!address) return make_error(path() + ".tunnel_address: not an IP address: '" + in.tunnel_address() + "'");
  peer.tunnel_address = *address;
  auto pods = prefixes(in.pod_cidrs(), [&] { return path() + ".pod_cidrs"; });
  if (!pods.ok()) return make_error(pods.error());
  peer.pod_cidrs = std::move(*pods);
  peer.outbound.reserve(static_cast<size_t>(in.outbound_size()));
  for (int i = 0; i < in.outbound_size(); ++i) {
    auto sa = sa_from(in.outbound(i), [&] { return at(path() + ".outbound", i); });
    if (!sa.ok()) return make_error(sa.error());
    peer.outbound.push_back(std::move(*sa));
  }
  peer.inbound.reserve(static_cast<size_t>(in.inbound_size()));
  for (int i = 0; i < in.inbound_size(); ++i) {
    auto sa = sa_from(in.inbound(i), [&] { return at(path() + ".inbound", i); });
    if (!sa.ok()) return make_error(sa.error());
    peer.inbound.push_back(std::move(*sa));
  }
  return peer;
}

}  // namespace

Result<RoutingState> routing_from_proto(const v1::State& state) {
  RoutingState out;
  auto local = prefixes(state.pod_cidrs(), [] { return std::string("pod_cidrs"); });
  if (!local.ok()) return make_error(local.error());
  out.pod_cidrs = std::move(*local);
  out.peers.reserve(static_cast<size_t>(state.peers_size()));
  for (int p = 0; p < state.peers_size(); ++p) {
    auto peer = peer_from_proto(state.peers(p), [p] { return at("peers", p); });
    if (!peer.ok()) return make_error(peer.error());
    out.peers.push_back(std::move(*peer));
  }
  return out;
}

Result<RoutingState> apply_delta(RoutingState live, const v1::StateDelta& delta) {
  // Whatever way this returns, the key bytes left in `live` (removed or
  // replaced peers, or all of them on an error) are wiped; the peers moved
  // into the result are empty here.
  std::vector<PeerConfig> added;  // new peers, in the delta's order
  struct WipeOnExit {
    std::vector<PeerConfig>& live;
    std::vector<PeerConfig>& added;
    ~WipeOnExit() {
      wipe_keys(live);
      wipe_keys(added);
    }
  } wipe_on_exit{live.peers, added};
  std::unordered_map<std::string_view, size_t> index;
  index.reserve(live.peers.size());
  for (size_t p = 0; p < live.peers.size(); ++p) index.emplace(live.peers[p].name, p);
  std::vector<bool> removed(live.peers.size(), false);
  for (int i = 0; i < delta.remove_peers_size(); ++i) {
    auto it = index.find(delta.remove_peers(i));
    if (it == index.end()) {
      return make_error(at("remove_peers", i) + ": no peer named '" + delta.remove_peers(i) + "' is live");
    }
    removed[it->second] = true;
  }
  std::unordered_map<std::string, int> upserted;
  for (int i = 0; i < delta.upsert_peers_size(); ++i) {
    auto peer = peer_from_proto(delta.upsert_peers(i), [i] { return at("upsert_peers", i); });
    if (!peer.ok()) return make_error(peer.error());
    if (auto [it, fresh] = upserted.emplace(peer->name, i); !fresh) {
      return make_error(at("upsert_peers", i) + ".name: '" + peer->name + "' already in " +
                        at("upsert_peers", it->second));
    }
    auto live_one = index.find(peer->name);
    if (live_one == index.end()) {
      added.push_back(std::move(*peer));  // after the others: their positions stay
    } else if (removed[live_one->second]) {
      return make_error(at("upsert_peers", i) + ".name: '" + peer->name + "' is removed by the same delta");
    } else {
      wipe_keys(std::span(&live.peers[live_one->second], 1));  // the replaced one's keys
      live.peers[live_one->second] = std::move(*peer);
    }
  }
  if (delta.set_pod_cidrs()) {
    auto local = prefixes(delta.pod_cidrs(), [] { return std::string("pod_cidrs"); });
    if (!local.ok()) return make_error(local.error());
    live.pod_cidrs = std::move(*local);
  }
  RoutingState out;
  out.pod_cidrs = std::move(live.pod_cidrs);
  out.peers.reserve(live.peers.size() + added.size());
  for (size_t p = 0; p < live.peers.size(); ++p) {
    if (!removed[p]) out.peers.push_back(std::move(live.peers[p]));
  }
  for (PeerConfig& peer : added) out.peers.push_back(std::move(peer));
  return out;
}

Result<lb::ServicesConfig> services_from_proto(const google::protobuf::RepeatedPtrField<v1::ServiceFrontend>& in) {
  lb::ServicesConfig out;
  out.reserve(static_cast<size_t>(in.size()));
  for (int i = 0; i < in.size(); ++i) {
    const v1::ServiceFrontend& f = in[i];
    auto path = [&] { return at("services", i); };
    lb::FrontendConfig fc;
    fc.name = f.name();
    auto vip = parse_ip_address(f.vip());
    if (!vip) return make_error(path() + ".vip: not an IP address: '" + f.vip() + "'");
    fc.vip = *vip;
    if (f.port() == 0 || f.port() > 65535) return make_error(path() + ".port: must be 1..65535, got " + std::to_string(f.port()));
    fc.port = static_cast<uint16_t>(f.port());
    switch (f.protocol()) {
      case v1::TCP: fc.protocol = 6; break;
      case v1::UDP: fc.protocol = 17; break;
      case v1::SCTP: fc.protocol = 132; break;
      default: return make_error(path() + ".protocol: must be TCP, UDP or SCTP");
    }
    fc.affinity_timeout_s = f.affinity_timeout_s();
    fc.backends.reserve(static_cast<size_t>(f.backends_size()));
    for (int j = 0; j < f.backends_size(); ++j) {
      const v1::Backend& b = f.backends(j);
      auto bpath = [&] { return at(path() + ".backends", j); };
      lb::BackendConfig bc;
      auto address = parse_ip_address(b.address());
      if (!address) return make_error(bpath() + ".address: not an IP address: '" + b.address() + "'");
      bc.address = *address;
      if (b.port() == 0 || b.port() > 65535) {
        return make_error(bpath() + ".port: must be 1..65535, got " + std::to_string(b.port()));
      }
      bc.port = static_cast<uint16_t>(b.port());
      bc.weight = b.weight() == 0 ? 1 : b.weight();
      switch (b.use()) {
        case v1::Backend::ACTIVE: bc.draining = false; break;
        case v1::Backend::DRAINING: bc.draining = true; break;
        default: return make_error(bpath() + ".use: must be ACTIVE or DRAINING");
      }
      bc.reason = b.reason();
      bc.node = b.node();
      bc.target = b.target();
      fc.backends.push_back(std::move(bc));
    }
    out.push_back(std::move(fc));
  }
  return out;
}

void backend_to_proto(const lb::BackendConfig& b, v1::Backend* out) {
  out->set_address(format_ip(b.address));
  out->set_port(b.port);
  out->set_weight(b.weight);
  out->set_use(b.draining ? v1::Backend::DRAINING : v1::Backend::ACTIVE);
  out->set_reason(b.reason);
  out->set_node(b.node);
  out->set_target(b.target);
}

void frontend_to_proto(const lb::FrontendConfig& f, v1::ServiceFrontend* out, bool with_backends) {
  out->set_name(f.name);
  out->set_vip(format_ip(f.vip));
  out->set_port(f.port);
  out->set_protocol(f.protocol == 6 ? v1::TCP : f.protocol == 17 ? v1::UDP : v1::SCTP);
  out->set_affinity_timeout_s(f.affinity_timeout_s);
  if (!with_backends) return;
  for (const lb::BackendConfig& b : f.backends) backend_to_proto(b, out->add_backends());
}

v1::State routing_to_proto(const RoutingState& routing) {
  v1::State out;
  for (const IpPrefix& p : routing.pod_cidrs) out.add_pod_cidrs(format_prefix(p));
  for (const PeerConfig& peer : routing.peers) {
    v1::Peer* p = out.add_peers();
    p->set_name(peer.name);
    p->set_tunnel_address(format_ip(peer.tunnel_address));
    for (const IpPrefix& pfx : peer.pod_cidrs) p->add_pod_cidrs(format_prefix(pfx));
    for (const auto& [list, add] : {std::pair{&peer.outbound, &v1::Peer::add_outbound},
                                    std::pair{&peer.inbound, &v1::Peer::add_inbound}}) {
      for (const SaConfig& sa : *list) {
        v1::Sa* s = (p->*add)();
        s->set_spi(sa.spi);
        s->set_algorithm(sa.algorithm == AeadAlgorithm::kAes256Gcm ? v1::AES_256_GCM : v1::AES_128_GCM);
        s->set_key(std::string(sa.key.begin(), sa.key.end()));
        s->set_salt(std::string(sa.salt.begin(), sa.salt.end()));
      }
    }
  }
  return out;
}

}  // namespace meshwire::dp::api
