#include "metrics/exposition.h"

#include <charconv>
#include <cmath>
#include <cstdio>

namespace meshwire::ctl::metrics {

namespace {

bool name_char(char c, bool first) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' || (!first && c >= '0' && c <= '9');
}

// HELP text escapes backslash and line feed only.
std::string escape_help(std::string_view help) {
  std::string out;
  out.reserve(help.size());
  for (char c : help) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

}  // namespace

std::string sanitize_name(std::string_view name) {
  std::string out;
  out.reserve(name.size() + 1);
  if (name.empty() || (name[0] >= '0' && name[0] <= '9')) out += '_';
  for (char c : name) out += name_char(c, false) ? c : '_';
  return out;
}

std::string escape_label_value(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (char c : value) {
    switch (c) {
      case '\\': out += "\\\\"; break;
      case '"': out += "\\\""; break;
      case '\n': out += "\\n"; break;
      default: out += c;
    }
  }
  return out;
}

std::string format_value(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  char buf[32];
  if (v == std::floor(v) && std::fabs(v) <= 9007199254740992.0) {
    std::snprintf(buf, sizeof(buf), "%.0f", v);
    return buf;
  }
  const auto r = std::to_chars(buf, buf + sizeof(buf), v);  // the shortest text that reads back as v
  return std::string(buf, r.ptr);
}

void Exposition::family(std::string_view name, Type type, std::string_view help) {
  name_ = sanitize_name(name);
  text_ += "# HELP " + name_ + " " + escape_help(help) + "\n";
  text_ += "# TYPE " + name_ + (type == Type::kCounter ? " counter\n" : type == Type::kGauge ? " gauge\n" : " histogram\n");
}

void Exposition::histogram(const Labels& labels, const std::vector<double>& bounds, const std::vector<uint64_t>& counts,
                           double sum) {
  const std::string base = name_;
  auto line = [&](std::string_view suffix, const Labels& with, double value) {
    name_ = base + std::string(suffix);
    sample(with, value);
  };
  uint64_t cumulative = 0;
  for (size_t i = 0; i <= bounds.size(); ++i) {
    cumulative += i < counts.size() ? counts[i] : 0;
    Labels with = labels;
    with.emplace_back("le", i < bounds.size() ? format_value(bounds[i]) : "+Inf");
    line("_bucket", with, static_cast<double>(cumulative));
  }
  line("_sum", labels, sum);
  line("_count", labels, static_cast<double>(cumulative));
  name_ = base;
}

void Exposition::sample(const Labels& labels, double value) {
  text_ += name_;
  if (!labels.empty()) {
    text_ += '{';
    for (size_t i = 0; i < labels.size(); ++i) {
      if (i) text_ += ',';
      text_ += sanitize_name(labels[i].first) + "=\"" + escape_label_value(labels[i].second) + "\"";
    }
    text_ += '}';
  }
  text_ += ' ' + format_value(value) + '\n';
}

}  // namespace meshwire::ctl::metrics
