// Node objects as the API server and kubectl print them.
#include "kube/objects.h"

#include <gtest/gtest.h>

namespace meshwire::control {
namespace {

using nlohmann::json;

TEST(ParseNode, ReadsAddressesPodCidrsAndAnnotations) {
  const json j = json::parse(R"({"apiVersion":"v1","kind":"Node",
    "metadata":{"name":"node2","resourceVersion":"42","annotations":{"meshwire.io/public-key":"abc"}},
    "spec":{"podCIDR":"10.2.0.0/24","podCIDRs":["10.2.0.0/24","fd00:2::/64"]},
    "status":{"addresses":[{"type":"Hostname","address":"node2"},{"type":"InternalIP","address":"192.0.2.2"},
                           {"type":"InternalIP","address":"2001:db8::2"}]}})");
  auto n = parse_node(j);
  ASSERT_TRUE(n.ok()) << n.error();
  EXPECT_EQ(n->name, "node2");
  EXPECT_EQ(n->resource_version, "42");
  ASSERT_EQ(n->internal_ips.size(), 2u);
  EXPECT_EQ(dp::format_ip(n->internal_ips[1]), "2001:db8::2");
  ASSERT_EQ(n->pod_cidrs.size(), 2u);
  EXPECT_EQ(dp::format_prefix(n->pod_cidrs[1]), "fd00:2::/64");
  EXPECT_EQ(n->annotations.at("meshwire.io/public-key"), "abc");
}

TEST(ParseNode, OlderSinglePodCidrAndANodeNotReadyYet) {
  auto n = parse_node(json::parse(R"({"kind":"Node","metadata":{"name":"a"},"spec":{"podCIDR":"10.9.0.0/24"}})"));
  ASSERT_TRUE(n.ok()) << n.error();
  ASSERT_EQ(n->pod_cidrs.size(), 1u);
  EXPECT_TRUE(n->internal_ips.empty());
  EXPECT_TRUE(parse_node(json::parse(R"({"kind":"Node","metadata":{"name":"b"}})")).ok());
}

TEST(ParseNode, NamesTheObjectAndTheField) {
  const std::pair<const char*, const char*> cases[] = {
      {R"({"kind":"Node","metadata":{}})", "Node: metadata.name: missing"},
      {R"({"kind":"Node","metadata":{"name":"n","annotations":{"x":1}}})", "Node n: metadata.annotations.x: must be a string"},
      {R"({"kind":"Node","metadata":{"name":"n"},"status":{"addresses":[{"type":"InternalIP","address":"x"}]}})",
       "Node n: status.addresses[0].address: not an IP address: 'x'"},
      {R"({"kind":"Node","metadata":{"name":"n"},"spec":{"podCIDRs":["10.0.0.1/24"]}})", "Node n: spec.podCIDRs[0]: "},
      {R"({"kind":"Node","metadata":{"name":"n"},"spec":{"podCIDRs":"10.0.0.0/24"}})", "Node n: spec.podCIDRs: must be a list"},
  };
  for (const auto& [text, error] : cases) {
    auto n = parse_node(json::parse(text));
    ASSERT_FALSE(n.ok()) << text;
    EXPECT_EQ(n.error().rfind(error, 0), 0u) << n.error();
  }
}

TEST(ObjectsOf, ListsTypedListsAndSingleObjects) {
  auto list = objects_of(json::parse(R"({"kind":"List","items":[{"kind":"Node","metadata":{"name":"a"}},
                                                                  {"kind":"Service","metadata":{"name":"s"}}]})"));
  ASSERT_TRUE(list.ok());
  EXPECT_EQ(list->size(), 2u);
  auto typed = objects_of(json::parse(R"({"kind":"NodeList","items":[{"metadata":{"name":"a"}}]})"));
  ASSERT_TRUE(typed.ok());
  ASSERT_EQ(typed->size(), 1u);
  EXPECT_EQ((*typed)[0]["kind"], "Node");
  EXPECT_EQ(objects_of(json::parse(R"({"kind":"Node","metadata":{"name":"a"}})"))->size(), 1u);
  EXPECT_TRUE(objects_of(nullptr)->empty());
  EXPECT_EQ(objects_of(json::parse(R"({"metadata":{}})")).error(), "kind: missing");
  EXPECT_EQ(objects_of(json::parse(R"({"kind":"List","items":[{"metadata":{}}]})")).error(),
            "List.items[0].kind: missing");
}

TEST(ParseEndpointSlice, TargetRefIsNamespaceAndNameWithTheSlicesNamespaceByDefault) {
  auto e = parse_endpoint_slice(json::parse(R"({"kind":"EndpointSlice",
    "metadata":{"name":"web-a","namespace":"shop"},"addressType":"IPv4",
    "endpoints":[{"addresses":["10.1.0.5"],"targetRef":{"kind":"Pod","namespace":"shop","name":"web-7d9f"}},
                 {"addresses":["10.1.0.6"],"targetRef":{"kind":"Pod","name":"web-8e0a"}},
                 {"addresses":["10.1.0.7"]}]})"));
  ASSERT_TRUE(e.ok()) << e.error();
  ASSERT_EQ(e->endpoints.size(), 3u);
  EXPECT_EQ(e->endpoints[0].target, "shop/web-7d9f");
  EXPECT_EQ(e->endpoints[1].target, "shop/web-8e0a");
  EXPECT_EQ(e->endpoints[2].target, "");
  auto bad = parse_endpoint_slice(json::parse(R"({"kind":"EndpointSlice","metadata":{"name":"s","namespace":"shop"},
    "addressType":"IPv4","endpoints":[{"addresses":["10.1.0.5"],"targetRef":{"name":7}}]})"));
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error(), "EndpointSlice shop/s: endpoints[0].targetRef.name: must be a string");
  auto not_map = parse_endpoint_slice(json::parse(R"({"kind":"EndpointSlice","metadata":{"name":"s"},
    "addressType":"IPv4","endpoints":[{"addresses":["10.1.0.5"],"targetRef":"web"}]})"));
  ASSERT_FALSE(not_map.ok());
  EXPECT_EQ(not_map.error(), "EndpointSlice default/s: endpoints[0].targetRef: must be a map");
}

}  // namespace
}  // namespace meshwire::control
