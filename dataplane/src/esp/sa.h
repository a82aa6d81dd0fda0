// Security associations as the workers use them. Configuration (peer, SPI,
// algorithm) lives in Config; these are the runtime blocks.
//
// Outbound: one OutboundSa per (peer, worker), owned and written only by that
// worker (its sequence counter needs no atomics). Inbound: one InboundSa per
// (peer, sender worker); any worker may decrypt its packets, so its only
// mutable state is the lock-free ReplayWindow.
//
// An SA object outlives table generations: the next generation reuses the
// one whose peer address, SPI (and worker) and key are unchanged, so its
// sequence number or replay window carries on across an Apply. `refs` counts
// the generations that hold it (control thread only).
#pragma once

#include <cstdint>
#include <cstring>

#include <rte_byteorder.h>
#include <rte_ip.h>

#include "esp/gcm.h"
#include "esp/replay.h"
#include "net/parse.h"

namespace meshwire::dp {
struct PeerTraffic;
}

namespace meshwire::dp::esp {

// ESP header + IV (8 + 8), trailer (pad length + next header), ICV.
inline constexpr uint16_t kEspHeaderLen = 8;
inline constexpr uint16_t kIvLen = 8;
inline constexpr uint16_t kTrailerLen = 2;
inline constexpr uint16_t kIcvLen = 16;
inline constexpr uint16_t kUdpLen = 8;
inline constexpr uint16_t kAadLen = 12;  // SPI || seq-hi || seq-lo (ESN always on)

// Bytes an inner packet grows by on the wire beyond its own length, worst case
// (3 bytes of padding), not counting the outer IP header.
inline constexpr uint16_t kEspOverheadNoIp = kUdpLen + kEspHeaderLen + kIvLen + 3 + kTrailerLen + kIcvLen;

// UDP source port for an SA: constant per SA (so the receiver's RSS keeps each
// SA on one queue), spread over the dynamic range 49152..65535.
constexpr uint16_t udp_source_port_for_spi(uint32_t spi) {
  uint32_t h = spi * 0x9E3779B1u;  // Fibonacci hashing: neighbouring SPIs land far apart
  return static_cast<uint16_t>(0xC000u | (h >> 18));
}

// The ESN AAD of RFC 4303/4106: SPI || seq-hi || seq-lo, big-endian.
inline void write_aad(uint8_t aad[kAadLen], uint32_t spi, uint64_t seq) {
  net::store_be32(aad, spi);
  net::store_be32(aad + 4, static_cast<uint32_t>(seq >> 32));
  net::store_be32(aad + 8, static_cast<uint32_t>(seq));
}

// The same AAD for a received packet (esp: its ESP header): SPI and seq-lo
// are copied as they are on the wire, only seq-hi, which is not sent, is
// converted. Its SA was found by that SPI, and seq-lo is the low half of the
// number the replay window inferred, so this equals write_aad(spi, seq).
inline void write_inbound_aad(uint8_t aad[kAadLen], const uint8_t* esp, uint32_t seq_hi) {
  const uint32_t hi = rte_cpu_to_be_32(seq_hi);
  std::memcpy(aad, esp, 4);
  std::memcpy(aad + 4, &hi, 4);
  std::memcpy(aad + 8, esp + 4, 4);
}

// Points op at one ESP packet (esp: its ESP header; payload_len: the bytes
// between IV and ICV) whose AAD is already in aad.
inline void point_esp_op(GcmOp& op, const GcmKey* key, uint8_t* esp, uint32_t payload_len, const uint8_t* aad) {
  op.key = key;
  op.iv8 = esp + kEspHeaderLen;
  op.aad = aad;
  op.aad_len = kAadLen;
  op.data = esp + kEspHeaderLen + kIvLen;
  op.len = payload_len;
  op.tag = op.data + payload_len;
}

// point_esp_op() with the ESN AAD written into aad.
inline void prepare_esp_op(GcmOp& op, const GcmKey* key, uint8_t* esp, uint32_t payload_len, uint32_t spi,
                           uint64_t seq, uint8_t aad[kAadLen]) {
  write_aad(aad, spi, seq);
  point_esp_op(op, key, esp, payload_len, aad);
}

// The outer IP header, UDP header and SPI every packet of an SA starts with:
// IPv4 20 + 8 + 4, IPv6 40 + 8 + 4 bytes.
inline constexpr uint16_t kOuterTemplateV4 = 20 + kUdpLen + 4;
inline constexpr uint16_t kOuterTemplateV6 = 40 + kUdpLen + 4;

struct alignas(64) OutboundSa {
  // Hot, written per packet by the owning worker only.
  uint64_t seq = 0;  // last sequence number used; the next packet uses seq + 1
  // Read-only after setup.
  // The owning worker's traffic counters with the peer (PeerTraffic, in
  // route/tables.h; the peer's link outlives the SA): nullptr counts none.
  PeerTraffic* traffic = nullptr;
  uint32_t spi = 0;        // host order
  uint16_t udp_sport = 0;  // host order
  uint8_t family = 0;      // outer IP version: 4 or 6
  uint8_t outer_src[16];   // this node's tunnel address (IPv4 in the first 4 bytes)
  uint8_t outer_dst[16];   // the peer's tunnel address
  uint16_t worker = 0;     // the worker that owns it
  uint32_t refs = 0;       // control thread only
  uint64_t created_unix_ms = 0;  // when it was set up (an SA an Apply keeps keeps it too)
  // What build_outer_template() derives from the fields above, so that the
  // encrypt stage copies the outer headers and patches in the lengths, the
  // IPv4 header checksum and the sequence number instead of building them
  // field by field per packet. outer_template_len is 0 until it is built
  // (the encrypt stage drops the SA's packets then).
  uint8_t outer_template[kOuterTemplateV6];  // IP header (lengths and checksum 0), UDP header (length 0), SPI
  uint8_t outer_template_len = 0;            // kOuterTemplateV4, kOuterTemplateV6, or 0
  uint32_t ip4_sum = 0;  // IPv4: the one's complement sum of the template's header as 16-bit native words (rte_raw_cksum)
  GcmKey key;
};

// Fills sa's outer_template, outer_template_len and ip4_sum from its family,
// addresses, udp_sport and spi. Call once those are set, before any worker
// encrypts with sa (control thread, or whoever sets the SA up).
inline void build_outer_template(OutboundSa* sa) {
  uint8_t* t = sa->outer_template;
  std::memset(t, 0, sizeof(sa->outer_template));
  uint8_t* udp;
  if (sa->family == 6) {
    t[0] = 0x60;  // version 6, traffic class and flow label 0
    t[6] = 17;    // next header: UDP; payload length at 4 stays 0
    t[7] = 64;    // hop limit
    std::memcpy(t + 8, sa->outer_src, 16);
    std::memcpy(t + 24, sa->outer_dst, 16);
    udp = t + 40;
    sa->outer_template_len = kOuterTemplateV6;
    sa->ip4_sum = 0;
  } else {
    t[0] = 0x45;  // version 4, IHL 5; TOS, total length and ID stay 0
    t[6] = 0x40;  // DF, fragment offset 0
    t[8] = 64;    // TTL
    t[9] = 17;    // protocol: UDP; the checksum at 10 stays 0
    std::memcpy(t + 12, sa->outer_src, 4);
    std::memcpy(t + 16, sa->outer_dst, 4);
    udp = t + 20;
    sa->outer_template_len = kOuterTemplateV4;
    sa->ip4_sum = rte_raw_cksum(t, 20);
  }
  net::store_be16(udp, sa->udp_sport);
  net::store_be16(udp + 2, net::kEspInUdpPort);  // length and checksum (RFC 3948: 0) stay 0
  net::store_be32(udp + 8, sa->spi);
}

// The IPv4 header checksum of a template's header with total_length (host
// order) patched in, as it goes on the wire (a native 16-bit store):
// rte_ipv4_cksum()'s value for the same header.
inline uint16_t outer_ip4_checksum(uint32_t ip4_sum, uint16_t total_length) {
  uint32_t sum = ip4_sum + rte_cpu_to_be_16(total_length);
  sum = (sum & 0xFFFF) + (sum >> 16);
  sum = (sum & 0xFFFF) + (sum >> 16);
  return static_cast<uint16_t>(~sum);
}

struct alignas(64) InboundSa {
  GcmKey key;        // read-only after setup
  uint32_t spi = 0;  // host order
  uint32_t refs = 0; // control thread only
  uint8_t family = 0;      // the peer's tunnel address (its identity, with spi)
  uint8_t source[16]{};
  uint64_t created_unix_ms = 0;  // when it was set up (an SA an Apply keeps keeps it too)
  ReplayWindow window;
};

}  // namespace meshwire::dp::esp
