// Weighted Maglev consistent hashing (Eisenbud et al., NSDI 2016): a lookup
// table that maps a flow hash to one of a service port's backends, so that
//  * backends get table slots in proportion to their weights (within one
//    slot for equal weights), and
//  * adding or removing one backend moves few flows that were on the others
//    (about 1/N of the table changes hands, not most of it).
// Every node builds the same table from the same backends, whatever their
// order: each backend's place in it comes from a hash of its key alone.
//
// Built on the control thread (it allocates); workers only index into it.
// Pure: no DPDK.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

namespace meshwire::dp::lb {

inline constexpr uint32_t kMaglevMinTableSize = 251;
inline constexpr uint32_t kMaglevMaxWeight = 1000;
inline constexpr uint16_t kNoBackend = 0xFFFF;

struct MaglevBackend {
  // What identifies the backend across nodes and rebuilds (its address and
  // port, as bytes): its place in the table depends on this alone.
  std::string_view key;
  uint32_t weight = 1;  // 0: in the list but given no slot (e.g. draining); at most kMaglevMaxWeight
};

// The table size for n backends: the smallest prime at least 128 * n (and
// at least kMaglevMinTableSize), so that each backend has over a hundred
// slots and the shares come out even.
uint32_t maglev_table_size(size_t backends);

// The table: size maglev_table_size(backends.size()) (or `size`, a prime,
// when given), each slot the index of a backend in `backends`; every slot is
// kNoBackend when no backend has a weight. Backends with the same key are
// an error of the caller (asserted in debug builds only; give distinct keys).
std::vector<uint16_t> maglev_build(std::span<const MaglevBackend> backends, uint32_t size = 0);

// The 64-bit hash the table is built with (FNV-1a over the bytes, then a
// splitmix64 finaliser; `seed` picks one of a family). Fixed, so that every
// node and every version builds the same table.
uint64_t maglev_hash(std::string_view bytes, uint64_t seed);

}  // namespace meshwire::dp::lb
