// Per-node-pair keys: each node's X25519 key pair, and the SAs two nodes
// derive from it without talking to each other (README, "Keys", has the
// derivation byte for byte). Pure code over OpenSSL 3: no DPDK, callable from
// any thread.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <meshwire/dp/result.h>

namespace meshwire::control {

using dp::Result;

using X25519Key = std::array<uint8_t, 32>;

struct KeyPair {
  X25519Key private_key{};  // never leaves the node
  X25519Key public_key{};
  ~KeyPair();               // wipes private_key
};

// A fresh key pair from the OS's random source.
Result<KeyPair> generate_key_pair();
// The public key of a private key (RFC 7748 X25519 base-point multiplication).
Result<X25519Key> public_key_of(const X25519Key& private_key);

// The node's key pair from a PEM (PKCS#8) file that only its owner may read,
// or a new one written there (mode 0600, atomically) when the file does not
// exist. Refuses a file that group or others can read.
Result<KeyPair> load_or_create_key_pair(const std::string& path);

// X25519(private, peer public). Fails on a peer key of small order (an
// all-zero shared secret, RFC 7748 section 6.1).
Result<X25519Key> shared_secret(const X25519Key& private_key, const X25519Key& peer_public);

// A private key loaded once for many agreements: OpenSSL computes the public
// key whenever a raw private key is loaded, which doubled the cost of each
// shared_secret() (5,000 peers: ~430 ms instead of ~215 ms).
class X25519Private {
 public:
  static Result<X25519Private> load(const X25519Key& private_key);
  Result<X25519Key> shared(const X25519Key& peer_public) const;  // as shared_secret()

 private:
  std::shared_ptr<void> pkey_;  // EVP_PKEY
};

// Base64 (RFC 4648, padded) of a public key, as published in the Node
// annotation meshwire.io/public-key, and back (error names what is wrong).
std::string encode_public_key(const X25519Key& key);
Result<X25519Key> decode_public_key(std::string_view text);

// One direction's SA for (sender -> receiver, epoch, sender's worker).
struct DerivedSa {
  uint32_t spi = 0;
  std::vector<uint8_t> key;        // key_len bytes
  std::array<uint8_t, 4> salt{};
  ~DerivedSa();                    // wipes key and salt
};

inline constexpr unsigned kMaxDerivedWorkers = 64;     // SPI bits 0..5
inline constexpr uint32_t kDerivedSpiBit = 0x80000000u;  // derived SPIs have the top bit set

// SPI of a derived SA: top bit set, epoch mod 2^24 in bits 6..29, worker in
// bits 0..5. Unique per sender for any two epochs less than 2^24 apart.
uint32_t derived_spi(uint64_t epoch, unsigned worker);

// HKDF-SHA256 over the shared secret (salt "meshwire/v1/cluster/" + cluster
// id), expanded with info naming sender, receiver, epoch, worker and key
// length. key_len is 16 (AES-128-GCM) or 32 (AES-256-GCM); worker < 64.
Result<DerivedSa> derive_sa(const X25519Key& shared, std::string_view cluster_id, std::string_view sender,
                            std::string_view receiver, uint64_t epoch, unsigned worker, size_t key_len);

}  // namespace meshwire::control
