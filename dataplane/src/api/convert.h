// The control API's messages to and from the data plane's own types. Errors
// name the field as the API spells it ("peers[1].outbound[0].key: ...") and
// never show key bytes. Pure: any thread.
#pragma once

#include <meshwire/dp/config.h>
#include <meshwire/dp/result.h>

#include "dataplane.pb.h"

namespace meshwire::dp::api {

// Per-field parsing only (addresses, prefixes, algorithm, key and salt
// sizes); the rules between fields are check_routing()'s.
Result<RoutingState> routing_from_proto(const v1::State& state);

// The reverse, for tests and tools (SA keys included: never for a read call).
v1::State routing_to_proto(const RoutingState& routing);

}  // namespace meshwire::dp::api
