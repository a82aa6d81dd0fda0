// check_routing(): the rules a routing state must satisfy, as the control
// API names them, and the sorted pod-CIDR overlap check against a
// compare-every-pair reference on random prefixes.
#include <gtest/gtest.h>

#include <cstdio>
#include <random>
#include <string>

#include <meshwire/dp/config.h>

namespace meshwire::dp {
namespace {

IpAddress ip(const char* text) { return *parse_ip_address(text); }
IpPrefix prefix(const std::string& text) { return *parse_ip_prefix(text); }

SaConfig sa(uint32_t spi, uint8_t seed) {
  SaConfig s;
  s.spi = spi;
  for (int i = 0; i < 16; ++i) s.key.push_back(static_cast<uint8_t>(seed + i));
  s.salt = {seed, 1, 2, 3};
  return s;
}

PeerConfig peer(const std::string& name, const char* tunnel, const std::string& cidr, uint8_t seed) {
  PeerConfig p;
  p.name = name;
  p.tunnel_address = ip(tunnel);
  p.pod_cidrs = {prefix(cidr)};
  p.outbound = {sa(0x1000 + seed, seed)};
  p.inbound = {sa(0x2000 + seed, static_cast<uint8_t>(seed + 100))};
  return p;
}

RoutingState valid() {
  RoutingState r;
  r.pod_cidrs = {prefix("10.1.0.0/24")};
  r.peers = {peer("b", "192.0.2.2", "10.2.0.0/24", 1), peer("c", "192.0.2.3", "10.3.0.0/24", 2)};
  return r;
}

std::string check(const RoutingState& r, unsigned workers = 1) {
  Status s = check_routing(r, ip("192.0.2.1"), workers, kApiPaths);
  return s.ok() ? "" : s.error();
}

TEST(CheckRouting, AcceptsAValidState) { EXPECT_EQ(check(valid()), ""); }

TEST(CheckRouting, NamesTheFieldInTheApisTerms) {
  struct Case {
    const char* what;
    void (*change)(RoutingState&);
    const char* field;
  };
  const Case cases[] = {
      {"overlap with own pods", [](RoutingState& r) { r.peers[1].pod_cidrs.push_back(prefix("10.1.0.128/25")); },
       "peers[1].pod_cidrs[1]: 10.1.0.128/25 overlaps pod_cidrs[0] (10.1.0.0/24)"},
      {"overlap between peers", [](RoutingState& r) { r.peers[1].pod_cidrs = {prefix("10.2.0.0/16")}; },
       "peers[1].pod_cidrs[0]: 10.2.0.0/16 overlaps peers[0].pod_cidrs[0] (10.2.0.0/24)"},
      {"duplicate name", [](RoutingState& r) { r.peers[1].name = r.peers[0].name; }, "peers[1].name: 'b' already used by peers[0]"},
      {"bad name", [](RoutingState& r) { r.peers[0].name = "a b"; }, "peers[0].name: must be"},
      {"duplicate address", [](RoutingState& r) { r.peers[1].tunnel_address = ip("192.0.2.2"); },
       "peers[1].tunnel_address: 192.0.2.2 already used by peers[0]"},
      {"own address", [](RoutingState& r) { r.peers[0].tunnel_address = ip("192.0.2.1"); },
       "peers[0].tunnel_address: 192.0.2.1 is this node's own tunnel address"},
      {"other family", [](RoutingState& r) { r.peers[0].tunnel_address = ip("2001:db8::2"); },
       "peers[0].tunnel_address: 2001:db8::2 is IPv6"},
      {"no pods", [](RoutingState& r) { r.peers[0].pod_cidrs.clear(); }, "peers[0].pod_cidrs: must list"},
      {"outbound per worker", [](RoutingState& r) { r.peers[0].outbound.push_back(sa(0x3000, 50)); },
       "peers[0].outbound: needs exactly 1 entries"},
      {"no inbound", [](RoutingState& r) { r.peers[0].inbound.clear(); }, "peers[0].inbound: needs at least one SA"},
      {"reserved SPI", [](RoutingState& r) { r.peers[0].inbound[0].spi = 255; },
       "peers[0].inbound[0].spi: must be 256..0xffffffff"},
      {"key size", [](RoutingState& r) { r.peers[0].outbound[0].algorithm = AeadAlgorithm::kAes256Gcm; },
       "peers[0].outbound[0].key: must be 32 bytes for aes-256-gcm, got 16"},
      {"duplicate inbound SPI", [](RoutingState& r) { r.peers[0].inbound.push_back(sa(0x2001, 77)); },
       "peers[0].inbound[1].spi: 0x2001 already used by peers[0].inbound[0]"},
      {"key reused", [](RoutingState& r) { r.peers[1].inbound[0] = r.peers[0].outbound[0]; },
       "peers[1].inbound[0]: same key and salt as peers[0].outbound[0]"},
  };
  for (const Case& c : cases) {
    RoutingState r = valid();
    c.change(r);
    const std::string error = check(r);
    EXPECT_EQ(error.rfind(c.field, 0), 0u) << c.what << ": " << error;
  }
}

// The reference: every pair compared.
bool any_overlap(const std::vector<IpPrefix>& ps) {
  for (size_t i = 0; i < ps.size(); ++i) {
    for (size_t j = 0; j < i; ++j) {
      if (ps[i].address.family != ps[j].address.family) continue;
      const unsigned len = std::min(ps[i].length, ps[j].length);
      bool same = true;
      for (unsigned b = 0; b < len && same; ++b) {
        const unsigned byte = b / 8, bit = 7 - b % 8;
        same = ((ps[i].address.bytes[byte] >> bit) & 1) == ((ps[j].address.bytes[byte] >> bit) & 1);
      }
      if (same) return true;
    }
  }
  return false;
}

TEST(CheckRouting, OverlapsFoundAsComparingEveryPairWould) {
  std::mt19937 rng(7);
  int with_overlap = 0;
  for (int round = 0; round < 300; ++round) {
    RoutingState r;
    std::vector<IpPrefix> all;
    const int n = 2 + static_cast<int>(rng() % 12);
    for (int i = 0; i < n; ++i) {
      // Prefixes in 10.0.0.0/12 with lengths 14..24 collide often enough.
      const unsigned len = 14 + rng() % 11;
      const uint32_t addr = (10u << 24) | ((rng() & 0x000FFFFF) & ~((1u << (32 - len)) - 1));
      char text[32];
      std::snprintf(text, sizeof(text), "%u.%u.%u.%u/%u", addr >> 24, (addr >> 16) & 255, (addr >> 8) & 255,
                    addr & 255, len);
      all.push_back(prefix(text));
      if (i == 0) {
        r.pod_cidrs = {all.back()};
      } else {
        char name[16], tunnel[32];
        std::snprintf(name, sizeof(name), "p%d", i);
        std::snprintf(tunnel, sizeof(tunnel), "192.0.2.%d", 10 + i);
        PeerConfig p = peer(name, tunnel, text, static_cast<uint8_t>(i));
        r.peers.push_back(p);
      }
    }
    const std::string error = check(r);
    const bool overlap = any_overlap(all);
    with_overlap += overlap;
    EXPECT_EQ(error.find("overlaps") != std::string::npos, overlap) << "round " << round << ": " << error;
    if (!overlap) {
      EXPECT_EQ(error, "") << "round " << round;
    }
  }
  EXPECT_GT(with_overlap, 50);
  EXPECT_LT(with_overlap, 250);
}

TEST(CheckRouting, ThousandsOfPeersAreChecked) {
  RoutingState r;
  r.pod_cidrs = {prefix("10.0.0.0/24")};
  for (int i = 1; i <= 5000; ++i) {
    PeerConfig p;
    char name[16], tunnel[32], cidr[32];
    std::snprintf(name, sizeof(name), "node-%d", i);
    std::snprintf(tunnel, sizeof(tunnel), "172.16.%d.%d", i / 256, i % 256);
    std::snprintf(cidr, sizeof(cidr), "10.%d.%d.0/24", i / 256, i % 256);
    p.name = name;
    p.tunnel_address = ip(tunnel);
    p.pod_cidrs = {prefix(cidr)};
    SaConfig out = sa(0x1000, 0), in = sa(0x2000, 0);
    out.key[0] = static_cast<uint8_t>(i);
    out.key[1] = static_cast<uint8_t>(i >> 8);
    in.key[0] = static_cast<uint8_t>(i);
    in.key[1] = static_cast<uint8_t>(i >> 8);
    in.key[2] = 0xFF;
    p.outbound = {out};
    p.inbound = {in};
    r.peers.push_back(p);
  }
  // node-0's slot is this node's own 10.0.0.0/24: peer 256 (10.1.0.0) etc. do not collide.
  EXPECT_EQ(check(r), "");
  r.peers[4999].pod_cidrs.push_back(prefix("10.0.0.64/26"));
  EXPECT_EQ(check(r).rfind("peers[4999].pod_cidrs[1]: 10.0.0.64/26 overlaps pod_cidrs[0]", 0), 0u) << check(r);
}

}  // namespace
}  // namespace meshwire::dp
