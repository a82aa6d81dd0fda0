// A capture filter: a pcap-filter(7) expression compiled by libpcap
// (pcap_compile, classic BPF), converted to DPDK eBPF (rte_bpf_convert) and
// loaded (rte_bpf_load; the x86-64 JIT when DPDK has one). Where the
// expression is in capture/native_filter.h's subset (host, net, port and
// protocol primitives: what people capture with), packets are matched by
// that native program instead, at a fraction of the cost, and libpcap's
// program only decides the packets the native one leaves undecided
// (headers past the first segment, or cut short). Frames on a port
// are read as Ethernet; the inner points' packets, which start at their IP
// header, as raw IP (libpcap's DLT_RAW), so that `udp port 5000` means the
// same at every point.
//
// Threading: compile() and the destructor from the control side; match_burst()
// from any thread (it only reads the loaded program).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include <rte_mbuf.h>

#include <meshwire/dp/result.h>

#include "capture/native_filter.h"

struct rte_bpf;

namespace meshwire::dp::capture {

class Filter {
 public:
  // An empty expression matches every packet (and loads nothing). Errors
  // name the expression and carry libpcap's (or DPDK's) reason.
  static Result<std::unique_ptr<Filter>> compile(const std::string& expression, LinkType link, uint32_t snaplen);
  ~Filter();
  Filter(const Filter&) = delete;
  Filter& operator=(const Filter&) = delete;

  // match[i] = whether pkts[i] passes. The mbufs are only read.
  void match_burst(rte_mbuf* const* pkts, uint16_t n, uint64_t* match) const;
  // Whether the program runs natively (JIT) rather than in DPDK's interpreter.
  bool jitted() const { return jit_ != nullptr; }
  // Whether packets are matched natively (capture/native_filter.h).
  bool native() const { return native_ != nullptr; }
  // For tests: the interpreter even where the JIT exists; libpcap's
  // program for every packet even where the native one exists.
  void disable_jit() { jit_ = nullptr; }
  void disable_native() { native_.reset(); }

 private:
  Filter() = default;
  uint64_t run_bpf(rte_mbuf* m) const;

  rte_bpf* bpf_ = nullptr;  // null: matches everything
  uint64_t (*jit_)(void*) = nullptr;
  std::unique_ptr<NativeFilter> native_;
};

}  // namespace meshwire::dp::capture
