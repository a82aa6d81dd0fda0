#include "esp/sad.h"

namespace meshwire::dp::esp {

void InboundSaTable::grow() {
  std::vector<Slot> old = std::move(slots_);
  slots_.assign(old.empty() ? 16 : old.size() * 2, Slot{});
  mask_ = slots_.size() - 1;
  for (const Slot& s : old) {
    if (s.sa == nullptr) continue;
    Key k{s.spi, s.family, {}};
    std::memcpy(k.addr, s.addr, 16);
    size_t i = hash(k) & mask_;
    while (slots_[i].sa != nullptr) i = (i + 1) & mask_;
    slots_[i] = s;
  }
}

bool InboundSaTable::add(const IpAddress& source, uint32_t spi, InboundSa* sa, uint16_t peer) {
  Key key{spi, source.family, {}};
  std::memcpy(key.addr, source.bytes.data(), 16);
  if (lookup(key).sa != nullptr) return false;
  if ((count_ + 1) * 2 > slots_.size()) grow();
  size_t i = hash(key) & mask_;
  while (slots_[i].sa != nullptr) i = (i + 1) & mask_;
  Slot& s = slots_[i];
  s.spi = spi;
  s.family = key.family;
  std::memcpy(s.addr, key.addr, 16);
  s.peer = peer;
  s.sa = sa;
  ++count_;
  return true;
}

}  // namespace meshwire::dp::esp
