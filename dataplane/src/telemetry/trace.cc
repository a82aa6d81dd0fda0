#include "telemetry/trace.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cstdio>

#include <rte_mbuf_dyn.h>

#include "net/parse.h"

namespace meshwire::dp {

bool register_trace_marks() {
  if (g_trace_marks.flag != 0) return true;
  static const rte_mbuf_dynflag flag_desc = {"meshwire_trace", 0};
  static const rte_mbuf_dynfield field_desc = {"meshwire_trace_id", sizeof(uint32_t), alignof(uint32_t), 0};
  const int bit = rte_mbuf_dynflag_register(&flag_desc);
  if (bit < 0) return false;
  const int offset = rte_mbuf_dynfield_register(&field_desc);
  if (offset < 0) return false;
  g_trace_marks.id_offset = offset;
  g_trace_marks.flag = uint64_t{1} << bit;
  return true;
}

namespace {

inline uint32_t& trace_id(rte_mbuf* m) { return *RTE_MBUF_DYNFIELD(m, g_trace_marks.id_offset, uint32_t*); }

void push(WorkerTrace& t, rte_mbuf* m, TraceStep step, uint32_t a, uint32_t b, bool head_is_ip) {
  TraceEvent e;
  e.packet = trace_id(m);
  e.step = step;
  e.a = a;
  e.b = b;
  e.len = m->pkt_len;
  e.tsc = rte_get_tsc_cycles();
  e.head_is_ip = head_is_ip;
  e.head_len = static_cast<uint8_t>(std::min<uint32_t>(sizeof(e.head), m->data_len));
  std::memcpy(e.head, rte_pktmbuf_mtod(m, const uint8_t*), e.head_len);
  if (!t.queue.push(e)) t.lost.store(t.lost.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
}

}  // namespace

void trace_mark_burst(WorkerTrace& t, uint16_t port_index, rte_mbuf** pkts, uint16_t n) {
  uint32_t budget = t.budget.load(std::memory_order_relaxed);
  if (budget == 0 || g_trace_marks.flag == 0) return;
  const int32_t only = t.port.load(std::memory_order_relaxed);
  if (only >= 0 && only != port_index) return;
  uint16_t marked = 0;
  for (uint16_t i = 0; i < n && marked < budget; ++i, ++marked) {
    rte_mbuf* m = pkts[i];
    m->ol_flags |= g_trace_marks.flag;
    trace_id(m) = ++t.next_id;
    push(t, m, TraceStep::kRx, port_index, 0, false);
  }
  // The API thread may have re-armed meanwhile: only take off what was used.
  while (!t.budget.compare_exchange_weak(budget, budget > marked ? budget - marked : 0, std::memory_order_relaxed)) {
  }
}

void trace_step(WorkerTrace& t, rte_mbuf* m, TraceStep step, uint32_t a, uint32_t b, bool head_is_ip) {
  push(t, m, step, a, b, head_is_ip);
  if (trace_step_ends(step)) m->ol_flags &= ~g_trace_marks.flag;
}

std::string summarize_head(const uint8_t* head, size_t len, bool is_ip) {
  char buf[256];
  std::string out;
  size_t off = 0;
  uint16_t type = 0;
  if (!is_ip) {
    if (len < 14) return "(truncated)";
    std::snprintf(buf, sizeof(buf), "%02x:%02x:%02x:%02x:%02x:%02x > %02x:%02x:%02x:%02x:%02x:%02x ", head[6],
                  head[7], head[8], head[9], head[10], head[11], head[0], head[1], head[2], head[3], head[4], head[5]);
    out = buf;
    type = net::load_be16(head + 12);
    off = 14;
    if (type == 0x0806) return out + "ARP";
    if (type != 0x0800 && type != 0x86DD) {
      std::snprintf(buf, sizeof(buf), "ethertype 0x%04x", type);
      return out + buf;
    }
  } else {
    if (len < 1) return "(empty)";
    type = (head[0] >> 4) == 6 ? 0x86DD : 0x0800;
  }
  const uint8_t* ip = head + off;
  const size_t ip_len = len - off;
  uint8_t proto = 0;
  size_t l4 = 0;
  if (type == 0x0800) {
    if (ip_len < 20) return out + "IPv4 (truncated)";
    std::snprintf(buf, sizeof(buf), "IPv4 %u.%u.%u.%u > %u.%u.%u.%u ttl %u", ip[12], ip[13], ip[14], ip[15], ip[16],
                  ip[17], ip[18], ip[19], ip[8]);
    out += buf;
    proto = ip[9];
    l4 = (ip[0] & 0x0F) * 4u;
    if ((net::load_be16(ip + 6) & 0x1FFF) != 0) return out + " fragment";
  } else {
    if (ip_len < 40) return out + "IPv6 (truncated)";
    char src[64], dst[64];
    inet_ntop(AF_INET6, ip + 8, src, sizeof(src));
    inet_ntop(AF_INET6, ip + 24, dst, sizeof(dst));
    std::snprintf(buf, sizeof(buf), "IPv6 %s > %s hlim %u", src, dst, ip[7]);
    out += buf;
    proto = ip[6];
    l4 = 40;
  }
  const uint8_t* p = ip + l4;
  const size_t avail = ip_len > l4 ? ip_len - l4 : 0;
  switch (proto) {
    case 6:
      if (avail < 14) return out + " TCP";
      {
        const uint8_t f = p[13];
        std::string flags;
        if (f & 0x02) flags += 'S';
        if (f & 0x10) flags += '.';
        if (f & 0x01) flags += 'F';
        if (f & 0x04) flags += 'R';
        if (f & 0x08) flags += 'P';
        std::snprintf(buf, sizeof(buf), " TCP %u > %u [%s]", net::load_be16(p), net::load_be16(p + 2), flags.c_str());
      }
      return out + buf;
    case 17:
      if (avail < 8) return out + " UDP";
      std::snprintf(buf, sizeof(buf), " UDP %u > %u", net::load_be16(p), net::load_be16(p + 2));
      out += buf;
      if (net::load_be16(p + 2) == net::kEspInUdpPort && avail >= 16) {
        std::snprintf(buf, sizeof(buf), " ESP spi 0x%08x seq %u", net::load_be32(p + 8), net::load_be32(p + 12));
        out += buf;
      }
      return out;
    case 132: return out + " SCTP";
    case 1:
      if (avail < 2) return out + " ICMP";
      std::snprintf(buf, sizeof(buf), " ICMP type %u code %u", p[0], p[1]);
      return out + buf;
    case 58:
      if (avail < 2) return out + " ICMPv6";
      std::snprintf(buf, sizeof(buf), " ICMPv6 type %u code %u", p[0], p[1]);
      return out + buf;
    case 50: return out + " ESP";
  }
  std::snprintf(buf, sizeof(buf), " proto %u", proto);
  return out + buf;
}

}  // namespace meshwire::dp
