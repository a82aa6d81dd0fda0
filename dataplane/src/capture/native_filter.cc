#include "capture/native_filter.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cstring>
#include <optional>
#include <string>

namespace meshwire::dp::capture {
namespace {

// What a packet's link layer says it carries. RARP is apart from ARP
// because libpcap's `arp` does not match it, though `host` matches both.
enum Family : uint8_t { kOther = 0, kIp4 = 1, kIp6 = 2, kArp = 3, kRarp = 4 };
constexpr uint8_t bit(Family f) { return static_cast<uint8_t>(1u << f); }

// The L4 protocols whose ports libpcap's `port` reads, as bits.
constexpr uint8_t kTcpBit = 1, kUdpBit = 2, kSctpBit = 4;
constexpr uint8_t port_bit(uint8_t proto) {
  return proto == 6 ? kTcpBit : proto == 17 ? kUdpBit : proto == 132 ? kSctpBit : 0;
}
// The same as a table: one load per packet instead of a chain of compares.
constexpr std::array<uint8_t, 256> kPortBits = [] {
  std::array<uint8_t, 256> t{};
  for (unsigned p = 0; p < 256; ++p) t[p] = port_bit(static_cast<uint8_t>(p));
  return t;
}();

constexpr uint16_t kAccept = 0xfffe;
constexpr uint16_t kReject = 0xffff;
constexpr size_t kMaxTests = 256;

inline uint16_t be16(const uint8_t* p) { return static_cast<uint16_t>(p[0] << 8 | p[1]); }
inline uint32_t be32(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) << 24 | static_cast<uint32_t>(p[1]) << 16 | static_cast<uint32_t>(p[2]) << 8 | p[3];
}

// The fields the tests read, parsed the way libpcap's generated code reads
// them: IPv4 by ethertype 0x0800 on Ethernet (the version nibble on raw
// IP), its ports at the header length the IHL says, only when the protocol
// is TCP, UDP or SCTP and the fragment offset 0; IPv6's ports only when the
// next header is one of those (no extension headers walked), its protocol
// also behind one fragment header; ARP's sender and target addresses at
// offsets 14 and 24 whatever its address lengths say.
struct Headers {
  Family family = kOther;
  uint8_t l4 = 0;         // port_bit(proto) when the ports were read, else 0
  uint8_t proto = 0;      // IPv4 protocol, IPv6 next header
  uint8_t frag_next = 0;  // IPv6 with next header 44: the fragment header's next header
  uint16_t sport = 0, dport = 0;
  uint32_t src4 = 0, dst4 = 0;
  const uint8_t* src6 = nullptr;
  const uint8_t* dst6 = nullptr;
};
// False when a field the program may read lies past len. Ports are read
// only for programs with a port test, addresses only for programs with an
// address test.
template <LinkType kLink, bool kPorts, bool kAddrs>
[[gnu::always_inline]] inline bool parse(const uint8_t* p, uint32_t len, Headers& h) {
  const uint8_t* l3;
  uint32_t l3len;
  if constexpr (kLink == LinkType::kEthernet) {
    if (len < 14) return false;
    l3 = p + 14;
    l3len = len - 14;
    switch (be16(p + 12)) {
      case 0x0800: h.family = kIp4; break;
      case 0x86dd: h.family = kIp6; break;
      case 0x0806: h.family = kArp; break;
      case 0x8035: h.family = kRarp; break;
      default: return true;
    }
  } else {
    if (len < 1) return false;
    l3 = p;
    l3len = len;
    const uint8_t version = p[0] & 0xf0;
    if (version == 0x40) {
      h.family = kIp4;
    } else if (version == 0x60) {
      h.family = kIp6;
    } else {
      return true;
    }
  }
  if (h.family == kIp4) {
    if (l3len < 20) return false;
    h.proto = l3[9];
    if constexpr (kAddrs) {
      h.src4 = be32(l3 + 12);
      h.dst4 = be32(l3 + 16);
    }
    if constexpr (kPorts) {
      const uint8_t l4 = kPortBits[h.proto];
      if (l4 != 0 && (be16(l3 + 6) & 0x1fff) == 0) {
        const uint32_t off = (l3[0] & 0x0fu) * 4u;
        if (l3len < off + 4) return false;
        h.sport = be16(l3 + off);
        h.dport = be16(l3 + off + 2);
        h.l4 = l4;
      }
    }
    return true;
  }
  if (h.family == kIp6) {
    if (l3len < 40) return false;
    h.proto = l3[6];
    if constexpr (kAddrs) {
      h.src6 = l3 + 8;
      h.dst6 = l3 + 24;
    }
    if (h.proto == 44) {
      if (l3len < 41) return false;
      h.frag_next = l3[40];
    }
    if constexpr (kPorts) {
      const uint8_t l4 = kPortBits[h.proto];
      if (l4 != 0) {
        if (l3len < 44) return false;
        h.sport = be16(l3 + 40);
        h.dport = be16(l3 + 42);
        h.l4 = l4;
      }
    }
    return true;
  }
  // ARP, RARP
  if (l3len < 28) return false;
  if constexpr (kAddrs) {
    h.src4 = be32(l3 + 14);
    h.dst4 = be32(l3 + 24);
  }
  return true;
}

template <typename Src, typename Dst>
[[gnu::always_inline]] inline bool by_dir(NativeFilter::Dir dir, Src src, Dst dst) {
  switch (dir) {
    case NativeFilter::Dir::kSrc: return src();
    case NativeFilter::Dir::kDst: return dst();
    case NativeFilter::Dir::kBoth: return src() && dst();
    case NativeFilter::Dir::kEither: break;
  }
  return src() || dst();
}

inline bool masked_equal6(const uint8_t* a, const std::array<uint8_t, 16>& addr, const std::array<uint8_t, 16>& mask) {
  for (size_t i = 0; i < 16; ++i) {
    if ((a[i] & mask[i]) != addr[i]) return false;
  }
  return true;
}

using Op = NativeFilter::Op;

// A direction as a truth table over (source matches, destination matches):
// bit (s << 1 | d) says whether the test holds, so it is decided without a
// branch.
constexpr uint8_t truth_of(NativeFilter::Dir dir) {
  switch (dir) {
    case NativeFilter::Dir::kSrc: return 0b1100;
    case NativeFilter::Dir::kDst: return 0b1010;
    case NativeFilter::Dir::kBoth: return 0b1000;
    case NativeFilter::Dir::kEither: break;
  }
  return 0b1110;
}

template <Op kOp>
[[gnu::always_inline]] inline bool holds(const NativeFilter::Test& t, const Headers& h) {
  if constexpr (kOp == Op::kFamily) {
    return (t.families >> h.family & 1u) != 0;
  } else if constexpr (kOp == Op::kProto) {
    // libpcap's `tcp`, `udp`...: IPv4's protocol, IPv6's next header, or
    // the next header behind one IPv6 fragment header.
    if ((t.families >> h.family & 1u) == 0) return false;
    return h.proto == t.value || (h.family == kIp6 && h.proto == 44 && h.frag_next == t.value);
  } else if constexpr (kOp == Op::kPort) {
    if ((h.l4 & t.value) == 0) return false;
    const unsigned s = static_cast<uint16_t>(h.sport - t.lo) <= t.span;
    const unsigned d = static_cast<uint16_t>(h.dport - t.lo) <= t.span;
    return (t.dirs >> (s << 1 | d) & 1u) != 0;
  } else if constexpr (kOp == Op::kAddr4) {
    if ((t.families >> h.family & 1u) == 0) return false;
    const unsigned s = (h.src4 & t.mask4) == t.addr4;
    const unsigned d = (h.dst4 & t.mask4) == t.addr4;
    return (t.dirs >> (s << 1 | d) & 1u) != 0;
  } else {
    if (h.family != kIp6) return false;
    return by_dir(
        t.dir, [&] { return masked_equal6(h.src6, t.addr6, t.mask6); },
        [&] { return masked_equal6(h.dst6, t.addr6, t.mask6); });
  }
}

[[gnu::always_inline]] inline bool holds_any(const NativeFilter::Test& t, const Headers& h) {
  switch (t.op) {
    case Op::kFamily: return holds<Op::kFamily>(t, h);
    case Op::kProto: return holds<Op::kProto>(t, h);
    case Op::kPort: return holds<Op::kPort>(t, h);
    case Op::kAddr4: return holds<Op::kAddr4>(t, h);
    case Op::kAddr6: return holds<Op::kAddr6>(t, h);
  }
  return false;
}

// ---- the expression ----------------------------------------------------

struct Node {
  enum class Kind : uint8_t { kLeaf, kAnd, kOr, kNot } kind = Kind::kLeaf;
  NativeFilter::Test leaf;
  std::unique_ptr<Node> a, b;
};
using NodePtr = std::unique_ptr<Node>;

NodePtr leaf(const NativeFilter::Test& t) {
  auto n = std::make_unique<Node>();
  n->leaf = t;
  return n;
}
NodePtr join(Node::Kind kind, NodePtr a, NodePtr b) {
  auto n = std::make_unique<Node>();
  n->kind = kind;
  n->a = std::move(a);
  n->b = std::move(b);
  return n;
}

// Words, parentheses and the operators as libpcap's lexer splits them, as
// far as the subset goes (an address, a CIDR or a port range is one word).
std::optional<std::vector<std::string>> tokens_of(std::string_view s) {
  std::vector<std::string> out;
  size_t i = 0;
  while (i < s.size()) {
    const char c = s[i];
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
      ++i;
    } else if (c == '(' || c == ')' || c == '!') {
      out.emplace_back(1, c);
      ++i;
    } else if ((c == '&' || c == '|') && i + 1 < s.size() && s[i + 1] == c) {
      out.emplace_back(c == '&' ? "and" : "or");
      i += 2;
    } else {
      size_t j = i;
      while (j < s.size()) {
        const char d = s[j];
        const bool word = (d >= 'a' && d <= 'z') || (d >= 'A' && d <= 'F') || (d >= '0' && d <= '9') || d == '.' ||
                          d == ':' || d == '/' || d == '-';
        if (!word) break;
        ++j;
      }
      if (j == i) return std::nullopt;  // a character outside the subset
      out.emplace_back(s.substr(i, j - i));
      i = j;
    }
  }
  return out;
}

std::optional<uint16_t> port_number(std::string_view s) {
  if (s.empty() || s.size() > 5) return std::nullopt;
  uint32_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + static_cast<uint32_t>(c - '0');
  }
  if (v > 65535) return std::nullopt;
  return static_cast<uint16_t>(v);
}

class Parser {
 public:
  explicit Parser(std::vector<std::string> toks) : toks_(std::move(toks)) {}

  NodePtr parse() {
    NodePtr e = expr();
    if (e == nullptr || pos_ != toks_.size()) return nullptr;
    return e;
  }

 private:
  const std::string* peek(size_t ahead = 0) const {
    return pos_ + ahead < toks_.size() ? &toks_[pos_ + ahead] : nullptr;
  }
  bool next_is(std::string_view w, size_t ahead = 0) const {
    const std::string* t = peek(ahead);
    return t != nullptr && *t == w;
  }

  // libpcap: `and` and `or` have equal precedence and group left to right.
  NodePtr expr() {
    NodePtr left = term();
    while (left != nullptr && (next_is("and") || next_is("or"))) {
      const Node::Kind kind = next_is("and") ? Node::Kind::kAnd : Node::Kind::kOr;
      ++pos_;
      NodePtr right = term();
      if (right == nullptr) return nullptr;
      left = join(kind, std::move(left), std::move(right));
    }
    return left;
  }

  // Nesting (parentheses, negations) and primitives are bounded, so that
  // no expression libpcap takes makes the recursion here deep.
  NodePtr term() {
    if (++depth_ > kMaxDepth) return nullptr;
    NodePtr out;
    if (next_is("not") || next_is("!")) {
      ++pos_;
      NodePtr inner = term();
      if (inner != nullptr) out = join(Node::Kind::kNot, std::move(inner), nullptr);
    } else if (next_is("(")) {
      ++pos_;
      NodePtr inner = expr();
      if (inner != nullptr && next_is(")")) {
        ++pos_;
        out = std::move(inner);
      }
    } else if (++primitives_ <= kMaxTests) {
      out = primitive();
    }
    --depth_;
    return out;
  }

  NodePtr primitive() {
    using Op = NativeFilter::Op;
    using Dir = NativeFilter::Dir;
    static constexpr std::string_view kProtos[] = {"ip", "ip6", "arp", "rarp", "tcp", "udp", "sctp", "icmp", "icmp6"};
    std::string_view proto;
    for (std::string_view p : kProtos) {
      if (next_is(p)) proto = p;
    }
    if (!proto.empty()) ++pos_;

    bool has_dir = true;
    Dir dir = Dir::kEither;
    if (next_is("src") && (next_is("or", 1) || next_is("and", 1)) && next_is("dst", 2)) {
      dir = next_is("or", 1) ? Dir::kEither : Dir::kBoth;
      pos_ += 3;
    } else if (next_is("src")) {
      dir = Dir::kSrc;
      ++pos_;
    } else if (next_is("dst")) {
      dir = Dir::kDst;
      ++pos_;
    } else {
      has_dir = false;
    }

    std::string_view type;
    for (std::string_view t : {"host", "net", "port", "portrange"}) {
      if (next_is(t)) type = t;
    }
    if (!type.empty()) ++pos_;

    if (!has_dir && type.empty()) {
      // A protocol alone; a value with no qualifier is not in the subset
      // (libpcap reads it with the previous primitive's qualifiers).
      if (proto.empty()) return nullptr;
      return protocol(proto);
    }
    if (type.empty()) type = "host";
    const std::string* value = peek();
    if (value == nullptr) return nullptr;
    ++pos_;

    NativeFilter::Test t;
    t.dir = dir;
    t.dirs = truth_of(dir);
    if (type == "port" || type == "portrange") {
      t.op = Op::kPort;
      if (proto.empty()) {
        t.value = kTcpBit | kUdpBit | kSctpBit;
      } else if (proto == "tcp" || proto == "udp" || proto == "sctp") {
        t.value = proto == "tcp" ? kTcpBit : proto == "udp" ? kUdpBit : kSctpBit;
      } else {
        return nullptr;
      }
      if (type == "port") {
        auto p = port_number(*value);
        if (!p) return nullptr;
        t.lo = *p;
        t.span = 0;
      } else {
        const size_t dash = value->find('-');
        if (dash == std::string::npos) return nullptr;
        auto a = port_number(std::string_view(*value).substr(0, dash));
        auto b = port_number(std::string_view(*value).substr(dash + 1));
        if (!a || !b) return nullptr;
        t.lo = std::min(*a, *b);
        t.span = static_cast<uint16_t>(std::max(*a, *b) - t.lo);
      }
      return leaf(t);
    }
    // host, net
    std::string addr = *value;
    int prefix = -1;
    if (type == "net") {
      const size_t slash = addr.find('/');
      if (slash == std::string::npos) return nullptr;  // libpcap's classful `net 10` forms: not here
      auto len = port_number(std::string_view(addr).substr(slash + 1));
      if (!len) return nullptr;
      prefix = *len;
      addr.resize(slash);
    } else if (addr.find('/') != std::string::npos) {
      return nullptr;
    }
    in_addr a4{};
    in6_addr a6{};
    if (inet_pton(AF_INET, addr.c_str(), &a4) == 1) {
      if (prefix < 0) prefix = 32;
      if (prefix > 32) return nullptr;
      t.op = Op::kAddr4;
      if (proto.empty()) {
        t.families = bit(kIp4) | bit(kArp) | bit(kRarp);
      } else if (proto == "ip") {
        t.families = bit(kIp4);
      } else if (proto == "arp") {
        t.families = bit(kArp);
      } else if (proto == "rarp") {
        t.families = bit(kRarp);
      } else {
        return nullptr;
      }
      t.mask4 = prefix == 0 ? 0 : ~uint32_t{0} << (32 - prefix);
      t.addr4 = ntohl(a4.s_addr) & t.mask4;
      return leaf(t);
    }
    if (inet_pton(AF_INET6, addr.c_str(), &a6) == 1) {
      if (prefix < 0) prefix = 128;
      if (prefix > 128) return nullptr;
      if (!proto.empty() && proto != "ip6") return nullptr;
      t.op = Op::kAddr6;
      for (int i = 0; i < 16; ++i) {
        const int bits = std::clamp(prefix - i * 8, 0, 8);
        t.mask6[i] = static_cast<uint8_t>(bits == 0 ? 0 : 0xff << (8 - bits));
        t.addr6[i] = a6.s6_addr[i] & t.mask6[i];
      }
      return leaf(t);
    }
    return nullptr;
  }

  // A protocol name alone, as libpcap's gen_proto_abbrev means it.
  static NodePtr protocol(std::string_view p) {
    NativeFilter::Test t;
    auto family = [&](Family f) {
      t.op = Op::kFamily;
      t.families = bit(f);
      return leaf(t);
    };
    auto proto = [&](uint8_t families, uint8_t v) {
      t.op = Op::kProto;
      t.families = families;
      t.value = v;
      return leaf(t);
    };
    if (p == "ip") return family(kIp4);
    if (p == "ip6") return family(kIp6);
    if (p == "arp") return family(kArp);
    if (p == "rarp") return family(kRarp);
    if (p == "icmp") return proto(bit(kIp4), 1);
    if (p == "icmp6") return proto(bit(kIp6), 58);
    return proto(bit(kIp4) | bit(kIp6), p == "tcp" ? 6 : p == "udp" ? 17 : 132);
  }

  static constexpr unsigned kMaxDepth = 64;
  std::vector<std::string> toks_;
  size_t pos_ = 0;
  unsigned depth_ = 0;
  size_t primitives_ = 0;
};

// Appends n's tests so that the packet goes to jt when n holds, else to jf;
// returns the index of n's first test (the classic short-circuit layout).
uint16_t emit(const Node& n, uint16_t jt, uint16_t jf, std::vector<NativeFilter::Test>& out) {
  switch (n.kind) {
    case Node::Kind::kAnd: return emit(*n.a, emit(*n.b, jt, jf, out), jf, out);
    case Node::Kind::kOr: return emit(*n.a, jt, emit(*n.b, jt, jf, out), out);
    case Node::Kind::kNot: return emit(*n.a, jf, jt, out);
    case Node::Kind::kLeaf: break;
  }
  NativeFilter::Test t = n.leaf;
  t.jt = jt;
  t.jf = jf;
  out.push_back(t);
  return static_cast<uint16_t>(out.size() - 1);
}

size_t leaves(const Node& n) {
  if (n.kind == Node::Kind::kLeaf) return 1;
  return leaves(*n.a) + (n.b ? leaves(*n.b) : 0);
}

// The decision for one packet: kSingle is the Op of a program of one test
// (the common case: `udp port 9`, `host 10.1.2.3`), compiled without the
// program loop, or -1 for any program. kPorts and kAddrs: whether the
// program reads ports, addresses.
template <LinkType kLink, int kSingle, bool kPorts, bool kAddrs>
[[gnu::always_inline]] inline NativeFilter::Verdict decide(const NativeFilter::Test* tests, uint16_t entry,
                                                          const uint8_t* data, uint32_t len) {
  Headers h;
  if (!parse<kLink, kPorts, kAddrs>(data, len, h)) return NativeFilter::Verdict::kUndecided;
  if constexpr (kSingle >= 0) {
    // One test: it decides (jt and jf are accept and reject, either way
    // round).
    const NativeFilter::Test& t = tests[0];
    const bool accept = holds<static_cast<Op>(kSingle)>(t, h) == (t.jt == kAccept);
    return accept ? NativeFilter::Verdict::kAccept : NativeFilter::Verdict::kReject;
  }
  uint16_t pc = entry;
  while (pc < kAccept) {
    const NativeFilter::Test& t = tests[pc];
    pc = holds_any(t, h) ? t.jt : t.jf;
  }
  return pc == kAccept ? NativeFilter::Verdict::kAccept : NativeFilter::Verdict::kReject;
}

template <LinkType kLink, int kSingle, bool kPorts, bool kAddrs>
NativeFilter::Verdict decide_one(const NativeFilter::Test* tests, uint16_t entry, const uint8_t* data, uint32_t len) {
  return decide<kLink, kSingle, kPorts, kAddrs>(tests, entry, data, len);
}

template <LinkType kLink, int kSingle, bool kPorts, bool kAddrs>
uint16_t decide_burst(const NativeFilter::Test* tests, uint16_t entry, rte_mbuf* const* pkts, uint16_t n,
                      uint64_t* out, uint16_t* undecided) {
  uint16_t nu = 0;
  for (uint16_t i = 0; i < n; ++i) {
    const rte_mbuf* m = pkts[i];
    const auto v = decide<kLink, kSingle, kPorts, kAddrs>(tests, entry, rte_pktmbuf_mtod(m, const uint8_t*),
                                                          m->data_len);
    out[i] = v == NativeFilter::Verdict::kAccept;
    undecided[nu] = i;
    nu += v == NativeFilter::Verdict::kUndecided;
  }
  return nu;
}

template <LinkType kLink, int kSingle, bool kPorts, bool kAddrs>
NativeFilter::Kernels kernels() {
  return {&decide_one<kLink, kSingle, kPorts, kAddrs>, &decide_burst<kLink, kSingle, kPorts, kAddrs>};
}

template <LinkType kLink>
NativeFilter::Kernels kernels_for(const std::vector<NativeFilter::Test>& tests) {
  bool ports = false, addrs = false;
  for (const NativeFilter::Test& t : tests) {
    ports |= t.op == Op::kPort;
    addrs |= t.op == Op::kAddr4 || t.op == Op::kAddr6;
  }
  if (tests.size() == 1) {
    switch (tests[0].op) {
      case Op::kFamily: return kernels<kLink, static_cast<int>(Op::kFamily), false, false>();
      case Op::kProto: return kernels<kLink, static_cast<int>(Op::kProto), false, false>();
      case Op::kPort: return kernels<kLink, static_cast<int>(Op::kPort), true, false>();
      case Op::kAddr4: return kernels<kLink, static_cast<int>(Op::kAddr4), false, true>();
      case Op::kAddr6: return kernels<kLink, static_cast<int>(Op::kAddr6), false, true>();
    }
  }
  if (ports && addrs) return kernels<kLink, -1, true, true>();
  if (ports) return kernels<kLink, -1, true, false>();
  if (addrs) return kernels<kLink, -1, false, true>();
  return kernels<kLink, -1, false, false>();
}

}  // namespace

std::unique_ptr<NativeFilter> NativeFilter::compile(std::string_view expression, LinkType link) {
  auto toks = tokens_of(expression);
  if (!toks || toks->empty()) return nullptr;
  NodePtr root = Parser(std::move(*toks)).parse();
  if (root == nullptr || leaves(*root) > kMaxTests) return nullptr;
  std::unique_ptr<NativeFilter> f(new NativeFilter());
  f->entry_ = emit(*root, kAccept, kReject, f->tests_);
  f->kernels_ = link == LinkType::kEthernet ? kernels_for<LinkType::kEthernet>(f->tests_)
                                            : kernels_for<LinkType::kRawIp>(f->tests_);
  return f;
}

NativeFilter::Verdict NativeFilter::match(const uint8_t* data, uint32_t len) const {
  return kernels_.one(tests_.data(), entry_, data, len);
}

uint16_t NativeFilter::match_burst(rte_mbuf* const* pkts, uint16_t n, uint64_t* out, uint16_t* undecided) const {
  return kernels_.burst(tests_.data(), entry_, pkts, n, out, undecided);
}

}  // namespace meshwire::dp::capture
