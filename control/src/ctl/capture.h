// meshwirectl capture: streams a data plane's packet capture
// (the Capture call) into a local pcapng file.
#pragma once

#include <cstdint>
#include <string>

#include <CLI/CLI.hpp>

#include "dataplane.grpc.pb.h"

namespace meshwire::control {

struct CaptureOptions {
  std::string point;
  std::string port;
  std::string filter;
  uint64_t count = 0;
  double duration_s = 0;
  uint32_t snaplen = 0;
  uint32_t ring_size = 0;
  std::string file;  // "-": standard output
};

// Adds the subcommand and its options to app.
CLI::App* add_capture_command(CLI::App& app, CaptureOptions& o);

// Runs the capture until its count, its duration, or SIGINT/SIGTERM (the
// file stays a valid pcapng in each case: it is written in whole blocks).
// Exit status: 0 done, 1 the data plane could not (not running, another
// capture running, the file cannot be written), 2 a bad request (the data
// plane says which field, e.g. the filter with libpcap's message).
int run_capture(meshwire::v1::Dataplane::Stub& stub, const CaptureOptions& o, const std::string& socket);

}  // namespace meshwire::control
