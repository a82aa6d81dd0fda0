// Node keys and the SAs derived from them: RFC 7748's X25519 vector, and the
// README's derivation checked against values computed independently with
// Python's `cryptography` (X25519 + HKDF-SHA256), so that another
// implementation can reproduce them.
#include "keys/keys.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include <gtest/gtest.h>

namespace meshwire::control {
namespace {

X25519Key hex32(const char* hex) {
  X25519Key k{};
  for (size_t i = 0; i < 32; ++i) k[i] = static_cast<uint8_t>(std::stoul(std::string(hex + 2 * i, 2), nullptr, 16));
  return k;
}

std::string hex(const uint8_t* p, size_t n) {
  static const char* d = "0123456789abcdef";
  std::string s;
  for (size_t i = 0; i < n; ++i) {
    s.push_back(d[p[i] >> 4]);
    s.push_back(d[p[i] & 15]);
  }
  return s;
}

// RFC 7748 section 6.1.
const X25519Key kAlicePrivate = hex32("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a");
const X25519Key kAlicePublic = hex32("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a");
const X25519Key kBobPrivate = hex32("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb");
const X25519Key kBobPublic = hex32("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f");
const char* kShared = "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742";

TEST(X25519, Rfc7748Vector) {
  auto pub = public_key_of(kAlicePrivate);
  ASSERT_TRUE(pub.ok()) << pub.error();
  EXPECT_EQ(*pub, kAlicePublic);
  auto ab = shared_secret(kAlicePrivate, kBobPublic);
  auto ba = shared_secret(kBobPrivate, kAlicePublic);
  ASSERT_TRUE(ab.ok() && ba.ok());
  EXPECT_EQ(hex(ab->data(), 32), kShared);
  EXPECT_EQ(*ab, *ba);
}

TEST(X25519, RefusesSmallOrderPeerKeys) {
  X25519Key zero{};  // the identity: every shared secret would be zero
  auto s = shared_secret(kAlicePrivate, zero);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.error().find("peer public key"), std::string::npos) << s.error();
}

TEST(X25519, TwoFreshPairsAgree) {
  auto a = generate_key_pair();
  auto b = generate_key_pair();
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_NE(a->public_key, b->public_key);
  EXPECT_EQ(*shared_secret(a->private_key, b->public_key), *shared_secret(b->private_key, a->public_key));
}

TEST(PublicKeyText, RoundTripsAndNamesWhatIsWrong) {
  const std::string text = encode_public_key(kAlicePublic);
  EXPECT_EQ(text, "hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTmo=");
  auto back = decode_public_key(text);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(*back, kAlicePublic);
  EXPECT_FALSE(decode_public_key("hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTm==").ok());
  EXPECT_FALSE(decode_public_key("hSDwCYkw!1R0i33ctD73Wg2/Og0mOBr066SpjqqbTmo=").ok());
  auto short_key = decode_public_key("AAAA");
  ASSERT_FALSE(short_key.ok());
  EXPECT_NE(short_key.error().find("got 4"), std::string::npos) << short_key.error();
}

struct Vector {
  const char* sender;
  const char* receiver;
  uint64_t epoch;
  unsigned worker;
  size_t key_len;
  uint32_t spi;
  const char* key;
  const char* salt;
};

// Computed with Python 3's cryptography package from the README's steps.
const Vector kVectors[] = {
    {"node-a", "node-b", 7, 0, 16, 0x800001c0, "a8671e6934300f51e24d32c61c759477", "47657510"},
    {"node-b", "node-a", 7, 0, 16, 0x800001c0, "06446b76c727fe62fa0697f87c90546d", "5fc549ac"},
    {"node-a", "node-b", 7, 3, 32, 0x800001c3, "3099a99699a6faf6c5cc3753942f2420e4398d92c5b13673f0213e5468b7ac85",
     "579be1c8"},
};

TEST(DeriveSa, MatchesTheIndependentVectors) {
  const X25519Key shared = hex32(kShared);
  for (const Vector& v : kVectors) {
    auto sa = derive_sa(shared, "prod-eu1", v.sender, v.receiver, v.epoch, v.worker, v.key_len);
    ASSERT_TRUE(sa.ok()) << sa.error();
    EXPECT_EQ(sa->spi, v.spi) << v.sender << "->" << v.receiver;
    EXPECT_EQ(hex(sa->key.data(), sa->key.size()), v.key) << v.sender << "->" << v.receiver;
    EXPECT_EQ(hex(sa->salt.data(), 4), v.salt) << v.sender << "->" << v.receiver;
  }
}

TEST(DeriveSa, EveryInputChangesTheKey) {
  const X25519Key shared = hex32(kShared);
  const auto base = derive_sa(shared, "c", "a", "b", 1, 0, 16);
  ASSERT_TRUE(base.ok());
  for (const auto& other : {derive_sa(shared, "d", "a", "b", 1, 0, 16), derive_sa(shared, "c", "b", "a", 1, 0, 16),
                            derive_sa(shared, "c", "a", "b", 2, 0, 16), derive_sa(shared, "c", "a", "b", 1, 1, 16)}) {
    ASSERT_TRUE(other.ok());
    EXPECT_NE(other->key, base->key);
  }
  // Names are delimited: ("ab", "c") and ("a", "bc") are different pairs.
  EXPECT_NE(derive_sa(shared, "c", "ab", "c", 1, 0, 16)->key, derive_sa(shared, "c", "a", "bc", 1, 0, 16)->key);
}

TEST(DeriveSa, RejectsBadInputNamingIt) {
  const X25519Key shared = hex32(kShared);
  EXPECT_NE(derive_sa(shared, "c", "a", "b", 1, 0, 24).error().find("key length"), std::string::npos);
  EXPECT_NE(derive_sa(shared, "c", "a", "b", 1, 64, 16).error().find("worker"), std::string::npos);
  EXPECT_NE(derive_sa(shared, "c", "a", "a", 1, 0, 16).error().find("node names"), std::string::npos);
}

TEST(DerivedSpi, UniquePerEpochAndWorkerWithTheTopBitSet) {
  EXPECT_EQ(derived_spi(0, 0), 0x80000000u);
  EXPECT_EQ(derived_spi(1, 63), 0x8000007fu);
  EXPECT_EQ(derived_spi((1u << 24) - 1, 0), 0xbfffffc0u);
  EXPECT_EQ(derived_spi(1u << 24, 5), derived_spi(0, 5));  // epochs 2^24 apart never coexist
  EXPECT_NE(derived_spi(2, 0), derived_spi(1, 0));
}

class KeyFile : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/meshwire-keys-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    path_ = dir_ + "/node.key";
  }
  void TearDown() override {
    ::unlink(path_.c_str());
    ::unlink((path_ + ".tmp").c_str());
    ::rmdir(dir_.c_str());
  }
  std::string dir_, path_;
};

TEST_F(KeyFile, CreatedOwnerOnlyThenReadBack) {
  auto first = load_or_create_key_pair(path_);
  ASSERT_TRUE(first.ok()) << first.error();
  struct stat st {};
  ASSERT_EQ(stat(path_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  auto again = load_or_create_key_pair(path_);
  ASSERT_TRUE(again.ok()) << again.error();
  EXPECT_EQ(again->public_key, first->public_key);
  EXPECT_EQ(again->private_key, first->private_key);
  EXPECT_EQ(*public_key_of(again->private_key), again->public_key);
}

TEST_F(KeyFile, RefusesAKeyOthersCanRead) {
  ASSERT_TRUE(load_or_create_key_pair(path_).ok());
  ASSERT_EQ(chmod(path_.c_str(), 0644), 0);
  auto r = load_or_create_key_pair(path_);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().find("mode 0644"), std::string::npos) << r.error();
}

TEST_F(KeyFile, RefusesAFileThatIsNotAKey) {
  FILE* f = std::fopen(path_.c_str(), "w");
  ASSERT_NE(f, nullptr);
  std::fputs("not a key\n", f);
  std::fclose(f);
  ASSERT_EQ(chmod(path_.c_str(), 0600), 0);
  auto r = load_or_create_key_pair(path_);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().find(path_), std::string::npos) << r.error();
}

TEST_F(KeyFile, NamesAMissingFolder) {
  auto r = load_or_create_key_pair(dir_ + "/missing/node.key");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().find("missing/node.key"), std::string::npos) << r.error();
}

}  // namespace
}  // namespace meshwire::control
