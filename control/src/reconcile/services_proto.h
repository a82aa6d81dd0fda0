// The desired services (reconcile/services.h) as the data plane's
// ApplyServices takes them. Pure: any thread.
#pragma once

#include <string>

#include "dataplane.pb.h"
#include "reconcile/services.h"

namespace meshwire::control {

// "namespace/name:port-name", or "namespace/name:80" when the Service port
// has no name: the frontend's name in the API and in meshwirectl.
std::string frontend_name(const ServiceFrontend& f);

// Replaces req's services with d's frontends, in d's order (by Service,
// VIP, protocol, port; backends by address and port): the same desired set
// gives the same request, byte for byte. Leaves generation and force as
// they are. Backends get weight 1; affinity_timeout_s is 0 without
// sessionAffinity ClientIP.
void services_into(const DesiredServices& d, v1::ApplyServicesRequest* req);

// Backends in all of d's frontends.
size_t backend_count(const DesiredServices& d);

}  // namespace meshwire::control
