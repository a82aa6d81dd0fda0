#include "lb/conntrack.h"

#include <algorithm>
#include <memory>
#include <string>
#include <utility>

#include <rte_common.h>
#include <rte_malloc.h>
#include <rte_pause.h>
#include <rte_prefetch.h>
#include <rte_ring_elem.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#include <xmmintrin.h>
#endif

namespace meshwire::dp::lb {

// Index slots: tag (the hash's high 32 bits) << 32 | direction << 31 | index + 1.
struct ConnTrackInternals {
  static constexpr uint64_t kTagMask = 0xFFFFFFFF00000000ull;
  static constexpr uint64_t kReverseBit = 1ull << 31;
  static constexpr uint64_t kIndexMask = kReverseBit - 1;
  static constexpr uint32_t kSlots = 8;
  static constexpr uint32_t kBurst = 32;  // lookups prefetched together

  static uint64_t make_entry(uint64_t hash, uint32_t index, bool reverse) {
    return (hash & kTagMask) | (reverse ? kReverseBit : 0) | (uint64_t{index} + 1);
  }
  static bool tag_matches(uint64_t entry, uint64_t hash) { return entry != 0 && ((entry ^ hash) & kTagMask) == 0; }
  static uint32_t entry_index(uint64_t entry) { return static_cast<uint32_t>(entry & kIndexMask) - 1; }
  static bool entry_reverse(uint64_t entry) { return (entry & kReverseBit) != 0; }

  static uint32_t first_bucket(const ConnTrack& ct, uint64_t hash) { return ct.first_bucket(hash); }
  static uint32_t second_bucket(const ConnTrack& ct, uint64_t hash) {
    return static_cast<uint32_t>((hash * 0x9E3779B97F4A7C15ull) >> 32) & ct.bucket_mask_;
  }

  static uint64_t word(const void* p, size_t at) {
    uint64_t w;
    std::memcpy(&w, static_cast<const uint8_t*>(p) + at, sizeof(w));
    return w;
  }

  // Word by word, straight from both (a copy of either first costs more
  // than the compare).
  static bool forward_matches(const Flow& f, const FlowTuple& t) {
    const void* a = &f.forward;
    const void* b = &t;
    return ((word(a, 0) ^ word(b, 0)) | (word(a, 8) ^ word(b, 8)) | (word(a, 16) ^ word(b, 16)) |
            (word(a, 24) ^ word(b, 24)) | (word(a, 32) ^ word(b, 32))) == 0;
  }

  // Whether t is f's reverse tuple (backend -> client), word by word: its
  // first word is the forward one's family and protocol with the backend's
  // port and the client's (zero padding in both). False while a rebind()
  // changes the backend: the flow's reverse identity is moving.
  static bool reverse_matches(const Flow& f, const FlowTuple& t) {
    static_assert(offsetof(FlowTuple, src_port) == 2 && offsetof(FlowTuple, dst_port) == 4 &&
                  offsetof(FlowTuple, src) == 8 && offsetof(FlowTuple, dst) == 24);
    const uint32_t seq = f.backend_seq.load(std::memory_order_acquire);
    if (seq & 1) return false;
    const void* fw = &f.forward;
    const void* b = &t;
    const uint64_t w0 = (word(fw, 0) & 0xFFFF) | uint64_t{f.backend_port} << 16 | uint64_t{f.forward.src_port} << 32;
    const bool match = ((w0 ^ word(b, 0)) | (word(f.backend, 0) ^ word(b, 8)) | (word(f.backend, 8) ^ word(b, 16)) |
                        (word(fw, 8) ^ word(b, 24)) | (word(fw, 16) ^ word(b, 32))) == 0;
    std::atomic_thread_fence(std::memory_order_acquire);
    return match && f.backend_seq.load(std::memory_order_relaxed) == seq;
  }

  static bool entry_matches(const ConnTrack& ct, uint64_t entry, const FlowTuple& t) {
    const Flow& f = ct.flows_[entry_index(entry)];
    return entry_reverse(entry) ? reverse_matches(f, t) : forward_matches(f, t);
  }

  // Which slots of a bucket hold the hash's tag (bit s: slot s) and which
  // are empty. A filter only (the two come from separate loads of the line):
  // whoever acts on a slot loads it again, atomically, first.
  struct SlotMasks {
    uint32_t tag;
    uint32_t empty;
  };
  static SlotMasks masks(const ConnTrack::Bucket& b, uint64_t hash) {
    const uint32_t empty = empty_mask(b);
    return {tag_mask(b, hash) & ~empty, empty};
  }

  // Which slots are empty (their low half, direction and index + 1, is
  // zero only then).
  static uint32_t empty_mask(const ConnTrack::Bucket& b) {
#if defined(__SSE2__)
    const Halves h = halves<0x88>(b);
    const __m128i zero = _mm_setzero_si128();
    return bits(_mm_cmpeq_epi32(h.lo, zero)) | bits(_mm_cmpeq_epi32(h.hi, zero)) << 4;
#else
    uint32_t m = 0;
    for (uint32_t s = 0; s < kSlots; ++s) {
      if (b.slot[s].load(std::memory_order_seq_cst) == 0) m |= 1u << s;
    }
    return m;
#endif
  }

  // Which slots hold the hash's tag. An empty slot whose zero tag the hash
  // happens to have is in it too: lookups weed it out where they weed out
  // every candidate, by tag_matches() on the slot loaded again; masks()
  // takes the empty ones out.
  static uint32_t tag_mask(const ConnTrack::Bucket& b, uint64_t hash) {
#if defined(__SSE2__)
    const Halves h = halves<0xDD>(b);
    const __m128i tag = _mm_set1_epi32(static_cast<int>(hash >> 32));
    return bits(_mm_cmpeq_epi32(h.lo, tag)) | bits(_mm_cmpeq_epi32(h.hi, tag)) << 4;
#else
    uint32_t m = 0;
    for (uint32_t s = 0; s < kSlots; ++s) {
      if (((b.slot[s].load(std::memory_order_seq_cst) ^ hash) & kTagMask) == 0) m |= 1u << s;
    }
    return m;
#endif
  }

#if defined(__SSE2__)
  // The high (shuffle 0xDD: tags) or low (0x88) 32-bit halves of slots 0-3
  // and 4-7, from four 16-byte loads of two slots each. x86 reads each
  // aligned 8-byte half of such a load atomically, so no slot is seen half
  // old, half new; and no load passes an earlier locked instruction (the CAS
  // before a duplicate scan), as the scalar version's seq_cst loads would not.
  struct Halves {
    __m128i lo, hi;
  };
  template <int kShuffle>
  static Halves halves(const ConnTrack::Bucket& b) {
    const auto* p = reinterpret_cast<const float*>(&b.slot[0]);
    const __m128 v0 = _mm_load_ps(p), v1 = _mm_load_ps(p + 4), v2 = _mm_load_ps(p + 8), v3 = _mm_load_ps(p + 12);
    return {_mm_castps_si128(_mm_shuffle_ps(v0, v1, kShuffle)), _mm_castps_si128(_mm_shuffle_ps(v2, v3, kShuffle))};
  }
  static uint32_t bits(__m128i v) { return static_cast<uint32_t>(_mm_movemask_ps(_mm_castsi128_ps(v))); }
#endif

  static uint32_t lowest(uint32_t mask) { return static_cast<uint32_t>(__builtin_ctz(mask)); }

  // The first slot of the bucket whose tag matches (loaded with acquire, so
  // that its record can be read), 0 when none does, or kRecheck when it
  // changed under the filter.
  static constexpr uint64_t kRecheck = ~0ull;
  static uint64_t first_candidate(const ConnTrack::Bucket& b, uint64_t hash) {
    const uint32_t m = tag_mask(b, hash);
    if (m == 0) return 0;
    const uint64_t e = b.slot[lowest(m)].load(std::memory_order_acquire);
    return tag_matches(e, hash) ? e : kRecheck;
  }

  static LookupResult scan(const ConnTrack& ct, const ConnTrack::Bucket& b, const FlowTuple& t, uint64_t hash) {
    for (uint32_t m = tag_mask(b, hash); m != 0; m &= m - 1) {
      const uint64_t e = b.slot[lowest(m)].load(std::memory_order_acquire);
      if (tag_matches(e, hash) && entry_matches(ct, e, t)) return {entry_index(e), entry_reverse(e)};
    }
    return {};
  }

  // Claims an empty slot for `entry` in one of the hash's buckets: the first
  // while it has kKeepFree empty slots or more, or is no fuller than the
  // second; else the emptier one first. So a lookup that hits nearly always
  // reads one bucket (the one prefetch() fetches), while a table near its
  // capacity still balances its buckets as two choices do (taking the first
  // until it is full leaves a bucket pair full for about one insert in a
  // thousand at capacity). The CAS is seq_cst: it publishes the record
  // written before it (release), and orders it before the duplicate scan
  // that follows (see find_duplicate). nullptr when both buckets are full.
  static constexpr int kKeepFree = 3;
  static std::atomic<uint64_t>* claim_slot(ConnTrack& ct, uint64_t hash, uint64_t entry) {
    ConnTrack::Bucket* a = &ct.buckets_[first_bucket(ct, hash)];
    ConnTrack::Bucket* b = &ct.buckets_[second_bucket(ct, hash)];
    uint32_t ea = empty_mask(*a);
    uint32_t eb = empty_mask(*b);
    if (__builtin_popcount(ea) < kKeepFree && __builtin_popcount(eb) > __builtin_popcount(ea)) {
      std::swap(a, b);
      std::swap(ea, eb);
    }
    for (auto [bucket, empty] : {std::pair{a, ea}, std::pair{b, eb}}) {
      for (uint32_t m = empty; m != 0; m &= m - 1) {
        uint64_t expected = 0;
        std::atomic<uint64_t>& slot = bucket->slot[lowest(m)];
        if (slot.compare_exchange_strong(expected, entry, std::memory_order_seq_cst, std::memory_order_relaxed)) {
          return &slot;
        }
      }
    }
    return nullptr;
  }

  // Clears one slot holding `entry` in the hash's buckets (the owner of the
  // record's entries does: no one else changes them).
  static void clear_entry(ConnTrack& ct, uint64_t hash, uint64_t entry) {
    for (uint32_t bucket : {first_bucket(ct, hash), second_bucket(ct, hash)}) {
      ConnTrack::Bucket& b = ct.buckets_[bucket];
      for (uint32_t m = masks(b, hash).tag; m != 0; m &= m - 1) {
        uint64_t expected = entry;
        std::atomic<uint64_t>& slot = b.slot[lowest(m)];
        if (slot.load(std::memory_order_relaxed) == entry &&
            slot.compare_exchange_strong(expected, 0, std::memory_order_release, std::memory_order_relaxed)) {
          return;
        }
      }
    }
  }

  // Another record with the same forward tuple that this insert (record
  // `index`, its entry in `own`) must yield to, or kNoFlow: a live one, or
  // one being inserted with a lower index (records being removed do not
  // count). seq_cst loads after our seq_cst CAS: of two workers inserting
  // the same tuple at once, at least one sees the other's entry, and the
  // rule never makes both yield (a record goes live only if it did not
  // yield).
  static uint32_t find_duplicate(const ConnTrack& ct, uint64_t hash, const FlowTuple& t, uint32_t index,
                                 const std::atomic<uint64_t>* own) {
    uint32_t yield_to = kNoFlow;
    for (uint32_t bucket : {first_bucket(ct, hash), second_bucket(ct, hash)}) {
      const ConnTrack::Bucket& b = ct.buckets_[bucket];
      for (uint32_t m = masks(b, hash).tag; m != 0; m &= m - 1) {
        const std::atomic<uint64_t>& slot = b.slot[lowest(m)];
        if (&slot == own) continue;
        const uint64_t e = slot.load(std::memory_order_seq_cst);
        if (!tag_matches(e, hash) || entry_reverse(e)) continue;
        const uint32_t i = entry_index(e);
        const Flow& other = ct.flows_[i];
        if (!forward_matches(other, t)) continue;
        const ConnTrack::Record r = ConnTrack::record_of(other);
        if (r == ConnTrack::Record::kLive || r == ConnTrack::Record::kBusy) return i;
        if (r == ConnTrack::Record::kFree && i < index && i < yield_to) yield_to = i;
      }
    }
    return yield_to;
  }

  // Whether another flow (not a duplicate of `forward`) has the reverse
  // tuple r. Checked before claiming r's slot: two clashing inserts at the
  // same instant may both pass (and the replies then go to one of them).
  static bool reverse_clash(const ConnTrack& ct, uint64_t hash, const FlowTuple& r, const FlowTuple& forward) {
    for (uint32_t bucket : {first_bucket(ct, hash), second_bucket(ct, hash)}) {
      const ConnTrack::Bucket& b = ct.buckets_[bucket];
      for (uint32_t m = masks(b, hash).tag; m != 0; m &= m - 1) {
        const uint64_t e = b.slot[lowest(m)].load(std::memory_order_acquire);
        if (!tag_matches(e, hash) || !entry_reverse(e)) continue;
        const Flow& other = ct.flows_[entry_index(e)];
        if (reverse_matches(other, r) && !forward_matches(other, forward)) return true;
      }
    }
    return false;
  }

  // A record off the worker's cache, or kNoFlow when none is left anywhere.
  static uint32_t take(ConnTrack& ct, ConnTrack::WorkerCache& c) {
    if (c.count == 0) {
      c.count = static_cast<uint16_t>(
          rte_ring_dequeue_burst_elem(ct.free_, c.free, sizeof(uint32_t), ct.refill_, nullptr));
      if (c.count == 0) return kNoFlow;
    }
    return c.free[--c.count];
  }

  static void prefetch_record(const Flow& f) {
    __builtin_prefetch(&f, 1, 3);
    __builtin_prefetch(reinterpret_cast<const char*>(&f) + 64, 1, 3);
  }

  static void bump(std::atomic<uint64_t>& counter) { counter.fetch_add(1, std::memory_order_relaxed); }

  // Its entries are undone; readers may have seen them, so it goes through
  // a grace period (the sweep picks it up).
  static void abandon(Flow& f) { ConnTrack::set_record(f, ConnTrack::Record::kAbandoned); }

  static uint32_t insert(ConnTrack& ct, ConnTrack::WorkerCache& c, const Flow& init, uint64_t fwd_hash,
                         uint32_t now_ms, bool affinity_state) {
    const bool affinity = init.forward.proto == kAffinityProto;
    FlowTuple r{};
    uint64_t rev_hash = 0;
    if (!affinity) {
      r = reverse_tuple(init.forward, init.backend, init.backend_port);
      rev_hash = flow_hash(r);
    }
    const uint32_t index = take(ct, c);
    if (index == kNoFlow) {
      bump(ct.shared_stats_->insert_no_record);
      return kNoFlow;
    }
    // Every line this insert touches on its way together, rather than one
    // miss after another (the forward buckets are usually still cached from
    // the caller's lookup).
    // The record itself was prefetched by the insert before (the next one
    // in the cache): its lines are usually on their way or there.
    Flow& f = ct.flows_[index];
    prefetch_record(f);
    if (c.count != 0) prefetch_record(ct.flows_[c.free[c.count - 1]]);
    rte_prefetch0(&ct.buckets_[first_bucket(ct, fwd_hash)]);
    rte_prefetch0(&ct.buckets_[second_bucket(ct, fwd_hash)]);
    if (!affinity) {
      rte_prefetch0(&ct.buckets_[first_bucket(ct, rev_hash)]);
      rte_prefetch0(&ct.buckets_[second_bucket(ct, rev_hash)]);
    }
    // The record is ours until its first entry is in: write all of it.
    f.forward = init.forward;
    std::memcpy(f.backend, init.backend, sizeof(f.backend));
    f.backend_port = init.backend_port;
    f.backend_id = init.backend_id;
    f.backend_seq.store(0, std::memory_order_relaxed);
    f.last_seen_ms.store(now_ms, std::memory_order_relaxed);
    const uint8_t state =
        affinity_state ? static_cast<uint8_t>(FlowState::kAffinity) : init.state.load(std::memory_order_relaxed);
    f.state.store(state, std::memory_order_relaxed);
    f.attempts.store(init.attempts.load(std::memory_order_relaxed), std::memory_order_relaxed);
    f.frontend_id = init.frontend_id;
    f.created_ms = now_ms;
    f.affinity_timeout_ms = init.affinity_timeout_ms;
    f.dnat_deltas.store(init.dnat_deltas.load(std::memory_order_relaxed), std::memory_order_relaxed);
    f.connect_started_us = init.connect_started_us;
    f.log_reported_ms.store(init.log_reported_ms.load(std::memory_order_relaxed), std::memory_order_relaxed);
    for (std::atomic<uint64_t>* c : {&f.fwd_packets, &f.fwd_bytes, &f.rev_packets, &f.rev_bytes}) {
      c->store(0, std::memory_order_relaxed);
    }

    const uint64_t fwd_entry = make_entry(fwd_hash, index, false);
    std::atomic<uint64_t>* fwd_slot = claim_slot(ct, fwd_hash, fwd_entry);
    if (!fwd_slot) {
      c.free[c.count++] = index;  // never seen: straight back to the cache
      bump(ct.shared_stats_->insert_no_slot);
      return kNoFlow;
    }
    const uint32_t other = find_duplicate(ct, fwd_hash, f.forward, index, fwd_slot);
    if (other != kNoFlow) {
      fwd_slot->store(0, std::memory_order_release);
      abandon(f);
      bump(ct.shared_stats_->duplicates_avoided);
      return other;
    }
    if (!affinity) {
      const bool clash = reverse_clash(ct, rev_hash, r, f.forward);
      std::atomic<uint64_t>* rev_slot = clash ? nullptr : claim_slot(ct, rev_hash, make_entry(rev_hash, index, true));
      if (!rev_slot) {
        if (rev_slot) rev_slot->store(0, std::memory_order_release);
        fwd_slot->store(0, std::memory_order_release);
        abandon(f);
        bump(clash ? ct.shared_stats_->insert_clash : ct.shared_stats_->insert_no_slot);
        return kNoFlow;
      }
    }
    ConnTrack::set_record(f, ConnTrack::Record::kLive);
    std::atomic<uint64_t>& inserted = ct.worker_stats_[c.worker].inserted;
    inserted.store(inserted.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    return index;
  }
};

using In = ConnTrackInternals;

Result<std::unique_ptr<ConnTrack>> ConnTrack::create(const ConnTrackConfig& config) {
  if (config.capacity == 0 || config.capacity > kMaxCapacity) {
    return make_error("conntrack.capacity: " + std::to_string(config.capacity) + " is not in 1.." +
                      std::to_string(kMaxCapacity));
  }
  if (config.workers == 0) return make_error("conntrack.workers: must be at least 1");
  if (!config.qsbr) return make_error("conntrack.qsbr: an RCU state is required");

  std::unique_ptr<ConnTrack> ct(new ConnTrack());
  ct->capacity_ = config.capacity;
  ct->workers_ = config.workers;
  ct->qsbr_ = config.qsbr;
  ct->timeouts_ = config.timeouts;
  // Two entries per flow in slots at most half full: capacity / 2 buckets of 8.
  const uint32_t buckets = rte_align32pow2(std::max<uint32_t>(2, (config.capacity + 1) / 2));
  ct->bucket_mask_ = buckets - 1;
  // Small tables (tests) must not strand their records in a few caches.
  ct->refill_ = std::clamp<uint32_t>(config.capacity / (4u * config.workers), 1, kWorkerCacheSize);

  const int socket = config.socket_id;
  auto alloc = [socket](const char* what, size_t bytes) {
    return rte_zmalloc_socket(what, bytes, RTE_CACHE_LINE_SIZE, socket);
  };
  auto no_memory = [](const char* what, size_t bytes) {
    return make_error(std::string("conntrack.capacity: cannot allocate ") + std::to_string(bytes >> 20) +
                      " MiB for the " + what);
  };
  const size_t flow_bytes = size_t{config.capacity} * sizeof(Flow);
  ct->flows_ = static_cast<Flow*>(alloc("mw_ct_flows", flow_bytes));
  if (!ct->flows_) return no_memory("flow records", flow_bytes);
  const size_t bucket_bytes = size_t{buckets} * sizeof(Bucket);
  ct->buckets_ = static_cast<Bucket*>(alloc("mw_ct_index", bucket_bytes));
  if (!ct->buckets_) return no_memory("index", bucket_bytes);
  const size_t pending_bytes = size_t{config.capacity} * sizeof(uint32_t);
  ct->pending_ = static_cast<uint32_t*>(alloc("mw_ct_pending", pending_bytes));
  if (!ct->pending_) return no_memory("deferred-reuse queue", pending_bytes);
  ct->worker_stats_ = static_cast<WorkerStats*>(alloc("mw_ct_wstats", sizeof(WorkerStats) * config.workers));
  ct->shared_stats_ = static_cast<SharedStats*>(alloc("mw_ct_stats", sizeof(SharedStats)));
  if (!ct->worker_stats_ || !ct->shared_stats_) return no_memory("counters", sizeof(WorkerStats) * config.workers);
  // Every record kFree (0), every slot empty, every counter 0.
  std::uninitialized_value_construct_n(ct->flows_, config.capacity);
  std::uninitialized_value_construct_n(ct->buckets_, buckets);
  std::uninitialized_value_construct_n(ct->worker_stats_, config.workers);
  std::uninitialized_value_construct_n(ct->shared_stats_, 1);

  const ssize_t ring_bytes = rte_ring_get_memsize_elem(sizeof(uint32_t), rte_align32pow2(config.capacity + 1));
  if (ring_bytes < 0) return make_error("conntrack.capacity: too large for a ring");
  ct->free_ = static_cast<rte_ring*>(alloc("mw_ct_free", static_cast<size_t>(ring_bytes)));
  if (!ct->free_) return no_memory("free list", static_cast<size_t>(ring_bytes));
  if (rte_ring_init(ct->free_, "mw_ct_free", config.capacity,
                    RING_F_EXACT_SZ | RING_F_MP_RTS_ENQ | RING_F_MC_RTS_DEQ) != 0) {
    return make_error("conntrack.capacity: cannot initialise the free list");
  }
  uint32_t chunk[64];
  for (uint32_t first = 0; first < config.capacity; first += 64) {
    const uint32_t n = std::min<uint32_t>(64, config.capacity - first);
    for (uint32_t k = 0; k < n; ++k) chunk[k] = first + k;
    rte_ring_enqueue_bulk_elem(ct->free_, chunk, sizeof(uint32_t), n, nullptr);
  }
  return ct;
}

ConnTrack::~ConnTrack() {
  rte_free(free_);
  rte_free(shared_stats_);
  rte_free(worker_stats_);
  rte_free(pending_);
  rte_free(buckets_);
  rte_free(flows_);
}

// ---- Workers

LookupResult ConnTrack::lookup(const FlowTuple& t, uint64_t hash) const {
  const LookupResult r = In::scan(*this, buckets_[In::first_bucket(*this, hash)], t, hash);
  if (r.flow != kNoFlow) return r;
  return In::scan(*this, buckets_[In::second_bucket(*this, hash)], t, hash);
}

void ConnTrack::lookup_burst(const FlowTuple* const* tuples, const uint64_t* hashes, uint16_t n, LookupResult* out,
                             bool prefetched) const {
  for (uint16_t base = 0; base < n; base += In::kBurst) {
    const uint32_t m = std::min<uint32_t>(In::kBurst, n - base);
    const uint64_t* h = hashes + base;
    uint64_t candidate[In::kBurst];
    // 1: every first bucket on its way into the cache (unless the caller
    // has done it with prefetch()).
    if (!prefetched) {
      for (uint32_t i = 0; i < m; ++i) rte_prefetch0(&buckets_[In::first_bucket(*this, h[i])]);
    }
    // 2: the first tag match of each (the second bucket only when the first
    // has none), and its record's two lines on their way.
    for (uint32_t i = 0; i < m; ++i) {
      uint64_t e = In::first_candidate(buckets_[In::first_bucket(*this, h[i])], h[i]);
      if (e == 0) e = In::first_candidate(buckets_[In::second_bucket(*this, h[i])], h[i]);
      candidate[i] = e;
      if (e != 0 && e != In::kRecheck) {
        const Flow* f = &flows_[In::entry_index(e)];
        rte_prefetch0(f);
        rte_prefetch0(&f->last_seen_ms);  // line 2: what the packet writes
      }
    }
    // 3: compare; a tag that matched another tuple, or a slot that changed
    // under the filter (both rare), gets the full scan.
    for (uint32_t i = 0; i < m; ++i) {
      const uint64_t e = candidate[i];
      const FlowTuple& t = *tuples[base + i];
      if (e == 0) {
        out[base + i] = {};
      } else if (e != In::kRecheck && In::entry_matches(*this, e, t)) {
        out[base + i] = {In::entry_index(e), In::entry_reverse(e)};
      } else {
        out[base + i] = lookup(t, h[i]);
      }
    }
  }
}

uint32_t ConnTrack::insert(WorkerCache& cache, const Flow& init, uint64_t fwd_hash, uint32_t now_ms) {
  return In::insert(*this, cache, init, fwd_hash, now_ms, init.forward.proto == kAffinityProto);
}

uint32_t ConnTrack::insert_affinity(WorkerCache& cache, const Flow& init, uint64_t hash, uint32_t now_ms) {
  if (init.forward.proto != kAffinityProto) return kNoFlow;  // not an affinity_tuple()
  return In::insert(*this, cache, init, hash, now_ms, true);
}

bool ConnTrack::rebind(uint32_t index, const uint8_t* backend, uint16_t port, uint16_t backend_id) {
  Flow& f = flows_[index];
  if (f.forward.proto == kAffinityProto || !claim_record(f, Record::kLive, Record::kBusy)) {
    In::bump(shared_stats_->rebind_failures);
    return false;
  }
  const FlowTuple old_r = reverse_tuple(f.forward, f.backend, f.backend_port);
  const FlowTuple new_r = reverse_tuple(f.forward, backend, port);
  const bool moves = !(old_r == new_r);
  uint64_t old_hash = 0, new_hash = 0;
  if (moves) {
    old_hash = flow_hash(old_r);
    new_hash = flow_hash(new_r);
    if (In::reverse_clash(*this, new_hash, new_r, f.forward) ||
        !In::claim_slot(*this, new_hash, In::make_entry(new_hash, index, true))) {
      set_record(f, Record::kLive);
      In::bump(shared_stats_->rebind_failures);
      return false;
    }
  }
  // The new entry matches nothing until the backend changes (the reader
  // compares the record's backend); then the old one matches nothing.
  const uint32_t seq = f.backend_seq.load(std::memory_order_relaxed);
  f.backend_seq.store(seq + 1, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_release);
  std::memcpy(f.backend, backend, sizeof(f.backend));
  f.backend_port = port;
  f.backend_id = backend_id;
  f.backend_seq.store(seq + 2, std::memory_order_release);
  if (moves) In::clear_entry(*this, old_hash, In::make_entry(old_hash, index, true));
  f.attempts.store(static_cast<uint8_t>(f.attempts.load(std::memory_order_relaxed) + 1), std::memory_order_relaxed);
  set_record(f, Record::kLive);
  In::bump(shared_stats_->rebinds);
  return true;
}

bool ConnTrack::read_backend(uint32_t index, uint8_t backend[16], uint16_t* port, uint16_t* backend_id) const {
  const Flow& f = flows_[index];
  for (int attempt = 0; attempt < 4; ++attempt) {
    const uint32_t seq = f.backend_seq.load(std::memory_order_acquire);
    if (seq & 1) {
      rte_pause();
      continue;
    }
    std::memcpy(backend, f.backend, sizeof(f.backend));
    const uint16_t p = f.backend_port;
    const uint16_t id = f.backend_id;
    std::atomic_thread_fence(std::memory_order_acquire);
    if (f.backend_seq.load(std::memory_order_relaxed) == seq) {
      *port = p;
      *backend_id = id;
      return true;
    }
  }
  return false;
}

void ConnTrack::release(WorkerCache& cache) {
  if (cache.count != 0) rte_ring_enqueue_bulk_elem(free_, cache.free, sizeof(uint32_t), cache.count, nullptr);
  cache.count = 0;
}

// ---- Control thread

bool ConnTrack::expired(const Flow& f, uint32_t now_ms) const {
  const auto state = static_cast<FlowState>(f.state.load(std::memory_order_relaxed));
  const uint32_t timeout = idle_timeout_ms(timeouts_, state, f.affinity_timeout_ms);
  // Signed: a worker may have stamped a time a little after now_ms.
  const int32_t idle = static_cast<int32_t>(now_ms - f.last_seen_ms.load(std::memory_order_relaxed));
  return int64_t{idle} > int64_t{timeout};
}

void ConnTrack::remove_held(uint32_t index) {
  const Flow& f = flows_[index];
  const uint64_t fwd_hash = flow_hash(f.forward);
  In::clear_entry(*this, fwd_hash, In::make_entry(fwd_hash, index, false));
  if (f.forward.proto != kAffinityProto) {
    const uint64_t rev_hash = flow_hash(reverse_tuple(f.forward, f.backend, f.backend_port));
    In::clear_entry(*this, rev_hash, In::make_entry(rev_hash, index, true));
  }
  removed_.store(removed_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  retire(index);
}

void ConnTrack::retire(uint32_t index) {
  pending_[pending_tail_ % capacity_] = index;
  ++pending_tail_;
}

void ConnTrack::close_batch() {
  const uint64_t since = batch_count_ ? batches_[(batch_head_ + batch_count_ - 1) % kMaxBatches].end : pending_head_;
  if (pending_tail_ == since) return;
  const uint64_t token = rte_rcu_qsbr_start(qsbr_);
  if (batch_count_ == kMaxBatches) {
    // A later token covers the earlier records too: merge into the last batch.
    Batch& last = batches_[(batch_head_ + batch_count_ - 1) % kMaxBatches];
    last.token = token;
    last.end = pending_tail_;
    return;
  }
  batches_[(batch_head_ + batch_count_) % kMaxBatches] = {token, pending_tail_};
  ++batch_count_;
}

uint32_t ConnTrack::reclaim() {
  uint32_t reclaimed = 0;
  while (batch_count_ != 0) {
    const Batch& b = batches_[batch_head_];
    if (rte_rcu_qsbr_check(qsbr_, b.token, false) != 1) break;
    while (pending_head_ < b.end) {
      uint32_t chunk[64];
      uint32_t k = 0;
      while (k < 64 && pending_head_ < b.end) {
        const uint32_t index = pending_[pending_head_ % capacity_];
        ++pending_head_;
        set_record(flows_[index], Record::kFree);
        chunk[k++] = index;
      }
      // Always room: the ring holds every record.
      rte_ring_enqueue_bulk_elem(free_, chunk, sizeof(uint32_t), k, nullptr);
      reclaimed += k;
    }
    batch_head_ = (batch_head_ + 1) % kMaxBatches;
    --batch_count_;
  }
  return reclaimed;
}

SweepStats ConnTrack::clear() {
  SweepStats s;
  s.reclaimed = reclaim();
  for (uint32_t i = 0; i < capacity_; ++i) {
    ++s.visited;
    Flow& f = flows_[i];
    if (claim_record(f, Record::kLive, Record::kDead)) {
      remove_held(i);
      ++s.closed;
    } else if (claim_record(f, Record::kAbandoned, Record::kDead)) {
      retire(i);
      ++s.abandoned;
    }
  }
  close_batch();
  s.reclaimed += reclaim();
  return s;
}

uint32_t ConnTrack::size() const {
  uint64_t inserted = 0;
  for (uint16_t w = 0; w < workers_; ++w) inserted += worker_stats_[w].inserted.load(std::memory_order_relaxed);
  return static_cast<uint32_t>(inserted - removed_.load(std::memory_order_relaxed));
}

ConnTrackStats ConnTrack::stats() const {
  ConnTrackStats s;
  for (uint16_t w = 0; w < workers_; ++w) s.inserted += worker_stats_[w].inserted.load(std::memory_order_relaxed);
  s.removed = removed_.load(std::memory_order_relaxed);
  s.live = s.inserted - s.removed;
  s.capacity = capacity_;
  s.insert_no_record = shared_stats_->insert_no_record.load(std::memory_order_relaxed);
  s.insert_no_slot = shared_stats_->insert_no_slot.load(std::memory_order_relaxed);
  s.insert_clash = shared_stats_->insert_clash.load(std::memory_order_relaxed);
  s.duplicates_avoided = shared_stats_->duplicates_avoided.load(std::memory_order_relaxed);
  s.rebinds = shared_stats_->rebinds.load(std::memory_order_relaxed);
  s.rebind_failures = shared_stats_->rebind_failures.load(std::memory_order_relaxed);
  s.waiting_reuse = pending_tail_ - pending_head_;
  return s;
}

}  // namespace meshwire::dp::lb
