#include "doctor/finding.h"

#include <algorithm>

#include <nlohmann/json.hpp>

namespace meshwire::control {

const char* severity_name(Severity s) {
  switch (s) {
    case Severity::kOk: return "ok";
    case Severity::kSkipped: return "skipped";
    case Severity::kWarning: return "warning";
    case Severity::kError: return "error";
  }
  return "?";
}

namespace {

size_t count(const std::vector<Finding>& findings, Severity s) {
  size_t n = 0;
  for (const Finding& f : findings) n += f.severity == s ? 1 : 0;
  return n;
}

}  // namespace

std::string format_findings(const std::vector<Finding>& findings) {
  size_t check_width = 0;
  for (const Finding& f : findings) check_width = std::max(check_width, f.check.size());
  std::string out;
  const std::string indent(8 + 2 + check_width + 2, ' ');
  for (const Finding& f : findings) {
    std::string sev = severity_name(f.severity);
    sev.resize(8, ' ');
    std::string check = f.check;
    check.resize(check_width, ' ');
    out += sev + "  " + check + "  " + f.found + "\n";
    if (!f.fix.empty()) out += indent + "fix: " + f.fix + "\n";
  }
  out += std::to_string(count(findings, Severity::kError)) + " error(s), " +
         std::to_string(count(findings, Severity::kWarning)) + " warning(s), " +
         std::to_string(count(findings, Severity::kOk)) + " ok, " +
         std::to_string(count(findings, Severity::kSkipped)) + " skipped\n";
  return out;
}

std::string findings_json(const std::vector<Finding>& findings) {
  nlohmann::json list = nlohmann::json::array();
  for (const Finding& f : findings) {
    list.push_back({{"severity", severity_name(f.severity)}, {"check", f.check}, {"found", f.found}, {"fix", f.fix}});
  }
  nlohmann::json doc = {{"findings", list},
                        {"errors", count(findings, Severity::kError)},
                        {"warnings", count(findings, Severity::kWarning)}};
  return doc.dump(2) + "\n";
}

int doctor_exit_status(const std::vector<Finding>& findings) {
  return count(findings, Severity::kError) > 0 ? 1 : 0;
}

}  // namespace meshwire::control
