// The checks of `meshwirectl doctor`: pure functions from gathered facts
// (doctor/facts.h) to findings, so that the unit tests feed them facts.
// Each returns at least one finding: ok, skipped (its input missing, naming
// the option that gives it), warning or error. The rules are the README's
// ("meshwirectl doctor").
#pragma once

#include <cstdint>
#include <vector>

#include "doctor/facts.h"
#include "doctor/finding.h"

namespace meshwire::control {

// A peer's clock further off than this is a warning, further than the error
// bound an error (see check_clock_skew).
inline constexpr int64_t kClockWarnMs = 1000;
inline constexpr int64_t kClockErrorMs = 30000;

// Node (node_checks.cc).
std::vector<Finding> check_dataplane_api(const Facts& facts);
std::vector<Finding> check_hugepages(const Facts& facts);
std::vector<Finding> check_isolated_cores(const Facts& facts);
std::vector<Finding> check_devices(const Facts& facts);
std::vector<Finding> check_mtu(const Facts& facts);
// Mesh (mesh_checks.cc).
std::vector<Finding> check_public_keys(const Facts& facts);
std::vector<Finding> check_key_epochs(const Facts& facts);
std::vector<Finding> check_clock_skew(const Facts& facts);
std::vector<Finding> check_controller(const Facts& facts);
std::vector<Finding> check_bypass(const Facts& facts);

// Every check above, in that order.
std::vector<Finding> run_checks(const Facts& facts);

// The epoch bits of a derived SPI (keys.h derived_spi: bits 6..29), and
// whether an SPI is derived at all (top bit) rather than manual.
inline bool is_derived_spi(uint32_t spi) { return (spi & 0x80000000u) != 0; }
inline uint32_t spi_epoch_bits(uint32_t spi) { return (spi >> 6) & 0xFFFFFFu; }

}  // namespace meshwire::control
