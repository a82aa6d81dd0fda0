#include "ctl/format.h"

#include <algorithm>
#include <cstdio>
#include <map>
#include <set>

#include <google/protobuf/util/json_util.h>

namespace meshwire::control {
namespace {

bool numeric(const std::string& s) {
  if (s.empty()) return false;
  return std::all_of(s.begin(), s.end(), [](char c) { return (c >= '0' && c <= '9') || c == '.' || c == ','; });
}

std::string join(const google::protobuf::RepeatedPtrField<std::string>& items, const char* sep) {
  std::string out;
  for (const std::string& s : items) out += (out.empty() ? "" : sep) + s;
  return out;
}

std::string or_dash(const std::string& s) { return s.empty() ? "-" : s; }

}  // namespace

std::string algorithm_name(v1::Algorithm a) {
  switch (a) {
    case v1::AES_128_GCM: return "aes-128-gcm";
    case v1::AES_256_GCM: return "aes-256-gcm";
    default: return "unspecified";
  }
}

std::string protocol_name(v1::Protocol p) {
  switch (p) {
    case v1::TCP: return "TCP";
    case v1::UDP: return "UDP";
    case v1::SCTP: return "SCTP";
    default: return "-";
  }
}

std::string host_port(const std::string& address, uint32_t port) {
  std::string out;
  if (address.find(':') != std::string::npos) {
    out += '[';
    out += address;
    out += ']';
  } else {
    out += address;
  }
  out += ':';
  out += std::to_string(port);
  return out;
}

std::string format_duration_ms(uint64_t ms) {
  char buf[32];
  if (ms < 1000) {
    std::snprintf(buf, sizeof(buf), "%llums", static_cast<unsigned long long>(ms));
  } else if (ms < 60'000) {
    std::snprintf(buf, sizeof(buf), "%llu.%llus", static_cast<unsigned long long>(ms / 1000),
                  static_cast<unsigned long long>(ms / 100 % 10));
  } else if (ms < 3'600'000) {
    std::snprintf(buf, sizeof(buf), "%llum%02llus", static_cast<unsigned long long>(ms / 60'000),
                  static_cast<unsigned long long>(ms / 1000 % 60));
  } else {
    std::snprintf(buf, sizeof(buf), "%lluh%02llum", static_cast<unsigned long long>(ms / 3'600'000),
                  static_cast<unsigned long long>(ms / 60'000 % 60));
  }
  return buf;
}

std::string render_table(const std::vector<std::string>& header, const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> width(header.size());
  for (size_t c = 0; c < header.size(); ++c) width[c] = header[c].size();
  for (const auto& row : rows) {
    for (size_t c = 0; c < header.size() && c < row.size(); ++c) width[c] = std::max(width[c], row[c].size());
  }
  std::string out;
  auto line = [&](const std::vector<std::string>& cells, bool is_header) {
    std::string l;
    for (size_t c = 0; c < header.size(); ++c) {
      const std::string cell = c < cells.size() ? cells[c] : "";
      const std::string pad(width[c] - cell.size(), ' ');
      const bool right = !is_header && numeric(cell);
      if (c) l += "  ";
      l += right ? pad + cell : cell + (c + 1 < header.size() ? pad : "");
    }
    while (!l.empty() && l.back() == ' ') l.pop_back();
    out += l + "\n";
  };
  line(header, true);
  for (const auto& row : rows) line(row, false);
  return out;
}

std::string format_generation(const v1::GetGenerationResponse& r) {
  std::string out;
  out += "generation:          " + std::to_string(r.live_generation()) + "\n";
  out += "source:              " + or_dash(r.source()) + "\n";
  out += "applied_unix_ms:     " + std::to_string(r.applied_unix_ms()) + "\n";
  out += "workers:             " + std::to_string(r.workers()) + "\n";
  out += "tunnel_address:      " + or_dash(r.tunnel_address()) + "\n";
  out += "max_outbound_seq:    " + std::to_string(r.max_outbound_seq()) + "\n";
  out += "services_generation: " + std::to_string(r.services_generation()) + "\n";
  return out;
}

std::string format_interfaces(const v1::ListInterfacesResponse& r) {
  std::vector<std::vector<std::string>> rows;
  for (const v1::Interface& i : r.interfaces()) {
    std::string offloads;
    if (i.ipv4_cksum_offload()) offloads += "ipv4-cksum";
    if (i.udp_cksum_offload()) offloads += std::string(offloads.empty() ? "" : ",") + "udp-cksum";
    rows.push_back({i.name(), i.role(), std::to_string(i.port_id()), i.mac(), std::to_string(i.mtu()),
                    std::to_string(i.rx_packets()), std::to_string(i.rx_bytes()), std::to_string(i.tx_packets()),
                    std::to_string(i.tx_bytes()), std::to_string(i.rx_missed()),
                    std::to_string(i.rx_errors() + i.tx_errors()), or_dash(offloads)});
  }
  // RX-MISSED: dropped by the device for want of a free descriptor; ERRORS:
  // the device's receive and transmit errors (--json has the xstats too).
  return render_table({"NAME", "ROLE", "PORT", "MAC", "MTU", "RX-PKTS", "RX-BYTES", "TX-PKTS", "TX-BYTES", "RX-MISSED",
                       "ERRORS", "OFFLOADS"},
                      rows);
}

namespace {

std::string format_rtt_us(uint32_t us) {
  char buf[32];
  if (us < 10'000) {
    std::snprintf(buf, sizeof(buf), "%uus", us);
  } else {
    std::snprintf(buf, sizeof(buf), "%.1fms", us / 1000.0);
  }
  return buf;
}

}  // namespace

std::string format_peers(const v1::ListPeersResponse& r) {
  std::vector<std::vector<std::string>> rows;
  for (const v1::PeerStatus& p : r.peers()) {
    // 0 ms ago is "never" for a peer whose liveness is unknown.
    const bool never = p.last_heard_ms_ago() == 0 && (p.liveness().empty() || p.liveness() == "unknown");
    rows.push_back({p.name(), p.tunnel_address(), or_dash(p.mac().empty() ? "unresolved" : p.mac()),
                    or_dash(p.liveness()), never ? "-" : format_duration_ms(p.last_heard_ms_ago()) + " ago",
                    std::to_string(p.outbound_sas()) + "/" + std::to_string(p.inbound_sas()),
                    p.keepalive_rtt_us() == 0 ? "-" : format_rtt_us(p.keepalive_rtt_us()),
                    p.clock_known() ? std::to_string(p.clock_offset_ms()) + "ms" : "-",
                    std::to_string(p.tx_packets()) + "/" + std::to_string(p.rx_packets()),
                    std::to_string(p.tx_bytes()) + "/" + std::to_string(p.rx_bytes()),
                    or_dash(join(p.pod_cidrs(), ","))});
  }
  // RTT and CLOCK from keepalives (CLOCK: the peer's clock minus ours);
  // PKTS and BYTES: ESP sent/received through the peer's SAs.
  return render_table({"NAME", "TUNNEL", "MAC", "LIVENESS", "HEARD", "SAS(OUT/IN)", "RTT", "CLOCK", "PKTS(TX/RX)",
                       "BYTES(TX/RX)", "POD-CIDRS"},
                      rows);
}

std::string format_sas(const v1::ListSasResponse& r) {
  std::vector<std::vector<std::string>> rows;
  for (const v1::SaStatus& s : r.sas()) {
    char spi[16];
    std::snprintf(spi, sizeof(spi), "0x%08x", s.spi());
    const bool out = s.direction() == "outbound";
    rows.push_back({s.direction(), s.peer(), spi, algorithm_name(s.algorithm()),
                    out ? std::to_string(s.worker()) : "-",
                    out ? std::to_string(s.seq()) : std::to_string(s.window_top())});
  }
  return render_table({"DIRECTION", "PEER", "SPI", "ALGORITHM", "WORKER", "SEQ/WINDOW-TOP"}, rows);
}

std::string format_routes(const v1::ListRoutesResponse& r) {
  std::vector<std::vector<std::string>> rows;
  for (const v1::Route& route : r.routes()) rows.push_back({route.prefix(), route.next_hop()});
  return render_table({"PREFIX", "NEXT-HOP"}, rows);
}

std::string format_counters(const v1::GetCountersResponse& r) {
  std::vector<std::string> header{"COUNTER"};
  // Counter names in the order of the first block, then any others.
  std::vector<std::string> names;
  std::set<std::string> seen;
  for (const v1::CounterBlock& b : r.blocks()) {
    header.push_back(b.name());
    std::map<std::string, uint64_t> sorted(b.counters().begin(), b.counters().end());
    for (const auto& [name, value] : sorted) {
      if (seen.insert(name).second) names.push_back(name);
    }
    std::map<std::string, uint64_t> drops(b.drops().begin(), b.drops().end());
    for (const auto& [name, value] : drops) {
      if (seen.insert("drop." + name).second) names.push_back("drop." + name);
    }
  }
  std::vector<std::vector<std::string>> rows;
  for (const std::string& name : names) {
    std::vector<std::string> row{name};
    bool any = false;
    for (const v1::CounterBlock& b : r.blocks()) {
      uint64_t v = 0;
      if (name.rfind("drop.", 0) == 0) {
        auto it = b.drops().find(name.substr(5));
        if (it != b.drops().end()) v = it->second;
      } else {
        auto it = b.counters().find(name);
        if (it != b.counters().end()) v = it->second;
      }
      any = any || v != 0;
      row.push_back(std::to_string(v));
    }
    // Drops that never happened are noise here (`show drops --all` lists them).
    if (name.rfind("drop.", 0) == 0 && !any) continue;
    rows.push_back(row);
  }
  return render_table(header, rows);
}

std::string format_drops(const v1::GetDropsResponse& r, bool all) {
  std::vector<std::vector<std::string>> rows;
  for (const v1::DropReason& d : r.reasons()) {
    if (!all && d.count() == 0) continue;
    rows.push_back({d.name(), std::to_string(d.count()), d.help()});
  }
  if (rows.empty()) return "no drops\n";
  return render_table({"REASON", "COUNT", "MEANING"}, rows);
}

namespace {

// "10.96.0.10:80/TCP".
std::string frontend_text(const v1::ServiceFrontend& f) {
  std::string out = host_port(f.vip(), f.port());
  out += '/';
  out += protocol_name(f.protocol());
  return out;
}

}  // namespace

std::string format_services(const v1::ListServicesResponse& r) {
  if (r.services().empty()) return "no services\n";
  std::string out;
  for (const v1::ServiceStatus& s : r.services()) {
    const v1::ServiceFrontend& f = s.frontend();
    if (!out.empty()) out += "\n";
    out += or_dash(f.name());
    out += "  ";
    out += frontend_text(f);
    if (f.affinity_timeout_s() != 0) {
      out += "  affinity ClientIP ";
      out += std::to_string(f.affinity_timeout_s());
      out += 's';
    }
    out += "  table ";
    out += std::to_string(s.table_size());
    out += '\n';
    if (s.backends().empty()) {
      out += "  no backends\n";
      continue;
    }
    std::vector<std::vector<std::string>> rows;
    for (const v1::BackendStatus& b : s.backends()) {
      rows.push_back({host_port(b.backend().address(), b.backend().port()), or_dash(b.backend().node()),
                      or_dash(b.backend().target()), or_dash(b.state()), std::to_string(b.slots()),
                      std::to_string(b.connections()), std::to_string(b.failed_connects()),
                      std::to_string(b.retries_away()), std::to_string(b.active_flows())});
    }
    const std::string table = render_table(
        {"ADDRESS:PORT", "NODE", "TARGET", "STATE", "SLOTS", "CONNECTIONS", "FAILED", "RETRIED-AWAY", "FLOWS"}, rows);
    for (size_t at = 0; at < table.size();) {
      const size_t end = table.find('\n', at);
      out += "  ";
      out.append(table, at, end - at + 1);
      at = end + 1;
    }
  }
  return out;
}

std::string format_backends(const v1::ListServicesResponse& r) {
  if (r.services().empty()) return "no services\n";
  std::vector<std::vector<std::string>> rows;
  for (const v1::ServiceStatus& s : r.services()) {
    for (const v1::BackendStatus& b : s.backends()) {
      rows.push_back({or_dash(s.frontend().name()), frontend_text(s.frontend()),
                      host_port(b.backend().address(), b.backend().port()), or_dash(b.backend().node()),
                      b.selectable() ? "yes" : "no", std::to_string(b.active_flows()),
                      std::to_string(b.connections()), std::to_string(b.failed_connects()), or_dash(b.state())});
    }
  }
  return render_table(
      {"SERVICE", "FRONTEND", "BACKEND", "NODE", "SELECTABLE", "FLOWS", "CONNECTIONS", "FAILED", "STATE"}, rows);
}

std::string format_flows(const v1::ListFlowsResponse& r) {
  std::string out;
  if (!r.flows().empty()) {
    // Connections that flow logs keep count their traffic: two more
    // columns when any is listed (client to backend / backend to client).
    const bool counted = std::any_of(r.flows().begin(), r.flows().end(), [](const v1::Flow& f) { return f.logged(); });
    std::vector<std::vector<std::string>> rows;
    for (const v1::Flow& f : r.flows()) {
      rows.push_back({protocol_name(f.protocol()), or_dash(f.client()), or_dash(f.frontend()), or_dash(f.backend()),
                      or_dash(f.service()), or_dash(f.state()), format_duration_ms(f.idle_ms()),
                      format_duration_ms(f.expires_in_ms()), std::to_string(f.attempts())});
      if (counted) {
        rows.back().push_back(f.logged() ? std::to_string(f.packets_to_backend()) + "/" +
                                               std::to_string(f.packets_to_client())
                                         : "-");
        rows.back().push_back(f.logged() ? std::to_string(f.bytes_to_backend()) + "/" +
                                               std::to_string(f.bytes_to_client())
                                         : "-");
      }
    }
    std::vector<std::string> header{"PROTO", "CLIENT", "FRONTEND", "BACKEND", "SERVICE", "STATE", "IDLE", "EXPIRES",
                                    "ATTEMPTS"};
    if (counted) {
      header.push_back("PKTS(TO-B/TO-C)");
      header.push_back("BYTES(TO-B/TO-C)");
    }
    out = render_table(header, rows);
  }
  out += std::to_string(r.flows_size());
  out += " of ";
  out += std::to_string(r.total());
  out += " flows (capacity ";
  out += std::to_string(r.capacity());
  out += ")\n";
  return out;
}

std::string format_trace(const v1::TraceResponse& r) {
  std::string out;
  char line[96];
  for (const v1::TracedPacket& p : r.packets()) {
    std::snprintf(line, sizeof(line), "Packet %u (worker %u)%s\n", p.id(), p.worker(),
                  p.complete() ? "" : ", its last step not seen");
    out += line;
    for (const v1::TraceStepInfo& s : p.steps()) {
      std::snprintf(line, sizeof(line), "  %9.3f us  %-10s ", static_cast<double>(s.at_ns()) / 1000.0, s.step().c_str());
      out += line;
      out += s.detail();
      out += '\n';
    }
  }
  out += std::to_string(r.packets_size()) + " packet(s) traced";
  if (r.events_lost() != 0) out += "; " + std::to_string(r.events_lost()) + " step(s) lost (queue full)";
  out += '\n';
  return out;
}

std::string to_json(const google::protobuf::Message& m) {
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = true;
  options.always_print_primitive_fields = true;
  options.preserve_proto_field_names = true;
  std::string out;
  (void)google::protobuf::util::MessageToJsonString(m, &out, options);
  return out;
}

}  // namespace meshwire::control
