// Counters: one block per worker, cache-line aligned, written only by that
// worker (plain stores, no atomics on the fast path) and summed by readers
// (telemetry thread, control thread) with relaxed loads. A reader may see a
// value that is a few packets stale; it never sees a torn 64-bit value on
// x86-64.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace meshwire::dp {

// Every packet the data plane does not forward leaves with exactly one reason.
enum class DropReason : uint8_t {
  kMalformed,          // truncated or inconsistent headers
  kUnsupported,        // EtherType/protocol we do not carry (VLAN-tagged, non-IP)
  kNoRoute,            // no route for the destination
  kNoSa,               // ESP from a known peer with an unknown SPI
  kUnknownPeer,        // ESP from an address that is no configured peer
  kReplay,             // sequence number already seen or left of the window
  kAuthFailed,         // ICV did not verify
  kBadTrailer,         // ESP padding/next header invalid after decryption
  kInnerSpoofed,       // decrypted source not in the sending peer's pod CIDRs
  kPlaintextOnUplink,  // anything on the uplink that is not ESP-in-UDP/4500, ARP, ND or ICMP to us
  kTtlExceeded,        // TTL/hop limit would reach 0
  kTooBig,             // does not fit the uplink MTU after encapsulation (ICMP error sent for DF/IPv6; too many fragments otherwise)
  kNeighborMiss,       // destination pod's MAC not known yet (resolution requested)
  kPeerUnresolved,     // peer's MAC on the fabric not known yet
  kNotForUs,           // addressed to neither a pod CIDR nor this node
  kPuntQueueFull,      // control-plane queue full (ARP/ND/ICMP not handled)
  kTxFull,             // the port's TX queue did not take the packet
  kNoBackend,          // a new connection to a service frontend with no selectable backend
  kConntrackFull,      // a new connection to a service when the connection table is full
  kServiceFragment,    // a non-first fragment to a service frontend (no ports to balance by)
  kPeerDown,           // routed to a peer node that missed its keepalives (ICMP host unreachable sent)
  kServiceReplyUntracked,  // from a backend to a pod here, no connection, just after start (lb::kUntrackedReplyGraceMs)
  kCount
};

struct DropReasonInfo {
  std::string_view name;
  std::string_view help;
};

inline constexpr std::array<DropReasonInfo, static_cast<size_t>(DropReason::kCount)> kDropReasons{{
    {"malformed", "truncated or inconsistent headers"},
    {"unsupported", "EtherType or protocol not carried (VLAN-tagged, non-IP)"},
    {"no_route", "no route for the destination"},
    {"no_sa", "ESP from a known peer with an unknown SPI"},
    {"unknown_peer", "ESP from an address that is not a configured peer"},
    {"replay", "ESP sequence number already seen or left of the anti-replay window"},
    {"auth_failed", "ESP integrity check (ICV) failed"},
    {"bad_trailer", "ESP padding or next header invalid after decryption"},
    {"inner_spoofed", "decrypted source address not in the sending peer's pod CIDRs"},
    {"plaintext_on_uplink", "traffic on the uplink that is not ESP-in-UDP/4500, ARP, ND or ICMP to this node"},
    {"ttl_exceeded", "TTL or hop limit exhausted"},
    {"too_big", "packet does not fit the uplink MTU after encapsulation"},
    {"neighbor_miss", "destination pod's MAC address not resolved yet"},
    {"peer_unresolved", "peer's MAC address on the fabric not resolved yet"},
    {"not_for_us", "destination is neither a routed pod CIDR nor this node"},
    {"punt_queue_full", "queue to the control thread full"},
    {"tx_full", "port TX queue full"},
    {"no_backend", "new connection to a service with no backend taking new connections"},
    {"conntrack_full", "new connection to a service while the connection table is full"},
    {"service_fragment", "non-first IP fragment sent to a service address (cannot be balanced)"},
    {"peer_down", "peer node down: missed its keepalives"},
    {"service_reply_untracked",
     "from a service backend to a pod here with no connection, just after this data plane started"},
}};
static_assert(kDropReasons.size() == static_cast<size_t>(DropReason::kCount),
              "every DropReason needs a name and help text");

inline constexpr std::string_view drop_reason_name(DropReason r) {
  return kDropReasons[static_cast<size_t>(r)].name;
}

inline constexpr size_t kMaxPorts = 8;

// One worker's counters. Written only by its worker.
struct alignas(64) WorkerCounters {
  struct Port {
    uint64_t rx_packets, rx_bytes, tx_packets, tx_bytes;
  };
  std::array<Port, kMaxPorts> ports;
  uint64_t capture_copies;   // packet copies handed to a running capture (capture/tap.h)
  uint64_t capture_dropped;  // copies a capture lost: its ring or pool was full (the packets went on)
  uint64_t encrypted_packets, encrypted_bytes;
  uint64_t decrypted_packets, decrypted_bytes;
  uint64_t forwarded_local;  // same-node pod to pod
  uint64_t punted;           // handed to the control thread (ARP, ND, ICMP to us)
  uint64_t mss_clamped;
  uint64_t fragmented;       // IPv4 packets without DF split to fit the tunnel
  uint64_t icmp_errors_sent;
  uint64_t service_new_flows;      // connections to a service given a backend
  uint64_t service_dnat_packets;   // client -> VIP packets sent to their backend
  uint64_t service_reverse_packets;  // backend -> client packets given the VIP back
  uint64_t service_connect_failures;  // new connections a backend refused or left unanswered
  uint64_t service_connect_retries;   // ... sent again to another backend
  uint64_t service_outlier_ejections; // backends ejected after failing too many connects in a row
  uint64_t service_retry_untracked;   // new connections that could not be kept for retries (worker's list full)
  uint64_t keepalives_sent;           // ESP dummy packets sent to peers for node liveness
  uint64_t keepalives_received;       // authenticated ESP dummy packets from peers (consumed, not delivered)
  uint64_t icmp_errors_rate_limited;  // ICMP errors not sent: over the node's rate limit (control thread)
  uint64_t flow_log_records;          // flow log lines written (control thread)
  uint64_t flow_log_rate_limited;     // flow log records dropped over flow_logs.max_per_second (control thread)
  uint64_t flow_log_queue_full;       // retry events a worker could not queue for the flow log
  std::array<uint64_t, static_cast<size_t>(DropReason::kCount)> drops;
  // Not a counter: the flow clock (lb::flow_clock_ms(), never 0) when the
  // worker last began a poll round; 0 before its first. The health check's
  // view of a worker making progress (one plain store a round, on a line
  // the worker writes anyway). The control thread's block leaves it zero.
  uint64_t heartbeat_ms;
  // Of the drops above, those of packets that came in from the fabric (the
  // uplink stage: decryption and what follows it); the rest of a worker's
  // came from pods. The control thread's block leaves it zero.
  std::array<uint64_t, static_cast<size_t>(DropReason::kCount)> drops_from_fabric;
};

// The scalar counters by name, in the order readers show them.
struct ScalarCounter {
  std::string_view name;
  uint64_t WorkerCounters::*member;
};
inline constexpr std::array<ScalarCounter, 22> kScalarCounters{{
    {"encrypted_packets", &WorkerCounters::encrypted_packets},
    {"encrypted_bytes", &WorkerCounters::encrypted_bytes},
    {"decrypted_packets", &WorkerCounters::decrypted_packets},
    {"decrypted_bytes", &WorkerCounters::decrypted_bytes},
    {"forwarded_local", &WorkerCounters::forwarded_local},
    {"punted", &WorkerCounters::punted},
    {"mss_clamped", &WorkerCounters::mss_clamped},
    {"fragmented", &WorkerCounters::fragmented},
    {"icmp_errors_sent", &WorkerCounters::icmp_errors_sent},
    {"service_new_flows", &WorkerCounters::service_new_flows},
    {"service_dnat_packets", &WorkerCounters::service_dnat_packets},
    {"service_reverse_packets", &WorkerCounters::service_reverse_packets},
    {"service_connect_failures", &WorkerCounters::service_connect_failures},
    {"service_connect_retries", &WorkerCounters::service_connect_retries},
    {"service_outlier_ejections", &WorkerCounters::service_outlier_ejections},
    {"service_retry_untracked", &WorkerCounters::service_retry_untracked},
    {"keepalives_sent", &WorkerCounters::keepalives_sent},
    {"keepalives_received", &WorkerCounters::keepalives_received},
    {"icmp_errors_rate_limited", &WorkerCounters::icmp_errors_rate_limited},
    {"flow_log_records", &WorkerCounters::flow_log_records},
    {"flow_log_rate_limited", &WorkerCounters::flow_log_rate_limited},
    {"flow_log_queue_full", &WorkerCounters::flow_log_queue_full},
}};

// A counter of a block, read while its worker may write it.
inline uint64_t read_counter(const uint64_t& v) { return __atomic_load_n(&v, __ATOMIC_RELAXED); }

// Packet capture's counters, shown after the others.
inline constexpr std::array<ScalarCounter, 2> kCaptureCounters{{
    {"capture_copies", &WorkerCounters::capture_copies},
    {"capture_dropped", &WorkerCounters::capture_dropped},
}};

template <size_t A, size_t B>
constexpr std::array<ScalarCounter, A + B> join_counters(const std::array<ScalarCounter, A>& a,
                                                         const std::array<ScalarCounter, B>& b) {
  std::array<ScalarCounter, A + B> out{};
  for (size_t i = 0; i < A; ++i) out[i] = a[i];
  for (size_t i = 0; i < B; ++i) out[A + i] = b[i];
  return out;
}

// Every scalar counter, in the order readers show them.
inline constexpr auto kAllScalarCounters = join_counters(kScalarCounters, kCaptureCounters);

}  // namespace meshwire::dp
