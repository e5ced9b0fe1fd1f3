// Validation of both binaries' configs: every invalid setting stops start-up naming its key.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "agent/config/agent_config.h"
#include "aggregator/config/aggregator_config.h"

namespace nodewatch {
namespace {

using ::testing::HasSubstr;

agent::AgentConfig ValidAgent() {
  agent::AgentConfig c;
  c.aggregators = {"agg:7443"};
  c.tls_ca = "ca.crt";
  c.tls_cert = "node.crt";
  c.tls_key = "node.key";
  return c;
}

TEST(AgentConfig, DefaultsPlusEndpointAndTlsAreValid) {
  EXPECT_TRUE(agent::ValidateAgentConfig(ValidAgent()).ok());
}

TEST(AgentConfig, EachInvalidKeyIsNamed) {
  auto expect_key = [](agent::AgentConfig c, const std::string& key) {
    EXPECT_THAT(agent::ValidateAgentConfig(c).message(), HasSubstr("'" + key + "'")) << key;
  };
  auto c = ValidAgent();
  c.aggregators.clear();
  expect_key(c, "aggregator");
  c = ValidAgent();
  c.aggregators = {"no-port"};
  expect_key(c, "aggregator");
  c = ValidAgent();
  c.interval_ms = 5;
  expect_key(c, "interval");
  c = ValidAgent();
  c.spool_max_bytes = c.spool_segment_bytes;
  expect_key(c, "spool-max-bytes");
  c = ValidAgent();
  c.cloud = "oracle";
  expect_key(c, "cloud");
  c = ValidAgent();
  c.aws_poll_interval_ms = 5000;  // the notice window is 2 minutes: poll at least every second
  expect_key(c, "aws-poll-interval");
  c = ValidAgent();
  c.azure_poll_interval_ms = 5000;
  expect_key(c, "azure-poll-interval");
  c = ValidAgent();
  c.metadata_endpoint = "169.254.169.254";
  expect_key(c, "metadata-endpoint");
  c = ValidAgent();
  c.tls_cert.clear();
  expect_key(c, "tls-cert");
  c.insecure = true;
  EXPECT_TRUE(agent::ValidateAgentConfig(c).ok());
}

TEST(AgentConfig, YamlKeysMatchFlags) {
  agent::AgentConfig c;
  OptionSet o("a", "b");
  agent::RegisterAgentOptions(o, &c);
  ASSERT_TRUE(o.ApplyYaml("aggregator: [a:1, b:2]\ninterval: 2s\nspool-max-bytes: 64MiB\n"
                          "node-name: n1\ninsecure: true\n",
                          "agent.yaml")
                  .ok());
  EXPECT_EQ(c.aggregators.size(), 2u);
  EXPECT_EQ(c.interval_ms, 2000);
  EXPECT_EQ(c.spool_max_bytes, 64ull << 20);
  EXPECT_EQ(c.node_name, "n1");
  EXPECT_TRUE(agent::ValidateAgentConfig(c).ok());
}

TEST(AggregatorConfig, EachInvalidKeyIsNamed) {
  aggregator::AggregatorConfig base;
  base.insecure = true;
  EXPECT_TRUE(aggregator::ValidateAggregatorConfig(base).ok());
  auto c = base;
  c.listen = "7443";
  EXPECT_THAT(aggregator::ValidateAggregatorConfig(c).message(), HasSubstr("'listen'"));
  c = base;
  c.retention_ms = 1000;
  EXPECT_THAT(aggregator::ValidateAggregatorConfig(c).message(), HasSubstr("'retention'"));
  c = base;
  c.max_message_bytes = 10;
  EXPECT_THAT(aggregator::ValidateAggregatorConfig(c).message(), HasSubstr("'max-message-bytes'"));
  c = base;
  c.insecure = false;
  EXPECT_THAT(aggregator::ValidateAggregatorConfig(c).message(), HasSubstr("'tls-ca'"));
}

}  // namespace
}  // namespace nodewatch
