// The last step towards a local pod, shared by the workers and the control
// thread (which sends packets it held while resolving a pod).
#pragma once

#include <cstring>

#include <rte_byteorder.h>
#include <rte_ether.h>
#include <rte_mbuf.h>

#include <meshwire/dp/counters.h>

#include "net/checksum.h"

namespace meshwire::dp {

// Turns the IP packet at m's data into a frame for a pod: TTL / hop limit
// minus one, then an Ethernet header from port_mac to pod_mac. Returns
// DropReason::kCount when the frame is ready, else why to drop it.
inline DropReason frame_for_pod(rte_mbuf* m, const uint8_t port_mac[6], const uint8_t pod_mac[6]) {
  uint8_t* ip = rte_pktmbuf_mtod(m, uint8_t*);
  const bool v6 = (ip[0] >> 4) == 6;
  if (!net::ip_decrement_ttl(ip)) return DropReason::kTtlExceeded;
  auto* eth = reinterpret_cast<rte_ether_hdr*>(rte_pktmbuf_prepend(m, sizeof(rte_ether_hdr)));
  if (!eth) return DropReason::kMalformed;
  std::memcpy(eth->dst_addr.addr_bytes, pod_mac, 6);
  std::memcpy(eth->src_addr.addr_bytes, port_mac, 6);
  eth->ether_type = rte_cpu_to_be_16(v6 ? RTE_ETHER_TYPE_IPV6 : RTE_ETHER_TYPE_IPV4);
  return DropReason::kCount;
}

}  // namespace meshwire::dp
