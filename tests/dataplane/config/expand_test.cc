#include "config/expand.h"

#include <gtest/gtest.h>

namespace meshwire::dp {
namespace {

const Environment kEnv{{"NODE_NAME", "worker-3"}, {"HOST_IP", "192.0.2.7"}, {"EMPTY", ""}, {"A1_b", "x"}};

std::string expand(std::string_view text) {
  auto r = expand_variables(text, kEnv, "node.name");
  return r.ok() ? *r : "error: " + r.error();
}

TEST(ExpandTest, ReplacesVariablesAndKeepsTheRest) {
  EXPECT_EQ(expand("${NODE_NAME}"), "worker-3");
  EXPECT_EQ(expand("n-${NODE_NAME}-${HOST_IP}:4500"), "n-worker-3-192.0.2.7:4500");
  EXPECT_EQ(expand("${A1_b}${A1_b}"), "xx");
  EXPECT_EQ(expand("no variables"), "no variables");
}

TEST(ExpandTest, DollarDollarIsALiteralDollar) {
  EXPECT_EQ(expand("$${NODE_NAME}"), "${NODE_NAME}");
  EXPECT_EQ(expand("a$$b"), "a$b");
  EXPECT_EQ(expand("$$$${HOST_IP}"), "$${HOST_IP}");
  EXPECT_EQ(expand("$$${HOST_IP}"), "$192.0.2.7");
}

TEST(ExpandTest, ALoneDollarStays) {
  EXPECT_EQ(expand("cost $5"), "cost $5");
  EXPECT_EQ(expand("end$"), "end$");
  EXPECT_EQ(expand("$NODE_NAME"), "$NODE_NAME");  // only the braced form is a variable
}

TEST(ExpandTest, ErrorsNameTheFieldAndTheVariable) {
  EXPECT_EQ(expand("${MISSING}"), "error: node.name: environment variable MISSING is not set");
  EXPECT_EQ(expand("a-${EMPTY}"), "error: node.name: environment variable EMPTY is empty");
  EXPECT_EQ(expand("${NODE_NAME"), "error: node.name: '${' at character 1 has no closing '}' (write $$ for a literal $)");
  EXPECT_EQ(expand("${}"), "error: node.name: '${}' is not a variable name (letters, digits and _, not starting with a digit)");
  EXPECT_EQ(expand("${1X}"),
            "error: node.name: '${1X}' is not a variable name (letters, digits and _, not starting with a digit)");
  EXPECT_EQ(expand("${A-B}"),
            "error: node.name: '${A-B}' is not a variable name (letters, digits and _, not starting with a digit)");
}

TEST(ExpandTest, ValuesAreNotExpandedAgain) {
  const Environment env{{"V", "${OTHER}"}, {"OTHER", "no"}};
  EXPECT_EQ(*expand_variables("${V}", env, "x"), "${OTHER}");
}

TEST(ExpandTest, TreeExpandsEveryScalarValueWithItsPath) {
  YAML::Node doc = YAML::Load(R"(
eal: ["--file-prefix", "mw-${NODE_NAME}"]
node: {name: "${NODE_NAME}", tunnel_address: "${HOST_IP}"}
ports:
  - {name: a, device: "x"}
  - {name: b, device: "${NOPE}"}
)");
  YAML::Node copy = YAML::Clone(doc);
  doc.remove("ports");
  ASSERT_TRUE(expand_tree(doc, kEnv).ok());
  EXPECT_EQ(doc["eal"][1].Scalar(), "mw-worker-3");
  EXPECT_EQ(doc["node"]["name"].Scalar(), "worker-3");
  EXPECT_EQ(doc["node"]["tunnel_address"].Scalar(), "192.0.2.7");
  const Status s = expand_tree(copy, kEnv);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error(), "ports[1].device: environment variable NOPE is not set");
}

}  // namespace
}  // namespace meshwire::dp
