// AES-GCM for ESP (RFC 4106, 16-byte ICV) over Intel ipsec-mb's burst API.
//
// Threading: one GcmEngine per worker thread; an engine is not thread-safe.
// A GcmKey is written once by expand_gcm_key() and then only read, so any
// number of engines (threads) may use the same key at the same time.
//
// Keys must be expanded by an engine of the same ipsec-mb architecture as the
// engines that use them (the precomputed GHASH tables differ between SSE, AVX2
// and AVX-512 code). GcmEngine::create() picks the best architecture of the
// CPU, or the one the environment variable MESHWIRE_IPSEC_MB_ARCH names
// (auto, sse, avx2, avx512: a diagnostic, e.g. to measure the code path of
// CPUs without VAES), so all engines of one process agree.
//
// The burst functions run on workers: no allocation, locks, syscalls or
// logging. Everything they need lives in the caller's GcmOp array.
#pragma once

#include <intel-ipsec-mb.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string_view>

#include <meshwire/dp/result.h>

namespace meshwire::dp::esp {

// Largest n a burst call submits to ipsec-mb at once (larger n is split).
inline constexpr uint16_t kMaxBurst = 64;
inline constexpr uint32_t kGcmTagLen = 16;
inline constexpr uint32_t kGcmSaltLen = 4;
inline constexpr uint32_t kGcmIvLen = 8;  // explicit IV carried in each ESP packet
inline constexpr const char* kArchEnv = "MESHWIRE_IPSEC_MB_ARCH";

class GcmEngine {
 public:
  // Allocates and initialises an ipsec-mb manager for the best architecture
  // of this CPU. Fails when the CPU lacks AES-NI/PCLMULQDQ (ipsec-mb would
  // fall back to its slow software emulation) or the library is older than
  // the header it was built against, or MESHWIRE_IPSEC_MB_ARCH names a code
  // path this CPU lacks. Call from the thread that will use it
  // (or hand it over before first use).
  static Result<std::unique_ptr<GcmEngine>> create();

  ~GcmEngine();
  GcmEngine(const GcmEngine&) = delete;
  GcmEngine& operator=(const GcmEngine&) = delete;

  // "sse", "avx", "avx2" or "avx512": the code path ipsec-mb chose.
  std::string_view arch() const;

  // The manager, for ipsec-mb's direct single-buffer API (benchmarks, tests).
  // Do not leave jobs queued in it: the burst functions expect it empty.
  IMB_MGR* mgr() { return mgr_; }

 private:
  GcmEngine(IMB_MGR* mgr, IMB_ARCH arch) : mgr_(mgr), arch_(arch) {}

  IMB_MGR* mgr_;
  IMB_ARCH arch_;
};

// Expanded AES key with its GHASH tables, plus the 4-byte salt of RFC 4106.
// Holds key material: wipe() it before the memory is freed or reused.
struct GcmKey {
  alignas(64) struct gcm_key_data expanded;
  uint8_t key_len;  // 16 (AES-128) or 32 (AES-256)
  std::array<uint8_t, kGcmSaltLen> salt;
};

// key_len must be 16 or 32; salt points to 4 bytes. Control thread (or any
// thread owning `engine`); `out` must not be in use by a burst meanwhile.
Status expand_gcm_key(GcmEngine& engine, const uint8_t* key, size_t key_len, const uint8_t salt[4],
                      GcmKey* out);

// Zeroes *key with a store the compiler may not drop as dead.
void wipe(GcmKey* key);

// Whether *expanded was expanded from this key and salt: AES's key schedule
// starts with the key itself (round 0, and round 1 for AES-256), so no copy
// of the raw key needs to be kept to recognise it. Control thread.
bool gcm_key_matches(const GcmKey& expanded, const uint8_t* key, size_t key_len, const uint8_t salt[4]);

// One AEAD operation, in place. The caller fills the inputs; the engine owns
// the scratch fields for the duration of a call (no allocation per burst).
struct GcmOp {
  const GcmKey* key;
  const uint8_t* iv8;  // the 8-byte explicit IV as on the wire
  const uint8_t* aad;  // may be null when aad_len == 0
  uint32_t aad_len;    // ESP with ESN: 12 (SPI || seq-hi || seq-lo)
  uint8_t* data;       // len bytes, encrypted or decrypted in place; may be null when len == 0
  uint32_t len;
  uint8_t* tag;  // 16 bytes: written on encrypt; on decrypt, the received ICV (only read)
  bool ok;       // output: see the burst functions

  // Scratch, filled by the engine.
  uint8_t nonce[IMB_GCM_IV_DATA_LEN];  // salt || iv8
  uint8_t computed_tag[kGcmTagLen];    // decrypt: the tag ipsec-mb computed
};

// Encrypts ops[0..n) in place and writes each tag. Sets ok = false only for
// an op with missing pointers or a key that was never expanded (key_len not
// 16/32). Returns how many ops have ok == true. Submits all n ops as one
// ipsec-mb burst when n <= kMaxBurst.
uint16_t gcm_encrypt_burst(GcmEngine& engine, GcmOp* ops, uint16_t n);

// Decrypts ops[0..n) in place and compares, in constant time, the computed
// tag with op.tag: ok == true means the ICV verified. When ok == false,
// data holds unauthenticated plaintext: the caller must drop the packet
// and not look at it. Returns how many ops have ok == true.
uint16_t gcm_decrypt_burst(GcmEngine& engine, GcmOp* ops, uint16_t n);

}  // namespace meshwire::dp::esp
