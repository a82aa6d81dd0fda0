// Prometheus's text exposition format, version 0.0.4
// (https://prometheus.io/docs/instrumenting/exposition_formats/): metric
// families, each a # HELP and a # TYPE line and then its samples, with
// label values escaped. A counter family's name ends in _total, as the
// format's current clients write it and `promtool check metrics` wants.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace meshwire::ctl::metrics {

enum class Type { kCounter, kGauge, kHistogram };

using Labels = std::vector<std::pair<std::string, std::string>>;

class Exposition {
 public:
  // Starts a family: the samples added next belong to it. Names are
  // [a-zA-Z_:][a-zA-Z0-9_:]*; any other character becomes '_'.
  void family(std::string_view name, Type type, std::string_view help);
  // A sample of the family begun last; label names are the caller's
  // constants, label values anything (escaped here).
  void sample(const Labels& labels, double value);
  void sample(double value) { sample({}, value); }
  // A histogram of the family begun last (Type::kHistogram): counts[i] (not
  // cumulative) observations up to bounds[i], counts[bounds.size()] beyond;
  // written as _bucket{le} (cumulative, then +Inf), _sum and _count.
  void histogram(const Labels& labels, const std::vector<double>& bounds, const std::vector<uint64_t>& counts,
                 double sum);

  const std::string& text() const { return text_; }

 private:
  std::string name_;
  std::string text_;
};

// A metric or label name with every character outside [a-zA-Z0-9_:] made
// '_' (and a leading digit prefixed with '_').
std::string sanitize_name(std::string_view name);
// A label value as the format quotes it: backslash, double quote and line
// feed escaped.
std::string escape_label_value(std::string_view value);
// A sample value: integers exactly (up to 2^53), else shortest round-trip,
// NaN, +Inf, -Inf.
std::string format_value(double v);

}  // namespace meshwire::ctl::metrics
