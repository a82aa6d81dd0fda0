// The Capture call of the control API (proto/meshwire/v1/dataplane.proto):
// starts a capture on the control thread, then drains the workers' rings
// on the calling gRPC thread, writing pcapng (capture/pcapng_writer.h) and
// streaming it, until the count, the duration, the caller going away or
// the node stopping; then withdraws the taps, waits for the workers' RCU
// grace period and frees the capture.
#pragma once

#include <atomic>

#include <grpcpp/grpcpp.h>

#include "dataplane.grpc.pb.h"

namespace meshwire::dp {

class Node;

// stopping: set when the API server shuts down (the call then ends
// without waiting for its count or duration).
grpc::Status serve_capture(Node& node, const std::atomic<bool>& stopping, grpc::ServerContext* ctx,
                           const meshwire::v1::CaptureRequest* req,
                           grpc::ServerWriter<meshwire::v1::CaptureChunk>* writer);

}  // namespace meshwire::dp
