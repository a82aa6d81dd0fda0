// The worker's stages on real mbufs, two nodes back to back: node A's local
// burst produces ESP frames that node B's uplink burst must accept, and every
// drop path lands on its own counter. The ciphertext is checked against
// OpenSSL's AES-GCM (an implementation independent of ipsec-mb), with the
// ESN AAD of RFC 4303 (SPI || seq-hi || seq-lo).
#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <rte_mbuf.h>
#include <rte_ring.h>

#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "esp/sa.h"
#include "net/parse.h"
#include "route/tables.h"
#include "worker/control.h"
#include "worker/worker.h"
#include "support/two_nodes.h"
#include "dataplane/worker/worker_fixture.h"

namespace meshwire::dp {
namespace {

using test::Bytes;
using test::PacketBuilder;
using test::TestNode;
using test::addr;
using test::ip4;
using test::ip6;
using test::kLocal;
using test::kUplink;
using test::mac;
using test::sa;

// OpenSSL AES-GCM decryption of one ESP packet: an implementation that shares
// nothing with the data plane's.
bool openssl_open(const SaConfig& s, const uint8_t* esp, size_t esp_len, uint32_t seq_hi, Bytes* plain) {
  const uint8_t* iv = esp + 8;
  const uint8_t* ct = esp + 16;
  const size_t ct_len = esp_len - 16 - 16;
  uint8_t nonce[12];
  std::memcpy(nonce, s.salt.data(), 4);
  std::memcpy(nonce + 4, iv, 8);
  uint8_t aad[12];
  std::memcpy(aad, esp, 4);
  const uint32_t hi_be = htonl(seq_hi);
  std::memcpy(aad + 4, &hi_be, 4);
  std::memcpy(aad + 8, esp + 4, 4);
  EVP_CIPHER_CTX* ctx = EVP_CIPHER_CTX_new();
  const EVP_CIPHER* cipher = s.key.size() == 32 ? EVP_aes_256_gcm() : EVP_aes_128_gcm();
  int len = 0;
  plain->assign(ct_len, 0);
  bool ok = EVP_DecryptInit_ex(ctx, cipher, nullptr, nullptr, nullptr) == 1 &&
            EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, 12, nullptr) == 1 &&
            EVP_DecryptInit_ex(ctx, nullptr, nullptr, s.key.data(), nonce) == 1 &&
            EVP_DecryptUpdate(ctx, nullptr, &len, aad, 12) == 1 &&
            EVP_DecryptUpdate(ctx, plain->data(), &len, ct, static_cast<int>(ct_len)) == 1 &&
            EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, 16, const_cast<uint8_t*>(ct + ct_len)) == 1 &&
            EVP_DecryptFinal_ex(ctx, plain->data() + len, &len) == 1;
  EVP_CIPHER_CTX_free(ctx);
  return ok;
}


TEST_F(WorkerTest, CrossNodeIpv4IsEncryptedVerifiableByOpenSslAndDelivered) {
  local_rx(*a_, {pod_a_to_b()});
  auto wire = a_->take(kUplink);
  ASSERT_EQ(wire.size(), 1u);
  EXPECT_EQ(a_->counters.encrypted_packets, 1u);
  const Bytes& f = wire[0];
  // Ethernet to B's fabric MAC, IPv4 192.0.2.1 -> 192.0.2.2, UDP to 4500.
  EXPECT_EQ(Bytes(f.begin(), f.begin() + 6), Bytes({0x02, 0xbb, 0, 0, 0, 0x02}));
  net::PacketInfo info;
  ASSERT_EQ(net::parse_frame(f.data(), f.size(), &info), net::ParseResult::kOk);
  ASSERT_EQ(info.l4_proto, net::kProtoUdp);
  EXPECT_EQ(Bytes(f.begin() + info.l3_offset + 12, f.begin() + info.l3_offset + 20),
            Bytes({192, 0, 2, 1, 192, 0, 2, 2}));
  const uint8_t* udp = f.data() + info.l4_offset;
  EXPECT_EQ((udp[0] << 8) | udp[1], esp::udp_source_port_for_spi(0x1001));
  EXPECT_EQ((udp[2] << 8) | udp[3], 4500);
  const uint8_t* esp = udp + 8;
  EXPECT_EQ(Bytes(esp, esp + 8), Bytes({0, 0, 0x10, 0x01, 0, 0, 0, 1}));  // SPI, seq 1
  EXPECT_EQ(Bytes(esp + 8, esp + 16), Bytes({0, 0, 0, 0, 0, 0, 0, 1}));  // IV = 64-bit seq
  Bytes plain;
  ASSERT_TRUE(openssl_open(sa(0x1001, 1), esp, f.size() - info.l4_offset - 8, 0, &plain));
  // Inner packet (TTL decremented), padding 1..n, pad length, next header 4.
  const Bytes inner = pod_a_to_b(63);
  const Bytes inner_ip(inner.begin() + 14, inner.end());
  ASSERT_GE(plain.size(), inner_ip.size() + 2);
  EXPECT_EQ(Bytes(plain.begin(), plain.begin() + inner_ip.size()), inner_ip);
  EXPECT_EQ(plain.back(), 4);
  EXPECT_EQ(plain.size() % 4, 0u);

  // B accepts it and hands it to the pod with the pod's MAC.
  b_->learn("10.12.0.2", "02:00:00:00:12:02");
  uplink_rx(*b_, wire);
  auto delivered = b_->take(kLocal);
  ASSERT_EQ(delivered.size(), 1u);
  EXPECT_EQ(b_->counters.decrypted_packets, 1u);
  const Bytes expect = PacketBuilder()
                           .eth(mac("02:bb:00:00:00:01"), mac("02:00:00:00:12:02"))
                           .ipv4(ip4("10.11.0.2"), ip4("10.12.0.2"))
                           .ttl(62)
                           .udp(40000, 5000)
                           .payload(Bytes(32, 0x42))
                           .build();
  EXPECT_EQ(delivered[0], expect);
}

TEST_F(WorkerTest, EveryFrameSizeRoundTrips) {
  b_->learn("10.12.0.2", "02:00:00:00:12:02");
  for (size_t payload = 0; payload <= 1400; payload += 37) {
    local_rx(*a_, {pod_a_to_b(64, payload)});
    auto wire = a_->take(kUplink);
    ASSERT_EQ(wire.size(), 1u) << payload;
    uplink_rx(*b_, wire);
    auto delivered = b_->take(kLocal);
    ASSERT_EQ(delivered.size(), 1u) << payload;
    EXPECT_EQ(delivered[0].size(), 14 + 20 + 8 + payload);
  }
}

TEST_F(WorkerTest, UplinkDropsEachBadInputUnderItsOwnReason) {
  b_->learn("10.12.0.2", "02:00:00:00:12:02");
  local_rx(*a_, {pod_a_to_b(), pod_a_to_b()});
  auto wire = a_->take(kUplink);
  ASSERT_EQ(wire.size(), 2u);
  net::PacketInfo info;
  ASSERT_EQ(net::parse_frame(wire[0].data(), wire[0].size(), &info), net::ParseResult::kOk);
  const size_t esp_off = info.l4_offset + 8;

  struct Case {
    const char* what;
    Bytes frame;
    DropReason reason;
  };
  Bytes forged = wire[0];
  forged.back() ^= 0x01;  // last ICV byte
  Bytes bad_ct = wire[1];
  bad_ct[esp_off + 20] ^= 0x80;  // a ciphertext byte
  Bytes unknown_spi = wire[0];
  unknown_spi[esp_off + 3] = 0x77;
  Bytes wrong_peer = wire[0];
  wrong_peer[info.l3_offset + 15] = 9;  // source 192.0.2.9
  wrong_peer[info.l3_offset + 10] = wrong_peer[info.l3_offset + 11] = 0;  // header checksum is not checked here
  Bytes truncated(wire[0].begin(), wire[0].begin() + esp_off + 20);
  truncated[info.l4_offset + 4] = 0;
  truncated[info.l4_offset + 5] = 28;  // UDP length consistent with the cut
  truncated[info.l3_offset + 2] = 0;
  truncated[info.l3_offset + 3] = static_cast<uint8_t>(20 + 28);
  const Bytes plaintext = PacketBuilder()
                              .eth(mac("02:aa:00:00:00:02"), mac("02:bb:00:00:00:02"))
                              .ipv4(ip4("192.0.2.1"), ip4("10.12.0.2"))
                              .udp(1, 2)
                              .payload(test::bytes("hello"))
                              .build();
  const Bytes plaintext_to_node = PacketBuilder()
                                      .eth(mac("02:aa:00:00:00:02"), mac("02:bb:00:00:00:02"))
                                      .ipv4(ip4("192.0.2.1"), ip4("192.0.2.2"))
                                      .tcp(1, 22, test::kTcpSyn)
                                      .build();
  const Bytes garbage = {0x02, 0xbb, 0, 0, 0, 2, 0x02, 0xaa, 0, 0, 0, 2, 0x08, 0x00, 0x45};
  const std::vector<Case> cases = {
      {"forged ICV", forged, DropReason::kAuthFailed},
      {"flipped ciphertext", bad_ct, DropReason::kAuthFailed},
      {"unknown SPI", unknown_spi, DropReason::kNoSa},
      {"not a peer", wrong_peer, DropReason::kUnknownPeer},
      {"truncated ESP", truncated, DropReason::kMalformed},
      {"plaintext to a pod", plaintext, DropReason::kPlaintextOnUplink},
      {"plaintext to the node", plaintext_to_node, DropReason::kPlaintextOnUplink},
      {"garbage", garbage, DropReason::kMalformed},
  };
  for (const Case& c : cases) {
    const uint64_t before = b_->drops(c.reason);
    uplink_rx(*b_, {c.frame});
    EXPECT_EQ(b_->drops(c.reason), before + 1) << c.what;
    EXPECT_EQ(b_->take(kLocal).size(), 0u) << c.what;
  }
  // The genuine packets still pass after all that, once; a replay does not.
  uplink_rx(*b_, {wire[0], wire[1], wire[0]});
  EXPECT_EQ(b_->take(kLocal).size(), 2u);
  EXPECT_EQ(b_->drops(DropReason::kReplay), 1u);
}

TEST_F(WorkerTest, AMixedUplinkBurstGivesEachPacketItsOwnVerdict) {
  // Consecutive packets of one SA share a lookup, and the good packets are
  // compacted with their peers: neither may leak a verdict to a neighbour.
  b_->learn("10.12.0.2", "02:00:00:00:12:02");
  local_rx(*a_, {pod_a_to_b(64, 10), pod_a_to_b(64, 11), pod_a_to_b(64, 12), pod_a_to_b(64, 13)});
  auto wire = a_->take(kUplink);
  ASSERT_EQ(wire.size(), 4u);
  net::PacketInfo info;
  ASSERT_EQ(net::parse_frame(wire[0].data(), wire[0].size(), &info), net::ParseResult::kOk);
  const size_t esp_off = info.l4_offset + 8;
  Bytes unknown_spi = wire[0];
  unknown_spi[esp_off + 3] = 0x77;
  Bytes wrong_peer = wire[0];
  wrong_peer[info.l3_offset + 15] = 9;  // source 192.0.2.9, same SPI
  Bytes forged = wire[2];
  forged.back() ^= 0x01;
  uplink_rx(*b_, {unknown_spi, unknown_spi, wire[0], wrong_peer, wire[1], forged, wire[3], wire[0]});
  auto delivered = b_->take(kLocal);
  ASSERT_EQ(delivered.size(), 3u);
  // In order: payloads of 10, 11 and 13 bytes (frame = 14 + 20 + 8 + payload).
  EXPECT_EQ(delivered[0].size(), 14u + 20 + 8 + 10);
  EXPECT_EQ(delivered[1].size(), 14u + 20 + 8 + 11);
  EXPECT_EQ(delivered[2].size(), 14u + 20 + 8 + 13);
  EXPECT_EQ(b_->drops(DropReason::kNoSa), 2u);
  EXPECT_EQ(b_->drops(DropReason::kUnknownPeer), 1u);
  EXPECT_EQ(b_->drops(DropReason::kAuthFailed), 1u);
  EXPECT_EQ(b_->drops(DropReason::kReplay), 1u);
  EXPECT_EQ(b_->counters.decrypted_packets, 3u);
}

TEST_F(WorkerTest, APodThatChangesItsMacIsDeliveredToTheNewOne) {
  // The worker caches neighbours; a change in the shared table must reach it
  // by the next burst.
  b_->learn("10.12.0.2", "02:00:00:00:12:02");
  for (const char* now : {"02:00:00:00:12:02", "02:00:00:00:12:99", "02:00:00:00:12:02"}) {
    b_->learn("10.12.0.2", now);
    for (int round = 0; round < 2; ++round) {  // the second round is served from the cache
      local_rx(*a_, {pod_a_to_b()});
      uplink_rx(*b_, a_->take(kUplink));
      auto delivered = b_->take(kLocal);
      ASSERT_EQ(delivered.size(), 1u);
      const auto want = mac(now);
      EXPECT_EQ(Bytes(delivered[0].begin(), delivered[0].begin() + 6), Bytes(want.begin(), want.end()))
          << now << " round " << round;
    }
  }
}

TEST_F(WorkerTest, AGenuinePacketLeftOfTheWindowIsAReplayNotAForgery) {
  // One worker's packet waits (e.g. on another RX queue) while the SA moves
  // on by more than the window: ESN inference takes it for the next 2^32
  // subspace, its ICV fails, and it counts as too old.
  b_->learn("10.12.0.2", "02:00:00:00:12:02");
  local_rx(*a_, {pod_a_to_b()});
  auto old = a_->take(kUplink);
  a_->tables->outbound[0][0]->seq += esp::ReplayWindow::kWindow + 100;
  local_rx(*a_, {pod_a_to_b()});
  auto fresh = a_->take(kUplink);
  ASSERT_EQ(old.size(), 1u);
  ASSERT_EQ(fresh.size(), 1u);
  uplink_rx(*b_, fresh);
  EXPECT_EQ(b_->take(kLocal).size(), 1u);
  uplink_rx(*b_, old);
  EXPECT_EQ(b_->take(kLocal).size(), 0u);
  EXPECT_EQ(b_->drops(DropReason::kReplay), 1u);
  EXPECT_EQ(b_->drops(DropReason::kAuthFailed), 0u);
}

TEST_F(WorkerTest, InnerSourceMustBelongToTheSendingPeer) {
  b_->learn("10.12.0.2", "02:00:00:00:12:02");
  const Bytes spoofed = PacketBuilder()
                            .eth(mac("02:00:00:00:11:02"), mac("02:aa:00:00:00:01"))
                            .ipv4(ip4("10.99.0.1"), ip4("10.12.0.2"))
                            .udp(1, 2)
                            .build();
  // The peer's own tunnel address is a valid source only for ICMP errors.
  const Bytes from_node = PacketBuilder()
                              .eth(mac("02:00:00:00:11:02"), mac("02:aa:00:00:00:01"))
                              .ipv4(ip4("192.0.2.1"), ip4("10.12.0.2"))
                              .icmp(8, 0, 1, 1)
                              .build();
  local_rx(*a_, {spoofed, from_node});
  auto wire = a_->take(kUplink);
  ASSERT_EQ(wire.size(), 2u);
  uplink_rx(*b_, wire);
  EXPECT_EQ(b_->drops(DropReason::kInnerSpoofed), 2u);
  EXPECT_EQ(b_->take(kLocal).size(), 0u);
}

TEST_F(WorkerTest, EsnHighBitsCrossTheTwoToTheThirtyTwoBoundary) {
  b_->learn("10.12.0.2", "02:00:00:00:12:02");
  const uint64_t start = (1ull << 32) - 2;
  a_->tables->outbound[0][0]->seq = start - 1;  // next packets: 2^32-2, 2^32-1, 2^32, 2^32+1
  // B has been receiving all along: its window is just behind.
  ASSERT_TRUE(b_->tables->inbound_list[0].sa->window.commit(start - 1));
  for (int i = 0; i < 4; ++i) {
    local_rx(*a_, {pod_a_to_b()});
    auto wire = a_->take(kUplink);
    ASSERT_EQ(wire.size(), 1u);
    const uint64_t seq = start + i;
    net::PacketInfo info;
    ASSERT_EQ(net::parse_frame(wire[0].data(), wire[0].size(), &info), net::ParseResult::kOk);
    const uint8_t* esp = wire[0].data() + info.l4_offset + 8;
    Bytes plain;
    EXPECT_TRUE(openssl_open(sa(0x1001, 1), esp, wire[0].size() - info.l4_offset - 8,
                             static_cast<uint32_t>(seq >> 32), &plain))
        << "seq " << seq;
    uplink_rx(*b_, wire);
    EXPECT_EQ(b_->take(kLocal).size(), 1u) << "seq " << seq;
  }
  EXPECT_EQ(b_->tables->inbound_list[0].sa->window.top(), start + 3);
}

TEST_F(WorkerTest, SameNodePodToPodIsRoutedLocally) {
  a_->learn("10.11.0.3", "02:00:00:00:11:03");
  const Bytes f = PacketBuilder()
                      .eth(mac("02:00:00:00:11:02"), mac("02:aa:00:00:00:01"))
                      .ipv4(ip4("10.11.0.2"), ip4("10.11.0.3"))
                      .tcp(1000, 80, test::kTcpAck)
                      .build();
  local_rx(*a_, {f});
  auto out = a_->take(kLocal);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(a_->take(kUplink).size(), 0u);
  EXPECT_EQ(out[0], PacketBuilder()
                        .eth(mac("02:aa:00:00:00:01"), mac("02:00:00:00:11:03"))
                        .ipv4(ip4("10.11.0.2"), ip4("10.11.0.3"))
                        .ttl(63)
                        .tcp(1000, 80, test::kTcpAck)
                        .build());
  EXPECT_EQ(a_->counters.forwarded_local, 1u);
}

TEST_F(WorkerTest, UnknownPodIsPuntedForResolution) {
  const Bytes f = PacketBuilder()
                      .eth(mac("02:00:00:00:11:02"), mac("02:aa:00:00:00:01"))
                      .ipv4(ip4("10.11.0.2"), ip4("10.11.0.9"))
                      .udp(1, 2)
                      .build();
  local_rx(*a_, {f});
  auto p = a_->punted();
  ASSERT_EQ(p.size(), 1u);
  EXPECT_EQ(p[0].first, PuntKind::kNeighborMiss);
  EXPECT_EQ(p[0].second[0] >> 4, 4);  // starts at the IP header
}

// The control thread holds a packet for an unknown pod, asks for the pod's
// MAC, and sends the packet once the pod answers (no first-packet loss).
TEST_F(WorkerTest, ControlHoldsPacketsUntilThePodIsResolved) {
  std::vector<WorkerContext> workers{a_->ctx};
  WorkerCounters control_counters{};
  Control control(a_->node, a_->live, workers, pool_, &control_counters);
  const Bytes f = PacketBuilder()
                      .eth(mac("02:00:00:00:11:02"), mac("02:aa:00:00:00:01"))
                      .ipv4(ip4("10.11.0.2"), ip4("10.11.0.9"))
                      .udp(1, 2)
                      .build();
  local_rx(*a_, {f});
  ASSERT_EQ(control.poll(), 1u);
  // It asked: an ARP request for 10.11.0.9 from the gateway address.
  std::vector<Bytes> sent;  // on the local port (the uplink carries peer resolution)
  auto drain = [&] {
    sent.clear();
    for (rte_mbuf* m : a_->take_injected()) {
      const uint8_t* d = rte_pktmbuf_mtod(m, const uint8_t*);
      if (m->port == kLocal) sent.emplace_back(d, d + m->data_len);
      rte_pktmbuf_free(m);
    }
  };
  drain();
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_EQ(Bytes(sent[0].begin() + 12, sent[0].begin() + 14), Bytes({0x08, 0x06}));
  EXPECT_EQ(Bytes(sent[0].begin() + 28, sent[0].begin() + 32), Bytes({169, 254, 1, 1}));
  EXPECT_EQ(Bytes(sent[0].begin() + 38, sent[0].begin() + 42), Bytes({10, 11, 0, 9}));

  // The pod answers; the held packet leaves with its MAC and TTL 63.
  const Bytes reply = PacketBuilder()
                          .eth(mac("02:00:00:00:11:09"), mac("02:aa:00:00:00:01"))
                          .arp(2, mac("02:00:00:00:11:09"), ip4("10.11.0.9"), mac("02:aa:00:00:00:01"), ip4("169.254.1.1"))
                          .build();
  local_rx(*a_, {reply});
  ASSERT_EQ(control.poll(), 1u);
  drain();
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_EQ(sent[0], PacketBuilder()
                         .eth(mac("02:aa:00:00:00:01"), mac("02:00:00:00:11:09"))
                         .ipv4(ip4("10.11.0.2"), ip4("10.11.0.9"))
                         .ttl(63)
                         .udp(1, 2)
                         .build());
  EXPECT_EQ(control_counters.drops[static_cast<size_t>(DropReason::kNeighborMiss)], 0u);
}

TEST_F(WorkerTest, LocalSideVerdicts) {
  struct Case {
    const char* what;
    Bytes frame;
    DropReason reason;  // kCount: not dropped but punted with `punt`
    PuntKind punt;
  };
  auto from_pod = [] { return PacketBuilder().eth(mac("02:00:00:00:11:02"), mac("02:aa:00:00:00:01")); };
  const std::vector<Case> cases = {
      {"no route", from_pod().ipv4(ip4("10.11.0.2"), ip4("172.16.0.1")).udp(1, 2).build(), DropReason::kNoRoute,
       PuntKind::kArp},
      {"TTL 1 across nodes", from_pod().ipv4(ip4("10.11.0.2"), ip4("10.12.0.2")).ttl(1).udp(1, 2).build(),
       DropReason::kCount, PuntKind::kTtlExceeded},
      {"too big with DF", from_pod().ipv4(ip4("10.11.0.2"), ip4("10.12.0.2")).dont_fragment().udp(1, 2).payload(Bytes(1420, 0)).build(),
       DropReason::kCount, PuntKind::kTooBig},
      {"IPv6 too big", from_pod().ipv6(ip6("fd00:11::2"), ip6("fd00:12::2")).udp(1, 2).payload(Bytes(1400, 0)).build(),
       DropReason::kCount, PuntKind::kTooBig},
      {"ARP", from_pod().arp(1, mac("02:00:00:00:11:02"), ip4("10.11.0.2"), mac("00:00:00:00:00:00"), ip4("169.254.1.1")).build(),
       DropReason::kCount, PuntKind::kArp},
      {"ping the gateway", from_pod().ipv4(ip4("10.11.0.2"), ip4("169.254.1.1")).icmp(8, 0, 1, 1).build(),
       DropReason::kCount, PuntKind::kEcho},
      {"UDP to the gateway", from_pod().ipv4(ip4("10.11.0.2"), ip4("169.254.1.1")).udp(1, 2).build(),
       DropReason::kNotForUs, PuntKind::kArp},
      {"multicast", from_pod().ipv4(ip4("10.11.0.2"), ip4("224.0.0.251")).udp(5353, 5353).build(),
       DropReason::kUnsupported, PuntKind::kArp},
      {"VLAN tagged", from_pod().vlan(100).ipv4(ip4("10.11.0.2"), ip4("10.12.0.2")).udp(1, 2).build(),
       DropReason::kUnsupported, PuntKind::kArp},
      {"truncated IPv4", Bytes({0x02, 0xaa, 0, 0, 0, 1, 0x02, 0, 0, 0, 0x11, 2, 0x08, 0x00, 0x45, 0}),
       DropReason::kMalformed, PuntKind::kArp},
  };
  for (const Case& c : cases) {
    const uint64_t before = c.reason == DropReason::kCount ? 0 : a_->drops(c.reason);
    local_rx(*a_, {c.frame});
    if (c.reason == DropReason::kCount) {
      auto p = a_->punted();
      ASSERT_EQ(p.size(), 1u) << c.what;
      EXPECT_EQ(p[0].first, c.punt) << c.what;
    } else {
      EXPECT_EQ(a_->drops(c.reason), before + 1) << c.what;
      EXPECT_TRUE(a_->punted().empty()) << c.what;
    }
    EXPECT_EQ(a_->take(kUplink).size(), 0u) << c.what;
    EXPECT_EQ(a_->take(kLocal).size(), 0u) << c.what;
  }
}

// TTL running out on the receiving node: the ICMP error goes back through the
// tunnel, from that node's tunnel address, and the sender's node accepts it.
TEST_F(WorkerTest, TtlExpiringOnTheReceivingNodeIsAnsweredThroughTheTunnel) {
  a_->learn("10.11.0.2", "02:00:00:00:11:02");
  local_rx(*a_, {pod_a_to_b(/*ttl=*/2)});
  auto wire = a_->take(kUplink);
  ASSERT_EQ(wire.size(), 1u);
  uplink_rx(*b_, wire);
  EXPECT_EQ(b_->drops(DropReason::kTtlExceeded), 1u);
  EXPECT_EQ(b_->take(kLocal).size(), 0u);

  std::vector<WorkerContext> workers{b_->ctx};
  WorkerCounters control_counters{};
  Control control(b_->node, b_->live, workers, pool_, &control_counters);
  control.poll();
  EXPECT_EQ(control_counters.icmp_errors_sent, 1u);
  // The error comes back to the worker as local RX; it routes and encrypts it.
  rte_mbuf* reinjected = nullptr;
  for (rte_mbuf* m : b_->take_injected()) {
    if (static_cast<dp::InjectKind>(m->hash.usr) == dp::InjectKind::kLocalRx && !reinjected) {
      reinjected = m;
    } else {
      rte_pktmbuf_free(m);  // peer resolution requests on the uplink
    }
  }
  ASSERT_NE(reinjected, nullptr);
  process_local_burst(b_->ctx, b_->tx, reinjected->port, &reinjected, 1);
  auto back = b_->take(kUplink);
  ASSERT_EQ(back.size(), 1u);
  uplink_rx(*a_, back);
  auto out = a_->take(kLocal);
  ASSERT_EQ(out.size(), 1u);
  net::PacketInfo info;
  ASSERT_EQ(net::parse_frame(out[0].data(), out[0].size(), &info), net::ParseResult::kOk);
  const uint8_t* ip = out[0].data() + info.l3_offset;
  EXPECT_EQ(Bytes(ip + 12, ip + 20), Bytes({192, 0, 2, 2, 10, 11, 0, 2}));  // from node b, to the pod
  EXPECT_EQ(info.l4_proto, net::kProtoIcmp);
  EXPECT_EQ(out[0][info.l4_offset], 11);  // time exceeded
  EXPECT_EQ(a_->drops(DropReason::kInnerSpoofed), 0u);
}

// IPv4 without DF that does not fit the tunnel is fragmented before
// encryption; the pod on the other node gets fragments it can reassemble.
TEST_F(WorkerTest, Ipv4WithoutDfIsFragmentedBeforeEncryption) {
  b_->learn("10.12.0.2", "02:00:00:00:12:02");
  const Bytes big = PacketBuilder()
                        .eth(mac("02:00:00:00:11:02"), mac("02:aa:00:00:00:01"))
                        .ipv4(ip4("10.11.0.2"), ip4("10.12.0.2"))
                        .dont_fragment(false)
                        .udp(5060, 5060)
                        .payload(Bytes(1900, 0x5a))  // 1928-byte packet: two fragments
                        .build();
  local_rx(*a_, {big, pod_a_to_b()});
  auto wire = a_->take(kUplink);
  ASSERT_EQ(wire.size(), 3u);  // 2 fragments + the small packet
  EXPECT_EQ(a_->counters.fragmented, 1u);
  EXPECT_EQ(a_->drops(DropReason::kTooBig), 0u);
  for (const Bytes& f : wire) EXPECT_LE(f.size(), 14u + 1500u) << "fits the fabric MTU";
  uplink_rx(*b_, wire);
  auto out = b_->take(kLocal);
  ASSERT_EQ(out.size(), 3u);
  // Reassemble the UDP datagram from the fragments by offset.
  Bytes payload;
  size_t more = 0;
  for (size_t k = 0; k < 2; ++k) {
    const uint8_t* ip = out[k].data() + 14;
    const uint16_t fo = static_cast<uint16_t>(ip[6] << 8 | ip[7]);
    EXPECT_EQ(static_cast<size_t>(fo & 0x1FFF) * 8, payload.size());
    more += (fo & 0x2000) ? 1 : 0;
    EXPECT_EQ(ip[8], 62) << "TTL decremented once per node";
    const size_t total = static_cast<size_t>(ip[2] << 8 | ip[3]);
    payload.insert(payload.end(), ip + 20, ip + total);
  }
  EXPECT_EQ(more, 1u);
  EXPECT_EQ(payload, Bytes(big.begin() + 14 + 20, big.end()));
}

TEST_F(WorkerTest, TcpSynMssIsClampedToWhatFitsTheTunnel) {
  const Bytes syn = PacketBuilder()
                        .eth(mac("02:00:00:00:11:02"), mac("02:aa:00:00:00:01"))
                        .ipv4(ip4("10.11.0.2"), ip4("10.12.0.2"))
                        .tcp(40000, 80, test::kTcpSyn)
                        .tcp_mss(1460)
                        .build();
  local_rx(*a_, {syn});
  auto wire = a_->take(kUplink);
  ASSERT_EQ(wire.size(), 1u);
  EXPECT_EQ(a_->counters.mss_clamped, 1u);
  b_->learn("10.12.0.2", "02:00:00:00:12:02");
  uplink_rx(*b_, wire);
  auto out = b_->take(kLocal);
  ASSERT_EQ(out.size(), 1u);
  const Bytes expect = PacketBuilder()
                           .eth(mac("02:bb:00:00:00:01"), mac("02:00:00:00:12:02"))
                           .ipv4(ip4("10.11.0.2"), ip4("10.12.0.2"))
                           .ttl(62)
                           .tcp(40000, 80, test::kTcpSyn)
                           .tcp_mss(1438 - 40)
                           .build();
  EXPECT_EQ(out[0], expect);  // checksum included: the builder computes it independently
}

TEST_F(WorkerTest, UnresolvedPeerIsCountedNotSent) {
  a_->tables->peers[0]->link->fabric_mac = 0;
  local_rx(*a_, {pod_a_to_b()});
  EXPECT_EQ(a_->take(kUplink).size(), 0u);
  EXPECT_EQ(a_->drops(DropReason::kPeerUnresolved), 1u);
}

// The same path with an IPv6 fabric (outer UDP checksum is mandatory there).
class WorkerTestV6 : public WorkerTest {
  bool GetParamV6() const override { return true; }
};

TEST_F(WorkerTestV6, Ipv6FabricCarriesIpv4AndIpv6Pods) {
  b_->learn("10.12.0.2", "02:00:00:00:12:02");
  b_->learn("fd00:12::2", "02:00:00:00:12:02");
  const Bytes v6_inner = PacketBuilder()
                             .eth(mac("02:00:00:00:11:02"), mac("02:aa:00:00:00:01"))
                             .ipv6(ip6("fd00:11::2"), ip6("fd00:12::2"))
                             .icmp6(128, 0, 0x00010001)
                             .payload(Bytes(56, 7))
                             .build();
  local_rx(*a_, {pod_a_to_b(), v6_inner});
  auto wire = a_->take(kUplink);
  ASSERT_EQ(wire.size(), 2u);
  for (const Bytes& f : wire) {
    net::PacketInfo info;
    ASSERT_EQ(net::parse_frame(f.data(), f.size(), &info), net::ParseResult::kOk);
    EXPECT_EQ(info.ether_type, net::kEtherTypeIpv6);
    // A correct UDP checksum over the IPv6 pseudo-header sums to 0xFFFF.
    const uint8_t* ip6h = f.data() + info.l3_offset;
    uint32_t sum = test::naive_sum(ip6h + 8, 32);
    const size_t udp_len = f.size() - info.l4_offset;
    sum += static_cast<uint32_t>(udp_len) + 17;
    sum = test::naive_sum(f.data() + info.l4_offset, udp_len, sum);
    EXPECT_EQ(test::naive_fold(sum), 0) << "outer UDP checksum";
  }
  uplink_rx(*b_, wire);
  auto out = b_->take(kLocal);
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(b_->counters.decrypted_packets, 2u);
}

}  // namespace
}  // namespace meshwire::dp
