// The data plane's desired routing state, computed from the cluster's
// objects: a pure function, pinned by tests.
//
// Keys (README, "Keys"): every node sends with the SAs of its own epoch
// (its annotation meshwire.io/key-epoch; it moves to the next one when its
// data plane restarts or rotates), and receives with those of each peer's
// epoch, the next one (installed ahead, so that a peer may move on at any
// moment without loss), and, for a grace period after the peer moved on, the
// previous one. No coordinator, no clock agreement between nodes.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <meshwire/dp/result.h>

#include "dataplane.pb.h"
#include "keys/keys.h"
#include "source/folder.h"

namespace meshwire::control {

struct SelfNode {
  std::string name;
  std::string cluster_id;
  const KeyPair* keys = nullptr;
  unsigned workers = 1;           // the data plane's (its outbound SAs per peer)
  IpAddress tunnel_address;       // the data plane's (peers are reached in its family)
  uint64_t epoch = 0;             // this node's sending epoch
  size_t key_len = 16;            // AES-128-GCM
};

// What the controller remembers of each peer's epoch between reconciles:
// the previous epoch stays installed inbound until `grace_until` (ms).
struct PeerEpoch {
  uint64_t epoch = 0;
  uint64_t previous = 0;
  bool has_previous = false;
  uint64_t grace_until_ms = 0;
  // The peer's meshwire.io/boot-epoch when last seen (0: not yet).
  uint64_t boot_epoch = 0;
};

// What desired_state() derived before, reused while its inputs are the same:
// one X25519 per peer public key and one HKDF per SA, not per reconcile.
// Entries a reconcile did not use are dropped (and wiped) after it.
class KeyCache {
 public:
  // The shared secret with a peer whose public key is `peer_public`.
  Result<X25519Key> shared(const KeyPair& own, const std::string& peer, const X25519Key& peer_public);
  // derive_sa() for these inputs (shared is the pair's, as shared() gave it).
  Result<const DerivedSa*> sa(const X25519Key& shared, const std::string& cluster_id, const std::string& sender,
                              const std::string& receiver, uint64_t epoch, unsigned worker, size_t key_len);
  void begin();  // a reconcile starts: nothing used yet
  void end();    // drops what it did not use
  size_t size() const { return sas_.size(); }

 private:
  struct Shared {
    X25519Key peer_public{};
    X25519Key secret{};
    uint64_t round = 0;  // the last reconcile that used it
  };
  struct Sa {
    std::unique_ptr<DerivedSa> sa;
    uint64_t round = 0;
  };
  void mark(uint64_t& entry_round, size_t& used);
  uint64_t round_ = 0;
  size_t used_shared_ = 0;
  size_t used_sas_ = 0;
  std::map<std::string, Shared> shared_;
  std::map<std::string, Sa> sas_;  // key: shared secret, sender, receiver, cluster, epoch, worker, length
  std::string key_buffer_;
  std::optional<X25519Private> own_;  // this node's private key, loaded once
  X25519Key own_public_{};
};

struct Desired {
  v1::State state;
  // Peers whose data plane came up fresh since the last reconcile (their
  // boot epoch moved): this node moves to its next sending epoch, so that
  // what it sent them before under the current one (which their new, empty
  // replay windows would take again) is accepted only for the grace period.
  std::vector<std::string> restarted;
  // Nodes left out, each with why ("node3: no meshwire.io/public-key yet").
  std::vector<std::string> skipped;
};

// The routing state for `self`. Fails only when this node itself cannot be
// programmed (its Node object missing, without pod CIDRs); a peer that is
// not ready is skipped and said so. `epochs` is updated: a peer seen at a
// new epoch keeps the one before for grace_ms from now_ms.
// cache: optional (nullptr derives everything afresh).
Result<Desired> desired_state(const ClusterObjects& cluster, const SelfNode& self,
                              std::map<std::string, PeerEpoch>& epochs, uint64_t now_ms, uint64_t grace_ms,
                              KeyCache* cache = nullptr);
// The same into `out`, whose messages and strings are reused (at thousands
// of peers, allocating the state anew was most of a reconcile's time).
Status desired_state_into(Desired& out, const ClusterObjects& cluster, const SelfNode& self,
                          std::map<std::string, PeerEpoch>& epochs, uint64_t now_ms, uint64_t grace_ms,
                          KeyCache* cache);

}  // namespace meshwire::control
