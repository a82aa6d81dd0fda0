// The data plane's state as Prometheus metrics: read through its control
// API (the calls meshwirectl makes), rendered by render_dataplane(). What the
// node's /metrics serves (meshwire-controller --metrics-listen), next to the
// controller's own.
#pragma once

#include <chrono>
#include <cstddef>
#include <string>

#include <meshwire/dp/result.h>

#include "dataplane.grpc.pb.h"
#include "metrics/exposition.h"

namespace meshwire::ctl::metrics {

struct DataplaneSnapshot {
  meshwire::v1::GetGenerationResponse generation;
  meshwire::v1::ListInterfacesResponse interfaces;
  meshwire::v1::GetCountersResponse counters;  // the total block
  meshwire::v1::GetDropsResponse drops;
  meshwire::v1::ListPeersResponse peers;
  meshwire::v1::ListSasResponse sas;
  meshwire::v1::ListServicesResponse services;
};

// One call after the other, each within `deadline`; the error names the call
// that failed and why.
dp::Result<DataplaneSnapshot> scrape_dataplane(meshwire::v1::Dataplane::Stub& stub,
                                               std::chrono::milliseconds deadline);

struct RenderOptions {
  // Per-backend series for at most this many backends (those with the most
  // connections; ties by name): the label cardinality stays bounded however
  // large the cluster. The per-service sums cover every backend.
  size_t top_backends = 100;
};

// Appends the data plane's families to out.
void render_dataplane(Exposition& out, const DataplaneSnapshot& s, const RenderOptions& options = {});

}  // namespace meshwire::ctl::metrics
