// What `meshwirectl doctor` reports: one finding per thing it looked at,
// each with its severity, the check that made it, what was found (with the
// numbers and names) and the fix. Pure: any thread.
#pragma once

#include <string>
#include <vector>

namespace meshwire::control {

// In increasing order of concern. kSkipped: the check's input was not given
// (its `found` says which option would give it); it is no pass.
enum class Severity { kOk, kSkipped, kWarning, kError };

struct Finding {
  Severity severity = Severity::kOk;
  std::string check;  // "hugepages", "isolated-cores", ... (README, "meshwirectl doctor")
  std::string found;  // what was seen, with the concrete numbers and names
  std::string fix;    // a command or configuration change; empty when nothing is to be done
};

// "ok", "skipped", "warning", "error".
const char* severity_name(Severity s);

// One line-group per finding, in the order given:
//   error    mtu  pod n1p1 eth0 carries 9000 ...
//            fix: ip -n n1p1 link set eth0 mtu 1438
// then a summary line "N errors, N warnings, N ok, N skipped".
std::string format_findings(const std::vector<Finding>& findings);
// {"findings": [{"severity", "check", "found", "fix"}...], "errors": N, "warnings": N}, newline-terminated.
std::string findings_json(const std::vector<Finding>& findings);
// 1 when any finding is an error, else 0 (meshwirectl doctor's exit status).
int doctor_exit_status(const std::vector<Finding>& findings);

}  // namespace meshwire::control
