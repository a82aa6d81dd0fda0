#include "ctl/format.h"

#include <algorithm>
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
  out += "generation:       " + std::to_string(r.live_generation()) + "\n";
  out += "source:           " + or_dash(r.source()) + "\n";
  out += "applied_unix_ms:  " + std::to_string(r.applied_unix_ms()) + "\n";
  out += "workers:          " + std::to_string(r.workers()) + "\n";
  out += "tunnel_address:   " + or_dash(r.tunnel_address()) + "\n";
  out += "max_outbound_seq: " + std::to_string(r.max_outbound_seq()) + "\n";
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
                    std::to_string(i.tx_bytes()), or_dash(offloads)});
  }
  return render_table({"NAME", "ROLE", "PORT", "MAC", "MTU", "RX-PKTS", "RX-BYTES", "TX-PKTS", "TX-BYTES", "OFFLOADS"},
                      rows);
}

std::string format_peers(const v1::ListPeersResponse& r) {
  std::vector<std::vector<std::string>> rows;
  for (const v1::PeerStatus& p : r.peers()) {
    rows.push_back({p.name(), p.tunnel_address(), or_dash(p.mac().empty() ? "unresolved" : p.mac()),
                    std::to_string(p.outbound_sas()) + "/" + std::to_string(p.inbound_sas()),
                    or_dash(join(p.pod_cidrs(), ","))});
  }
  return render_table({"NAME", "TUNNEL", "MAC", "SAS(OUT/IN)", "POD-CIDRS"}, rows);
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
