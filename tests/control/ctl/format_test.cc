// meshwirectl's output: the tables an operator reads and the JSON a script
// parses, from canned API answers.
#include "ctl/format.h"

#include <gtest/gtest.h>

namespace meshwire::control {
namespace {

TEST(RenderTable, AlignsColumnsAndRightAlignsNumbers) {
  const std::string out = render_table({"NAME", "COUNT", "NOTE"}, {{"a", "5", "x"}, {"longer", "12345", ""}});
  EXPECT_EQ(out,
            "NAME    COUNT  NOTE\n"
            "a           5  x\n"
            "longer  12345\n");
}

TEST(RenderTable, HeaderOnlyWhenNoRows) { EXPECT_EQ(render_table({"PREFIX", "NEXT-HOP"}, {}), "PREFIX  NEXT-HOP\n"); }

TEST(FormatSas, ShowsSpiInHexAndSeqOrWindowByDirection) {
  v1::ListSasResponse r;
  v1::SaStatus* out = r.add_sas();
  out->set_direction("outbound");
  out->set_peer("node2");
  out->set_spi(0x1201);
  out->set_algorithm(v1::AES_128_GCM);
  out->set_worker(0);
  out->set_seq(42);
  v1::SaStatus* in = r.add_sas();
  in->set_direction("inbound");
  in->set_peer("node2");
  in->set_spi(0x2101);
  in->set_algorithm(v1::AES_256_GCM);
  in->set_worker(-1);
  in->set_window_top(7);
  EXPECT_EQ(format_sas(r),
            "DIRECTION  PEER   SPI         ALGORITHM    WORKER  SEQ/WINDOW-TOP\n"
            "outbound   node2  0x00001201  aes-128-gcm       0              42\n"
            "inbound    node2  0x00002101  aes-256-gcm  -                    7\n");
}

TEST(FormatPeers, UnresolvedMacAndCidrList) {
  v1::ListPeersResponse r;
  v1::PeerStatus* p = r.add_peers();
  p->set_name("node2");
  p->set_tunnel_address("192.0.2.2");
  p->add_pod_cidrs("10.12.0.0/24");
  p->add_pod_cidrs("fd00:12::/64");
  p->set_outbound_sas(2);
  p->set_inbound_sas(4);
  const std::string out = format_peers(r);
  EXPECT_NE(out.find("unresolved"), std::string::npos) << out;
  EXPECT_NE(out.find("2/4"), std::string::npos) << out;
  EXPECT_NE(out.find("10.12.0.0/24,fd00:12::/64"), std::string::npos) << out;
}

TEST(FormatCounters, OneColumnPerBlockAndOnlyDropsThatHappened) {
  v1::GetCountersResponse r;
  for (const char* name : {"total", "worker0"}) {
    v1::CounterBlock* b = r.add_blocks();
    b->set_name(name);
    (*b->mutable_counters())["encrypted_packets"] = 10;
    (*b->mutable_drops())["replay"] = 3;
    (*b->mutable_drops())["no_route"] = 0;
  }
  const std::string out = format_counters(r);
  EXPECT_NE(out.find("COUNTER            total  worker0"), std::string::npos) << out;
  EXPECT_NE(out.find("drop.replay"), std::string::npos) << out;
  EXPECT_EQ(out.find("no_route"), std::string::npos) << out;
}

TEST(FormatDrops, HidesZeroCountsUnlessAll) {
  v1::GetDropsResponse r;
  v1::DropReason* d = r.add_reasons();
  d->set_name("replay");
  d->set_help("sequence number already seen or too old");
  d->set_count(0);
  EXPECT_EQ(format_drops(r, false), "no drops\n");
  EXPECT_NE(format_drops(r, true).find("replay"), std::string::npos);
  d->set_count(9);
  EXPECT_NE(format_drops(r, false).find("replay      9  sequence"), std::string::npos) << format_drops(r, false);
}

TEST(ToJson, UsesProtoFieldNamesAndKeepsZeroValues) {
  v1::GetGenerationResponse r;
  r.set_live_generation(0);
  r.set_source("config");
  const std::string json = to_json(r);
  EXPECT_NE(json.find("\"live_generation\": \"0\""), std::string::npos) << json;
  EXPECT_NE(json.find("\"source\": \"config\""), std::string::npos) << json;
}

}  // namespace
}  // namespace meshwire::control
