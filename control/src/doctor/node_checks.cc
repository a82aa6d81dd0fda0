// The node's own checks: the data plane's API, hugepages, isolated cores,
// devices, MTU against the encapsulation's overhead.
#include <algorithm>
#include <set>
#include <string>

#include <meshwire/dp/encap.h>

#include "doctor/checks.h"

namespace meshwire::control {

namespace {

Finding make(Severity s, const char* check, std::string found, std::string fix = "") {
  return Finding{s, check, std::move(found), std::move(fix)};
}

std::string mb(uint64_t kb) { return std::to_string(kb / 1024) + " MB"; }

std::string cpulist(const std::vector<unsigned>& cpus) {
  std::string out;
  for (size_t i = 0; i < cpus.size(); ++i) {
    size_t j = i;
    while (j + 1 < cpus.size() && cpus[j + 1] == cpus[j] + 1) ++j;
    if (!out.empty()) out += ",";
    out += std::to_string(cpus[i]);
    if (j > i) {
      out += '-';
      out += std::to_string(cpus[j]);
    }
    i = j;
  }
  return out.empty() ? "none" : out;
}

}  // namespace

std::vector<Finding> check_dataplane_api(const Facts& facts) {
  std::vector<Finding> out;
  if (!facts.config_error.empty()) {
    out.push_back(make(Severity::kError, "config", "the data plane's config does not load: " + facts.config_error,
                       "meshwire-dataplane --config FILE --check names the field; the checks that need it are "
                       "skipped"));
  }
  if (!facts.dataplane) {
    out.push_back(make(Severity::kError, "dataplane", "cannot read the data plane's API: " + facts.dataplane_error,
                 "start meshwire-dataplane with --api-socket PATH, or name its socket with --socket; the checks "
                 "that need it are skipped"));
    return out;
  }
  const auto& g = facts.dataplane->generation;
  out.push_back(make(Severity::kOk, "dataplane",
               "answers: generation " + std::to_string(g.live_generation()) + " (" + g.source() + "), " +
                   std::to_string(g.workers()) + " worker(s), tunnel address " + g.tunnel_address() + ", " +
                   std::to_string(facts.dataplane->peers.peers_size()) + " peer(s)"));
  return out;
}

// What the data plane needs: -m or --socket-mem when given; otherwise DPDK
// takes memory as it goes, so some hugepages must be there. A running data
// plane already holds its pages, so with the API answering the pools' total
// counts, else what is free.
std::vector<Finding> check_hugepages(const Facts& facts) {
  const char* kCheck = "hugepages";
  if (facts.config && facts.config->no_huge) {
    return {make(Severity::kOk, kCheck,
                 "the data plane runs with --no-huge (ordinary memory): fine for tests and demos, not for line rate",
                 "")};
  }
  if (!facts.hugepages) return {make(Severity::kSkipped, kCheck, "skipped: needs a readable /sys (--sysroot)")};
  const HugepageFacts& h = *facts.hugepages;
  const bool running = facts.dataplane.has_value();
  uint64_t total_kb = 0, free_kb = 0;
  std::string pools;
  for (const HugepagePool& p : h.pools) {
    if (p.numa_node >= 0) continue;
    total_kb += p.total * p.size_kb;
    free_kb += p.free * p.size_kb;
    if (!pools.empty()) pools += ", ";
    pools += std::to_string(p.free) + " of " + std::to_string(p.total) + " " +
             (p.size_kb >= 1024 * 1024 ? std::to_string(p.size_kb / 1024 / 1024) + "G"
                                       : std::to_string(p.size_kb / 1024) + "M") +
             " pages free";
  }
  if (pools.empty()) pools = "no hugepage pools";
  const uint64_t have_kb = running ? total_kb : free_kb;
  const char* have_what = running ? "in all (the running data plane holds its own)" : "free";
  std::vector<Finding> out;
  if (total_kb == 0) {
    // Without the config, a --no-huge data plane cannot be told apart.
    out.push_back(make(facts.config ? Severity::kError : Severity::kWarning, kCheck,
                       "no hugepages (" + pools + ")" +
                           (facts.config ? "" : "; the data plane needs them unless it runs with --no-huge (--config "
                                                "tells)"),
                       "echo 1024 > /sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages (or hugepages= on the "
                       "kernel command line), or run the data plane with --no-huge (tests only)"));
  } else if (!facts.config) {
    out.push_back(make(Severity::kSkipped, kCheck,
                       pools + "; what the data plane needs is not known: skipped: needs --config"));
  } else {
    const ConfigFacts& c = *facts.config;
    uint64_t need_mb = c.memory_mb;
    for (uint64_t m : c.socket_mem_mb) need_mb += m;
    if (need_mb == 0) {
      out.push_back(make(Severity::kOk, kCheck,
                         pools + "; the config asks for no fixed amount (-m/--socket-mem): DPDK takes what it needs"));
    } else if (have_kb < need_mb * 1024) {
      const uint64_t pages = (need_mb * 1024 - have_kb + 2047) / 2048;
      out.push_back(make(Severity::kError, kCheck,
                         "the data plane asks for " + std::to_string(need_mb) + " MB of hugepages; " + mb(have_kb) +
                             " " + have_what + " (" + pools + ")",
                         "add " + std::to_string(pages) +
                             " 2 MB pages: echo N > /sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages "
                             "(N = the current total + " + std::to_string(pages) + "), or lower -m/--socket-mem"));
    } else {
      out.push_back(make(Severity::kOk, kCheck,
                         "the data plane asks for " + std::to_string(need_mb) + " MB; " + mb(have_kb) + " " +
                             have_what + " (" + pools + ")"));
    }
    // --socket-mem asks per NUMA node: each node's pools must hold its share.
    for (size_t node = 0; node < c.socket_mem_mb.size(); ++node) {
      if (c.socket_mem_mb[node] == 0) continue;
      uint64_t node_kb = 0;
      for (const HugepagePool& p : h.pools) {
        if (p.numa_node == static_cast<int>(node)) node_kb += (running ? p.total : p.free) * p.size_kb;
      }
      if (node_kb < c.socket_mem_mb[node] * 1024) {
        out.push_back(make(Severity::kError, kCheck,
                           "--socket-mem asks " + std::to_string(c.socket_mem_mb[node]) + " MB on NUMA node " +
                               std::to_string(node) + "; it has " + mb(node_kb) + " " + have_what,
                           "echo N > /sys/devices/system/node/node" + std::to_string(node) +
                               "/hugepages/hugepages-2048kB/nr_hugepages"));
      }
    }
  }
  if (total_kb > 0 && !h.hugetlbfs_mounted) {
    out.push_back(make(Severity::kError, kCheck, "no hugetlbfs is mounted (/proc/mounts): DPDK cannot map the pages",
                       "mount -t hugetlbfs nodev /dev/hugepages"));
  }
  return out;
}

// Workers poll without pause: each should own an isolated CPU (isolcpus=
// or cpuset isolation), else the kernel schedules other work on it.
std::vector<Finding> check_isolated_cores(const Facts& facts) {
  const char* kCheck = "isolated-cores";
  if (!facts.config) return {make(Severity::kSkipped, kCheck, "skipped: needs --config (the data plane's lcores)")};
  const ConfigFacts& c = *facts.config;
  if (!c.worker_cpus) {
    return {make(Severity::kSkipped, kCheck, "skipped: " + c.lcores_note,
                 "name the lcores in the config's eal list (-l MAIN,WORKER...) to have them checked")};
  }
  if (!facts.cpus) return {make(Severity::kSkipped, kCheck, "skipped: needs a readable /sys (--sysroot)")};
  const std::set<unsigned> isolated(facts.cpus->isolated.begin(), facts.cpus->isolated.end());
  std::vector<unsigned> not_isolated, shared;
  for (unsigned cpu : *c.worker_cpus) {
    if (!isolated.count(cpu)) not_isolated.push_back(cpu);
    if (c.main_cpu && *c.main_cpu == cpu) shared.push_back(cpu);
  }
  std::vector<Finding> out;
  const std::string workers = "worker CPU(s) " + cpulist(*c.worker_cpus);
  if (!not_isolated.empty()) {
    out.push_back(make(c.busy_poll ? Severity::kError : Severity::kWarning, kCheck,
                       workers + "; not isolated: " + cpulist(not_isolated) + " (isolated: " +
                           cpulist(facts.cpus->isolated) + ")" +
                           (c.busy_poll ? "; idle: busy polls them without pause, beside the kernel's other work"
                                        : ""),
                       "isolate them: isolcpus=" + cpulist(not_isolated) + " nohz_full=" + cpulist(not_isolated) +
                           " on the kernel command line (or the kubelet's static CPU manager), or run the data "
                           "plane on isolated CPUs with -l"));
  } else {
    out.push_back(make(Severity::kOk, kCheck, workers + ", all isolated"));
  }
  if (!shared.empty()) {
    out.push_back(make(Severity::kWarning, kCheck,
                       "the main lcore shares CPU " + cpulist(shared) + " with a worker",
                       "give the main lcore a CPU of its own in -l"));
  }
  if (facts.cpus->nohz_full && not_isolated.empty()) {
    std::vector<unsigned> ticking;
    const std::set<unsigned> nohz(facts.cpus->nohz_full->begin(), facts.cpus->nohz_full->end());
    for (unsigned cpu : *c.worker_cpus) {
      if (!nohz.count(cpu)) ticking.push_back(cpu);
    }
    if (!ticking.empty()) {
      out.push_back(make(Severity::kWarning, kCheck,
                         "worker CPU(s) " + cpulist(ticking) + " are isolated but not nohz_full (the timer tick "
                         "interrupts them)",
                         "add nohz_full=" + cpulist(ticking) + " to the kernel command line"));
    }
  }
  return out;
}

// Drivers a DPDK port can run on: the userspace I/O ones, and mlx5's kernel
// driver (bifurcated: DPDK runs on it).
std::vector<Finding> check_devices(const Facts& facts) {
  const char* kCheck = "devices";
  if (!facts.config) return {make(Severity::kSkipped, kCheck, "skipped: needs --config (the ports' devices)")};
  static const std::set<std::string> kDpdkDrivers = {"vfio-pci", "uio_pci_generic", "igb_uio", "mlx5_core"};
  std::vector<Finding> out;
  for (const DeviceFact& d : facts.devices) {
    const std::string what = "port " + d.port + " (" + d.device + ")";
    if (!d.pci) {
      if (d.iface.empty()) {
        out.push_back(make(Severity::kOk, kCheck, what + ": a vdev, no PCI device to check"));
      } else if (!d.iface_present) {
        out.push_back(make(Severity::kError, kCheck, what + ": a vdev on interface " + d.iface +
                                                         ", which does not exist (/sys/class/net/" + d.iface + ")",
                           "create the interface, or correct iface= in the port's device"));
      } else {
        out.push_back(make(Severity::kOk, kCheck, what + ": a vdev on interface " + d.iface + ", present"));
      }
      continue;
    }
    const std::string vf = d.physfn.empty() ? "" : " (a VF of " + d.physfn + ")";
    if (!d.present) {
      out.push_back(make(Severity::kError, kCheck,
                         what + ": no such PCI device (/sys/bus/pci/devices/" + d.device + ")",
                         "create the VFs (echo N > /sys/class/net/PF/device/sriov_numvfs) and check the address "
                         "with lspci -D, or correct ports[].device"));
    } else if (d.driver.empty()) {
      out.push_back(make(Severity::kError, kCheck, what + vf + ": bound to no driver",
                         "dpdk-devbind.py -b vfio-pci " + d.device));
    } else if (!kDpdkDrivers.count(d.driver)) {
      out.push_back(make(Severity::kError, kCheck,
                         what + vf + ": bound to " + d.driver + ", a kernel driver DPDK cannot use",
                         "dpdk-devbind.py -b vfio-pci " + d.device));
    } else if (d.driver == "vfio-pci" && !d.iommu_group) {
      out.push_back(make(Severity::kError, kCheck, what + vf + ": bound to vfio-pci but in no IOMMU group",
                         "enable the IOMMU (intel_iommu=on iommu=pt, or amd_iommu=on) or, without one, "
                         "vfio's enable_unsafe_noiommu_mode"));
    } else {
      out.push_back(make(Severity::kOk, kCheck, what + vf + ": present, bound to " + d.driver));
    }
  }
  if (out.empty()) out.push_back(make(Severity::kOk, kCheck, "no ports configured"));
  return out;
}

// A pod's packet grows by the encapsulation (dp/encap.h): the uplink MTU
// leaves inner_mtu_for() bytes for it. Larger ones get ICMP "fragmentation
// needed"/"packet too big" or are fragmented (IPv4 without DF), and TCP's
// MSS is clamped: it works, at a cost (warning, said of the local port: a
// pod above what the uplink leaves is above the port too, or the port's
// warning covers it). A pod interface whose MTU is above the local port's
// sends frames the port does not take (error); IPv6 pods need 1280 bytes
// (error).
std::vector<Finding> check_mtu(const Facts& facts) {
  const char* kCheck = "mtu";
  if (!facts.dataplane) return {make(Severity::kSkipped, kCheck, "skipped: needs the data plane's API (--socket)")};
  const DataplaneFacts& dp = *facts.dataplane;
  const bool v6 = dp.generation.tunnel_address().find(':') != std::string::npos;
  const v1::Interface* uplink = nullptr;
  for (const auto& i : dp.interfaces.interfaces()) {
    if (i.role() == "uplink") uplink = &i;
  }
  if (uplink == nullptr) return {make(Severity::kError, kCheck, "the data plane reports no uplink port")};
  const uint32_t inner = dp::inner_mtu_for(static_cast<uint16_t>(uplink->mtu()), v6);
  const std::string fabric = v6 ? "IPv6" : "IPv4";
  const std::string base = "uplink " + uplink->name() + " MTU " + std::to_string(uplink->mtu()) + " leaves " +
                           std::to_string(inner) + " for pods (ESP-in-UDP over " + fabric + " adds " +
                           std::to_string(uplink->mtu() - inner) + ")";
  bool v6_pods = false;
  for (const auto& r : dp.routes.routes()) v6_pods = v6_pods || r.prefix().find(':') != std::string::npos;
  std::vector<Finding> out;
  if (v6_pods && inner < 1280) {
    out.push_back(make(Severity::kError, kCheck, base + "; IPv6 pods need 1280",
                       "raise the fabric MTU to " + std::to_string(dp::uplink_mtu_for(1280, v6)) + " or more"));
  }
  uint32_t local_mtu = 0;
  for (const auto& i : dp.interfaces.interfaces()) {
    if (i.role() != "local") continue;
    local_mtu = std::max(local_mtu, i.mtu());
    if (i.mtu() > inner) {
      out.push_back(make(Severity::kWarning, kCheck,
                         base + "; the local port " + i.name() + " carries " + std::to_string(i.mtu()) +
                             ": pods' packets above " + std::to_string(inner) +
                             " get ICMP fragmentation needed or are fragmented (TCP's MSS is clamped)",
                         "lower the pod MTU (and the local port's mtu) to " + std::to_string(inner) +
                             " or raise the fabric MTU (the uplink's mtu) to " +
                             std::to_string(dp::uplink_mtu_for(i.mtu(), v6))));
    }
  }
  for (const PodNetnsFact& pod : facts.pods) {
    if (pod.dataplane_dev.empty() || pod.dataplane_dev_mtu == 0) continue;
    const std::string where = "pod netns " + pod.netns + " " + pod.dataplane_dev;
    if (local_mtu != 0 && pod.dataplane_dev_mtu > local_mtu) {
      out.push_back(make(Severity::kError, kCheck,
                         where + " MTU " + std::to_string(pod.dataplane_dev_mtu) + " is above the data plane's local "
                             "port MTU " + std::to_string(local_mtu) + ": larger frames are dropped at the port",
                         "ip -n " + pod.netns + " link set " + pod.dataplane_dev + " mtu " +
                             std::to_string(std::min(local_mtu, inner)) + " (the pod network's MTU setting)"));
    }
  }
  if (out.empty()) {
    out.push_back(make(Severity::kOk, kCheck, base + "; the local port(s) carry " + std::to_string(local_mtu)));
  }
  return out;
}

std::vector<Finding> run_checks(const Facts& facts) {
  std::vector<Finding> out;
  for (auto check : {check_dataplane_api, check_hugepages, check_isolated_cores, check_devices, check_mtu,
                     check_public_keys, check_key_epochs, check_clock_skew, check_controller, check_bypass}) {
    std::vector<Finding> f = check(facts);
    out.insert(out.end(), f.begin(), f.end());
  }
  return out;
}

}  // namespace meshwire::control
