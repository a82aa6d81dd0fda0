// The generator's frames: valid headers and checksums (checked with the data
// plane's own parser and an independent checksum over the whole segment),
// probes that read back, sizes as RFC 2544 counts them; and the JSON
// configuration's errors naming their field.
#include "gen/traffic.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>

#include "gen/generator_config.h"
#include "net/checksum.h"
#include "net/parse.h"

namespace meshwire::perf {
namespace {

FlowSet flow_set(const char* src, const char* dst, L4Proto l4) {
  FlowSet s{};
  const uint8_t smac[6] = {2, 0, 0, 0, 0, 1}, dmac[6] = {2, 0, 0, 0, 0, 2};
  std::memcpy(s.src_mac, smac, 6);
  std::memcpy(s.dst_mac, dmac, 6);
  s.src = *dp::parse_ip_address(src);
  s.dst = *dp::parse_ip_address(dst);
  s.src_count = 4;
  s.dst_count = 3;
  s.flows = 100;
  s.l4 = l4;
  return s;
}

TEST(PerfTraffic, FlowsCycleOverAddressesAndPorts) {
  const FlowSet s = flow_set("10.11.0.254", "10.12.0.10", L4Proto::kUdp);
  const Flow f0 = make_flow(s, 0), f1 = make_flow(s, 1), f2 = make_flow(s, 2), f5 = make_flow(s, 5);
  EXPECT_EQ(dp::format_ip(f0.src), "10.11.0.254");
  EXPECT_EQ(dp::format_ip(f1.src), "10.11.0.255");
  EXPECT_EQ(dp::format_ip(f2.src), "10.11.1.0");  // carries into the next byte
  EXPECT_EQ(dp::format_ip(f5.src), "10.11.0.255");
  EXPECT_EQ(dp::format_ip(f5.dst), "10.12.0.11");  // 5 / 4 = 1
  EXPECT_NE(f0.sport, f1.sport);
  const FlowSet s6 = flow_set("fd00:11::ff", "fd00:12::10", L4Proto::kTcp);
  EXPECT_EQ(dp::format_ip(make_flow(s6, 1).src), "fd00:11::100");
}

TEST(PerfTraffic, SizesFollowRfc2544AndGrowToFitTheProbe) {
  EXPECT_EQ(effective_frame_size(64, 4, L4Proto::kUdp), 64);   // 14 + 20 + 8 + 16 + 4 = 62
  EXPECT_EQ(effective_frame_size(64, 4, L4Proto::kTcp), 74);   // 14 + 20 + 20 + 16 + 4
  EXPECT_EQ(effective_frame_size(64, 6, L4Proto::kUdp), 82);   // 14 + 40 + 8 + 16 + 4
  EXPECT_EQ(effective_frame_size(1400, 6, L4Proto::kTcp), 1400);
  EXPECT_EQ(effective_frame_size(9000, 4, L4Proto::kUdp), kMaxFrameSize);
  int n64 = 0, n576 = 0, n1400 = 0;
  for (uint16_t s : kImixPattern) {
    n64 += s == 64;
    n576 += s == 576;
    n1400 += s == 1400;
  }
  EXPECT_EQ(n64, 7);
  EXPECT_EQ(n576, 4);
  EXPECT_EQ(n1400, 1);
}

struct Case {
  const char* src;
  const char* dst;
  L4Proto l4;
  uint16_t size;
};

class PerfTemplate : public ::testing::TestWithParam<Case> {};

TEST_P(PerfTemplate, FrameParsesWithValidChecksumsAndItsProbeReadsBack) {
  const Case c = GetParam();
  const Flow flow = make_flow(flow_set(c.src, c.dst, c.l4), 7);
  const uint16_t size = effective_frame_size(c.size, flow.src.family, c.l4);
  Template t;
  build_template(flow, size, &t);
  ASSERT_EQ(t.len, size - kFcsLen);

  uint8_t frame[kMaxFrameSize];
  std::memcpy(frame, t.bytes.data(), t.len);
  const Probe sent{kProbeMagic, 42, 0x0123'4567'89ab'cdefull};
  stamp_probe(frame, t, sent);

  dp::net::PacketInfo info;
  ASSERT_EQ(dp::net::parse_frame(frame, t.len, &info), dp::net::ParseResult::kOk);
  ASSERT_TRUE(info.has_l4);
  EXPECT_EQ(info.l3_offset + info.l3_len, t.len);
  EXPECT_EQ(info.l4_proto, c.l4 == L4Proto::kUdp ? dp::net::kProtoUdp : dp::net::kProtoTcp);
  const uint8_t* ip = frame + info.l3_offset;
  const uint8_t* l4 = frame + info.l4_offset;
  if (flow.src.is_v4()) {
    EXPECT_EQ(dp::net::ipv4_header_checksum(ip, 20), 0);
    EXPECT_EQ(dp::net::l4_checksum_v4(ip, l4, info.l4_len, info.l4_proto), 0);
  } else {
    EXPECT_EQ(dp::net::l4_checksum_v6(ip, l4, info.l4_len, info.l4_proto), 0);
  }

  Probe got{};
  ASSERT_TRUE(read_probe_frame(frame, t.len, &got));
  EXPECT_EQ(got.trial, 42u);
  EXPECT_EQ(got.tsc, sent.tsc);
  ASSERT_TRUE(read_probe_ip(frame + dp::net::kEtherHdrLen, t.len - dp::net::kEtherHdrLen, &got));
  EXPECT_EQ(got.tsc, sent.tsc);

  // A second stamp (another packet of the same template) keeps checksums right.
  stamp_probe(frame, t, Probe{kProbeMagic, 43, 0xffff'ffff'ffff'ffffull});
  if (flow.src.is_v4()) {
    EXPECT_EQ(dp::net::l4_checksum_v4(ip, l4, info.l4_len, info.l4_proto), 0);
  } else {
    EXPECT_EQ(dp::net::l4_checksum_v6(ip, l4, info.l4_len, info.l4_proto), 0);
  }
  // One flipped payload byte is not a probe any more if it hits the magic.
  frame[t.probe_offset] ^= 1;
  EXPECT_FALSE(read_probe_frame(frame, t.len, &got));
}

INSTANTIATE_TEST_SUITE_P(Frames, PerfTemplate,
                         ::testing::Values(Case{"10.11.0.1", "10.12.0.1", L4Proto::kUdp, 64},
                                           Case{"10.11.0.1", "10.12.0.1", L4Proto::kTcp, 64},
                                           Case{"10.11.0.1", "10.12.0.1", L4Proto::kUdp, 1400},
                                           Case{"fd00:11::1", "fd00:12::1", L4Proto::kUdp, 64},
                                           Case{"fd00:11::1", "fd00:12::1", L4Proto::kTcp, 577},
                                           Case{"fd00:11::1", "fd00:12::1", L4Proto::kUdp, 1518}));

TEST(PerfTraffic, TruncatedOrForeignFramesHaveNoProbe) {
  const Flow flow = make_flow(flow_set("10.11.0.1", "10.12.0.1", L4Proto::kUdp), 0);
  Template t;
  build_template(flow, 64, &t);
  uint8_t frame[kMaxFrameSize];
  std::memcpy(frame, t.bytes.data(), t.len);
  stamp_probe(frame, t, Probe{kProbeMagic, 1, 2});
  Probe got;
  EXPECT_FALSE(read_probe_frame(frame, t.probe_offset + 8, &got));  // IP length runs past the buffer
  frame[dp::net::kEtherHdrLen + 9] = dp::net::kProtoIcmp;
  EXPECT_FALSE(read_probe_frame(frame, t.len, &got));
}

TEST(PerfConfig, ErrorsNameTheField) {
  const auto base = R"({"eal": ["--no-huge"],
    "ports": [{"name": "pod", "device": "net_null0"}, {"name": "fabric", "device": "net_null1"}],
    "traffic": [{"name": "enc", "tx_port": "pod", "rx_port": "fabric", "dst_mac": "02:00:00:00:00:01",
                 "src": "10.11.0.1", "dst": "10.12.0.1", "flows": 64,
                 "sink": {"sas": [{"spi": 4660, "key": "000102030405060708090a0b0c0d0e0f", "salt": "01020304"}]}}]})";
  auto ok = parse_generator_config(nlohmann::json::parse(base));
  ASSERT_TRUE(ok) << ok.error();
  EXPECT_EQ(ok->traffic[0].rx_port, 1);
  EXPECT_EQ(ok->traffic[0].sample_every, 16u);

  const auto error_of = [&](const char* path, nlohmann::json value) {
    auto doc = nlohmann::json::parse(base);
    doc[nlohmann::json::json_pointer(path)] = value;
    auto r = parse_generator_config(doc);
    return r ? std::string("accepted") : r.error();
  };
  EXPECT_EQ(error_of("/traffic/0/rx_port", "nope"), "traffic[0].rx_port: no port named 'nope'");
  EXPECT_EQ(error_of("/traffic/0/dst_mac", "02:00"),
            "traffic[0].dst_mac: '02:00' is not a MAC address like 02:00:00:00:00:01");
  EXPECT_EQ(error_of("/traffic/0/dst", "fd00::1"), "traffic[0].dst: must be of the same family as src");
  EXPECT_EQ(error_of("/traffic/0/flows", 0), "traffic[0].flows: must be in 1..65536, got 0");
  EXPECT_NE(error_of("/traffic/0/sink/sas/0/key", "0011").find("traffic[0].sink.sas[0].key: "), std::string::npos);
  EXPECT_EQ(error_of("/traffic/0/l4", "sctp"), "traffic[0].l4: must be udp or tcp, got 'sctp'");
  EXPECT_EQ(error_of("/ports/1/name", "pod"), "ports[1].name: 'pod' is used twice");
  EXPECT_EQ(error_of("/ports", nlohmann::json::array()), "ports: must be a non-empty list");
}

TEST(PerfConfig, TrialRequestsAreChecked) {
  std::vector<Traffic> traffic(1);
  traffic[0].name = "enc";
  auto r = parse_trial_request(nlohmann::json::parse(R"({"traffic":"enc","frame_size":"imix","rate_pps":1e6})"),
                               traffic);
  ASSERT_TRUE(r) << r.error();
  EXPECT_EQ(r->frame_size, 0);
  EXPECT_EQ(r->rate_pps, 1e6);
  EXPECT_EQ(r->duration_s, 1.0);
  auto bad = parse_trial_request(nlohmann::json::parse(R"({"traffic":"enc","frame_size":32})"), traffic);
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error(), "trial.frame_size: must be in 64..1518, got 32");
  auto unknown = parse_trial_request(nlohmann::json::parse(R"({"traffic":"dec"})"), traffic);
  ASSERT_FALSE(unknown);
  EXPECT_EQ(unknown.error(), "trial.traffic: no traffic named 'dec'");
  auto rate = parse_trial_request(nlohmann::json::parse(R"({"traffic":"enc","rate_pps":-1})"), traffic);
  ASSERT_FALSE(rate);
  EXPECT_NE(rate.error().find("trial.rate_pps: must be in"), std::string::npos);
}

}  // namespace
}  // namespace meshwire::perf
