// A worker's private front for the shared neighbour table: 256 direct-mapped
// slots, so that the pods a worker delivers to are found without a lookup in
// the rte_hash (which costs about a fifth of the decrypt path at 64 B).
//
// Coherence: the control thread bumps Neighbors::epoch (release) after
// every change to the neighbour table; a worker calls sync() with that epoch
// (acquire) once per burst and drops every slot when it moved. A burst that
// races with an update may still use the old MAC, as a lookup in the shared
// table racing with the same update would.
//
// Threading: owned and used by one worker; never shared.
#pragma once

#include <array>
#include <cstdint>
#include <cstring>

#include "route/tables.h"

namespace meshwire::dp {

class alignas(64) NeighborCache {
 public:
  static constexpr uint32_t kSlots = 256;

  // Forgets everything if the table's epoch is not the one the slots came from.
  void sync(uint64_t epoch) noexcept {
    if (epoch == epoch_) return;
    for (Slot& s : slots_) s.packed = 0;
    epoch_ = epoch;
  }

  // The packed neighbour (pack_neighbor()) of key, or 0 when not cached.
  uint64_t find(const NeighborKey& key) const noexcept {
    const Slot& s = slots_[slot_of(key)];
    if (s.packed == 0 || std::memcmp(&s.key, &key, sizeof(key)) != 0) return 0;
    return s.packed;
  }

  // packed must be non-zero (pack_neighbor() sets kMacValid). Evicts whatever
  // shared the slot.
  void insert(const NeighborKey& key, uint64_t packed) noexcept {
    Slot& s = slots_[slot_of(key)];
    s.key = key;
    s.packed = packed;
  }

 private:
  struct Slot {
    NeighborKey key;
    uint64_t packed;  // 0: empty
  };
  static_assert(sizeof(Slot) == 32);

  // The address's last four bytes (all of IPv4), Fibonacci-hashed.
  static uint32_t slot_of(const NeighborKey& key) noexcept {
    uint32_t tail;
    std::memcpy(&tail, key.addr + (key.family == 4 ? 0 : 12), sizeof(tail));
    return (tail * 0x9E37'79B1u) >> 24;
  }
  static_assert(kSlots == 256, "slot_of() takes the top 8 bits");

  std::array<Slot, kSlots> slots_{};
  uint64_t epoch_ = 0;
};

}  // namespace meshwire::dp
