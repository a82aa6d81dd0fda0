// A capture filter evaluated natively: the pcap-filter(7) primitives people
// capture with on a mesh, compiled to a short jump program over each
// packet's parsed headers instead of run as BPF. An idle capture's filter
// runs on every packet at its point, and as DPDK BPF it cost 132
// instructions a packet (perf/BASELINE.md), more than the telemetry budget.
//
// The subset, with libpcap's meaning (tests/dataplane/capture compares the
// two on generated expressions and packets):
//   ip  ip6  arp  rarp  tcp  udp  sctp  icmp  icmp6
//   [proto] [src | dst | src or dst | src and dst] host ADDR
//   [proto] [dir] net ADDR/LEN
//   [tcp | udp | sctp] [dir] port N
//   [tcp | udp | sctp] [dir] portrange N-M
//   and &&  or ||  not !  ( )   (and and or of equal precedence, left to
//   right; not binds tightest: as libpcap parses them)
// ADDR is an IPv4 or IPv6 literal. Anything else (names, ether, vlan, len,
// byte offsets, a value without a qualifier, which libpcap reads with the
// previous primitive's qualifiers) is not compiled here: compile() returns
// null and the caller runs libpcap's program alone (capture/filter.h).
//
// A packet whose headers the program could read do not all lie in the
// bytes given (a truncated packet, or headers past an mbuf's first
// segment) is left undecided, for libpcap's program, which reads across
// segments and rejects a packet a read falls off the end of.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string_view>
#include <vector>

#include <rte_mbuf.h>

namespace meshwire::dp::capture {

enum class LinkType : uint8_t { kEthernet, kRawIp };

class NativeFilter {
 public:
  enum class Verdict : uint8_t { kReject, kAccept, kUndecided };

  // Null when the expression is empty or outside the subset. The expression
  // must be one libpcap compiled (this is no validator: capture/filter.cc
  // compiles it with libpcap first, which reports the errors).
  static std::unique_ptr<NativeFilter> compile(std::string_view expression, LinkType link);

  // The packet that starts at data and has len bytes.
  Verdict match(const uint8_t* data, uint32_t len) const;

  // match[i] = whether pkts[i] passes, from each mbuf's first segment; the
  // indices of the packets left undecided go to undecided[], their count is
  // returned (match[] is 0 for them).
  uint16_t match_burst(rte_mbuf* const* pkts, uint16_t n, uint64_t* match, uint16_t* undecided) const;

  // One test of the program: a leaf of the expression, with where to go
  // when it holds (jt) and when not (jf). Public for the tests' sake.
  enum class Op : uint8_t { kFamily, kProto, kPort, kAddr4, kAddr6 };
  enum class Dir : uint8_t { kEither, kSrc, kDst, kBoth };
  struct Test {
    Op op = Op::kFamily;
    Dir dir = Dir::kEither;
    uint8_t dirs = 0b1110;  // kPort, kAddr4: dir as a truth table (native_filter.cc)
    uint8_t families = 0;       // kFamily, kProto, kAddr4: bit per link-layer family
    uint8_t value = 0;          // kProto: the protocol number; kPort: bit per TCP/UDP/SCTP
    uint16_t lo = 0, span = 0;  // kPort: ports lo to lo + span
    uint16_t jt = 0, jf = 0;
    uint32_t addr4 = 0, mask4 = 0;  // host order
    std::array<uint8_t, 16> addr6{}, mask6{};
  };
  const std::vector<Test>& program() const { return tests_; }

  // The code that runs the program, chosen when it is compiled (by link
  // type, by whether it reads ports or addresses, and one per kind of test
  // for programs of a single test).
  struct Kernels {
    Verdict (*one)(const Test* tests, uint16_t entry, const uint8_t* data, uint32_t len);
    uint16_t (*burst)(const Test* tests, uint16_t entry, rte_mbuf* const* pkts, uint16_t n, uint64_t* match,
                      uint16_t* undecided);
  };

 private:
  NativeFilter() = default;
  uint16_t entry_ = 0;
  std::vector<Test> tests_;
  Kernels kernels_{};
};

}  // namespace meshwire::dp::capture
