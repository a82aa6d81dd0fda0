// The encrypt stage's outer headers come from a template per SA (sa.h
// build_outer_template) with the lengths, the IPv4 checksum and the sequence
// number patched in per packet. These tests pin every byte it sends against
// frames built the long way, field by field with DPDK's header structs and
// checksums, then encrypted with the same key, nonce and AAD.
#include "esp/encrypt.h"

#include <gtest/gtest.h>
#include <rte_ether.h>
#include <rte_ip.h>
#include <rte_mbuf.h>
#include <rte_udp.h>

#include <cstring>
#include <memory>
#include <vector>

#include "esp/sa.h"
#include "net/parse.h"
#include "route/tables.h"

namespace meshwire::dp::esp {
namespace {

using Bytes = std::vector<uint8_t>;

constexpr uint8_t kSrcMac[6] = {0x02, 0x11, 0x22, 0x33, 0x44, 0x55};
constexpr uint8_t kDstMac[6] = {0x02, 0xa0, 0xb0, 0xc0, 0xd0, 0xe0};

rte_mempool* pool() {
  static rte_mempool* p = rte_pktmbuf_pool_create("enc_test_pool", 256, 0, 0, RTE_MBUF_DEFAULT_BUF_SIZE, 0);
  return p;
}

class EncryptTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto e = GcmEngine::create();
    ASSERT_TRUE(e.ok());
    engine_ = std::move(*e);
    ASSERT_NE(pool(), nullptr);
  }

  // An SA as route/tables.cc sets one up.
  std::unique_ptr<OutboundSa> make_sa(uint8_t family, uint32_t spi, uint64_t seq) {
    auto sa = std::make_unique<OutboundSa>();
    sa->spi = spi;
    sa->udp_sport = udp_source_port_for_spi(spi);
    sa->family = family;
    sa->seq = seq;
    for (int i = 0; i < 16; ++i) {
      sa->outer_src[i] = static_cast<uint8_t>(0x10 + i * 7);
      sa->outer_dst[i] = static_cast<uint8_t>(0xF0 - i * 5);
    }
    if (family == 4) {  // 10.x and 192.x: both halves of the checksum's words move
      const uint8_t src[4] = {10, 0, 0, 1}, dst[4] = {192, 168, 77, 254};
      std::memcpy(sa->outer_src, src, 4);
      std::memcpy(sa->outer_dst, dst, 4);
    }
    const uint8_t key[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
    const uint8_t salt[4] = {0xde, 0xad, 0xbe, 0xef};
    EXPECT_TRUE(expand_gcm_key(*engine_, key, 16, salt, &sa->key).ok());
    build_outer_template(sa.get());
    return sa;
  }

  // The inner packet: an IPv4 or IPv6 header's first byte, then filler.
  static Bytes inner_packet(size_t len, uint8_t version) {
    Bytes b(len);
    for (size_t i = 0; i < len; ++i) b[i] = static_cast<uint8_t>(i * 31 + 7);
    if (len != 0) b[0] = static_cast<uint8_t>(version << 4 | 5);
    return b;
  }

  // The frame the long way: every header field written on its own, the IPv4
  // checksum by rte_ipv4_cksum, the payload encrypted through a GcmOp as
  // prepare_esp_op() points it, the IPv6 UDP checksum last.
  Bytes reference(const OutboundSa& sa, uint64_t seq, const Bytes& inner, uint8_t next_header, bool offload) {
    const uint32_t pad = (4 - ((inner.size() + kTrailerLen) & 3)) & 3;
    const bool v6 = sa.family == 6;
    const size_t ip_len = v6 ? sizeof(rte_ipv6_hdr) : sizeof(rte_ipv4_hdr);
    const size_t hdr_len = sizeof(rte_ether_hdr) + ip_len + kUdpLen + kEspHeaderLen + kIvLen;
    const uint32_t payload_len = static_cast<uint32_t>(inner.size()) + pad + kTrailerLen;
    const uint16_t udp_len = static_cast<uint16_t>(kUdpLen + kEspHeaderLen + kIvLen + payload_len + kIcvLen);
    Bytes f(hdr_len + payload_len + kIcvLen, 0);
    auto* eth = reinterpret_cast<rte_ether_hdr*>(f.data());
    std::memcpy(eth->dst_addr.addr_bytes, kDstMac, 6);
    std::memcpy(eth->src_addr.addr_bytes, kSrcMac, 6);
    uint8_t* l3 = f.data() + sizeof(rte_ether_hdr);
    auto* udp = reinterpret_cast<rte_udp_hdr*>(l3 + ip_len);
    if (v6) {
      eth->ether_type = rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV6);
      auto* ip6 = reinterpret_cast<rte_ipv6_hdr*>(l3);
      ip6->vtc_flow = rte_cpu_to_be_32(6u << 28);
      ip6->payload_len = rte_cpu_to_be_16(udp_len);
      ip6->proto = IPPROTO_UDP;
      ip6->hop_limits = 64;
      std::memcpy(ip6->src_addr, sa.outer_src, 16);
      std::memcpy(ip6->dst_addr, sa.outer_dst, 16);
    } else {
      eth->ether_type = rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV4);
      auto* ip4 = reinterpret_cast<rte_ipv4_hdr*>(l3);
      ip4->version_ihl = 0x45;
      ip4->total_length = rte_cpu_to_be_16(static_cast<uint16_t>(sizeof(rte_ipv4_hdr) + udp_len));
      ip4->fragment_offset = rte_cpu_to_be_16(RTE_IPV4_HDR_DF_FLAG);
      ip4->time_to_live = 64;
      ip4->next_proto_id = IPPROTO_UDP;
      std::memcpy(&ip4->src_addr, sa.outer_src, 4);
      std::memcpy(&ip4->dst_addr, sa.outer_dst, 4);
      ip4->hdr_checksum = offload ? 0 : rte_ipv4_cksum(ip4);
    }
    udp->src_port = rte_cpu_to_be_16(sa.udp_sport);
    udp->dst_port = rte_cpu_to_be_16(net::kEspInUdpPort);
    udp->dgram_len = rte_cpu_to_be_16(udp_len);
    uint8_t* esp = reinterpret_cast<uint8_t*>(udp) + kUdpLen;
    net::store_be32(esp, sa.spi);
    net::store_be32(esp + 4, static_cast<uint32_t>(seq));
    net::store_be32(esp + 8, static_cast<uint32_t>(seq >> 32));
    net::store_be32(esp + 12, static_cast<uint32_t>(seq));
    uint8_t* payload = esp + kEspHeaderLen + kIvLen;
    std::memcpy(payload, inner.data(), inner.size());
    for (uint32_t p = 0; p < pad; ++p) payload[inner.size() + p] = static_cast<uint8_t>(p + 1);
    payload[inner.size() + pad] = static_cast<uint8_t>(pad);
    payload[inner.size() + pad + 1] = next_header;
    GcmOp op{};
    uint8_t aad[kAadLen];
    prepare_esp_op(op, &sa.key, esp, payload_len, sa.spi, seq, aad);
    EXPECT_EQ(gcm_encrypt_burst(*engine_, &op, 1), 1);
    if (v6) {
      auto* ip6 = reinterpret_cast<rte_ipv6_hdr*>(l3);
      udp->dgram_cksum = offload ? rte_ipv6_phdr_cksum(ip6, RTE_MBUF_F_TX_IPV6 | RTE_MBUF_F_TX_UDP_CKSUM)
                                 : rte_ipv6_udptcp_cksum(ip6, udp);
    }
    return f;
  }

  rte_mbuf* mbuf_of(const Bytes& inner, uint16_t headroom = RTE_PKTMBUF_HEADROOM) {
    rte_mbuf* m = rte_pktmbuf_alloc(pool());
    EXPECT_NE(m, nullptr);
    if (m == nullptr) return nullptr;
    m->data_off = headroom;
    void* d = rte_pktmbuf_append(m, static_cast<uint16_t>(inner.size()));
    EXPECT_NE(d, nullptr);
    if (d != nullptr && !inner.empty()) std::memcpy(d, inner.data(), inner.size());
    return m;
  }

  static Bytes bytes_of(const rte_mbuf* m) {
    const auto* d = rte_pktmbuf_mtod(m, const uint8_t*);
    return Bytes(d, d + m->data_len);
  }

  std::unique_ptr<GcmEngine> engine_;
};

TEST(OuterTemplate, Ipv4ChecksumIsRteIpv4CksumForEveryLength) {
  OutboundSa sa;
  sa.family = 4;
  sa.spi = 0x01020304;
  sa.udp_sport = 0xC123;
  const uint8_t addrs[][8] = {{10, 0, 0, 1, 10, 0, 0, 2},
                              {255, 255, 255, 255, 255, 255, 255, 255},
                              {0, 0, 0, 0, 0, 0, 0, 0},
                              {192, 168, 1, 200, 172, 31, 255, 1}};
  for (const auto& a : addrs) {
    std::memcpy(sa.outer_src, a, 4);
    std::memcpy(sa.outer_dst, a + 4, 4);
    build_outer_template(&sa);
    ASSERT_EQ(sa.outer_template_len, kOuterTemplateV4);
    rte_ipv4_hdr h;
    std::memcpy(&h, sa.outer_template, sizeof(h));
    for (uint32_t len = 0; len <= 0xFFFF; ++len) {
      h.total_length = rte_cpu_to_be_16(static_cast<uint16_t>(len));
      h.hdr_checksum = 0;
      const uint16_t want = rte_ipv4_cksum(&h);
      ASSERT_EQ(outer_ip4_checksum(sa.ip4_sum, static_cast<uint16_t>(len)), want) << "total length " << len;
    }
  }
}

TEST(OuterTemplate, HoldsTheHeadersFieldByField) {
  for (uint8_t family : {4, 6}) {
    OutboundSa sa;
    sa.family = family;
    sa.spi = 0xA1B2C3D4;
    sa.udp_sport = udp_source_port_for_spi(sa.spi);
    for (int i = 0; i < 16; ++i) {
      sa.outer_src[i] = static_cast<uint8_t>(i + 1);
      sa.outer_dst[i] = static_cast<uint8_t>(0x80 + i);
    }
    build_outer_template(&sa);
    const uint8_t* t = sa.outer_template;
    const size_t ip_len = family == 6 ? 40 : 20;
    ASSERT_EQ(sa.outer_template_len, ip_len + 12);
    if (family == 6) {
      const auto* ip6 = reinterpret_cast<const rte_ipv6_hdr*>(t);
      EXPECT_EQ(rte_be_to_cpu_32(ip6->vtc_flow), 6u << 28);
      EXPECT_EQ(ip6->payload_len, 0);
      EXPECT_EQ(ip6->proto, IPPROTO_UDP);
      EXPECT_EQ(ip6->hop_limits, 64);
      EXPECT_EQ(std::memcmp(ip6->src_addr, sa.outer_src, 16), 0);
      EXPECT_EQ(std::memcmp(ip6->dst_addr, sa.outer_dst, 16), 0);
    } else {
      const auto* ip4 = reinterpret_cast<const rte_ipv4_hdr*>(t);
      EXPECT_EQ(ip4->version_ihl, 0x45);
      EXPECT_EQ(ip4->type_of_service, 0);
      EXPECT_EQ(ip4->total_length, 0);
      EXPECT_EQ(ip4->packet_id, 0);
      EXPECT_EQ(rte_be_to_cpu_16(ip4->fragment_offset), RTE_IPV4_HDR_DF_FLAG);
      EXPECT_EQ(ip4->time_to_live, 64);
      EXPECT_EQ(ip4->next_proto_id, IPPROTO_UDP);
      EXPECT_EQ(ip4->hdr_checksum, 0);
      EXPECT_EQ(std::memcmp(&ip4->src_addr, sa.outer_src, 4), 0);
      EXPECT_EQ(std::memcmp(&ip4->dst_addr, sa.outer_dst, 4), 0);
    }
    const auto* udp = reinterpret_cast<const rte_udp_hdr*>(t + ip_len);
    EXPECT_EQ(rte_be_to_cpu_16(udp->src_port), sa.udp_sport);
    EXPECT_EQ(rte_be_to_cpu_16(udp->dst_port), net::kEspInUdpPort);
    EXPECT_EQ(udp->dgram_len, 0);
    EXPECT_EQ(udp->dgram_cksum, 0);
    EXPECT_EQ(net::load_be32(t + ip_len + 8), sa.spi);
  }
}

// Every padding length, both outer families, inner IPv4 and IPv6, sequence
// numbers across a 32-bit boundary, with and without checksum offload.
TEST_F(EncryptTest, FramesAreByteForByteTheFieldByFieldOnes) {
  for (uint8_t family : {4, 6}) {
    for (bool offload : {false, true}) {
      auto sa = make_sa(family, 0x1000 + family, 0xFFFFFFFDull);
      const EncryptContext ctx{{kSrcMac[0], kSrcMac[1], kSrcMac[2], kSrcMac[3], kSrcMac[4], kSrcMac[5]},
                               offload, offload};
      const uint64_t mac = pack_mac(kDstMac);
      for (uint8_t version : {4, 6}) {
        for (size_t len : {20, 21, 22, 23, 24, 40, 63, 1400}) {
          // A burst of 4 packets of the same SA, lengths len .. len + 3.
          rte_mbuf* pkts[4];
          OutboundSa* sas[4];
          uint64_t macs[4];
          Bytes want[4];
          for (int k = 0; k < 4; ++k) {
            const Bytes inner = inner_packet(len + k, version);
            pkts[k] = mbuf_of(inner);
            ASSERT_NE(pkts[k], nullptr);
            sas[k] = sa.get();
            macs[k] = mac;
            want[k] = reference(*sa, sa->seq + 1 + k, inner, version == 4 ? net::kProtoIpInIp : net::kProtoIpv6,
                                offload);
          }
          DropReason reasons[4];
          ASSERT_EQ(encrypt_burst(*engine_, ctx, pkts, sas, macs, 4, reasons), 4);
          for (int k = 0; k < 4; ++k) {
            EXPECT_EQ(bytes_of(pkts[k]), want[k]) << "family " << int(family) << " offload " << offload
                                                  << " inner v" << int(version) << " len " << len + k;
            EXPECT_EQ(pkts[k]->pkt_len, pkts[k]->data_len);
            EXPECT_EQ(pkts[k]->l2_len, sizeof(rte_ether_hdr));
            EXPECT_EQ(pkts[k]->l3_len, family == 6 ? sizeof(rte_ipv6_hdr) : sizeof(rte_ipv4_hdr));
            const uint64_t flags = pkts[k]->ol_flags & (RTE_MBUF_F_TX_IPV4 | RTE_MBUF_F_TX_IP_CKSUM |
                                                        RTE_MBUF_F_TX_IPV6 | RTE_MBUF_F_TX_UDP_CKSUM);
            const uint64_t want_flags = !offload ? 0
                                        : family == 6 ? RTE_MBUF_F_TX_IPV6 | RTE_MBUF_F_TX_UDP_CKSUM
                                                      : RTE_MBUF_F_TX_IPV4 | RTE_MBUF_F_TX_IP_CKSUM;
            EXPECT_EQ(flags, want_flags);
          }
          rte_pktmbuf_free_bulk(pkts, 4);
        }
      }
    }
  }
}

TEST_F(EncryptTest, DummiesCarryNextHeader59AndAnyPayload) {
  auto sa = make_sa(4, 0x2001, 7);
  const EncryptContext ctx{{kSrcMac[0], kSrcMac[1], kSrcMac[2], kSrcMac[3], kSrcMac[4], kSrcMac[5]}, false, false};
  const uint64_t mac = pack_mac(kDstMac);
  for (size_t len : {0, 1, 2, 3, 17}) {
    const Bytes payload(len, 0x5A);
    rte_mbuf* m = mbuf_of(payload);
    ASSERT_NE(m, nullptr);
    OutboundSa* s = sa.get();
    const Bytes want = reference(*sa, sa->seq + 1, payload, net::kProtoNoNext, false);
    DropReason reason;
    ASSERT_EQ(encrypt_dummy_burst(*engine_, ctx, &m, &s, &mac, 1, &reason), 1);
    EXPECT_EQ(bytes_of(m), want) << "payload " << len;
    rte_pktmbuf_free(m);
  }
}

// Failures keep their places' order: the good ones first, in order, then
// the failed with their reasons. An SA whose template was never built sends
// nothing.
TEST_F(EncryptTest, FailuresGoToTheTailWithTheirReasons) {
  auto sa = make_sa(4, 0x3001, 0);
  auto unbuilt = std::make_unique<OutboundSa>(*sa);
  unbuilt->outer_template_len = 0;
  const EncryptContext ctx{{kSrcMac[0], kSrcMac[1], kSrcMac[2], kSrcMac[3], kSrcMac[4], kSrcMac[5]}, false, false};
  const uint64_t mac = pack_mac(kDstMac);
  rte_mbuf* pkts[5];
  pkts[0] = mbuf_of(inner_packet(40, 4));
  pkts[1] = mbuf_of(inner_packet(40, 5));  // not IP
  pkts[2] = mbuf_of(inner_packet(41, 6));
  pkts[3] = mbuf_of(inner_packet(40, 4));  // the unbuilt SA
  pkts[4] = mbuf_of(inner_packet(42, 4), 10);  // no room for the outer headers
  for (rte_mbuf* m : pkts) ASSERT_NE(m, nullptr);
  rte_mbuf* const first = pkts[0];
  rte_mbuf* const third = pkts[2];
  rte_mbuf* const second = pkts[1];
  rte_mbuf* const fourth = pkts[3];
  rte_mbuf* const fifth = pkts[4];
  OutboundSa* sas[5] = {sa.get(), sa.get(), sa.get(), unbuilt.get(), sa.get()};
  const uint64_t macs[5] = {mac, mac, mac, mac, mac};
  DropReason reasons[5];
  ASSERT_EQ(encrypt_burst(*engine_, ctx, pkts, sas, macs, 5, reasons), 2);
  EXPECT_EQ(pkts[0], first);
  EXPECT_EQ(pkts[1], third);
  EXPECT_EQ(pkts[2], second);
  EXPECT_EQ(reasons[2], DropReason::kMalformed);
  EXPECT_EQ(pkts[3], fourth);
  EXPECT_EQ(reasons[3], DropReason::kMalformed);
  EXPECT_EQ(pkts[4], fifth);
  EXPECT_EQ(reasons[4], DropReason::kTooBig);
  EXPECT_EQ(sa->seq, 2u);
  rte_pktmbuf_free_bulk(pkts, 5);
}

// Per-peer traffic counts what was sent: runs of one peer add once, and a
// packet whose encryption fails (its SA's key never expanded) is not counted.
TEST_F(EncryptTest, PeerTrafficCountsTheEncryptedPacketsOfEachRun) {
  PeerTraffic to_b, to_c;
  auto b = make_sa(4, 0x4001, 0);
  auto c = make_sa(6, 0x4002, 0);
  auto broken = std::make_unique<OutboundSa>(*b);
  broken->key.key_len = 0;  // never expanded: ipsec-mb is not asked, the op fails
  b->traffic = &to_b;
  c->traffic = &to_c;
  broken->traffic = &to_b;
  const EncryptContext ctx{{kSrcMac[0], kSrcMac[1], kSrcMac[2], kSrcMac[3], kSrcMac[4], kSrcMac[5]}, false, false};
  const uint64_t mac = pack_mac(kDstMac);
  rte_mbuf* pkts[5];
  OutboundSa* sas[5] = {b.get(), b.get(), broken.get(), c.get(), b.get()};
  uint64_t macs[5];
  uint64_t want_b = 0, want_c = 0;
  for (int k = 0; k < 5; ++k) {
    pkts[k] = mbuf_of(inner_packet(40 + k, 4));
    ASSERT_NE(pkts[k], nullptr);
    macs[k] = mac;
  }
  rte_mbuf* const failed = pkts[2];
  DropReason reasons[5];
  ASSERT_EQ(encrypt_burst(*engine_, ctx, pkts, sas, macs, 5, reasons), 4);
  EXPECT_EQ(pkts[4], failed);
  EXPECT_EQ(reasons[4], DropReason::kMalformed);
  for (int k = 0; k < 4; ++k) (k == 2 ? want_c : want_b) += pkts[k]->pkt_len;
  EXPECT_EQ(to_b.tx_packets, 3u);
  EXPECT_EQ(to_b.tx_bytes, want_b);
  EXPECT_EQ(to_c.tx_packets, 1u);
  EXPECT_EQ(to_c.tx_bytes, want_c);
  rte_pktmbuf_free_bulk(pkts, 5);
}

}  // namespace
}  // namespace meshwire::dp::esp
