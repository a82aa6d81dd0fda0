#include "port/port.h"

#include <cstdio>

#include <rte_eal.h>
#include <rte_ethdev.h>

namespace meshwire::dp {

std::string device_name(const std::string& device) {
  return device.substr(0, device.find(','));
}

bool is_vdev(const std::string& device) {
  return device.rfind("net_", 0) == 0 || device.rfind("eth_", 0) == 0;
}

Result<PortRuntime> setup_port(const PortConfig& config, const std::string& field, uint16_t queues,
                               rte_mempool* pool) {
  const std::string name = device_name(config.device);
  uint16_t port_id = 0;
  if (rte_eth_dev_get_port_by_name(name.c_str(), &port_id) != 0) {
    return make_error(field + ".device: no DPDK port named '" + name + "' (was the device probed? check the EAL log above)");
  }
  rte_eth_dev_info info{};
  int rc = rte_eth_dev_info_get(port_id, &info);
  if (rc != 0) return make_error(field + ".device: cannot read device info: " + rte_strerror(-rc));
  if (info.max_rx_queues < queues || info.max_tx_queues < queues) {
    return make_error(field + ".device: " + name + " offers " + std::to_string(info.max_rx_queues) + " RX / " +
                      std::to_string(info.max_tx_queues) + " TX queues, workers needs " + std::to_string(queues) +
                      " of each (for net_af_packet add qpairs=" + std::to_string(queues) + ")");
  }
  if (config.mtu > info.max_mtu || config.mtu < info.min_mtu) {
    return make_error(field + ".mtu: " + std::to_string(config.mtu) + " is outside the device's range " +
                      std::to_string(info.min_mtu) + ".." + std::to_string(info.max_mtu));
  }

  rte_eth_conf conf{};
  if (queues > 1 && info.flow_type_rss_offloads != 0) {
    conf.rxmode.mq_mode = RTE_ETH_MQ_RX_RSS;
    conf.rx_adv_conf.rss_conf.rss_hf =
        (RTE_ETH_RSS_IP | RTE_ETH_RSS_UDP | RTE_ETH_RSS_TCP) & info.flow_type_rss_offloads;
  }
  PortRuntime rt;
  rt.name = config.name;
  rt.port_id = port_id;
  rt.role = config.role;
  rt.mtu = config.mtu;
  if (config.role == PortRole::kUplink) {
    if (info.tx_offload_capa & RTE_ETH_TX_OFFLOAD_IPV4_CKSUM) {
      conf.txmode.offloads |= RTE_ETH_TX_OFFLOAD_IPV4_CKSUM;
      rt.offload_ipv4_cksum = true;
    }
    if (info.tx_offload_capa & RTE_ETH_TX_OFFLOAD_UDP_CKSUM) {
      conf.txmode.offloads |= RTE_ETH_TX_OFFLOAD_UDP_CKSUM;
      rt.offload_udp_cksum = true;
    }
  }
  rc = rte_eth_dev_configure(port_id, queues, queues, &conf);
  if (rc != 0) return make_error(field + ".device: configure failed: " + rte_strerror(-rc));

  uint16_t nb_rx = config.rx_descriptors, nb_tx = config.tx_descriptors;
  rc = rte_eth_dev_adjust_nb_rx_tx_desc(port_id, &nb_rx, &nb_tx);
  if (rc != 0) return make_error(field + ".device: cannot fit descriptor counts: " + rte_strerror(-rc));

  rc = rte_eth_dev_set_mtu(port_id, config.mtu);
  if (rc != 0) {
    uint16_t current = 0;
    rte_eth_dev_get_mtu(port_id, &current);
    if (rc != -ENOTSUP || current < config.mtu) {
      return make_error(field + ".mtu: cannot set " + std::to_string(config.mtu) + " (device has " +
                        std::to_string(current) + "): " + rte_strerror(-rc));
    }
  }

  const int socket = rte_eth_dev_socket_id(port_id);
  for (uint16_t q = 0; q < queues; ++q) {
    rc = rte_eth_rx_queue_setup(port_id, q, nb_rx, socket < 0 ? SOCKET_ID_ANY : socket, nullptr, pool);
    if (rc != 0) return make_error(field + ".device: RX queue " + std::to_string(q) + " setup failed: " + rte_strerror(-rc));
    rte_eth_txconf txconf = info.default_txconf;
    txconf.offloads = conf.txmode.offloads;
    rc = rte_eth_tx_queue_setup(port_id, q, nb_tx, socket < 0 ? SOCKET_ID_ANY : socket, &txconf);
    if (rc != 0) return make_error(field + ".device: TX queue " + std::to_string(q) + " setup failed: " + rte_strerror(-rc));
  }
  rc = rte_eth_dev_start(port_id);
  if (rc != 0) return make_error(field + ".device: start failed: " + rte_strerror(-rc));

  // Local ports answer for every address (proxy ARP/ND); both sides need the
  // multicast of neighbour discovery. A VF may refuse either without trust.
  if (config.role == PortRole::kLocal && rte_eth_promiscuous_enable(port_id) != 0) {
    std::fprintf(stderr, "%s: promiscuous mode refused; relying on the VF's MAC filter\n",
                 field.c_str());
  }
  if (rte_eth_allmulticast_enable(port_id) != 0) {
    std::fprintf(stderr, "%s: all-multicast refused; IPv6 neighbour discovery may not reach us\n",
                 field.c_str());
  }
  rte_ether_addr mac;
  rte_eth_macaddr_get(port_id, &mac);
  std::copy(mac.addr_bytes, mac.addr_bytes + 6, rt.mac);
  return rt;
}

bool init_eal(const char* program, const std::vector<std::string>& eal_args, const std::vector<std::string>& devices) {
  std::vector<std::string> args{program};
  args.insert(args.end(), eal_args.begin(), eal_args.end());
  for (const std::string& d : devices) {
    args.push_back(is_vdev(d) ? "--vdev" : "-a");
    args.push_back(d);
  }
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  if (rte_eal_init(static_cast<int>(argv.size()), argv.data()) < 0) {
    std::fprintf(stderr, "%s: eal: DPDK initialisation failed (see the EAL messages above)\n", program);
    return false;
  }
  return true;
}

void stop_port(const PortRuntime& port) {
  rte_eth_dev_stop(port.port_id);
  rte_eth_dev_close(port.port_id);
}

}  // namespace meshwire::dp
