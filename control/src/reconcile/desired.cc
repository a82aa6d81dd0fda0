#include "reconcile/desired.h"

#include <algorithm>
#include <charconv>
#include <iterator>

#include <openssl/crypto.h>

namespace meshwire::control {
namespace {

using dp::make_error;

Result<uint64_t> parse_u64(const std::string& text, const std::string& field) {
  uint64_t v = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size()) {
    return make_error(field + ": not a non-negative integer: '" + text + "'");
  }
  return v;
}

void add_sa(google::protobuf::RepeatedPtrField<v1::Sa>* list, const DerivedSa& d, size_t key_len) {
  v1::Sa* sa = list->Add();
  sa->set_spi(d.spi);
  sa->set_algorithm(key_len == 32 ? v1::AES_256_GCM : v1::AES_128_GCM);
  sa->set_key(reinterpret_cast<const char*>(d.key.data()), d.key.size());
  sa->set_salt(reinterpret_cast<const char*>(d.salt.data()), d.salt.size());
}

// Why a node cannot be a peer yet, or "" when it can; fills what it reads.
std::string peer_inputs(const NodeObject& n, const SelfNode& self, IpAddress* address, X25519Key* key,
                        uint64_t* epoch, unsigned* workers) {
  auto fabric = fabric_address(n, self.tunnel_address.family);
  if (!fabric.ok()) return fabric.error();
  *address = *fabric;
  if (n.pod_cidrs.empty()) return "no spec.podCIDRs yet";
  auto pk = n.annotations.find(kPublicKeyAnnotation);
  if (pk == n.annotations.end()) return std::string("no ") + kPublicKeyAnnotation + " yet";
  auto decoded = decode_public_key(pk->second);
  if (!decoded.ok()) return std::string(kPublicKeyAnnotation) + ": " + decoded.error();
  *key = *decoded;
  auto ep = n.annotations.find(kKeyEpochAnnotation);
  if (ep == n.annotations.end()) return std::string("no ") + kKeyEpochAnnotation + " yet";
  auto e = parse_u64(ep->second, kKeyEpochAnnotation);
  if (!e.ok()) return e.error();
  *epoch = *e;
  auto wk = n.annotations.find(kWorkersAnnotation);
  if (wk == n.annotations.end()) return std::string("no ") + kWorkersAnnotation + " yet";
  auto w = parse_u64(wk->second, kWorkersAnnotation);
  if (!w.ok()) return w.error();
  if (*w < 1 || *w > kMaxDerivedWorkers) return std::string(kWorkersAnnotation) + ": must be 1..64";
  *workers = static_cast<unsigned>(*w);
  return "";
}

}  // namespace

Result<X25519Key> KeyCache::shared(const KeyPair& own, const std::string& peer, const X25519Key& peer_public) {
  auto it = shared_.find(peer);
  if (it != shared_.end() && it->second.peer_public == peer_public) {
    mark(it->second.round, used_shared_);
    return it->second.secret;
  }
  if (!own_ || own_public_ != own.public_key) {
    auto loaded = X25519Private::load(own.private_key);
    if (!loaded.ok()) return make_error(loaded.error());
    own_ = std::move(*loaded);
    own_public_ = own.public_key;
  }
  auto secret = own_->shared(peer_public);
  if (!secret.ok()) return secret;
  Shared& s = shared_[peer];
  s.peer_public = peer_public;
  s.secret = *secret;
  mark(s.round, used_shared_);
  return *secret;
}

Result<const DerivedSa*> KeyCache::sa(const X25519Key& shared, const std::string& cluster_id,
                                      const std::string& sender, const std::string& receiver, uint64_t epoch,
                                      unsigned worker, size_t key_len) {
  // The shared secret is part of the key: a peer's new public key is new SAs.
  // Built in a buffer kept between calls: a hit allocates nothing.
  std::string& key = key_buffer_;
  key.assign(reinterpret_cast<const char*>(shared.data()), shared.size());
  key.append(sender).push_back('\0');
  key.append(receiver).push_back('\0');
  key.append(cluster_id).push_back('\0');
  const uint64_t numbers[3] = {epoch, worker, key_len};
  key.append(reinterpret_cast<const char*>(numbers), sizeof(numbers));
  auto it = sas_.find(key);
  if (it == sas_.end()) {
    auto derived = derive_sa(shared, cluster_id, sender, receiver, epoch, worker, key_len);
    if (!derived.ok()) return make_error(derived.error());
    auto owned = std::make_unique<DerivedSa>();
    owned->spi = derived->spi;
    owned->key = derived->key;
    owned->salt = derived->salt;
    it = sas_.emplace(key, Sa{std::move(owned), 0}).first;
  }
  mark(it->second.round, used_sas_);
  return static_cast<const DerivedSa*>(it->second.sa.get());
}

// Entries remember the last round (reconcile) that used them; a round that
// used every entry (the usual case) sweeps nothing and walks nothing.
void KeyCache::mark(uint64_t& entry_round, size_t& used) {
  if (entry_round != round_) {
    entry_round = round_;
    ++used;
  }
}

void KeyCache::begin() {
  ++round_;
  used_shared_ = 0;
  used_sas_ = 0;
}

void KeyCache::end() {
  if (used_shared_ != shared_.size()) {
    for (auto it = shared_.begin(); it != shared_.end();) {
      if (it->second.round == round_) {
        ++it;
      } else {
        OPENSSL_cleanse(it->second.secret.data(), it->second.secret.size());
        it = shared_.erase(it);
      }
    }
  }
  if (used_sas_ != sas_.size()) {
    for (auto it = sas_.begin(); it != sas_.end();) {
      it = it->second.round == round_ ? std::next(it) : sas_.erase(it);  // ~DerivedSa wipes
    }
  }
}

Result<Desired> desired_state(const ClusterObjects& cluster, const SelfNode& self,
                              std::map<std::string, PeerEpoch>& epochs, uint64_t now_ms, uint64_t grace_ms,
                              KeyCache* cache) {
  Desired out;
  if (Status s = desired_state_into(out, cluster, self, epochs, now_ms, grace_ms, cache); !s.ok()) {
    return make_error(s.error());
  }
  return out;
}

Status desired_state_into(Desired& out, const ClusterObjects& cluster, const SelfNode& self,
                          std::map<std::string, PeerEpoch>& epochs, uint64_t now_ms, uint64_t grace_ms,
                          KeyCache* cache) {
  KeyCache local;
  KeyCache& keys = cache ? *cache : local;
  keys.begin();
  out.state.Clear();  // keeps its messages and strings for reuse
  out.restarted.clear();
  out.skipped.clear();
  auto me = cluster.nodes.find(self.name);
  if (me == cluster.nodes.end()) return make_error("Node " + self.name + ": not found (is --node right?)");
  if (me->second.pod_cidrs.empty()) return make_error("Node " + self.name + ": spec.podCIDRs: none yet");
  for (const IpPrefix& p : me->second.pod_cidrs) out.state.add_pod_cidrs(dp::format_prefix(p));

  for (const auto& [name, node] : cluster.nodes) {  // sorted by name: a stable order
    if (name == self.name) continue;
    IpAddress address;
    X25519Key public_key{};
    uint64_t peer_epoch = 0;
    unsigned peer_workers = 0;
    if (std::string why = peer_inputs(node, self, &address, &public_key, &peer_epoch, &peer_workers); !why.empty()) {
      out.skipped.push_back(name + ": " + why);
      continue;
    }
    if (address == self.tunnel_address) {
      out.skipped.push_back(name + ": its fabric address is this node's tunnel address");
      continue;
    }
    auto shared = keys.shared(*self.keys, name, public_key);
    if (!shared.ok()) {
      out.skipped.push_back(name + ": " + std::string(kPublicKeyAnnotation) + ": " + shared.error());
      continue;
    }
    // The peer's epochs to accept: the one before while in grace, its own,
    // and the next.
    PeerEpoch& pe = epochs[name];
    if (pe.epoch != peer_epoch) {
      if (peer_epoch > pe.epoch && (pe.epoch != 0 || pe.has_previous)) {
        pe.previous = pe.epoch;
        pe.has_previous = true;
        pe.grace_until_ms = now_ms + grace_ms;
      }
      pe.epoch = peer_epoch;
    }
    if (pe.has_previous && now_ms >= pe.grace_until_ms) pe.has_previous = false;
    if (auto b = node.annotations.find(kBootEpochAnnotation); b != node.annotations.end()) {
      auto boot = parse_u64(b->second, kBootEpochAnnotation);
      if (boot.ok()) {
        if (pe.boot_epoch != 0 && *boot > pe.boot_epoch) out.restarted.push_back(name);
        pe.boot_epoch = std::max(pe.boot_epoch, *boot);
      }
    }

    v1::Peer* peer = out.state.add_peers();
    peer->set_name(name);
    peer->set_tunnel_address(dp::format_ip(address));
    for (const IpPrefix& p : node.pod_cidrs) peer->add_pod_cidrs(dp::format_prefix(p));
    bool ok = true;
    std::string error;
    for (unsigned w = 0; w < self.workers && ok; ++w) {
      auto sa = keys.sa(*shared, self.cluster_id, self.name, name, self.epoch, w, self.key_len);
      if (!sa.ok()) {
        ok = false;
        error = sa.error();
        break;
      }
      add_sa(peer->mutable_outbound(), **sa, self.key_len);
    }
    std::vector<uint64_t> inbound_epochs;
    if (pe.has_previous && pe.previous < peer_epoch) inbound_epochs.push_back(pe.previous);
    inbound_epochs.push_back(peer_epoch);
    inbound_epochs.push_back(peer_epoch + 1);
    for (uint64_t e : inbound_epochs) {
      for (unsigned w = 0; w < peer_workers && ok; ++w) {
        auto sa = keys.sa(*shared, self.cluster_id, name, self.name, e, w, self.key_len);
        if (!sa.ok()) {
          ok = false;
          error = sa.error();
          break;
        }
        add_sa(peer->mutable_inbound(), **sa, self.key_len);
      }
    }
    if (!ok) {
      out.state.mutable_peers()->RemoveLast();
      out.skipped.push_back(name + ": " + error);
    }
  }
  keys.end();
  return dp::Ok{};
}

}  // namespace meshwire::control
