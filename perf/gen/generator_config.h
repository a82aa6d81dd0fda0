// meshwire-perf's JSON configuration and commands, validated whole before
// anything starts; every error names its field ("traffic[1].sink.sas[0].key").
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <rte_mempool.h>

#include <meshwire/dp/config.h>
#include <meshwire/dp/result.h>

#include "gen/generator.h"

namespace meshwire::perf {

struct GenPortConfig {
  std::string name;
  std::string device;  // vdev string or PCI address
  uint16_t queues = 1;
  uint16_t mtu = 1500;
};

struct GenSaConfig {
  uint32_t spi = 0;
  std::vector<uint8_t> key;  // 16 or 32 bytes
  std::array<uint8_t, 4> salt{};
};

// A sink SA: an SA of the system under test, what its frames count as.
struct GenSinkSaConfig : GenSaConfig {
  std::string label;  // frames of SAs with the same label are also tallied together ("" = not)
  double until_s = -1;  // frames arriving later into the trial are ignored, not received (< 0: never)
};

// ESP-in-UDP/4500 that the generator encrypts, as a peer node would.
struct GenEncryptConfig {
  GenSaConfig sa;
  dp::IpAddress tunnel_src, tunnel_dst;
  uint8_t dst_mac[6]{};
};

// A background stream: ESP dummy packets (next header 59) sent beside the
// trial's main traffic, e.g. a peer node's proof of life.
struct GenBackgroundConfig {
  std::string name;
  uint16_t tx_port = 0;
  double rate_pps = 0;
  double until_s = -1;  // stop sending this long into the trial (< 0: never)
  GenEncryptConfig encrypt;
};

struct GenTrafficConfig {
  std::string name;
  uint16_t tx_port = 0;
  uint16_t rx_port = 0;
  FlowSet flows;  // src_mac filled in from the port at start
  // The generator encrypts (decrypt-path traffic).
  std::optional<GenSaConfig> encrypt;
  dp::IpAddress tunnel_src, tunnel_dst;
  uint8_t encrypt_dst_mac[6]{};
  // The sink expects ESP of these SAs (encrypt-path traffic).
  // (Both encrypt and a sink: a loopback self-test, the generator's own ESP
  // back to its sink.)
  std::vector<GenSinkSaConfig> sink_sas;
  bool sink_udp = true;
  bool sink_esn = true;
  uint32_t sample_every = 1;
  std::vector<GenBackgroundConfig> background;
};

struct GeneratorConfig {
  std::vector<std::string> eal;
  std::vector<GenPortConfig> ports;
  std::vector<GenTrafficConfig> traffic;
};

dp::Result<GeneratorConfig> parse_generator_config(const nlohmann::json& doc);

// Sets up the ports (from what each device reports, as the data plane does),
// an ipsec-mb engine for this lcore and the traffic profiles. After
// rte_eal_init(), on the lcore that will run the generator.
dp::Result<std::unique_ptr<Generator>> build_generator(const GeneratorConfig& config, rte_mempool* pool);

// {"cmd":"trial",...}: traffic by name; frame_size 64..1518 or "imix".
dp::Result<TrialRequest> parse_trial_request(const nlohmann::json& cmd, const std::vector<Traffic>& traffic);

}  // namespace meshwire::perf
