// What meshwirectl prints for each read call: a human table (the default)
// or JSON (--json, protobuf's canonical mapping with the .proto field
// names). Pure functions of the API's messages, so they are tested without
// a data plane.
#pragma once

#include <string>
#include <vector>

#include "dataplane.pb.h"

namespace meshwire::control {

// Left-aligned columns separated by two spaces; numeric-looking cells
// right-aligned. Every row has the header's column count.
std::string render_table(const std::vector<std::string>& header, const std::vector<std::vector<std::string>>& rows);

std::string format_generation(const v1::GetGenerationResponse& r);
std::string format_interfaces(const v1::ListInterfacesResponse& r);
std::string format_peers(const v1::ListPeersResponse& r);
std::string format_sas(const v1::ListSasResponse& r);
std::string format_routes(const v1::ListRoutesResponse& r);
// One column per block (total first, then workers and control when asked for).
std::string format_counters(const v1::GetCountersResponse& r);
// Reasons with a count above zero unless all; a line saying so when none.
std::string format_drops(const v1::GetDropsResponse& r, bool all);

// Per frontend, in the data plane's order, a line "NAME  VIP:PORT/PROTO
// [affinity ClientIP Ns]  table N" and its backends' table (indented), a
// blank line between frontends; "no services" when there is none.
std::string format_services(const v1::ListServicesResponse& r);
// Every backend of every frontend, one flat table for scripts and grep: the
// state (which may hold spaces) is the last column.
std::string format_backends(const v1::ListServicesResponse& r);
// The flows, then "N of TOTAL flows (capacity C)".
std::string format_flows(const v1::ListFlowsResponse& r);
std::string format_trace(const v1::TraceResponse& r);

// The message as JSON (field names as in the .proto, zero values included),
// ending with a newline.
std::string to_json(const google::protobuf::Message& m);

std::string algorithm_name(v1::Algorithm a);
// "TCP", "UDP", "SCTP" ("-" when unspecified).
std::string protocol_name(v1::Protocol p);
// "10.0.0.1:80", "[fd00::1]:80".
std::string host_port(const std::string& address, uint32_t port);
// A duration for people: "850ms", "12.3s", "7m12s", "2h05m".
std::string format_duration_ms(uint64_t ms);

}  // namespace meshwire::control
