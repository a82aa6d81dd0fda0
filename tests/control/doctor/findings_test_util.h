// What the doctor tests ask of a list of findings.
#pragma once

#include <string>
#include <vector>

#include "doctor/finding.h"

namespace meshwire::control {

// A finding of `check` with this severity whose found text or fix holds `needle`.
inline bool has(const std::vector<Finding>& fs, Severity s, const std::string& check,
                const std::string& needle = "") {
  for (const Finding& f : fs) {
    if (f.severity == s && f.check == check && (f.found + " fix: " + f.fix).find(needle) != std::string::npos) {
      return true;
    }
  }
  return false;
}

inline bool any_of(const std::vector<Finding>& fs, Severity s) {
  for (const Finding& f : fs) {
    if (f.severity == s) return true;
  }
  return false;
}

// For failure messages.
inline std::string dump(const std::vector<Finding>& fs) { return format_findings(fs); }

}  // namespace meshwire::control
