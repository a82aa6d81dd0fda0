#include "reconcile/delta.h"

namespace meshwire::control {

bool AppliedState::prepare(const v1::State& want, v1::StateDelta* delta) {
  if (delta) delta->Clear();
  bool changed = !has_;
  pending_pod_cidrs_.clear();
  for (const std::string& p : want.pod_cidrs()) pending_pod_cidrs_ += p + '\n';
  if (pending_pod_cidrs_ != pod_cidrs_) {
    changed = true;
    if (delta) {
      delta->set_set_pod_cidrs(true);
      *delta->mutable_pod_cidrs() = want.pod_cidrs();
    }
  }
  // Serialized peers of the last prepare() are reused as buffers.
  std::map<std::string, std::string> next;
  next.swap(pending_peers_);
  auto hint = pending_peers_.end();
  for (const v1::Peer& peer : want.peers()) {
    auto reuse = next.extract(peer.name());
    std::string bytes = reuse ? std::move(reuse.mapped()) : std::string();
    peer.SerializeToString(&bytes);
    auto was = peers_.find(peer.name());
    if (was == peers_.end() || was->second != bytes) {
      changed = true;
      if (delta) *delta->add_upsert_peers() = peer;
    }
    hint = pending_peers_.emplace_hint(hint, peer.name(), std::move(bytes));
  }
  for (const auto& [name, bytes] : peers_) {
    if (!pending_peers_.count(name)) {
      changed = true;
      if (delta) delta->add_remove_peers(name);
    }
  }
  return changed;
}

void AppliedState::commit() {
  peers_.swap(pending_peers_);
  pod_cidrs_.swap(pending_pod_cidrs_);
  has_ = true;
}

void AppliedState::clear() {
  peers_.clear();
  pod_cidrs_.clear();
  has_ = false;
}

}  // namespace meshwire::control
