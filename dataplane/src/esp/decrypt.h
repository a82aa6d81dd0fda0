// ESP decrypt stage: SA lookup by (outer source, SPI), anti-replay check,
// AES-GCM decryption and ICV check in one ipsec-mb burst, window commit,
// trailer check, decapsulation. Worker-only: no locks, allocation, syscalls.
#pragma once

#include <cstdint>

#include <rte_mbuf.h>

#include <meshwire/dp/counters.h>

#include "esp/gcm.h"
#include "esp/sad.h"
#include "route/tables.h"

namespace meshwire::dp::esp {

// What the classify stage learned about one ESP-in-UDP frame.
struct EspMeta {
  InboundSaTable::Key key;  // outer source address and SPI
  uint32_t seq_low;     // host order
  uint16_t esp_offset;  // ESP header offset from the frame start
  uint16_t esp_len;     // ESP header through ICV
};

// n <= kMaxBurst. On success pkts[i] holds the inner IP packet alone (outer
// headers and trailer removed), peer_of[i] the index of the peer whose SA
// verified it and inner_v6[i] its version; they are at [0..k) in order.
// Failed packets follow with reasons[] (kUnknownPeer, kNoSa, kReplay,
// kAuthFailed, kBadTrailer, kMalformed). The caller frees failed packets.
uint16_t decrypt_burst(GcmEngine& engine, const Tables& tables, rte_mbuf** pkts, const EspMeta* meta,
                       uint16_t n, DropReason* reasons, uint16_t* peer_of);

}  // namespace meshwire::dp::esp
