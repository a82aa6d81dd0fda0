// rte_bpf_convert is experimental in DPDK 22.11.
#define ALLOW_EXPERIMENTAL_API 1
#include "capture/filter.h"

#include <pcap/pcap.h>

#include <algorithm>
#include <cstring>

#include <rte_bpf.h>
#include <rte_errno.h>
#include <rte_malloc.h>

namespace meshwire::dp::capture {

Result<std::unique_ptr<Filter>> Filter::compile(const std::string& expression, LinkType link, uint32_t snaplen) {
  std::unique_ptr<Filter> f(new Filter());
  if (expression.find_first_not_of(" \t\r\n") == std::string::npos) return f;
  const std::string named = "filter '" + expression + "': ";
  pcap_t* pcap = pcap_open_dead(link == LinkType::kEthernet ? DLT_EN10MB : DLT_RAW, static_cast<int>(snaplen));
  if (pcap == nullptr) return make_error(named + "libpcap: cannot open a dead handle");
  bpf_program prog{};
  if (pcap_compile(pcap, &prog, expression.c_str(), 1, PCAP_NETMASK_UNKNOWN) != 0) {
    std::string why = pcap_geterr(pcap);
    pcap_close(pcap);
    return make_error(named + why);
  }
  pcap_close(pcap);
  rte_bpf_prm* prm = rte_bpf_convert(&prog);
  pcap_freecode(&prog);
  if (prm == nullptr) {
    return make_error(named + "cannot be converted to DPDK BPF: " + rte_strerror(rte_errno));
  }
  f->bpf_ = rte_bpf_load(prm);
  rte_free(prm);
  if (f->bpf_ == nullptr) return make_error(named + "DPDK BPF refused the program: " + rte_strerror(rte_errno));
  rte_bpf_jit jit{};
  if (rte_bpf_get_jit(f->bpf_, &jit) == 0) f->jit_ = jit.func;
  f->native_ = NativeFilter::compile(expression, link);
  return f;
}

Filter::~Filter() {
  if (bpf_) rte_bpf_destroy(bpf_);
}

uint64_t Filter::run_bpf(rte_mbuf* m) const {
  if (jit_ != nullptr) return jit_(m);
  return rte_bpf_exec(bpf_, m);
}

void Filter::match_burst(rte_mbuf* const* pkts, uint16_t n, uint64_t* match) const {
  if (bpf_ == nullptr) {
    for (uint16_t i = 0; i < n; ++i) match[i] = 1;
    return;
  }
  if (native_ != nullptr) {
    constexpr uint16_t kChunk = 64;
    for (uint16_t base = 0; base < n; base += kChunk) {
      const uint16_t k = std::min<uint16_t>(kChunk, static_cast<uint16_t>(n - base));
      uint16_t undecided[kChunk];
      const uint16_t nu = native_->match_burst(pkts + base, k, match + base, undecided);
      for (uint16_t j = 0; j < nu; ++j) match[base + undecided[j]] = run_bpf(pkts[base + undecided[j]]);
    }
    return;
  }
  if (jit_ != nullptr) {
    for (uint16_t i = 0; i < n; ++i) match[i] = jit_(pkts[i]);
    return;
  }
  rte_bpf_exec_burst(bpf_, reinterpret_cast<void**>(const_cast<rte_mbuf**>(pkts)), match, n);
}

}  // namespace meshwire::dp::capture
