// Brings up one DPDK port from what the device says it can do: queue counts,
// RSS, checksum offloads, MTU. The same code serves af_packet/tap/memif vdevs
// and SR-IOV VFs. Main lcore only, before workers start.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <rte_mempool.h>

#include <meshwire/dp/config.h>
#include <meshwire/dp/result.h>

#include "worker/runtime.h"

namespace meshwire::dp {

// The DPDK device name of a config device string: "net_af_packet0,iface=x"
// -> "net_af_packet0"; a PCI address stays as it is.
std::string device_name(const std::string& device);
bool is_vdev(const std::string& device);

// rte_eal_init() with argv: program, eal_args, then one "--vdev D" (or "-a D"
// for a PCI address) per device. On failure prints "<program>: eal: DPDK
// initialisation failed" and returns false. Shared by every meshwire program
// that brings up ports from a config.
bool init_eal(const char* program, const std::vector<std::string>& eal_args, const std::vector<std::string>& devices);

// field is the config path of the port ("ports[1]") for error messages.
// queues: RX and TX queue pairs to configure (one per worker).
Result<PortRuntime> setup_port(const PortConfig& config, const std::string& field, uint16_t queues,
                               rte_mempool* pool);
void stop_port(const PortRuntime& port);

}  // namespace meshwire::dp
