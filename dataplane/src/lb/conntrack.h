// Connection tracking for service load balancing: one table of flows that
// every worker looks up and inserts into without locks, and that only the
// control thread removes from.
//
// A client connects to VIP:port; the worker that sees the first packet picks
// a backend and inserts a Flow. Later packets of the connection, in either
// direction and on whatever worker they arrive (RSS is not symmetric; replies
// from remote nodes come out of decryption on any queue), find it with one
// lookup: the forward tuple (client -> VIP) and the reverse tuple (backend ->
// client) are both in the index, and the lookup says which one matched.
//
// Layout (all allocated once, at create(), with rte_zmalloc_socket):
//  * flows_: capacity records of 128 bytes. Line 1 holds what lookups
//    compare and the DNAT target (forward tuple, backend): read by every
//    packet, written only at insert and by rebind(). Line 2 holds what
//    packets write (last_seen_ms, state) and cold fields, so that the writes
//    of one direction's worker do not evict the line the other direction's
//    worker compares against.
//  * buckets_: a power of two of 64-byte buckets, 8 slots each, sized so that
//    the index is at most 50% full when every record is a connection (two
//    entries). A slot is 0 (empty) or tag (32 bits of the hash) << 32 |
//    direction << 31 | (flow index + 1). Each tuple has two candidate
//    buckets, both from its 64-bit hash; insert takes the first while it
//    has room to spare (else the emptier), so that a lookup that hits
//    nearly always reads one line.
//  * free_: an MPMC ring (rte_ring, RTS mode: CAS-based, and a preempted
//    thread does not stall the others) of free record indices. Each worker
//    takes them in bulk into its WorkerCache, so that it touches the ring
//    once per WorkerCache-full of new flows.
//  * pending_: records removed by the control thread, each batch waiting for
//    an RCU grace period (a token of rte_rcu_qsbr_start) before going back
//    to free_. Our own FIFO, not rte_rcu_qsbr_dq: it is sized to capacity, so
//    it never refuses, and one token serves a whole sweep's batch.
//
// Who writes what, and memory ordering:
//  * A worker inserting writes the whole record (it owns it: it took it from
//    its cache), then claims an empty slot with a CAS (seq_cst, so also
//    release): a reader whose load sees the slot sees the whole record.
//    Readers filter a bucket's 8 slots by tag in one pass (SSE2: four
//    16-byte loads), then load each candidate slot again with acquire before
//    they read its record. Slots are only ever claimed from 0 by inserts,
//    and set back to 0 by whoever owns the record's entries: the inserting
//    worker undoing its own insert, the control thread removing the flow, a
//    worker in rebind().
//  * Record life (Flow::record_state, internal): kFree (in the ring or a
//    cache) -> kLive (set by insert after both entries are in) -> kDead
//    (the control thread, by CAS, before clearing the entries) -> kFree after
//    a grace period. rebind() and the control thread's predicate and
//    for_each() move kLive -> kBusy -> kLive by CAS around what they do, so
//    removal and rebind never run on one flow at once; whoever loses the CAS
//    gives up (rebind fails, the sweep skips the record until its next pass).
//    An insert that has to undo entries that readers may have seen marks the
//    record kAbandoned; the sweep sends it through a grace period too.
//  * backend, backend_port, backend_id change only in rebind(), under a
//    sequence counter (backend_seq: odd while they change). The worker that
//    owns the forward direction (the only one that calls rebind) reads them
//    directly; any other thread reads them with read_backend().
//  * last_seen_ms, state, attempts: any worker, relaxed (touch() writes
//    last_seen_ms only when it changes). The control thread reads them
//    relaxed; a value a few packets old only shifts expiry slightly.
//  * A record found by a lookup stays valid and unchanged (but for the
//    fields above) until the worker reports a quiescent state: the control
//    thread clears a flow's entries before its grace period starts, and
//    reuses the record only after it ends.
//
// Time: now_ms is any millisecond clock that the workers and the control
// thread share; it may wrap (idle times are differences modulo 2^32, and a
// stamp a little ahead of the control thread's now is not idle time).
//
// Duplicates: two workers inserting the same forward tuple at the same
// instant. After claiming its forward slot, insert scans both buckets again;
// a worker that finds another record with the same forward tuple that is
// live, or being inserted with a lower index, withdraws and returns that
// record (counted: duplicates_avoided; this also makes an insert of a tuple
// already present return the existing flow). Of two concurrent inserts at
// least one sees the other, and never do both withdraw; when only the one
// with the lower index sees the other, both records stay: both are valid
// (Maglev is a pure function, so both picked the same backend), the lookups
// find one of them, and the other idles out. RSS keeps one connection's
// forward packets on one worker, so either is rare.
//
// Reverse clashes: two connections from the same client address and port to
// two VIPs whose backends include the same backend address and port have the
// same reverse tuple. The second insert fails (insert_clash) rather than
// deliver the replies of one to the other; the client's retransmission
// succeeds once the first has gone. (Two such inserts at the same instant
// may both succeed; the replies then go to one of them.)
//
// Hash flooding: flow_hash() has fixed keys, so tuples that share a bucket
// pair can be computed offline; filling one pair (16 slots) makes inserts of
// the tuples that hash there fail. Only sources that can spoof many tuples
// inside the cluster can do it.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>

#if defined(__SSE4_2__)
#include <nmmintrin.h>
#else
#include <rte_crc_sw.h>
#endif

#include <rte_memory.h>
#include <rte_prefetch.h>
#include <rte_rcu_qsbr.h>
#include <rte_ring.h>

#include <meshwire/dp/result.h>

namespace meshwire::dp::lb {

inline constexpr uint32_t kNoFlow = 0xFFFFFFFF;
inline constexpr uint8_t kAffinityProto = 0xFF;  // FlowTuple::proto of a session-affinity record

// A connection's identity. Compared and hashed as 40 bytes: build it from
// FlowTuple{} (all zero) so that the padding and the unused address bytes
// are zero.
struct alignas(8) FlowTuple {
  uint8_t family = 0;  // 4 or 6
  uint8_t proto = 0;   // 6, 17, 132, or kAffinityProto
  uint16_t src_port = 0;  // host order
  uint16_t dst_port = 0;  // host order
  uint8_t pad[2] = {};
  uint8_t src[16] = {};  // IPv4 in the first 4 bytes, the rest zero
  uint8_t dst[16] = {};
  friend bool operator==(const FlowTuple&, const FlowTuple&) = default;
};
static_assert(sizeof(FlowTuple) == 40);

// 64 bits of hash of the tuple: two CRC32-C sums over its words, each in
// its own order (so that the halves are not one affine function of the
// other, as two seeds over the same order would be); the low half picks the
// first bucket, the high half is the tag. An IPv4 tuple is hashed as its 16
// meaningful bytes (the zero ones add nothing): four CRC32 instructions in
// two independent chains. Compiled for SSE4.2 (the data plane's build, DPDK's
// machine flags), the instruction; otherwise DPDK's table-driven CRC32-C,
// which gives the same values (a test checks that). Any thread; the same
// value in every process.
namespace hash_detail {
inline uint32_t crc64(uint64_t data, uint32_t crc) {
#if defined(__SSE4_2__)
  return static_cast<uint32_t>(_mm_crc32_u64(crc, data));
#else
  return crc32c_2words(data, crc);
#endif
}
inline constexpr uint32_t kSeedLo = 0x9E3779B9, kSeedHi = 0x85EBCA6B;
}  // namespace hash_detail

inline uint64_t flow_hash(const FlowTuple& t) {
  using hash_detail::crc64;
  uint64_t w[5];
  std::memcpy(w, &t, sizeof(w));
  if (t.family != 6) {
    // family, proto, ports; then the source's 4 bytes and the destination's.
    const uint64_t a = (w[1] & 0xFFFFFFFFull) | w[3] << 32;
    const uint32_t lo = crc64(a, crc64(w[0], hash_detail::kSeedLo));
    const uint32_t hi = crc64(w[0], crc64(a, hash_detail::kSeedHi));
    return uint64_t{hi} << 32 | lo;
  }
  uint32_t lo = hash_detail::kSeedLo, hi = hash_detail::kSeedHi;
  for (int i = 0; i < 5; ++i) {
    lo = crc64(w[i], lo);
    hi = crc64(w[4 - i], hi);
  }
  return uint64_t{hi} << 32 | lo;
}

// TCP/UDP/SCTP state as the workers track it (stored as uint8_t in Flow::state).
// kConnectFailed: the backend refused or did not answer a new connection
// (TCP SYN, SCTP INIT), and the worker that owns the flow will retry it on
// another backend.
enum class FlowState : uint8_t { kSynSent, kEstablished, kFinSeen, kClosed, kUdp, kSctp, kAffinity, kConnectFailed };

// Idle timeouts per state (milliseconds since the last packet).
struct ConnTrackTimeouts {
  uint32_t syn_sent_ms = 60'000;
  uint32_t established_ms = 21'600'000;  // 6 h
  uint32_t fin_seen_ms = 10'000;
  uint32_t closed_ms = 10'000;
  uint32_t udp_ms = 60'000;
  uint32_t sctp_ms = 21'600'000;
};

// One flow. Lookups compare line 1; packets write line 2.
struct alignas(64) Flow {
  // --- line 1: identity and DNAT target
  FlowTuple forward;  // client -> VIP:port (for an affinity record: client, port 0 -> VIP:port)
  uint8_t backend[16] = {};  // the DNAT target (rebind() changes it; see read_backend())
  uint16_t backend_port = 0;
  uint16_t backend_id = 0;    // the caller's; opaque here
  std::atomic<uint32_t> backend_seq{0};  // ConnTrack's: odd while rebind() writes the backend
  // --- line 2: written by packets, and cold
  std::atomic<uint32_t> last_seen_ms{0};  // any worker, relaxed (touch())
  std::atomic<uint8_t> state{0};          // FlowState; any worker, relaxed
  std::atomic<uint8_t> attempts{0};       // connect attempts, 1 = first backend; rebind() adds one
  std::atomic<uint8_t> record_state{0};   // ConnTrack's (life of the record): never write it
  // The caller's: whether the flow's new connection may still be retried
  // on another backend (set before insert by the worker that owns the flow,
  // cleared by it; read by any worker that sees the backend refuse).
  std::atomic<uint8_t> retry{0};
  uint32_t frontend_id = 0;          // the caller's id of the service frontend; opaque here
  uint32_t created_ms = 0;           // set by insert
  uint32_t affinity_timeout_ms = 0;  // affinity records: idle timeout (state kAffinity)
  // The caller's: what the DNAT of a forward packet changes in its
  // checksums (net::NatDeltas, packed), kept beside the backend by the
  // worker that owns the forward direction.
  std::atomic<uint32_t> dnat_deltas{0};
  // The caller's, for connection telemetry. When the connection's current
  // attempt began (flow_clock_us() at the SYN or INIT it sent to its
  // backend; 0: not a connect), by the worker that owns the forward
  // direction.
  uint32_t connect_started_us = 0;
  // Flow logs: 0 when the flow is not logged; else the flow clock of its
  // last record (never 0: insert takes init's, the control thread moves it).
  std::atomic<uint32_t> log_reported_ms{0};
  // Logged flows only: packets and IP bytes each way (forward: client to
  // backend). Each direction is added to by the worker that handles it
  // (relaxed load and store, no lock: exact while one worker does, which RSS
  // makes the rule); zero at insert.
  std::atomic<uint64_t> fwd_packets{0};
  std::atomic<uint64_t> fwd_bytes{0};
  std::atomic<uint64_t> rev_packets{0};
  std::atomic<uint64_t> rev_bytes{0};
};
static_assert(sizeof(Flow) == 128);

// Adds one packet of `bytes` to a logged flow's counters of one direction.
inline void count_flow(std::atomic<uint64_t>& packets, std::atomic<uint64_t>& bytes, uint32_t len) {
  packets.store(packets.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  bytes.store(bytes.load(std::memory_order_relaxed) + len, std::memory_order_relaxed);
}
static_assert(offsetof(Flow, last_seen_ms) == 64, "what packets write starts line 2");

// The reverse tuple of a connection: backend:port -> client:port.
inline FlowTuple reverse_tuple(const FlowTuple& forward, const uint8_t* backend, uint16_t backend_port) {
  FlowTuple r{};
  r.family = forward.family;
  r.proto = forward.proto;
  r.src_port = backend_port;
  r.dst_port = forward.src_port;
  std::memcpy(r.src, backend, 16);
  std::memcpy(r.dst, forward.src, 16);
  return r;
}

// The key of a session-affinity record: client -> VIP:port, proto kAffinityProto.
inline FlowTuple affinity_tuple(uint8_t family, const uint8_t* client, const uint8_t* vip, uint16_t vip_port) {
  FlowTuple t{};
  t.family = family;
  t.proto = kAffinityProto;
  t.dst_port = vip_port;
  std::memcpy(t.src, client, family == 4 ? 4 : 16);
  std::memcpy(t.dst, vip, family == 4 ? 4 : 16);
  return t;
}

// The idle timeout of a flow in this state; kAffinity: affinity_timeout_ms.
// A state out of range gets the established timeout.
inline uint32_t idle_timeout_ms(const ConnTrackTimeouts& t, FlowState state, uint32_t affinity_timeout_ms) {
  switch (state) {
    case FlowState::kSynSent: return t.syn_sent_ms;
    case FlowState::kConnectFailed: return t.syn_sent_ms;
    case FlowState::kEstablished: return t.established_ms;
    case FlowState::kFinSeen: return t.fin_seen_ms;
    case FlowState::kClosed: return t.closed_ms;
    case FlowState::kUdp: return t.udp_ms;
    case FlowState::kSctp: return t.sctp_ms;
    case FlowState::kAffinity: return affinity_timeout_ms;
  }
  return t.established_ms;
}

// Marks the flow seen now (relaxed; writes only when the value changes, so a
// busy flow costs one store per millisecond, not one per packet).
inline void touch(Flow& f, uint32_t now_ms) {
  if (f.last_seen_ms.load(std::memory_order_relaxed) != now_ms) f.last_seen_ms.store(now_ms, std::memory_order_relaxed);
}

struct LookupResult {
  uint32_t flow = kNoFlow;  // kNoFlow: no match
  bool reverse = false;     // the tuple matched the flow's reverse tuple (backend -> client)
};

// What one sweep() (or clear()) did.
struct SweepStats {
  uint32_t visited = 0;    // records looked at
  uint32_t expired = 0;    // removed: idle past their state's timeout
  uint32_t closed = 0;     // removed: should_close() said so (or clear())
  uint32_t abandoned = 0;  // records of undone inserts, sent through a grace period
  uint32_t reclaimed = 0;  // records whose grace period ended, free again
};

// Counters; each is exact once the workers are quiet, approximate while they run.
struct ConnTrackStats {
  uint64_t live = 0;  // flows in the table (connections and affinity records)
  uint64_t capacity = 0;
  uint64_t inserted = 0;            // successful inserts, ever
  uint64_t removed = 0;             // flows the control thread removed, ever
  uint64_t insert_no_record = 0;    // insert failed: every record in use (or cached by other workers)
  uint64_t insert_no_slot = 0;      // insert failed: both candidate buckets of a tuple full
  uint64_t insert_clash = 0;        // insert failed: another flow has the same reverse tuple
  uint64_t duplicates_avoided = 0;  // insert found a record of the same tuple (concurrent or not), returned it
  uint64_t rebinds = 0;
  uint64_t rebind_failures = 0;  // flow being removed or swept, bucket pair full, or reverse clash
  uint64_t waiting_reuse = 0;    // removed records waiting for their grace period
};

struct ConnTrackConfig {
  uint32_t capacity = 0;  // max flows (affinity records count); 1 .. kMaxCapacity
  uint16_t workers = 1;   // WorkerCache::worker is 0 .. workers-1
  // The workers report quiescent states here (required); the control
  // thread must not be one of its readers.
  rte_rcu_qsbr* qsbr = nullptr;
  int socket_id = SOCKET_ID_ANY;
  ConnTrackTimeouts timeouts;
};

class ConnTrack {
 public:
  static constexpr uint32_t kMaxCapacity = 1u << 30;
  static constexpr uint32_t kWorkerCacheSize = 32;

  // A worker's own stock of free records. One per worker (or per thread that
  // inserts), never shared; give it back with release() when the worker stops.
  struct WorkerCache {
    explicit WorkerCache(uint16_t worker_index = 0) : worker(worker_index) {}
    uint16_t worker;  // < ConnTrackConfig::workers
    uint16_t count = 0;
    uint32_t free[kWorkerCacheSize];
  };

  // Allocates everything; errors name the field of the config at fault.
  static Result<std::unique_ptr<ConnTrack>> create(const ConnTrackConfig& config);
  ~ConnTrack();  // the workers must have stopped
  ConnTrack(const ConnTrack&) = delete;
  ConnTrack& operator=(const ConnTrack&) = delete;

  // ---- Workers (any number at once; no locks, no allocation, no syscalls)

  // The flow whose forward or reverse tuple is `t` (hash: flow_hash(t)).
  // Wait-free. A flow that rebind() is moving at that instant does not match
  // its reverse tuple (old or new).
  LookupResult lookup(const FlowTuple& t, uint64_t hash) const;
  // lookup() of n tuples (any n), with the first buckets of up to 32
  // prefetched before any is read (unless `prefetched`: the caller called
  // prefetch() for each hash already), and each candidate record (both
  // lines) before any is compared: out[i] is lookup(*tuples[i], hashes[i]).
  void lookup_burst(const FlowTuple* const* tuples, const uint64_t* hashes, uint16_t n, LookupResult* out,
                    bool prefetched = false) const;
  // Starts fetching the bucket a lookup of this hash reads first (and, the
  // table at most half full, nearly always only): call it as soon as a
  // packet's hash is known, so that the misses of a burst overlap the work
  // on the rest of it rather than each other in lookup_burst.
  void prefetch(uint64_t hash) const { rte_prefetch0(&buckets_[first_bucket(hash)]); }

  // A flow index from lookup or insert; valid until the caller's next
  // quiescent state.
  Flow& flow(uint32_t index) { return flows_[index]; }
  const Flow& flow(uint32_t index) const { return flows_[index]; }

  // Inserts a flow with init's forward, backend, backend_port, backend_id,
  // frontend_id, state, attempts, affinity_timeout_ms, dnat_deltas,
  // connect_started_us and log_reported_ms (its counters zero); created_ms and
  // last_seen_ms are now_ms. Indexes the forward tuple (fwd_hash:
  // flow_hash(init.forward)) and the reverse tuple (an affinity_tuple() is
  // inserted as insert_affinity() does). Returns the new flow; or the flow
  // already there, or that a concurrent insert of the same forward tuple
  // made (see Duplicates above); or kNoFlow when there is no free record, a
  // bucket pair is full, or the reverse tuple clashes (the caller counts a
  // drop; stats() says which). Look the tuple up first: an insert that finds
  // it costs more than the lookup.
  uint32_t insert(WorkerCache& cache, const Flow& init, uint64_t fwd_hash, uint32_t now_ms);
  // insert() of a session-affinity record: init.forward must be an
  // affinity_tuple(); the state is set to kAffinity, and the record expires
  // affinity_timeout_ms after its last touch().
  uint32_t insert_affinity(WorkerCache& cache, const Flow& init, uint64_t hash, uint32_t now_ms);

  // Moves a connection to another backend (connect retries): indexes the new
  // reverse tuple, updates the record (attempts + 1), clears the old reverse
  // entry. Only the worker that owns the flow's forward direction calls it.
  // False, with nothing changed, when the flow is being removed or swept at
  // this instant, is an affinity record, or the new reverse tuple cannot be
  // indexed (bucket pair full, or another flow has it).
  bool rebind(uint32_t flow, const uint8_t* backend, uint16_t port, uint16_t backend_id);

  // The backend of a flow, read consistently by a worker that does not own
  // the flow's forward direction. False when a rebind() is under way at this
  // instant (after a few tries): treat it as a miss for this packet.
  bool read_backend(uint32_t flow, uint8_t backend[16], uint16_t* port, uint16_t* backend_id) const;

  // Gives back the records cached for this worker (when it stops).
  void release(WorkerCache& cache);

  // ---- Control thread (one; concurrently with the workers)

  // Walks `budget` records from where the last call stopped (so a large
  // table is swept over several calls) and removes the live ones idle past
  // their state's timeout, or for which should_close(const Flow&) is true
  // (called only on live flows that are not idle, with the record held
  // still); their reuse waits for a grace period. Also frees the records
  // whose grace period has ended.
  // should_close may take the flow as Flow& to write the caller's fields
  // (the record is held: no rebind or removal runs on it meanwhile).
  // on_removed(const Flow&, bool expired) is called for each flow removed,
  // before its entries are cleared (the record stays as it was until its
  // grace period ends): expired, or closed by should_close.
  template <typename Pred, typename OnRemoved>
  SweepStats sweep(uint32_t now_ms, uint32_t budget, Pred&& should_close, OnRemoved&& on_removed);
  template <typename Pred>
  SweepStats sweep(uint32_t now_ms, uint32_t budget, Pred&& should_close) {
    return sweep(now_ms, budget, should_close, [](const Flow&, bool) {});
  }
  SweepStats sweep(uint32_t now_ms, uint32_t budget) {
    return sweep(now_ms, budget, [](const Flow&) { return false; });
  }

  // Calls fn(uint32_t index, const Flow&) for every live flow, each held still
  // while fn runs (a flow being rebound at that instant is skipped).
  template <typename Fn>
  void for_each(Fn&& fn);

  // Removes every flow (as sweep does; a flow being rebound at that instant
  // stays). Returns what was done.
  SweepStats clear();

  // Frees the removed records whose grace period has ended; returns how many.
  uint32_t reclaim();

  uint32_t size() const;  // live flows
  uint32_t capacity() const { return capacity_; }
  ConnTrackStats stats() const;
  const ConnTrackTimeouts& timeouts() const { return timeouts_; }
  void set_timeouts(const ConnTrackTimeouts& t) { timeouts_ = t; }

 private:
  enum class Record : uint8_t { kFree, kLive, kBusy, kDead, kAbandoned };
  struct alignas(64) Bucket {
    std::atomic<uint64_t> slot[8];
  };
  struct alignas(64) WorkerStats {
    std::atomic<uint64_t> inserted{0};  // written by its worker only
  };
  struct alignas(64) SharedStats {  // rare events: any worker, relaxed fetch_add
    std::atomic<uint64_t> insert_no_record{0};
    std::atomic<uint64_t> insert_no_slot{0};
    std::atomic<uint64_t> insert_clash{0};
    std::atomic<uint64_t> duplicates_avoided{0};
    std::atomic<uint64_t> rebinds{0};
    std::atomic<uint64_t> rebind_failures{0};
  };
  struct Batch {
    uint64_t token;  // rte_rcu_qsbr_start() when the batch was closed
    uint64_t end;    // pending_ position after its last record
  };
  static constexpr uint32_t kMaxBatches = 64;

  ConnTrack() = default;
  static bool claim_record(Flow& f, Record from, Record to) {
    uint8_t expected = static_cast<uint8_t>(from);
    return f.record_state.compare_exchange_strong(expected, static_cast<uint8_t>(to), std::memory_order_acq_rel,
                                                  std::memory_order_relaxed);
  }
  static void set_record(Flow& f, Record to) {
    f.record_state.store(static_cast<uint8_t>(to), std::memory_order_release);
  }
  static Record record_of(const Flow& f) {
    return static_cast<Record>(f.record_state.load(std::memory_order_acquire));
  }
  // Control thread: the per-record steps of sweep/clear/for_each.
  bool expired(const Flow& f, uint32_t now_ms) const;
  void remove_held(uint32_t index);  // record is kDead: clear its entries, queue it
  void retire(uint32_t index);
  void close_batch();

  uint32_t capacity_ = 0;
  uint16_t workers_ = 0;
  uint32_t bucket_mask_ = 0;
  // The bucket a tuple's hash tries first (its low half).
  uint32_t first_bucket(uint64_t hash) const { return static_cast<uint32_t>(hash) & bucket_mask_; }
  uint32_t refill_ = 0;  // records a WorkerCache takes from free_ at once
  ConnTrackTimeouts timeouts_;
  Flow* flows_ = nullptr;
  Bucket* buckets_ = nullptr;
  rte_ring* free_ = nullptr;
  rte_rcu_qsbr* qsbr_ = nullptr;
  WorkerStats* worker_stats_ = nullptr;  // [workers_]
  SharedStats* shared_stats_ = nullptr;
  // Control thread only.
  uint32_t* pending_ = nullptr;  // [capacity_], a FIFO of removed records
  uint64_t pending_head_ = 0;
  uint64_t pending_tail_ = 0;
  Batch batches_[kMaxBatches];
  uint32_t batch_head_ = 0;
  uint32_t batch_count_ = 0;
  uint32_t cursor_ = 0;
  std::atomic<uint64_t> removed_{0};  // written by the control thread; read by stats()

  friend struct ConnTrackInternals;  // the implementation's helpers (conntrack.cc)
};

// ---- Templates

template <typename Pred, typename OnRemoved>
SweepStats ConnTrack::sweep(uint32_t now_ms, uint32_t budget, Pred&& should_close, OnRemoved&& on_removed) {
  SweepStats s;
  s.reclaimed = reclaim();
  if (budget > capacity_) budget = capacity_;
  for (uint32_t k = 0; k < budget; ++k) {
    const uint32_t i = cursor_;
    cursor_ = i + 1 == capacity_ ? 0 : i + 1;
    ++s.visited;
    Flow& f = flows_[i];
    const Record r = record_of(f);
    if (r == Record::kAbandoned) {
      if (claim_record(f, Record::kAbandoned, Record::kDead)) {
        retire(i);
        ++s.abandoned;
      }
      continue;
    }
    if (r != Record::kLive) continue;
    if (expired(f, now_ms)) {
      if (claim_record(f, Record::kLive, Record::kDead)) {
        on_removed(static_cast<const Flow&>(f), true);
        remove_held(i);
        ++s.expired;
      }
      continue;
    }
    if (!claim_record(f, Record::kLive, Record::kBusy)) continue;
    if (should_close(f)) {
      set_record(f, Record::kDead);
      on_removed(static_cast<const Flow&>(f), false);
      remove_held(i);
      ++s.closed;
    } else {
      set_record(f, Record::kLive);
    }
  }
  close_batch();
  s.reclaimed += reclaim();
  return s;
}

template <typename Fn>
void ConnTrack::for_each(Fn&& fn) {
  for (uint32_t i = 0; i < capacity_; ++i) {
    Flow& f = flows_[i];
    if (record_of(f) != Record::kLive || !claim_record(f, Record::kLive, Record::kBusy)) continue;
    fn(i, static_cast<const Flow&>(f));
    set_record(f, Record::kLive);
  }
}

}  // namespace meshwire::dp::lb
