// Gathering what `meshwirectl doctor` judges (doctor/facts.h): the data
// plane's API, its config file, sysfs and procfs under a root (tests give
// a fake one), Node objects from the controller's source, the controller's
// /metrics over HTTP (libcurl), and `ip route get` in pod network
// namespaces. Each input that is not given leaves its facts absent.
#pragma once

#include <string>
#include <vector>

#include "doctor/facts.h"
#include "source/open.h"

namespace meshwire::control {

struct DoctorInputs {
  std::string socket;                  // the data plane's API socket
  double timeout_s = 5;
  std::string config;                  // --config ("" : not given)
  std::string pod_annotations;         // --pod-annotations: for "network:" forms in the config ("" : none)
  std::string sysroot;                 // --sysroot ("" : the real /sys and /proc)
  SourceSpec source;                   // --source ("" : not given)
  std::string node;                    // --node ("" : found by tunnel address)
  std::string controller;              // --controller URL ("" : not given)
  std::vector<std::string> pod_netns;  // --pod-netns, repeated
};

// Everything the inputs give; never fails (what could not be read is said
// in the facts' error fields).
Facts gather_facts(const DoctorInputs& in);

// The pieces, for tests and for gather_facts.
HugepageFacts read_hugepages(const std::string& sysroot);
CpuFacts read_cpus(const std::string& sysroot);
std::vector<DeviceFact> read_devices(const std::string& sysroot, const ConfigFacts& config);
// An address of each remote pod CIDR (the network address + 1), per peer.
std::vector<RouteFact> remote_pod_addresses(const v1::ListPeersResponse& peers);

}  // namespace meshwire::control
