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
// Payload (36 bytes, big-endian; the receiver never needs to read it):
//   0  "MWKA"
//   4  generation of the sender's tables that `peer` indexes (8 bytes)
//  12  peer: index of the destination in that generation's peers (2 bytes)
//  14  the sender's interval_ms, capped at 65535 (2 bytes, informational)
//  16  sent: the sender's wall clock when it built this one (Unix µs, 8)
//  24  echo: the `sent` of the last keepalive the sender had from the
//      destination, 0 when none (8 bytes)
//  32  held: microseconds between that one's arrival and `sent` (4 bytes)
// The generation and index are for the sending worker, which drops (frees,
// uncounted) a keepalive of another generation than the one it reads: the
// index might name another peer there. A receiver that gets an echo works
// out the round trip, (now - echo) - held, and the peer's clock offset,
// sent + rtt / 2 - now, as NTP does with its four stamps
// (note_keepalive()). A 16-byte payload (bytes 0-15 alone, as sent before
// the stamps) is still a keepalive; it just tells no times.
#pragma once

#include <cstddef>
#include <cstdint>

#include <rte_mbuf.h>

#include "worker/runtime.h"
#include "worker/worker.h"

namespace meshwire::dp {

inline constexpr size_t kKeepaliveLen = 36;
inline constexpr size_t kKeepaliveUntimedLen = 16;
inline constexpr uint8_t kKeepaliveMagic[4] = {'M', 'W', 'K', 'A'};
// Round trips longer than this are taken for clock steps, not measured.
inline constexpr uint64_t kKeepaliveMaxRttUs = 10'000'000;

struct Keepalive {
  uint64_t generation = 0;
  uint16_t peer = 0;
  uint16_t interval_ms = 0;
  bool timed = false;  // read_keepalive(): the payload had the stamps below
  uint64_t sent_us = 0;
  uint64_t echo_us = 0;
  uint32_t held_us = 0;
};

// Writes the payload into out[0..kKeepaliveLen). Any thread.
void write_keepalive(const Keepalive& k, uint8_t* out);
// Reads a payload of kKeepaliveLen bytes or more, or kKeepaliveUntimedLen
// (timed false); false when it is neither or the magic is wrong.
bool read_keepalive(const uint8_t* p, size_t len, Keepalive* out);

// Wall-clock microseconds since the Unix epoch (vDSO: no system call).
uint64_t wall_us();

// The receiving worker's part, for a timed keepalive from the peer of link
// that arrived at now_us: keeps its stamp to echo back, and when it echoes
// one of ours, the round trip and clock offset (KeepaliveClock).
void note_keepalive(PeerLink& link, const Keepalive& k, uint64_t now_us);
// The sender's part (control thread): the echo and held time for the next
// keepalive to link's peer, from what note_keepalive() kept (zeros when
// nothing recent came: older than kKeepaliveMaxRttUs, or being written).
void fill_echo(const PeerLink& link, uint64_t now_us, Keepalive* k);

// Worker stage for the ESP dummy packets decryption authenticated (each
// holding its payload, from peer peers[i] of tables): timed keepalives go to
// note_keepalive(); all n are freed (not a drop).
void note_keepalives(const Tables& tables, rte_mbuf** pkts, const uint16_t* peers, uint16_t n);

// Worker stage for the keepalives the control thread injected, each an mbuf
// holding one payload (n <= kRxBurst): those for the generation in
// ctx.tables are encrypted with this worker's outbound SA to their peer and
// appended to tx for the uplink (counted as keepalives_sent). Stale ones
// (another generation, or a peer index out of range) are freed silently;
// one for a peer whose fabric MAC is unknown is dropped as kPeerUnresolved,
// one that fails encryption with its reason. Takes ownership of all n.
void send_keepalives(WorkerContext& ctx, TxBuffers& tx, rte_mbuf** pkts, uint16_t n);

}  // namespace meshwire::dp
