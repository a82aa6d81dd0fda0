// The generator's packets: deterministic flows, prebuilt frame templates and
// the probe every generated packet carries in its L4 payload. Pure code over
// plain bytes (no DPDK), so tests can pin the exact frames.
//
// Frame sizes follow RFC 2544: the Ethernet frame including its 4-byte FCS,
// which the NIC (or here the memif peer) never sees in the buffer. A 64 B
// frame is 60 bytes of mbuf data. A size too small for the headers plus the
// probe is raised to the smallest that fits (effective_frame_size()).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include <meshwire/dp/config.h>

namespace meshwire::perf {

inline constexpr size_t kFcsLen = 4;
inline constexpr size_t kMaxFrameSize = 1518;  // with FCS: 1500-byte IP MTU

// 16 bytes at the start of the L4 payload of every generated packet, in host
// byte order (the generator reads back what it wrote on the same machine).
struct Probe {
  uint32_t magic;
  uint32_t trial;  // which trial sent it: late packets of an earlier trial do not count
  uint64_t tsc;    // rte_rdtsc() just before the burst was handed to the port
};
static_assert(sizeof(Probe) == 16);
inline constexpr uint32_t kProbeMagic = 0x4d57'5046;  // "MWPF"
// The shortest IP packet the generator sends: IPv4, UDP and the probe.
inline constexpr size_t kMinProbePacketLen = 20 + 8 + sizeof(Probe);

enum class L4Proto : uint8_t { kUdp, kTcp };

// One direction of one flow: the addresses of the generated frame.
struct Flow {
  uint8_t src_mac[6];
  uint8_t dst_mac[6];
  dp::IpAddress src;
  dp::IpAddress dst;
  uint16_t sport;
  uint16_t dport;
  L4Proto l4;
};

// What to generate: count flows over src_count x dst_count addresses
// (consecutive from src / dst) and distinct ports, cycling.
struct FlowSet {
  uint8_t src_mac[6];
  uint8_t dst_mac[6];
  dp::IpAddress src;
  uint32_t src_count = 1;
  dp::IpAddress dst;
  uint32_t dst_count = 1;
  uint32_t flows = 1;
  L4Proto l4 = L4Proto::kUdp;
  uint16_t dport = 5001;     // destination ports dport .. dport + dport_count - 1
  uint16_t dport_count = 7;
};

// Flow i of set: source address src + (i % src_count), destination dst + ((i
// / src_count) % dst_count), source port 1024 + (i % 60000), destination port
// dport + (i % dport_count) (5001 + (i % 7) by default).
Flow make_flow(const FlowSet& set, uint32_t i);

// Ethernet + IP + L4 header bytes for the family/protocol.
size_t header_len(uint8_t family, L4Proto l4);
// max(requested, headers + probe + FCS), capped at kMaxFrameSize.
uint16_t effective_frame_size(uint16_t requested, uint8_t family, L4Proto l4);

// A whole frame for one flow at one size, probe zeroed, with what is needed
// to stamp a probe without recomputing the L4 checksum from scratch.
struct Template {
  std::array<uint8_t, kMaxFrameSize> bytes;
  uint16_t len = 0;           // bytes in the buffer (frame size - FCS)
  uint16_t probe_offset = 0;  // from the frame start
  uint16_t csum_offset = 0;   // the L4 checksum field
  uint64_t csum_partial = 0;  // one's complement sum of pseudo-header and L4 with probe and checksum zero
  uint16_t frame_size = 0;    // with FCS
};

// Builds the frame: IPv4 (DF set, TTL 64) or IPv6 (hop limit 64), UDP or TCP
// (ACK, window 65535, sequence numbers from the flow), payload filled with a
// byte pattern. frame_size must be effective_frame_size() of itself.
void build_template(const Flow& flow, uint16_t frame_size, Template* out);

// Writes the probe into frame (a copy of t's bytes) and fixes the L4 checksum.
void stamp_probe(uint8_t* frame, const Template& t, const Probe& probe);

// Finds the probe of a received frame (from its Ethernet header) or of an IP
// packet (decrypted ESP payload). False if the packet is not IPv4/IPv6 UDP/TCP
// with a whole probe carrying kProbeMagic.
bool read_probe_frame(const uint8_t* frame, size_t len, Probe* out);
bool read_probe_ip(const uint8_t* ip, size_t len, Probe* out);

// IMIX: 7 x 64, 4 x 576, 1 x 1400 (a simple IMIX capped at 1400 so that it
// fits the encapsulated MTU). imix_size(i) is the size of the i-th packet.
inline constexpr std::array<uint16_t, 12> kImixPattern = {64, 576, 64, 64, 1400, 64, 576, 64, 576, 64, 64, 576};
inline constexpr std::array<uint16_t, 3> kImixSizes = {64, 576, 1400};

}  // namespace meshwire::perf
