// The control API's messages to and from the data plane's own types. Errors
// name the field as the API spells it ("peers[1].outbound[0].key: ...") and
// never show key bytes. Pure: any thread.
#pragma once

#include <meshwire/dp/config.h>
#include <meshwire/dp/result.h>

#include "dataplane.pb.h"
#include "lb/services.h"

namespace meshwire::dp::api {

// Per-field parsing only (addresses, prefixes, algorithm, key and salt
// sizes); the rules between fields are check_routing()'s.
Result<RoutingState> routing_from_proto(const v1::State& state);

// The live routing state with a delta's changes: removed peers go, upserted
// ones replace the live peer of their name in its place or come after the
// others, the pod CIDRs are replaced when set_pod_cidrs. Per-field parsing
// of what the delta adds, and its own consistency (a name removed that is not
// live, upserted twice, or removed and upserted); the rules between fields
// are check_routing()'s. Errors name the field as the delta spells it
// ("upsert_peers[1].tunnel_address: ..."). Key bytes dropped on the way
// (replaced or removed peers) are wiped.
Result<RoutingState> apply_delta(RoutingState live, const v1::StateDelta& delta);

// Per-field parsing of services (addresses, ports, protocol, weight 0 -> 1,
// use); the rules between fields are check_services()'s. Errors name the
// field ("services[2].backends[0].address: ...").
Result<lb::ServicesConfig> services_from_proto(const google::protobuf::RepeatedPtrField<v1::ServiceFrontend>& in);
void frontend_to_proto(const lb::FrontendConfig& f, v1::ServiceFrontend* out, bool with_backends);
void backend_to_proto(const lb::BackendConfig& b, v1::Backend* out);

// The reverse, for tests and tools (SA keys included: never for a read call).
v1::State routing_to_proto(const RoutingState& routing);

}  // namespace meshwire::dp::api
