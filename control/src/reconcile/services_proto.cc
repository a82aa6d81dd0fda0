#include "reconcile/services_proto.h"

namespace meshwire::control {
namespace {

v1::Protocol protocol_of(uint8_t p) {
  switch (p) {
    case kProtoTcp: return v1::TCP;
    case kProtoUdp: return v1::UDP;
    case kProtoSctp: return v1::SCTP;
    default: return v1::PROTOCOL_UNSPECIFIED;  // the parser lets no other through
  }
}

}  // namespace

std::string frontend_name(const ServiceFrontend& f) {
  std::string out = f.service;
  out += ':';
  out += f.port_name.empty() ? std::to_string(f.port) : f.port_name;
  return out;
}

size_t backend_count(const DesiredServices& d) {
  size_t n = 0;
  for (const ServiceFrontend& f : d.frontends) n += f.backends.size();
  return n;
}

void services_into(const DesiredServices& d, v1::ApplyServicesRequest* req) {
  auto* out = req->mutable_services();
  out->Clear();
  out->Reserve(static_cast<int>(d.frontends.size()));
  for (const ServiceFrontend& f : d.frontends) {
    v1::ServiceFrontend* p = out->Add();
    p->set_name(frontend_name(f));
    p->set_vip(dp::format_ip(f.vip));
    p->set_port(f.port);
    p->set_protocol(protocol_of(f.protocol));
    p->set_affinity_timeout_s(f.affinity_client_ip ? f.affinity_timeout_s : 0);
    p->mutable_backends()->Reserve(static_cast<int>(f.backends.size()));
    for (const ServiceBackend& b : f.backends) {
      v1::Backend* pb = p->add_backends();
      pb->set_address(dp::format_ip(b.address));
      pb->set_port(b.port);
      pb->set_weight(1);
      pb->set_use(b.use == BackendUse::kDraining ? v1::Backend::DRAINING : v1::Backend::ACTIVE);
      pb->set_reason(drain_reason_name(b.reason));
      pb->set_node(b.node);
      pb->set_target(b.target);
    }
  }
}

}  // namespace meshwire::control
