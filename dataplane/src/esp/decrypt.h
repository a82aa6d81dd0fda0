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

// n <= kMaxBurst. Returns k: pkts[0..k) are the packets that carried an IP
// packet, each now holding the inner IP packet alone (outer headers and
// trailer removed), in order, with peer_of[i] the index of the peer whose SA
// verified it. Then *dummies ESP dummy packets (next header 59, RFC 4303 2.6:
// node keepalives, worker/keepalive.h), authenticated, each holding its
// payload alone, with its peer in peer_of[k + d]: not a drop (the caller
// reads and frees them), then the failed packets with
// reasons[] (kUnknownPeer, kNoSa, kReplay, kAuthFailed, kBadTrailer: a next
// header other than 4, 41 and 59, or bad padding; kMalformed). The caller
// frees the dummies and the failed packets.
// Every packet that authenticates and passes the anti-replay window proves
// its peer alive: now_ms (the worker's flow clock) goes into the peer's
// PeerLink::last_heard_ms, whatever the trailer says, and is counted in the
// peer's PeerTraffic block of `worker` (the caller's index).
uint16_t decrypt_burst(GcmEngine& engine, const Tables& tables, uint32_t now_ms, uint16_t worker, rte_mbuf** pkts,
                       const EspMeta* meta, uint16_t n, DropReason* reasons, uint16_t* peer_of,
                       uint16_t* dummies);

}  // namespace meshwire::dp::esp
