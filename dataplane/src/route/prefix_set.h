// The pod CIDRs of one node, for membership tests on the worker path: a
// scan of masked compares over the one to four prefixes a node has. The
// decrypt path asks "is this one of that peer's pods?" and "is this one of
// ours?", which this answers without a FIB lookup, whatever the number of
// peers. Built at startup, read-only afterwards (any thread).
#pragma once

#include <cstdint>
#include <vector>

#include <meshwire/dp/config.h>

#include "net/parse.h"

namespace meshwire::dp {

class PrefixSet {
 public:
  void add(const IpPrefix& prefix) {
    const auto& b = prefix.address.bytes;
    if (prefix.address.is_v4()) {
      const uint32_t mask = prefix.length == 0 ? 0 : ~uint32_t{0} << (32 - prefix.length);
      v4_.push_back({load32(b.data()) & mask, mask});
    } else {
      const uint64_t mhi = prefix.length == 0 ? 0 : prefix.length >= 64 ? ~uint64_t{0} : ~uint64_t{0} << (64 - prefix.length);
      const uint64_t mlo = prefix.length <= 64 ? 0 : ~uint64_t{0} << (128 - prefix.length);
      v6_.push_back({load64(b.data()) & mhi, load64(b.data() + 8) & mlo, mhi, mlo});
    }
  }

  // addr: the 4 (IPv4) or 16 (IPv6) address bytes as on the wire.
  bool contains_v4(const uint8_t* addr) const {
    const uint32_t a = load32(addr);
    for (const V4& p : v4_) {
      if ((a & p.mask) == p.net) return true;
    }
    return false;
  }
  bool contains_v6(const uint8_t* addr) const {
    const uint64_t hi = load64(addr), lo = load64(addr + 8);
    for (const V6& p : v6_) {
      if ((hi & p.mhi) == p.hi && (lo & p.mlo) == p.lo) return true;
    }
    return false;
  }
  bool contains(const uint8_t* addr, bool v6) const { return v6 ? contains_v6(addr) : contains_v4(addr); }

 private:
  struct V4 {
    uint32_t net, mask;
  };
  struct V6 {
    uint64_t hi, lo, mhi, mlo;
  };
  static uint32_t load32(const uint8_t* p) { return net::load_be32(p); }
  static uint64_t load64(const uint8_t* p) { return (uint64_t{net::load_be32(p)} << 32) | net::load_be32(p + 4); }

  std::vector<V4> v4_;
  std::vector<V6> v6_;
};

}  // namespace meshwire::dp
