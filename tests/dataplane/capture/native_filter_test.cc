// The native capture filter against libpcap itself: thousands of generated
// expressions of the subset, each compiled by libpcap and run with its own
// interpreter (pcap_offline_filter) over generated packets — IPv4 with odd
// header lengths and fragments, IPv6 with fragment headers, ARP, RARP,
// VLAN-tagged and other frames, packets cut short — must give the same
// verdict natively wherever the native filter decides. Then the cases it
// must leave to libpcap, and the expressions outside the subset.
#include "capture/native_filter.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <pcap/pcap.h>
#include <rte_mbuf.h>

#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "capture/filter.h"

namespace meshwire::dp::capture {
namespace {

using Bytes = std::vector<uint8_t>;

const char* const kIp4Pool[] = {"10.0.0.1", "10.0.0.2", "10.1.2.3", "192.168.1.1", "10.0.0.129"};
const char* const kIp6Pool[] = {"fd00::1", "fd00::2", "fd00:1::5", "2001:db8::1", "fd00:0:0:1::9"};
const uint16_t kPortPool[] = {9, 53, 80, 443, 5000, 1, 10, 65535, 0};

class Gen {
 public:
  explicit Gen(uint32_t seed) : rng_(seed) {}
  uint32_t below(uint32_t n) { return std::uniform_int_distribution<uint32_t>(0, n - 1)(rng_); }
  bool one_in(uint32_t n) { return below(n) == 0; }
  template <typename T, size_t N>
  const T& pick(const T (&a)[N]) {
    return a[below(N)];
  }

  // ---- packets
  void put16(Bytes& b, size_t at, uint16_t v) {
    b[at] = static_cast<uint8_t>(v >> 8);
    b[at + 1] = static_cast<uint8_t>(v);
  }
  void addr4(Bytes& b, size_t at) {
    in_addr a{};
    if (one_in(6)) {
      a.s_addr = rng_();
    } else {
      inet_pton(AF_INET, pick(kIp4Pool), &a);
    }
    std::memcpy(b.data() + at, &a, 4);
  }
  void addr6(Bytes& b, size_t at) {
    in6_addr a{};
    inet_pton(AF_INET6, pick(kIp6Pool), &a);
    if (one_in(6)) a.s6_addr[below(16)] ^= static_cast<uint8_t>(1 + below(255));
    std::memcpy(b.data() + at, &a, 16);
  }
  uint16_t port() { return one_in(6) ? static_cast<uint16_t>(rng_()) : pick(kPortPool); }
  uint8_t proto() {
    static const uint8_t kProtos[] = {6, 17, 132, 1, 58, 50, 47, 44, 0};
    return pick(kProtos);
  }

  Bytes ip4() {
    uint32_t ihl = 5;
    if (one_in(5)) ihl = below(16);
    Bytes b(std::max<uint32_t>(20, ihl * 4) + 8 + below(16), 0);
    b[0] = static_cast<uint8_t>((one_in(8) ? below(16) : 4) << 4 | ihl);
    static const uint16_t kFrag[] = {0, 0, 0x4000, 0x2000, 0x0001, 0x20b9, 0x1fff};
    put16(b, 6, pick(kFrag));
    b[9] = proto();
    addr4(b, 12);
    addr4(b, 16);
    const size_t l4 = ihl * 4;
    put16(b, l4, port());
    put16(b, l4 + 2, port());
    return b;
  }
  Bytes ip6() {
    Bytes b(40 + 8 + below(16), 0);
    b[0] = 0x60;
    b[6] = proto();
    addr6(b, 8);
    addr6(b, 24);
    if (b[6] == 44) {
      b[40] = proto();
    } else {
      put16(b, 40, port());
      put16(b, 42, port());
    }
    return b;
  }
  Bytes arp() {
    Bytes b(28, 0);
    put16(b, 0, 1);
    put16(b, 2, 0x0800);
    b[4] = 6;
    b[5] = 4;
    addr4(b, 14);
    addr4(b, 24);
    return b;
  }

  Bytes packet(LinkType link) {
    Bytes l3;
    uint16_t type = 0;
    switch (below(link == LinkType::kEthernet ? 7 : 4)) {
      case 0:
      case 1: l3 = ip4(); type = 0x0800; break;
      case 2: l3 = ip6(); type = 0x86dd; break;
      case 3: l3 = one_in(2) ? ip4() : ip6(); type = one_in(2) ? 0x8100 : 0x88cc; break;
      case 4: l3 = arp(); type = 0x0806; break;
      case 5: l3 = arp(); type = 0x8035; break;
      default: l3 = ip4(); type = 0x86dd; break;  // a lie the filter must believe
    }
    if (link == LinkType::kRawIp && type != 0x0800 && type != 0x86dd) l3[0] = static_cast<uint8_t>(below(256));
    Bytes out;
    if (link == LinkType::kEthernet) {
      out.assign(14, 0x02);
      put16(out, 12, type);
    }
    out.insert(out.end(), l3.begin(), l3.end());
    if (one_in(6)) out.resize(below(static_cast<uint32_t>(out.size()) + 1));  // cut short
    return out;
  }

  // ---- expressions of the subset
  std::string dir() {
    static const char* const kDirs[] = {"", "", "src ", "dst ", "src or dst ", "src and dst "};
    return pick(kDirs);
  }
  std::string net4() {
    static const int kLens[] = {0, 8, 16, 24, 25, 32};
    const int len = pick(kLens);
    in_addr a{};
    inet_pton(AF_INET, pick(kIp4Pool), &a);
    const uint32_t mask = len == 0 ? 0 : ~uint32_t{0} << (32 - len);
    a.s_addr = htonl(ntohl(a.s_addr) & mask);
    char s[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &a, s, sizeof s);
    return std::string(s) + "/" + std::to_string(len);
  }
  std::string net6() {
    static const int kLens[] = {8, 16, 32, 64, 100, 128};
    const int len = pick(kLens);
    in6_addr a{};
    inet_pton(AF_INET6, pick(kIp6Pool), &a);
    for (int i = 0; i < 16; ++i) {
      const int bits = std::clamp(len - i * 8, 0, 8);
      a.s6_addr[i] &= static_cast<uint8_t>(bits == 0 ? 0 : 0xff << (8 - bits));
    }
    char s[INET6_ADDRSTRLEN];
    inet_ntop(AF_INET6, &a, s, sizeof s);
    return std::string(s) + "/" + std::to_string(len);
  }
  std::string primitive() {
    switch (below(4)) {
      case 0: {
        static const char* const kProtos[] = {"ip", "ip6", "arp", "rarp", "tcp", "udp", "sctp", "icmp", "icmp6"};
        return pick(kProtos);
      }
      case 1: {  // host / net, IPv4
        static const char* const kQual[] = {"", "", "ip ", "arp ", "rarp "};
        const bool net = one_in(2);
        std::string type = net ? "net " : (one_in(3) ? "" : "host ");
        std::string d = dir();
        if (type.empty() && d.empty()) type = "host ";
        return pick(kQual) + d + type + (net ? net4() : pick(kIp4Pool));
      }
      case 2: {  // host / net, IPv6
        const bool net = one_in(2);
        return std::string(one_in(2) ? "ip6 " : "") + dir() + (net ? "net " + net6() : "host " + std::string(pick(kIp6Pool)));
      }
      default: {  // port / portrange
        static const char* const kQual[] = {"", "", "tcp ", "udp ", "sctp "};
        std::string p = pick(kQual) + dir();
        if (one_in(3)) return p + "portrange " + std::to_string(pick(kPortPool)) + "-" + std::to_string(pick(kPortPool));
        return p + "port " + std::to_string(pick(kPortPool));
      }
    }
  }
  std::string expr(int depth) {
    if (depth == 0 || one_in(3)) return (one_in(5) ? (one_in(2) ? "not " : "! ") : "") + primitive();
    static const char* const kOps[] = {" and ", " or ", " && ", " || "};
    std::string e = expr(depth - 1) + pick(kOps) + expr(depth - 1);
    if (one_in(3)) e = "(" + e + ")";
    if (one_in(5)) e = "not " + e;
    return e;
  }

 private:
  std::mt19937 rng_;
};

struct Libpcap {
  Libpcap(const std::string& expression, LinkType link) {
    pcap_t* p = pcap_open_dead(link == LinkType::kEthernet ? DLT_EN10MB : DLT_RAW, 65535);
    ok = pcap_compile(p, &prog, expression.c_str(), 1, PCAP_NETMASK_UNKNOWN) == 0;
    pcap_close(p);
  }
  ~Libpcap() {
    if (ok) pcap_freecode(&prog);
  }
  bool match(const Bytes& b) const {
    pcap_pkthdr h{};
    h.caplen = h.len = static_cast<bpf_u_int32>(b.size());
    return pcap_offline_filter(&prog, &h, b.data()) != 0;
  }
  bpf_program prog{};
  bool ok = false;
};

TEST(NativeFilter, AgreesWithLibpcapOnGeneratedExpressionsAndPackets) {
  for (LinkType link : {LinkType::kEthernet, LinkType::kRawIp}) {
    SCOPED_TRACE(link == LinkType::kEthernet ? "ethernet" : "raw ip");
    Gen gen(link == LinkType::kEthernet ? 1 : 2);
    std::vector<Bytes> packets;
    for (int i = 0; i < 400; ++i) packets.push_back(gen.packet(link));
    int compiled = 0, decided = 0, accepted = 0, undecided = 0;
    for (int i = 0; i < 1500; ++i) {
      const std::string e = gen.expr(3);
      Libpcap ref(e, link);
      if (!ref.ok) continue;  // e.g. `arp` alone on raw IP: libpcap says it rejects everything
      auto native = NativeFilter::compile(e, link);
      ASSERT_NE(native, nullptr) << "in the subset, but not compiled: " << e;
      ++compiled;
      for (size_t k = 0; k < packets.size(); ++k) {
        const Bytes& b = packets[k];
        const auto v = native->match(b.data(), static_cast<uint32_t>(b.size()));
        if (v == NativeFilter::Verdict::kUndecided) {
          ++undecided;
          continue;
        }
        ++decided;
        const bool want = ref.match(b);
        accepted += want;
        ASSERT_EQ(v == NativeFilter::Verdict::kAccept, want) << "expression: " << e << "\npacket " << k << " ("
                                                              << b.size() << " bytes)";
      }
    }
    // The generator must exercise what it claims: most expressions compile,
    // both verdicts occur, and undecided packets stay a minority (those cut
    // short, and IPv4 behind an IPv6 ethertype, too short for IPv6).
    EXPECT_GT(compiled, 1000);
    EXPECT_GT(accepted, decided / 20);
    EXPECT_LT(accepted, decided - decided / 20);
    EXPECT_LT(undecided, decided / 3);
  }
}

// An IPv4 UDP packet (no options, not a fragment) to dport.
Bytes udp4_to(Gen& gen, uint16_t dport) {
  Bytes b = gen.ip4();
  b.resize(std::max<size_t>(b.size(), 28));
  b[0] = 0x45;
  b[9] = 17;
  b[6] = b[7] = 0;
  gen.put16(b, 22, dport);
  return b;
}

TEST(NativeFilter, LeavesPacketsWhoseHeadersItCannotSeeUndecided) {
  auto f = NativeFilter::compile("udp port 9", LinkType::kRawIp);
  ASSERT_NE(f, nullptr);
  Gen gen(3);
  Bytes b = udp4_to(gen, 9);
  EXPECT_EQ(f->match(b.data(), static_cast<uint32_t>(b.size())), NativeFilter::Verdict::kAccept);
  EXPECT_EQ(f->match(b.data(), 23), NativeFilter::Verdict::kUndecided);  // the ports cut off
  EXPECT_EQ(f->match(b.data(), 19), NativeFilter::Verdict::kUndecided);
  EXPECT_EQ(f->match(b.data(), 0), NativeFilter::Verdict::kUndecided);
  b[9] = 6;  // TCP: its ports are not read for `udp port 9`... but may be for other filters
  EXPECT_EQ(f->match(b.data(), 23), NativeFilter::Verdict::kUndecided);
  b[9] = 1;  // ICMP: no ports to read
  EXPECT_EQ(f->match(b.data(), 20), NativeFilter::Verdict::kReject);
}

TEST(NativeFilter, LeavesWhatIsOutsideTheSubsetToLibpcap) {
  for (const char* e : {"", "   ", "host 10.0.0.1 or 10.0.0.2", "port 80 or 443", "ether host 02:00:00:00:00:01",
                        "vlan", "len > 100", "tcp[13] & 2 != 0", "port http", "net 10", "net 10.0.0.0 mask 255.0.0.0",
                        "ip proto 50", "host example.com", "icmp host 10.0.0.1", "ip host fd00::1", "tcp portrange 5",
                        "(udp", "udp)", "not", "udp and", "UDP", "port 0x50", "port 70000", "ip6 net fd00::/129"}) {
    EXPECT_EQ(NativeFilter::compile(e, LinkType::kEthernet), nullptr) << e;
  }
}

TEST(NativeFilter, BoundsNestingAndSize) {
  std::string deep = "udp";
  for (int i = 0; i < 70; ++i) deep = "(" + deep + ")";
  EXPECT_EQ(NativeFilter::compile(deep, LinkType::kRawIp), nullptr);
  std::string nots;
  for (int i = 0; i < 70; ++i) nots += "not ";
  EXPECT_EQ(NativeFilter::compile(nots + "udp", LinkType::kRawIp), nullptr);
  std::string many = "port 1";
  for (int i = 2; i <= 300; ++i) many += " or port " + std::to_string(i);
  EXPECT_EQ(NativeFilter::compile(many, LinkType::kRawIp), nullptr);
  std::string fine = "port 1";
  for (int i = 2; i <= 200; ++i) fine += " or port " + std::to_string(i);
  auto f = NativeFilter::compile(fine, LinkType::kRawIp);
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(f->program().size(), 200u);
}

TEST(NativeFilter, CompilesThePrimitivesToOneTestEach) {
  auto f = NativeFilter::compile("udp port 9", LinkType::kRawIp);
  ASSERT_NE(f, nullptr);
  ASSERT_EQ(f->program().size(), 1u);
  EXPECT_EQ(f->program()[0].op, NativeFilter::Op::kPort);
  f = NativeFilter::compile("src host 10.0.0.1 and not (tcp or udp)", LinkType::kEthernet);
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(f->program().size(), 3u);
}

// Through the capture filter, on mbufs: the native program decides, and
// libpcap's decides what it leaves (headers in the second segment).
rte_mempool* pool() {
  static rte_mempool* p = rte_pktmbuf_pool_create("nf_pool", 64, 0, 0, RTE_MBUF_DEFAULT_BUF_SIZE, 0);
  return p;
}

TEST(NativeFilter, CaptureFilterUsesItAndFallsBackToLibpcapAcrossSegments) {
  auto filter = Filter::compile("udp dst port 5000", LinkType::kRawIp, 65535);
  ASSERT_TRUE(filter.ok()) << filter.error();
  EXPECT_TRUE((*filter)->native());
  auto other = Filter::compile("len > 10", LinkType::kRawIp, 65535);
  ASSERT_TRUE(other.ok());
  EXPECT_FALSE((*other)->native());

  Gen gen(4);
  Bytes b = udp4_to(gen, 5000);
  // One segment; then the first 20 bytes in one and the rest in a second.
  rte_mbuf* whole = rte_pktmbuf_alloc(pool());
  std::memcpy(rte_pktmbuf_append(whole, static_cast<uint16_t>(b.size())), b.data(), b.size());
  rte_mbuf* head = rte_pktmbuf_alloc(pool());
  rte_mbuf* tail = rte_pktmbuf_alloc(pool());
  std::memcpy(rte_pktmbuf_append(head, 20), b.data(), 20);
  std::memcpy(rte_pktmbuf_append(tail, static_cast<uint16_t>(b.size() - 20)), b.data() + 20, b.size() - 20);
  ASSERT_EQ(rte_pktmbuf_chain(head, tail), 0);
  rte_mbuf* pkts[] = {whole, head};
  uint64_t match[2] = {0, 0};
  (*filter)->match_burst(pkts, 2, match);
  EXPECT_NE(match[0], 0u);
  EXPECT_NE(match[1], 0u) << "the ports are in the second segment: libpcap's program decides";
  uint16_t undecided[2];
  uint64_t native_only[2];
  auto native = NativeFilter::compile("udp dst port 5000", LinkType::kRawIp);
  EXPECT_EQ(native->match_burst(pkts, 2, native_only, undecided), 1);
  EXPECT_EQ(undecided[0], 1);
  rte_pktmbuf_free(whole);
  rte_pktmbuf_free(head);
}

}  // namespace
}  // namespace meshwire::dp::capture
