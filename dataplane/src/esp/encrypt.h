// ESP encrypt stage (RFC 4303 tunnel mode in UDP/4500, RFC 3948; AES-GCM per
// RFC 4106 with ESN always on). Worker-only: no locks, allocation, syscalls.
#pragma once

#include <cstdint>

#include <rte_mbuf.h>

#include <meshwire/dp/counters.h>

#include "esp/gcm.h"
#include "esp/sa.h"

namespace meshwire::dp::esp {

struct EncryptContext {
  uint8_t src_mac[6];      // the uplink port's MAC
  bool offload_ipv4_cksum; // the uplink computes outer IPv4 header checksums
  bool offload_udp_cksum;  // the uplink computes outer UDP checksums (IPv6 needs one)
};

// n <= kMaxBurst. Input: pkts[i] holds one whole inner IPv4/IPv6 packet starting at its data
// offset (no Ethernet header), in one segment; sas[i] is the worker's own
// outbound SA for its peer, dst_macs[i] the peer's fabric MAC. Each packet
// becomes a complete Ethernet frame ready for the uplink: outer IP, UDP
// (source port from the SPI, destination 4500), ESP header, IV (= 64-bit
// sequence number), ciphertext, trailer, ICV. All n are encrypted in one
// ipsec-mb burst.
// Returns how many succeeded; they are at pkts[0..k) in order. Failed ones
// follow with reasons[] (kTooBig: no room in the mbuf; kMalformed: chained
// mbuf or not IP). The caller frees failed packets.
uint16_t encrypt_burst(GcmEngine& engine, const EncryptContext& ctx, rte_mbuf** pkts,
                       OutboundSa* const* sas, const uint64_t* dst_macs, uint16_t n,
                       DropReason* reasons);

// The same for ESP dummy packets (RFC 4303 2.6; node keepalives,
// worker/keepalive.h): pkts[i] holds any payload, even none, and goes out
// with next header 59 ("no next header"), which a receiver discards. A
// separate entry point, not a flag: pod traffic never takes this path.
uint16_t encrypt_dummy_burst(GcmEngine& engine, const EncryptContext& ctx, rte_mbuf** pkts,
                             OutboundSa* const* sas, const uint64_t* dst_macs, uint16_t n,
                             DropReason* reasons);

}  // namespace meshwire::dp::esp
