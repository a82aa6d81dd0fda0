// Anti-replay window for one inbound SA with extended sequence numbers
// (RFC 4303 §3.4.3 and Appendix A), lock-free so that several workers may
// receive packets of the same SA at once.
//
// Threading contract:
//  - check() and commit() may be called concurrently from any number of
//    threads; they never block, allocate or make syscalls.
//  - For each packet a worker calls check(seq_low) before decrypting (a
//    cheap, advisory filter that also infers the 64-bit sequence number) and,
//    only after the ICV verified, commit(seq) with the inferred number. commit()
//    is the authoritative decision: for any sequence number, at most one
//    commit() ever returns true, however many copies race; a packet whose
//    commit() returns false is a replay and must be dropped.
//  - reset() is not thread-safe: call it only while no worker uses the window.
//
// Design: one 64-bit slot per position of the window. slots_[s % kWindow]
// holds the highest sequence number accepted at that position, and top_ the
// highest accepted overall. Slots only ever grow, so "slot >= s" proves that
// s (or a newer number at the same position) was accepted. Within the window
// [top - kWindow + 1, top] the positions are distinct, so the test is exact
// there. Cost: kWindow * 8 bytes (16 KiB) per inbound SA.
//
// Memory order: every accept/reject decision is a single read-modify-write
// (compare-exchange) on one atomic, and an RMW always reads the latest value
// in that atomic's modification order. Two commits of the same s therefore
// cannot both move the slot below s to s, whatever the memory order. No other
// data is published through these atomics (each worker owns its packet), and
// no decision needs an order between top_ and the slots: a stale slot seen by
// check() only lets a packet through to commit(), which decides again; a stale
// top_ (in either) only shifts the window, and the ESN inference, by the
// packets in flight, and never admits a number twice. Stronger orders would
// not make a load fresher. So all accesses are relaxed.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>

namespace meshwire::dp::esp {

enum class ReplayVerdict : uint8_t {
  kOk,
  kOutOfRange,  // inferred number is 0, before 1, or past 2^64 - 1
  kDuplicate,   // already accepted
};

struct ReplayCheck {
  bool ok;
  uint64_t seq;  // the inferred 64-bit number (meaningful unless kOutOfRange); goes into the AAD as seq-hi
  ReplayVerdict verdict;
  // The low bits lay left of the window, so seq was taken from the next 2^32
  // subspace. If the ICV then fails, the packet was most likely an old one
  // (left of the window: a replay drop, RFC 4303 3.4.3), not a forgery.
  bool left_of_window = false;
};

class ReplayWindow {
 public:
  static constexpr uint64_t kWindow = 2048;
  static_assert((kWindow & (kWindow - 1)) == 0 && kWindow >= 1024, "power of two, at least 1024 (DESIGN.md)");

  ReplayWindow() = default;
  ReplayWindow(const ReplayWindow&) = delete;
  ReplayWindow& operator=(const ReplayWindow&) = delete;

  // Before decryption: infers the 64-bit sequence number from the low 32 bits
  // on the wire and the highest accepted one (RFC 4303 Appendix A2), and
  // rejects numbers out of range or already accepted. The inference maps
  // every 32-bit value into [top - kWindow + 1, top - kWindow + 2^32]: a
  // packet from left of the window is taken for one from the next 2^32
  // subspace and fails its ICV, since seq-hi is part of the AAD (RFC 4303
  // A2.2). So "too old" is decided by the ICV here and by commit().
  ReplayCheck check(uint32_t seq_low) const noexcept {
    const uint64_t top = top_.load(std::memory_order_relaxed);
    const uint32_t top_low = static_cast<uint32_t>(top);
    const uint64_t top_high = top >> 32;
    const uint32_t bottom_low = top_low - static_cast<uint32_t>(kWindow - 1);  // mod 2^32
    uint64_t seq_high;
    bool left = false;
    if (top_low >= kWindow - 1) {
      // Case A: the window lies within one 2^32 subspace. Below its bottom
      // means the sender has wrapped into the next subspace.
      seq_high = seq_low >= bottom_low ? top_high : top_high + 1;
      left = seq_low < bottom_low;
    } else {
      // Case B: the window straddles two subspaces. At or above its bottom
      // (mod 2^32) means a late packet from the previous subspace.
      if (seq_low >= bottom_low) {
        if (top_high == 0) return {false, 0, ReplayVerdict::kOutOfRange};
        seq_high = top_high - 1;
      } else {
        seq_high = top_high;
      }
    }
    if (seq_high > UINT32_MAX) return {false, 0, ReplayVerdict::kOutOfRange};
    const uint64_t seq = (seq_high << 32) | seq_low;
    if (seq == 0) return {false, 0, ReplayVerdict::kOutOfRange};
    if (slot(seq).load(std::memory_order_relaxed) >= seq) return {false, seq, ReplayVerdict::kDuplicate, left};
    return {true, seq, ReplayVerdict::kOk, left};
  }

  // After the ICV verified: records seq as received. True exactly once per
  // sequence number; false means replay (duplicate, or the window moved past
  // seq while it was being decrypted): drop the packet.
  bool commit(uint64_t seq) noexcept {
    if (seq == 0) return false;
    const uint64_t top = top_.load(std::memory_order_relaxed);
    if (seq <= top && top - seq >= kWindow) return false;
    std::atomic<uint64_t>& s = slot(seq);
    uint64_t seen = s.load(std::memory_order_relaxed);
    do {
      if (seen >= seq) return false;
    } while (!s.compare_exchange_weak(seen, seq, std::memory_order_relaxed, std::memory_order_relaxed));
    uint64_t current = top_.load(std::memory_order_relaxed);
    while (current < seq && !top_.compare_exchange_weak(current, seq, std::memory_order_relaxed,
                                                         std::memory_order_relaxed)) {
    }
    return true;
  }

  // Highest sequence number committed so far (0 before the first).
  uint64_t top() const noexcept { return top_.load(std::memory_order_relaxed); }

  // Forgets everything (new SA or tests). Not thread-safe, see above.
  void reset() noexcept {
    for (auto& s : slots_) s.store(0, std::memory_order_relaxed);
    top_.store(0, std::memory_order_relaxed);
  }

 private:
  std::atomic<uint64_t>& slot(uint64_t seq) noexcept { return slots_[seq & (kWindow - 1)]; }
  const std::atomic<uint64_t>& slot(uint64_t seq) const noexcept { return slots_[seq & (kWindow - 1)]; }

  alignas(64) std::atomic<uint64_t> top_{0};
  alignas(64) std::array<std::atomic<uint64_t>, kWindow> slots_{};
};

}  // namespace meshwire::dp::esp
