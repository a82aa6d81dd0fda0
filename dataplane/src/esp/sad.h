// The inbound SA database: (outer source address, SPI) -> the InboundSa and
// the index of its peer in the generation that holds this table (an SA object
// outlives generations; which peer index it has is the generation's).
//
// Built once by the control thread and immutable afterwards (a new one
// replaces it wholesale), so workers look up with plain loads: an
// open-addressed table of 32-byte slots, at most half full, linear probing.
// A lookup costs one multiply and usually one cache line, where a general
// concurrent hash (rte_hash: jhash over the key, cuckoo buckets) cost about
// 240 instructions per packet on the decrypt path.
#pragma once

#include <cstdint>
#include <cstring>
#include <vector>

#include <meshwire/dp/config.h>

namespace meshwire::dp::esp {

struct InboundSa;

class InboundSaTable {
 public:
  struct Key {
    uint32_t spi;    // host order
    uint8_t family;  // 4 or 6
    uint8_t addr[16];  // IPv4 in the first 4 bytes, the rest zero

    bool operator==(const Key& o) const {
      return spi == o.spi && family == o.family && std::memcmp(addr, o.addr, 16) == 0;
    }
  };

  struct Hit {
    InboundSa* sa;  // nullptr: no such SA
    uint16_t peer;  // index into the generation's Tables::peers
  };

  // Control thread, before publishing. False if the key is already present.
  bool add(const IpAddress& source, uint32_t spi, InboundSa* sa, uint16_t peer);

  // Any thread, any number at once, once the table is published.
  Hit lookup(const Key& key) const {
    if (slots_.empty()) return {nullptr, 0};
    for (size_t i = hash(key) & mask_;; i = (i + 1) & mask_) {
      const Slot& s = slots_[i];
      if (s.sa == nullptr) return {nullptr, 0};
      if (s.spi == key.spi && s.family == key.family && std::memcmp(s.addr, key.addr, 16) == 0) return {s.sa, s.peer};
    }
  }

  size_t size() const { return count_; }

 private:
  struct Slot {
    uint32_t spi;
    uint8_t family;
    uint8_t pad;
    uint16_t peer;
    uint8_t addr[16];
    InboundSa* sa;  // nullptr: empty
  };
  static_assert(sizeof(Slot) == 32);

  static size_t hash(const Key& key) {
    uint64_t a, b;
    std::memcpy(&a, key.addr, 8);
    std::memcpy(&b, key.addr + 8, 8);
    const uint64_t h = (a ^ (b * 0x9E3779B97F4A7C15ull) ^ (uint64_t{key.spi} << 8) ^ key.family) * 0xBF58476D1CE4E5B9ull;
    return static_cast<size_t>(h >> 32);
  }
  void grow();

  std::vector<Slot> slots_;
  size_t mask_ = 0;
  size_t count_ = 0;
};

}  // namespace meshwire::dp::esp
