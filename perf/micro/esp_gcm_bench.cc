// AES-GCM encryption of a burst of 32 buffers: gcm_encrypt_burst (one
// ipsec-mb burst) against ipsec-mb's direct single-buffer API on the same
// data, as the raw baseline measured in the same run.
//
//   dp_micro_bench --benchmark_filter=Gcm --benchmark_repetitions=3
//
// Arguments: key bits (128/256), buffer size (64/512/1400 bytes).
#include <benchmark/benchmark.h>

#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "esp/gcm.h"

namespace meshwire::dp::esp {
namespace {

constexpr uint16_t kBurst = 32;
constexpr uint32_t kAadLen = 12;  // SPI || seq-hi || seq-lo

// kBurst buffers of one size, one SA key, ESP-like IV and AAD per buffer.
struct Fixture {
  std::unique_ptr<GcmEngine> engine;
  GcmKey key{};
  std::vector<uint8_t> storage;  // kBurst * size, contiguous like mbuf data
  uint8_t iv8[kBurst][8] = {};
  uint8_t aad[kBurst][kAadLen] = {};
  uint8_t tags[kBurst][16] = {};
  GcmOp ops[kBurst] = {};

  bool init(benchmark::State& state) {
    auto e = GcmEngine::create();
    if (!e.ok()) {
      state.SkipWithError(e.error().c_str());
      return false;
    }
    engine = std::move(e).value();
    const size_t key_len = state.range(0) / 8;
    const uint32_t size = static_cast<uint32_t>(state.range(1));
    uint8_t raw_key[32], salt[4] = {0xca, 0xfe, 0xba, 0xbe};
    for (size_t i = 0; i < sizeof(raw_key); ++i) raw_key[i] = static_cast<uint8_t>(i * 7 + 1);
    if (!expand_gcm_key(*engine, raw_key, key_len, salt, &key).ok()) {
      state.SkipWithError("expand_gcm_key failed");
      return false;
    }
    storage.assign(static_cast<size_t>(kBurst) * size, 0x5a);
    for (uint16_t i = 0; i < kBurst; ++i) {
      iv8[i][7] = static_cast<uint8_t>(i);
      aad[i][3] = 0x42;
      aad[i][11] = static_cast<uint8_t>(i);
      ops[i] = GcmOp{&key, iv8[i], aad[i], kAadLen, storage.data() + static_cast<size_t>(i) * size, size, tags[i],
                     false, {}, {}};
    }
    state.SetLabel(std::string(engine->arch()));
    return true;
  }

  void account(benchmark::State& state) const {
    state.SetItemsProcessed(static_cast<int64_t>(state.iterations()) * kBurst);
    state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * kBurst * state.range(1));
  }
};

void BM_GcmEncryptBurst(benchmark::State& state) {
  Fixture f;
  if (!f.init(state)) return;
  for (auto _ : state) {
    const uint16_t ok = gcm_encrypt_burst(*f.engine, f.ops, kBurst);
    benchmark::DoNotOptimize(ok);
    benchmark::ClobberMemory();
  }
  f.account(state);
}

void BM_GcmEncryptDirect(benchmark::State& state) {
  Fixture f;
  if (!f.init(state)) return;
  IMB_MGR* mgr = f.engine->mgr();
  struct gcm_context_data ctx;
  const bool aes128 = state.range(0) == 128;
  for (auto _ : state) {
    for (GcmOp& op : f.ops) {
      std::memcpy(op.nonce, f.key.salt.data(), 4);  // the per-packet work a caller has either way
      std::memcpy(op.nonce + 4, op.iv8, 8);
      if (aes128) {
        IMB_AES128_GCM_ENC(mgr, &f.key.expanded, &ctx, op.data, op.data, op.len, op.nonce, op.aad, op.aad_len, op.tag,
                           16);
      } else {
        IMB_AES256_GCM_ENC(mgr, &f.key.expanded, &ctx, op.data, op.data, op.len, op.nonce, op.aad, op.aad_len, op.tag,
                           16);
      }
    }
    benchmark::ClobberMemory();
  }
  f.account(state);
}

void gcm_args(benchmark::internal::Benchmark* b) {
  b->ArgNames({"key_bits", "bytes"});
  b->ArgsProduct({{128, 256}, {64, 512, 1400}});
}

BENCHMARK(BM_GcmEncryptBurst)->Apply(gcm_args);
BENCHMARK(BM_GcmEncryptDirect)->Apply(gcm_args);

}  // namespace
}  // namespace meshwire::dp::esp
