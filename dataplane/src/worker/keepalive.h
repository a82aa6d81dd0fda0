// Node keepalives: encrypted proof of life between data planes.
//
// Every LivenessSettings::interval_ms the control thread (worker/control.h)
// writes one keepalive payload per peer of the live generation into an mbuf
// and hands it to worker 0 through its inject ring (InjectKind::kKeepalive).
// The worker seals it with its own outbound SA to that peer as an ESP dummy
// packet (RFC 4303 2.6: next header 59, "no next header") in the usual
// ESP-in-UDP tunnel (esp::encrypt_dummy_burst) and sends it on the uplink.
// The receiver authenticates it like any ESP packet, which marks the peer
// heard (PeerLink::last_heard_ms, esp::decrypt_burst), and discards it; any
// standard ESP implementation given the SA does the same.
//
// Payload (16 bytes, big-endian; the receiver never needs to read it):
//   0  "MWKA"
//   4  generation of the sender's tables that `peer` indexes (8 bytes)
//  12  peer: index of the destination in that generation's peers (2 bytes)
//  14  the sender's interval_ms, capped at 65535 (2 bytes, informational)
// The generation and index are for the sending worker, which drops (frees,
// uncounted) a keepalive of another generation than the one it reads: the
// index might name another peer there.
#pragma once

#include <cstddef>
#include <cstdint>

#include <rte_mbuf.h>

#include "worker/runtime.h"
#include "worker/worker.h"

namespace meshwire::dp {

inline constexpr size_t kKeepaliveLen = 16;
inline constexpr uint8_t kKeepaliveMagic[4] = {'M', 'W', 'K', 'A'};

struct Keepalive {
  uint64_t generation = 0;
  uint16_t peer = 0;
  uint16_t interval_ms = 0;
};

// Writes the payload into out[0..kKeepaliveLen). Any thread.
void write_keepalive(const Keepalive& k, uint8_t* out);
// Reads a payload; false when len is not kKeepaliveLen or the magic is wrong.
bool read_keepalive(const uint8_t* p, size_t len, Keepalive* out);

// Worker stage for the keepalives the control thread injected, each an mbuf
// holding one payload (n <= kRxBurst): those for the generation in
// ctx.tables are encrypted with this worker's outbound SA to their peer and
// appended to tx for the uplink (counted as keepalives_sent). Stale ones
// (another generation, or a peer index out of range) are freed silently;
// one for a peer whose fabric MAC is unknown is dropped as kPeerUnresolved,
// one that fails encryption with its reason. Takes ownership of all n.
void send_keepalives(WorkerContext& ctx, TxBuffers& tx, rte_mbuf** pkts, uint16_t n);

}  // namespace meshwire::dp
