// AES-GCM engine: published vectors, tampering, and a mixed burst checked
// against OpenSSL's EVP AES-GCM as an independent implementation.
#include "esp/gcm.h"

#include <gtest/gtest.h>
#include <openssl/evp.h>

#include <cstdint>
#include <random>
#include <string>
#include <vector>

namespace meshwire::dp::esp {
namespace {

using Bytes = std::vector<uint8_t>;

Bytes hex(const std::string& text) {
  Bytes out;
  for (size_t i = 0; i + 1 < text.size(); i += 2) out.push_back(static_cast<uint8_t>(std::stoul(text.substr(i, 2), nullptr, 16)));
  return out;
}

// A published AES-GCM case with a 96-bit IV, split the RFC 4106 way:
// nonce = salt (4 bytes) || explicit IV (8 bytes).
struct Vector {
  const char* name;
  const char* key;
  const char* nonce;
  const char* aad;
  const char* plaintext;
  const char* ciphertext;
  const char* tag;
};

constexpr const char* kP3 =
    "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
    "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b391aafd255";
constexpr const char* kP4 =
    "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
    "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39";

const Vector kVectors[] = {
    // McGrew & Viega, "The Galois/Counter Mode of Operation (GCM)", Appendix B.
    {"gcm-spec case 2 (AES-128)", "00000000000000000000000000000000", "000000000000000000000000", "",
     "00000000000000000000000000000000", "0388dace60b6a392f328c2b971b2fe78", "ab6e47d42cec13bdf53a67b21257bddf"},
    {"gcm-spec case 3 (AES-128)", "feffe9928665731c6d6a8f9467308308", "cafebabefacedbaddecaf888", "", kP3,
     "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e"
     "21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091473f5985",
     "4d5c2af327cd64a62cf35abd2ba6fab4"},
    {"gcm-spec case 4 (AES-128, AAD)", "feffe9928665731c6d6a8f9467308308", "cafebabefacedbaddecaf888",
     "feedfacedeadbeeffeedfacedeadbeefabaddad2", kP4,
     "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e"
     "21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091",
     "5bc94fbc3221a5db94fae95ae7121a47"},
    {"gcm-spec case 14 (AES-256)", "0000000000000000000000000000000000000000000000000000000000000000",
     "000000000000000000000000", "", "00000000000000000000000000000000", "cea7403d4d606b6e074ec5d3baf39d18",
     "d0d1c8a799996bf0265b98b5d48ab919"},
    {"gcm-spec case 15 (AES-256)", "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308",
     "cafebabefacedbaddecaf888", "", kP3,
     "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa"
     "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662898015ad",
     "b094dac5d93471bdec1a502270e3cc6c"},
    {"gcm-spec case 16 (AES-256, AAD)", "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308",
     "cafebabefacedbaddecaf888", "feedfacedeadbeeffeedfacedeadbeefabaddad2", kP4,
     "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa"
     "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662",
     "76fc6ece0f4e1768cddf8853bb2d551b"},
    // draft-mcgrew-gcm-test-01 (ESP packets): AAD = SPI || seq-hi || seq-lo (ESN).
    {"esp test 1 (AES-128, ESN)", "4c80cdefbb5d10da906ac73c3613a634", "2e443b684956ed7e3b244cfe",
     "000043218765432100000000",
     "45000048699a000080114db7c0a80102c0a801010a9bf15638d3010000010000"
     "00000000045f736970045f756470037369700963796265726369747902646b00"
     "0021000101020201",
     "fecf537e729d5b07dc30df528dd22b768d1b98736696a6fd348509fa13ceac34"
     "cfa2436f14a3f3cf65925bf1f4a13c5d15b21e1884f5ff6247aeabb786b93bce"
     "61bc17d768fd9732",
     "459018148f6cbe722fd04796562dfdb4"},
    {"esp test 5 (AES-128, ESN)", "3de09874b388e6491988d0c3607eae1f", "57690e434e280000a2fca1a3",
     "42f67e3f1010101010101010",
     "4500003c99c300008001cb7c40679318010101010800085c0200430061626364"
     "65666768696a6b6c6d6e6f707172737475767761626364656667686901020201",
     "fba2caa4853cf9f0f22cb10d86dd83b0fec75691cf1a04b00d1138ec9c357917"
     "65acbd8701ad79845bf9fe3fba487bc91755e6662b4c8d0d1f5e22739530320a",
     "e0d731cc978ecafaeae88f00e80d6e48"},
    {"esp test 9 (AES-256, ESN)", "abbccddef00112233445566778899aababbccddef00112233445566778899aab",
     "73616c74616e640169766563", "17405e67156f3126dd0db99b",
     "45080028732c00004006e9f90a0106120a01038f06b88023dd6bafbecb712602"
     "50101f646d540001",
     "f2d69ecdbd5a0d5b8d5ef38bad4da58d1f278fde98ef67549d524a3018d9a57f"
     "f4d3a31ce673119e",
     "451626c2415771e3b7eebca614c89b35"},
    {"esp test 14 (AES-256, ESN)", "6c6567616c697a656d6172696a75616e61616e64646f69746265666f72656961",
     "7475726e333021696765746d", "796b6963ffffffffffffffff",
     "45000030da3a00008001df3bc0a80005c0a800010800c6cd0200070061626364"
     "65666768696a6b6c6d6e6f707172737401020201",
     "f97ab2aa356d8edce17644ac8c78e25dd24dedbb29ebf1b64a274b39b49c3a86"
     "4cd3d78ca4ae68a32b42458fb57dbe821dcc63b9",
     "d0937ba2945f669368661a329fb4c053"},
};

// Owns the buffers of one op so that it can be rebuilt and tampered with.
struct Case {
  GcmKey key;
  Bytes iv8, aad, data, tag;

  GcmOp op() {
    return GcmOp{&key, iv8.data(), aad.data(), static_cast<uint32_t>(aad.size()), data.data(),
                 static_cast<uint32_t>(data.size()), tag.data(), false, {}, {}};
  }
};

class GcmTest : public testing::Test {
 protected:
  void SetUp() override {
    auto engine = GcmEngine::create();
    ASSERT_TRUE(engine.ok()) << engine.error();
    engine_ = std::move(engine).value();
  }

  // Loads vector v with its plaintext (encrypt) or ciphertext + tag (decrypt).
  void load(const Vector& v, bool encrypted, Case* c) {
    const Bytes key = hex(v.key), nonce = hex(v.nonce);
    ASSERT_EQ(nonce.size(), 12u);
    Status s = expand_gcm_key(*engine_, key.data(), key.size(), nonce.data(), &c->key);
    ASSERT_TRUE(s.ok()) << s.error();
    c->iv8.assign(nonce.begin() + 4, nonce.end());
    c->aad = hex(v.aad);
    c->data = hex(encrypted ? v.ciphertext : v.plaintext);
    c->tag = encrypted ? hex(v.tag) : Bytes(16, 0);
  }

  std::unique_ptr<GcmEngine> engine_;
};

TEST_F(GcmTest, EngineReportsItsArchitecture) {
  const std::string_view arch = engine_->arch();
  EXPECT_TRUE(arch == "sse" || arch == "avx" || arch == "avx2" || arch == "avx512") << arch;
}

// MESHWIRE_IPSEC_MB_ARCH picks the code path; an unknown name is refused
// with the variable named.
TEST(GcmArch, TheEnvironmentPicksTheCodePath) {
  for (const char* arch : {"sse", "avx2", "avx512"}) {
    ASSERT_EQ(setenv(kArchEnv, arch, 1), 0);
    auto engine = GcmEngine::create();
    if (!engine.ok()) {  // a CPU without this path: the error says so
      EXPECT_NE(engine.error().find(arch), std::string::npos) << engine.error();
      continue;
    }
    EXPECT_EQ((*engine)->arch(), arch);
  }
  ASSERT_EQ(setenv(kArchEnv, "neon", 1), 0);
  auto bad = GcmEngine::create();
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().find("MESHWIRE_IPSEC_MB_ARCH=neon"), std::string::npos) << bad.error();
  ASSERT_EQ(setenv(kArchEnv, "auto", 1), 0);
  EXPECT_TRUE(GcmEngine::create().ok());
  unsetenv(kArchEnv);
}

TEST_F(GcmTest, RejectsBadKeyLength) {
  const uint8_t key[24] = {}, salt[4] = {};
  GcmKey k{};
  Status s = expand_gcm_key(*engine_, key, sizeof(key), salt, &k);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.error().find("key_len"), std::string::npos) << s.error();
}

TEST_F(GcmTest, WipeZeroesKeyMaterial) {
  const uint8_t key[16] = {1, 2, 3}, salt[4] = {9, 9, 9, 9};
  GcmKey k{};
  ASSERT_TRUE(expand_gcm_key(*engine_, key, sizeof(key), salt, &k).ok());
  wipe(&k);
  const auto* bytes = reinterpret_cast<const uint8_t*>(&k);
  for (size_t i = 0; i < sizeof(k); ++i) ASSERT_EQ(bytes[i], 0) << "byte " << i;
}

TEST_F(GcmTest, EmptyBurst) {
  EXPECT_EQ(gcm_encrypt_burst(*engine_, nullptr, 0), 0);
  EXPECT_EQ(gcm_decrypt_burst(*engine_, nullptr, 0), 0);
}

TEST_F(GcmTest, PublishedVectorsOneByOne) {
  for (const Vector& v : kVectors) {
    SCOPED_TRACE(v.name);
    Case enc;
    load(v, false, &enc);
    GcmOp op = enc.op();
    ASSERT_EQ(gcm_encrypt_burst(*engine_, &op, 1), 1);
    EXPECT_TRUE(op.ok);
    EXPECT_EQ(enc.data, hex(v.ciphertext));
    EXPECT_EQ(enc.tag, hex(v.tag));

    Case dec;
    load(v, true, &dec);
    op = dec.op();
    ASSERT_EQ(gcm_decrypt_burst(*engine_, &op, 1), 1);
    EXPECT_TRUE(op.ok);
    EXPECT_EQ(dec.data, hex(v.plaintext));
  }
}

TEST_F(GcmTest, PublishedVectorsInOneBurst) {
  constexpr size_t kN = std::size(kVectors);
  std::vector<Case> cases(kN);
  std::vector<GcmOp> ops(kN);
  for (size_t i = 0; i < kN; ++i) {
    load(kVectors[i], false, &cases[i]);
    ops[i] = cases[i].op();
  }
  ASSERT_EQ(gcm_encrypt_burst(*engine_, ops.data(), kN), kN);
  for (size_t i = 0; i < kN; ++i) {
    SCOPED_TRACE(kVectors[i].name);
    EXPECT_EQ(cases[i].data, hex(kVectors[i].ciphertext));
    EXPECT_EQ(cases[i].tag, hex(kVectors[i].tag));
  }
  ASSERT_EQ(gcm_decrypt_burst(*engine_, ops.data(), kN), kN);
  for (size_t i = 0; i < kN; ++i) {
    SCOPED_TRACE(kVectors[i].name);
    EXPECT_TRUE(ops[i].ok);
    EXPECT_EQ(cases[i].data, hex(kVectors[i].plaintext));
  }
}

// Each vector four times in one burst: intact, tag bit flipped, ciphertext
// bit flipped, AAD bit flipped. Only the intact ones may verify, which also
// shows that completions are matched back to the right op.
TEST_F(GcmTest, TamperedPacketsFailVerification) {
  enum Tamper { kNone, kTag, kCiphertext, kAad };
  std::vector<Case> cases;
  std::vector<Tamper> tampers;
  for (const Vector& v : kVectors) {
    for (Tamper t : {kNone, kTag, kCiphertext, kAad}) {
      Case c;
      load(v, true, &c);
      if (t == kCiphertext && c.data.empty()) continue;
      if (t == kAad && c.aad.empty()) continue;
      if (t == kTag) c.tag[7] ^= 0x10;
      if (t == kCiphertext) c.data[c.data.size() / 2] ^= 0x01;
      if (t == kAad) c.aad.back() ^= 0x80;
      cases.push_back(std::move(c));
      tampers.push_back(t);
    }
  }
  ASSERT_LE(cases.size(), kMaxBurst);
  std::vector<GcmOp> ops;
  for (Case& c : cases) ops.push_back(c.op());
  const uint16_t good = gcm_decrypt_burst(*engine_, ops.data(), static_cast<uint16_t>(ops.size()));
  EXPECT_EQ(good, std::size(kVectors));
  for (size_t i = 0; i < ops.size(); ++i) EXPECT_EQ(ops[i].ok, tampers[i] == kNone) << "op " << i << " tamper " << tampers[i];
}

TEST_F(GcmTest, InvalidOpsFailWithoutDisturbingOthers) {
  Case good, unkeyed;
  load(kVectors[2], false, &good);
  load(kVectors[2], false, &unkeyed);
  unkeyed.key.key_len = 0;  // never expanded
  GcmOp ops[3] = {good.op(), unkeyed.op(), good.op()};
  ops[2].key = nullptr;
  EXPECT_EQ(gcm_encrypt_burst(*engine_, ops, 3), 1);
  EXPECT_TRUE(ops[0].ok);
  EXPECT_FALSE(ops[1].ok);
  EXPECT_FALSE(ops[2].ok);
  EXPECT_EQ(good.tag, hex(kVectors[2].tag));
}

// --- Against OpenSSL -------------------------------------------------------

Bytes openssl_seal(const Bytes& key, const Bytes& nonce, const Bytes& aad, const Bytes& plaintext, Bytes* tag) {
  EVP_CIPHER_CTX* ctx = EVP_CIPHER_CTX_new();
  const EVP_CIPHER* cipher = key.size() == 16 ? EVP_aes_128_gcm() : EVP_aes_256_gcm();
  Bytes out(plaintext.size() + 16);
  int len = 0, total = 0;
  bool ok = EVP_EncryptInit_ex(ctx, cipher, nullptr, nullptr, nullptr) == 1 &&
            EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, 12, nullptr) == 1 &&
            EVP_EncryptInit_ex(ctx, nullptr, nullptr, key.data(), nonce.data()) == 1 &&
            EVP_EncryptUpdate(ctx, nullptr, &len, aad.data(), static_cast<int>(aad.size())) == 1 &&
            EVP_EncryptUpdate(ctx, out.data(), &len, plaintext.data(), static_cast<int>(plaintext.size())) == 1;
  total = len;
  ok = ok && EVP_EncryptFinal_ex(ctx, out.data() + total, &len) == 1;
  total += len;
  tag->assign(16, 0);
  ok = ok && EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, 16, tag->data()) == 1;
  EVP_CIPHER_CTX_free(ctx);
  EXPECT_TRUE(ok);
  out.resize(total);
  return out;
}

// A full burst of 64 with lengths 0..2000, AES-128 and AES-256 with a
// different key per op, 12-byte ESN AAD or 8-byte AAD or none.
TEST_F(GcmTest, MixedBurstMatchesOpenSsl) {
  std::mt19937 rng(20240611);
  auto random_bytes = [&rng](size_t n) {
    Bytes b(n);
    for (auto& x : b) x = static_cast<uint8_t>(rng());
    return b;
  };
  const uint32_t fixed_lengths[] = {0, 1, 15, 16, 17, 63, 64, 65, 255, 256, 1400, 1500, 2000};
  constexpr uint16_t kN = kMaxBurst;
  std::vector<Case> cases(kN);
  std::vector<Bytes> keys(kN), nonces(kN), plaintexts(kN);
  std::vector<GcmOp> ops(kN);
  for (uint16_t i = 0; i < kN; ++i) {
    Case& c = cases[i];
    keys[i] = random_bytes(i % 2 == 0 ? 16 : 32);
    nonces[i] = random_bytes(12);
    const uint32_t len = i < std::size(fixed_lengths) ? fixed_lengths[i] : rng() % 2001;
    plaintexts[i] = random_bytes(len);
    c.aad = random_bytes(i % 3 == 0 ? 12 : i % 3 == 1 ? 8 : 0);
    ASSERT_TRUE(expand_gcm_key(*engine_, keys[i].data(), keys[i].size(), nonces[i].data(), &c.key).ok());
    c.iv8.assign(nonces[i].begin() + 4, nonces[i].end());
    c.data = plaintexts[i];
    c.tag.assign(16, 0);
    ops[i] = c.op();
  }
  ASSERT_EQ(gcm_encrypt_burst(*engine_, ops.data(), kN), kN);
  for (uint16_t i = 0; i < kN; ++i) {
    SCOPED_TRACE("op " + std::to_string(i) + " len " + std::to_string(plaintexts[i].size()));
    Bytes expected_tag;
    const Bytes expected = openssl_seal(keys[i], nonces[i], cases[i].aad, plaintexts[i], &expected_tag);
    EXPECT_EQ(cases[i].data, expected);
    EXPECT_EQ(cases[i].tag, expected_tag);
  }
  ASSERT_EQ(gcm_decrypt_burst(*engine_, ops.data(), kN), kN);
  for (uint16_t i = 0; i < kN; ++i) {
    EXPECT_TRUE(ops[i].ok) << i;
    EXPECT_EQ(cases[i].data, plaintexts[i]) << i;
  }
}

// More than kMaxBurst ops are split into several ipsec-mb bursts.
TEST_F(GcmTest, LongBurstIsSplit) {
  constexpr uint16_t kN = 2 * kMaxBurst + 3;
  std::vector<Case> cases(kN);
  std::vector<GcmOp> ops(kN);
  for (uint16_t i = 0; i < kN; ++i) {
    load(kVectors[i % std::size(kVectors)], false, &cases[i]);
    ops[i] = cases[i].op();
  }
  ASSERT_EQ(gcm_encrypt_burst(*engine_, ops.data(), kN), kN);
  for (uint16_t i = 0; i < kN; ++i) EXPECT_EQ(cases[i].tag, hex(kVectors[i % std::size(kVectors)].tag)) << i;
  ASSERT_EQ(gcm_decrypt_burst(*engine_, ops.data(), kN), kN);
}

}  // namespace
}  // namespace meshwire::dp::esp
