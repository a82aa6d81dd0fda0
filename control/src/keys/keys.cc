#include "keys/keys.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/pem.h>
#include <openssl/rand.h>

namespace meshwire::control {
namespace {

using dp::make_error;

std::string openssl_error(const char* what) {
  const unsigned long e = ERR_get_error();
  char buf[256] = "unknown error";
  if (e) ERR_error_string_n(e, buf, sizeof(buf));
  ERR_clear_error();
  return std::string(what) + ": " + buf;
}

struct PkeyFree {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
using Pkey = std::unique_ptr<EVP_PKEY, PkeyFree>;

Pkey private_pkey(const X25519Key& k) {
  return Pkey(EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, nullptr, k.data(), k.size()));
}

Result<KeyPair> pair_of(EVP_PKEY* pkey) {
  KeyPair kp;
  size_t len = kp.private_key.size();
  if (EVP_PKEY_get_raw_private_key(pkey, kp.private_key.data(), &len) != 1 || len != 32) {
    return make_error(openssl_error("X25519 private key"));
  }
  len = kp.public_key.size();
  if (EVP_PKEY_get_raw_public_key(pkey, kp.public_key.data(), &len) != 1 || len != 32) {
    return make_error(openssl_error("X25519 public key"));
  }
  return kp;
}

void put_be(std::string& out, uint64_t v, int bytes) {
  for (int i = bytes - 1; i >= 0; --i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
}

}  // namespace

KeyPair::~KeyPair() { OPENSSL_cleanse(private_key.data(), private_key.size()); }

DerivedSa::~DerivedSa() {
  if (!key.empty()) OPENSSL_cleanse(key.data(), key.size());
  OPENSSL_cleanse(salt.data(), salt.size());
}

Result<KeyPair> generate_key_pair() {
  EVP_PKEY* raw = nullptr;
  std::unique_ptr<EVP_PKEY_CTX, decltype(&EVP_PKEY_CTX_free)> ctx(EVP_PKEY_CTX_new_id(EVP_PKEY_X25519, nullptr),
                                                                  EVP_PKEY_CTX_free);
  if (!ctx || EVP_PKEY_keygen_init(ctx.get()) != 1 || EVP_PKEY_keygen(ctx.get(), &raw) != 1) {
    return make_error(openssl_error("X25519 key generation"));
  }
  Pkey pkey(raw);
  return pair_of(pkey.get());
}

Result<X25519Key> public_key_of(const X25519Key& private_key) {
  Pkey pkey = private_pkey(private_key);
  if (!pkey) return make_error(openssl_error("X25519 private key"));
  auto kp = pair_of(pkey.get());
  if (!kp.ok()) return make_error(kp.error());
  return kp->public_key;
}

Result<KeyPair> load_or_create_key_pair(const std::string& path) {
  struct stat st {};
  if (stat(path.c_str(), &st) == 0) {
    if (st.st_mode & (S_IRWXG | S_IRWXO)) {
      char mode[8];
      std::snprintf(mode, sizeof(mode), "%04o", static_cast<unsigned>(st.st_mode & 07777));
      return make_error(path + ": mode " + mode + " lets others read the node's private key (chmod 600 it)");
    }
    FILE* f = std::fopen(path.c_str(), "r");
    if (!f) return make_error(path + ": " + std::strerror(errno));
    Pkey pkey(PEM_read_PrivateKey(f, nullptr, nullptr, nullptr));
    std::fclose(f);
    if (!pkey) return make_error(path + ": " + openssl_error("not a PEM private key"));
    if (EVP_PKEY_get_id(pkey.get()) != EVP_PKEY_X25519) return make_error(path + ": not an X25519 key");
    return pair_of(pkey.get());
  }
  if (errno != ENOENT) return make_error(path + ": " + std::strerror(errno));
  auto kp = generate_key_pair();
  if (!kp.ok()) return kp;
  Pkey pkey = private_pkey(kp->private_key);
  if (!pkey) return make_error(openssl_error("X25519 private key"));
  // Written beside the target with mode 0600 from the start, then renamed:
  // a crash never leaves a half-written or readable key behind.
  const std::string tmp = path + ".tmp";
  ::unlink(tmp.c_str());
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return make_error(tmp + ": " + std::strerror(errno));
  FILE* f = ::fdopen(fd, "w");
  if (!f) {
    ::close(fd);
    return make_error(tmp + ": " + std::strerror(errno));
  }
  const bool written = PEM_write_PrivateKey(f, pkey.get(), nullptr, nullptr, 0, nullptr, nullptr) == 1;
  const bool flushed = std::fflush(f) == 0 && ::fsync(fd) == 0;
  std::fclose(f);
  if (!written || !flushed || ::rename(tmp.c_str(), path.c_str()) != 0) {
    const std::string why = written ? std::strerror(errno) : openssl_error("PEM");
    ::unlink(tmp.c_str());
    return make_error(path + ": cannot write the key: " + why);
  }
  return kp;
}

Result<X25519Private> X25519Private::load(const X25519Key& private_key) {
  Pkey own = private_pkey(private_key);
  if (!own) return make_error(openssl_error("X25519 private key"));
  X25519Private p;
  p.pkey_ = std::shared_ptr<void>(own.release(), [](void* k) { EVP_PKEY_free(static_cast<EVP_PKEY*>(k)); });
  return p;
}

Result<X25519Key> X25519Private::shared(const X25519Key& peer_public) const {
  auto* own = static_cast<EVP_PKEY*>(pkey_.get());
  Pkey peer(EVP_PKEY_new_raw_public_key(EVP_PKEY_X25519, nullptr, peer_public.data(), peer_public.size()));
  if (!own || !peer) return make_error(openssl_error("X25519 key"));
  std::unique_ptr<EVP_PKEY_CTX, decltype(&EVP_PKEY_CTX_free)> ctx(EVP_PKEY_CTX_new(own, nullptr), EVP_PKEY_CTX_free);
  X25519Key out{};
  size_t len = out.size();
  if (!ctx || EVP_PKEY_derive_init(ctx.get()) != 1 || EVP_PKEY_derive_set_peer(ctx.get(), peer.get()) != 1 ||
      EVP_PKEY_derive(ctx.get(), out.data(), &len) != 1 || len != out.size()) {
    ERR_clear_error();
    // OpenSSL refuses small-order peer keys itself (all-zero result).
    return make_error("peer public key: unusable for X25519 (small-order point)");
  }
  uint8_t any = 0;
  for (uint8_t b : out) any |= b;
  if (!any) return make_error("peer public key: unusable for X25519 (small-order point)");
  return out;
}

Result<X25519Key> shared_secret(const X25519Key& private_key, const X25519Key& peer_public) {
  auto own = X25519Private::load(private_key);
  if (!own.ok()) return make_error(own.error());
  return own->shared(peer_public);
}

std::string encode_public_key(const X25519Key& key) {
  unsigned char out[4 * ((32 + 2) / 3) + 1];
  const int n = EVP_EncodeBlock(out, key.data(), static_cast<int>(key.size()));
  return std::string(reinterpret_cast<char*>(out), static_cast<size_t>(n));
}

Result<X25519Key> decode_public_key(std::string_view text) {
  // 32 bytes are 44 base64 characters, the last one '='.
  if (text.size() != 44 || text[43] != '=') {
    return make_error("not a base64 X25519 public key (want 44 characters encoding 32 bytes, got " +
                      std::to_string(text.size()) + ")");
  }
  unsigned char out[33];
  const std::string s(text);
  const int n = EVP_DecodeBlock(out, reinterpret_cast<const unsigned char*>(s.data()), static_cast<int>(s.size()));
  if (n != 33) return make_error("not a base64 X25519 public key (invalid base64)");
  X25519Key key{};
  std::memcpy(key.data(), out, 32);
  // EVP_DecodeBlock ignores padding: "...Tm==" would pass as 32 bytes. Only
  // the canonical encoding of 32 bytes is a key.
  if (encode_public_key(key) != s) return make_error("not a base64 X25519 public key (not 32 bytes)");
  return key;
}

uint32_t derived_spi(uint64_t epoch, unsigned worker) {
  return kDerivedSpiBit | (static_cast<uint32_t>(epoch & 0xFFFFFF) << 6) | (worker & 0x3F);
}

Result<DerivedSa> derive_sa(const X25519Key& shared, std::string_view cluster_id, std::string_view sender,
                            std::string_view receiver, uint64_t epoch, unsigned worker, size_t key_len) {
  if (key_len != 16 && key_len != 32) return make_error("key length: " + std::to_string(key_len) + " (16 or 32)");
  if (worker >= kMaxDerivedWorkers) return make_error("worker: " + std::to_string(worker) + " (0..63)");
  if (sender.empty() || receiver.empty() || sender == receiver) {
    return make_error("node names: sender and receiver must be two different non-empty names");
  }
  std::string salt = "meshwire/v1/cluster/";
  salt += cluster_id;
  std::string info = "meshwire/v1/sa";
  info.push_back('\0');
  info += sender;
  info.push_back('\0');
  info += receiver;
  info.push_back('\0');
  put_be(info, epoch, 8);
  put_be(info, worker, 2);
  put_be(info, key_len, 1);

  // Fetching the algorithm is costly (a provider lookup): once per process.
  static EVP_KDF* const kdf = EVP_KDF_fetch(nullptr, "HKDF", nullptr);
  std::unique_ptr<EVP_KDF_CTX, decltype(&EVP_KDF_CTX_free)> ctx(kdf ? EVP_KDF_CTX_new(kdf) : nullptr,
                                                                EVP_KDF_CTX_free);
  if (!ctx) return make_error(openssl_error("HKDF"));
  char digest[] = "SHA256";
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, digest, 0),
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, const_cast<uint8_t*>(shared.data()), shared.size()),
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, salt.data(), salt.size()),
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, info.data(), info.size()),
      OSSL_PARAM_construct_end(),
  };
  std::array<uint8_t, 36> okm{};
  if (EVP_KDF_derive(ctx.get(), okm.data(), key_len + 4, params) != 1) return make_error(openssl_error("HKDF"));
  DerivedSa sa;
  sa.spi = derived_spi(epoch, worker);
  sa.key.assign(okm.begin(), okm.begin() + static_cast<long>(key_len));
  std::memcpy(sa.salt.data(), okm.data() + key_len, 4);
  OPENSSL_cleanse(okm.data(), okm.size());
  return sa;
}

}  // namespace meshwire::control
