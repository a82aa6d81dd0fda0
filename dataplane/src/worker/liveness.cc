#include "worker/liveness.h"

namespace meshwire::dp {

LivenessChange evaluate_liveness(PeerLink& link, uint32_t now_ms, uint32_t down_after_ms) {
  const uint32_t heard = link.last_heard_ms.load(std::memory_order_relaxed);
  if (heard == 0) return LivenessChange::kNone;  // never heard from: unknown, not down
  if (link.liveness == Liveness::kDown) {
    if (heard == link.heard_when_down) return LivenessChange::kNone;
    link.liveness = Liveness::kUp;
    link.down.store(false, std::memory_order_relaxed);
    return LivenessChange::kUp;
  }
  // Signed: a worker's clock, read at the top of its round, may be a
  // little ahead of ours.
  if (static_cast<int32_t>(now_ms - heard) > static_cast<int32_t>(down_after_ms)) {
    link.liveness = Liveness::kDown;
    link.heard_when_down = heard;
    link.down.store(true, std::memory_order_relaxed);
    return LivenessChange::kDown;
  }
  if (link.liveness == Liveness::kUp) return LivenessChange::kNone;
  link.liveness = Liveness::kUp;
  return LivenessChange::kUp;
}

const char* liveness_name(Liveness l) {
  switch (l) {
    case Liveness::kUp: return "up";
    case Liveness::kDown: return "down";
    case Liveness::kUnknown: break;
  }
  return "unknown";
}

uint32_t heard_ms_ago(const PeerLink& link, uint32_t now_ms) {
  const uint32_t heard = link.last_heard_ms.load(std::memory_order_relaxed);
  if (heard == 0) return 0;
  const int32_t ago = static_cast<int32_t>(now_ms - heard);
  return ago > 0 ? static_cast<uint32_t>(ago) : 0;
}

}  // namespace meshwire::dp
