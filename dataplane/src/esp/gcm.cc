#include "esp/gcm.h"

#include <string.h>  // explicit_bzero

#include <cstdlib>
#include <cstring>
#include <string>

namespace meshwire::dp::esp {
namespace {

// Debug builds let ipsec-mb validate every job (IMB_SUBMIT_BURST); release
// builds skip that (IMB_SUBMIT_BURST_NOCHECK) because fill_job() has already
// rejected every op that could make a job invalid.
#ifdef NDEBUG
constexpr bool kCheckJobs = false;
#else
constexpr bool kCheckJobs = true;
#endif

std::string_view arch_name(IMB_ARCH arch) {
  switch (arch) {
    case IMB_ARCH_SSE: return "sse";
    case IMB_ARCH_AVX: return "avx";
    case IMB_ARCH_AVX2: return "avx2";
    case IMB_ARCH_AVX512: return "avx512";
    default: return "none";
  }
}

// Constant time: no branch or early exit depends on the tag bytes.
bool tags_equal(const uint8_t* a, const uint8_t* b) {
  uint64_t a0, a1, b0, b1;
  std::memcpy(&a0, a, 8);
  std::memcpy(&a1, a + 8, 8);
  std::memcpy(&b0, b, 8);
  std::memcpy(&b1, b + 8, 8);
  uint64_t diff = (a0 ^ b0) | (a1 ^ b1);
  asm volatile("" : "+r"(diff));  // keep the compiler from splitting this into two compares
  return diff == 0;
}

bool op_is_valid(const GcmOp& op) {
  return op.key != nullptr && (op.key->key_len == 16 || op.key->key_len == 32) && op.iv8 != nullptr &&
         op.tag != nullptr && (op.data != nullptr || op.len == 0) && (op.aad != nullptr || op.aad_len == 0);
}

void fill_job(IMB_JOB* job, GcmOp* op, IMB_CIPHER_DIRECTION dir) {
  std::memcpy(op->nonce, op->key->salt.data(), kGcmSaltLen);
  std::memcpy(op->nonce + kGcmSaltLen, op->iv8, kGcmIvLen);

  job->cipher_mode = IMB_CIPHER_GCM;
  job->hash_alg = IMB_AUTH_AES_GMAC;
  job->cipher_direction = dir;
  job->chain_order = dir == IMB_DIR_ENCRYPT ? IMB_ORDER_CIPHER_HASH : IMB_ORDER_HASH_CIPHER;
  job->enc_keys = &op->key->expanded;
  job->dec_keys = &op->key->expanded;
  job->key_len_in_bytes = op->key->key_len;
  job->src = op->data;
  job->dst = op->data;
  job->cipher_start_src_offset_in_bytes = 0;
  job->msg_len_to_cipher_in_bytes = op->len;
  job->hash_start_src_offset_in_bytes = 0;
  job->msg_len_to_hash_in_bytes = op->len;
  job->iv = op->nonce;
  job->iv_len_in_bytes = IMB_GCM_IV_DATA_LEN;
  job->u.GCM.aad = op->aad;
  job->u.GCM.aad_len_in_bytes = op->aad_len;
  job->auth_tag_output = dir == IMB_DIR_ENCRYPT ? op->tag : op->computed_tag;
  job->auth_tag_output_len_in_bytes = kGcmTagLen;
  job->user_data = op;
}

// Completion order is the library's business: each job finds its op through
// user_data.
uint16_t complete_jobs(IMB_JOB** jobs, uint32_t count, IMB_CIPHER_DIRECTION dir) {
  uint16_t good = 0;
  for (uint32_t i = 0; i < count; ++i) {
    auto* op = static_cast<GcmOp*>(jobs[i]->user_data);
    bool ok = jobs[i]->status == IMB_STATUS_COMPLETED;
    if (dir == IMB_DIR_DECRYPT) ok = ok && tags_equal(op->computed_tag, op->tag);
    op->ok = ok;
    good += ok ? 1 : 0;
  }
  return good;
}

// One ipsec-mb burst for n <= kMaxBurst ops. Leaves the manager empty.
uint16_t run_burst(IMB_MGR* mgr, GcmOp* ops, uint16_t n, IMB_CIPHER_DIRECTION dir) {
  IMB_JOB* jobs[kMaxBurst];
  // The queue holds IMB_MAX_JOBS (256) and is empty on entry, so this returns n.
  const uint32_t available = IMB_GET_NEXT_BURST(mgr, n, jobs);
  uint32_t submitted = 0;
  for (uint16_t i = 0; i < n; ++i) {
    GcmOp& op = ops[i];
    op.ok = false;
    if (submitted == available || !op_is_valid(op)) continue;
    fill_job(jobs[submitted++], &op, dir);
  }
  if (submitted == 0) return 0;

  uint32_t done = kCheckJobs ? IMB_SUBMIT_BURST(mgr, submitted, jobs) : IMB_SUBMIT_BURST_NOCHECK(mgr, submitted, jobs);
  if (done == 0 && imb_get_errno(mgr) != 0) {
    return 0;  // a job failed validation: ipsec-mb queued none of them, every op stays !ok
  }
  uint16_t good = complete_jobs(jobs, done, dir);
  while (done < submitted) {  // GCM completes on submit today; flush in case a future version queues
    const uint32_t flushed = IMB_FLUSH_BURST(mgr, submitted - done, jobs);
    if (flushed == 0) break;
    good += complete_jobs(jobs, flushed, dir);
    done += flushed;
  }
  return good;
}

uint16_t run(GcmEngine& engine, GcmOp* ops, uint16_t n, IMB_CIPHER_DIRECTION dir) {
  uint16_t good = 0;
  for (uint32_t start = 0; start < n; start += kMaxBurst) {  // 32 bits: no wrap for n near 65535
    const auto count = static_cast<uint16_t>(n - start < kMaxBurst ? n - start : kMaxBurst);
    good += run_burst(engine.mgr(), ops + start, count, dir);
  }
  return good;
}

}  // namespace

Result<std::unique_ptr<GcmEngine>> GcmEngine::create() {
  if (imb_get_version() < IMB_VERSION_NUM) {
    return make_error(std::string("ipsec-mb: library ") + imb_get_version_str() + " is older than its header " +
                      IMB_VERSION_STR);
  }
  IMB_MGR* mgr = alloc_mb_mgr(0);
  if (mgr == nullptr) return make_error("ipsec-mb: alloc_mb_mgr failed (out of memory)");
  IMB_ARCH arch = IMB_ARCH_NONE;
  const char* forced = std::getenv(kArchEnv);
  if (forced == nullptr || *forced == '\0' || std::strcmp(forced, "auto") == 0) {
    init_mb_mgr_auto(mgr, &arch);
  } else if (std::strcmp(forced, "sse") == 0) {
    init_mb_mgr_sse(mgr);
    arch = IMB_ARCH_SSE;
  } else if (std::strcmp(forced, "avx2") == 0) {
    init_mb_mgr_avx2(mgr);
    arch = IMB_ARCH_AVX2;
  } else if (std::strcmp(forced, "avx512") == 0) {
    init_mb_mgr_avx512(mgr);
    arch = IMB_ARCH_AVX512;
  } else {
    free_mb_mgr(mgr);
    return make_error(std::string(kArchEnv) + "=" + forced + ": not one of auto, sse, avx2, avx512");
  }
  if (const int err = imb_get_errno(mgr); err != 0) {
    std::string message = std::string("ipsec-mb: initialising the ") + std::string(arch_name(arch)) +
                          " code path failed: " + imb_get_strerror(err);
    free_mb_mgr(mgr);
    return make_error(std::move(message));
  }
  const uint64_t needed = IMB_FEATURE_AESNI | IMB_FEATURE_PCLMULQDQ;
  if (arch < IMB_ARCH_SSE || arch >= IMB_ARCH_NUM || (mgr->features & needed) != needed) {
    free_mb_mgr(mgr);
    return make_error("ipsec-mb: this CPU lacks AES-NI or PCLMULQDQ; AES-GCM would run in software emulation");
  }
  return std::unique_ptr<GcmEngine>(new GcmEngine(mgr, arch));
}

GcmEngine::~GcmEngine() { free_mb_mgr(mgr_); }

std::string_view GcmEngine::arch() const { return arch_name(arch_); }

bool gcm_key_matches(const GcmKey& expanded, const uint8_t* key, size_t key_len, const uint8_t salt[4]) {
  return expanded.key_len == key_len && (key_len == 16 || key_len == 32) &&
         std::memcmp(expanded.expanded.expanded_keys, key, key_len) == 0 &&
         std::memcmp(expanded.salt.data(), salt, kGcmSaltLen) == 0;
}

Status expand_gcm_key(GcmEngine& engine, const uint8_t* key, size_t key_len, const uint8_t salt[4], GcmKey* out) {
  if (key == nullptr || salt == nullptr || out == nullptr) return make_error("gcm key: null argument");
  if (key_len != 16 && key_len != 32) {
    return make_error("key_len: must be 16 (AES-128-GCM) or 32 (AES-256-GCM) bytes, got " + std::to_string(key_len));
  }
  // The PRE functions report only null pointers (checked above), through the
  // library's global errno rather than the manager's.
  if (key_len == 16) {
    IMB_AES128_GCM_PRE(engine.mgr(), key, &out->expanded);
  } else {
    IMB_AES256_GCM_PRE(engine.mgr(), key, &out->expanded);
  }
  out->key_len = static_cast<uint8_t>(key_len);
  std::memcpy(out->salt.data(), salt, kGcmSaltLen);
  return Ok{};
}

void wipe(GcmKey* key) {
  if (key != nullptr) explicit_bzero(key, sizeof(*key));
}

uint16_t gcm_encrypt_burst(GcmEngine& engine, GcmOp* ops, uint16_t n) { return run(engine, ops, n, IMB_DIR_ENCRYPT); }

uint16_t gcm_decrypt_burst(GcmEngine& engine, GcmOp* ops, uint16_t n) { return run(engine, ops, n, IMB_DIR_DECRYPT); }

}  // namespace meshwire::dp::esp
