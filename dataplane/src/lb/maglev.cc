#include "lb/maglev.h"

#include <algorithm>
#include <cassert>

namespace meshwire::dp::lb {
namespace {

bool is_prime(uint32_t n) {
  if (n < 2) return false;
  if (n % 2 == 0) return n == 2;
  for (uint32_t d = 3; static_cast<uint64_t>(d) * d <= n; d += 2) {
    if (n % d == 0) return false;
  }
  return true;
}

}  // namespace

uint64_t maglev_hash(std::string_view bytes, uint64_t seed) {
  uint64_t h = 0xcbf29ce484222325ull ^ (seed * 0x9E3779B97F4A7C15ull);
  for (unsigned char c : bytes) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  h += 0x9E3779B97F4A7C15ull;
  h = (h ^ (h >> 30)) * 0xBF58476D1CE4E5B9ull;
  h = (h ^ (h >> 27)) * 0x94D049BB133111EBull;
  return h ^ (h >> 31);
}

uint32_t maglev_table_size(size_t backends) {
  uint64_t want = std::max<uint64_t>(kMaglevMinTableSize, uint64_t{128} * backends);
  uint32_t n = static_cast<uint32_t>(std::min<uint64_t>(want, 0x7FFFFFFFu));
  while (!is_prime(n)) ++n;
  return n;
}

std::vector<uint16_t> maglev_build(std::span<const MaglevBackend> backends, uint32_t size) {
  const uint32_t m = size ? size : maglev_table_size(backends.size());
  std::vector<uint16_t> table(m, kNoBackend);
  const size_t n = std::min<size_t>(backends.size(), kNoBackend);  // indexes fit in 16 bits
  // Each backend walks its own permutation of the slots (offset, then steps
  // of `skip`, coprime to the prime m) and takes the next free slot when it
  // has a turn. Turns go round in key order (not list order: the same table
  // whatever order the backends come in), weighted by credit: a backend of
  // weight w takes w turns for every max-weight turns of the heaviest.
  struct Walk {
    uint64_t offset, skip, next;
    uint32_t weight;
    uint64_t credit;
    uint16_t index;
    uint64_t order;
  };
  std::vector<Walk> walks;
  uint32_t max_weight = 0;
  for (size_t i = 0; i < n; ++i) {
    const uint32_t w = std::min(backends[i].weight, kMaglevMaxWeight);
    if (w == 0) continue;
    walks.push_back({maglev_hash(backends[i].key, 1) % m, maglev_hash(backends[i].key, 2) % (m - 1) + 1, 0, w, 0,
                     static_cast<uint16_t>(i), maglev_hash(backends[i].key, 3)});
    max_weight = std::max(max_weight, w);
  }
  if (walks.empty()) return table;
  std::sort(walks.begin(), walks.end(), [](const Walk& a, const Walk& b) { return a.order < b.order; });
  uint32_t filled = 0;
  while (filled < m) {
    for (Walk& w : walks) {
      w.credit += w.weight;
      if (w.credit < max_weight) continue;
      w.credit -= max_weight;
      uint64_t slot = (w.offset + w.next * w.skip) % m;
      while (table[slot] != kNoBackend) {
        ++w.next;
        slot = (w.offset + w.next * w.skip) % m;
      }
      table[slot] = w.index;
      ++w.next;
      if (++filled == m) break;
    }
  }
  return table;
}

}  // namespace meshwire::dp::lb
