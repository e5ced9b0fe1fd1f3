// End to end, per cloud: metadata simulator → nodewatch-agent → nodewatch-aggregator, real
// processes over mTLS. A notice armed in the simulator is stored exactly once with its provider,
// kind, cloud event id and deadline — also when the agent is killed right after detection and
// when the aggregator is down for 30 s. Faults from the metadata service never make a notice.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "agent/collectors/cloud/http_client.h"
#include "common/clock.h"
#include "tests/integration/harness.h"
#include "tests/support/inprocess_aggregator.h"
#include "tests/support/metadata_simulator.h"

namespace nodewatch::testing {
namespace {

using nodewatch::v1::InterruptionNotice;
using nodewatch::v1::Record;

std::vector<InterruptionNotice> Notices(Cluster& c, const std::string& node) {
  std::vector<InterruptionNotice> out;
  for (const auto& r : c.History(node)) {
    if (r.has_interruption()) out.push_back(r.interruption());
  }
  return out;
}

uint64_t StoredInterruptions(Cluster& c, const std::string& node) {
  auto n = c.GetNode(node);
  return n ? n->interruptions() : 0;
}

struct CloudCase {
  std::string cloud;
  std::function<void(MetadataSimulator&)> arm_first;
  nodewatch::v1::InterruptionKind first_kind;
  std::string first_event_prefix;
  std::function<void(MetadataSimulator&)> arm_second;  // while the aggregator is down
};

class InterruptionE2E : public ::testing::TestWithParam<CloudCase> {};

TEST_P(InterruptionE2E, NoticeIsStoredExactlyOnceThroughAgentAndAggregatorRestarts) {
  const CloudCase& tc = GetParam();
  Cluster c("e2e-" + tc.cloud);
  MetadataSimulator sim({.cloud = tc.cloud});
  ASSERT_TRUE(sim.Start());
  c.StartAggregator();
  const std::string node = "spot-" + tc.cloud;
  const std::vector<std::string> agent_args = {"--cloud", tc.cloud,     "--metadata-endpoint",
                                               sim.url(), "--interval", "1s"};
  c.StartAgent(node, agent_args);
  ASSERT_TRUE(Cluster::WaitFor([&] { return c.GetNode(node).has_value(); }, 15'000));
  auto info = c.GetNode(node)->info();
  EXPECT_EQ(info.provider(), tc.cloud);
  EXPECT_FALSE(info.instance_id().empty());

  // 1. Detection, then the agent is killed right after it spooled the notice.
  const int64_t armed_ms = nodewatch::SystemClock::Get().NowUnixMs();
  tc.arm_first(sim);
  ASSERT_TRUE(Cluster::WaitFor(
      [&] { return c.agent(node).log().find("interruption notice:") != std::string::npos; },
      10'000))
      << c.agent(node).log();
  c.agent(node).Stop(SIGKILL);
  c.StartAgent(node, agent_args);  // re-reads the same notice from the metadata service
  ASSERT_TRUE(Cluster::WaitFor([&] { return StoredInterruptions(c, node) >= 1; }, 15'000));
  std::this_thread::sleep_for(std::chrono::seconds(3));  // time for a duplicate to show up
  auto notices = Notices(c, node);
  ASSERT_EQ(notices.size(), 1u) << "the notice must be stored exactly once";
  EXPECT_EQ(notices[0].provider(), tc.cloud);
  EXPECT_EQ(notices[0].kind(), tc.first_kind);
  EXPECT_THAT(notices[0].event_id(), ::testing::StartsWith(tc.first_event_prefix));
  EXPECT_GT(notices[0].deadline_unix_ms(), armed_ms - 1000);
  EXPECT_EQ(notices[0].state(), nodewatch::v1::NOTICE_STATE_ACTIVE);
  EXPECT_FALSE(notices[0].raw_payload().empty());

  // 2. The aggregator is down for 30 s while a second notice arrives: it is spooled, then
  // delivered once the aggregator is back, exactly once.
  c.KillAggregator(SIGKILL);
  tc.arm_second(sim);
  std::this_thread::sleep_for(std::chrono::seconds(30));
  c.StartAggregator();
  ASSERT_TRUE(Cluster::WaitFor([&] { return StoredInterruptions(c, node) >= 2; }, 30'000))
      << c.agent(node).log();
  std::this_thread::sleep_for(std::chrono::seconds(2));
  EXPECT_EQ(Notices(c, node).size(), 2u);
  EXPECT_EQ(c.GetNode(node)->lost_records(), 0u);
  sim.Stop();
}

const int64_t kHour = 3'600'000;

INSTANTIATE_TEST_SUITE_P(
    Clouds, InterruptionE2E,
    ::testing::Values(CloudCase{"aws", [](MetadataSimulator& s) { s.ArmAwsSpot("terminate"); },
                                nodewatch::v1::INTERRUPTION_KIND_SPOT_TERMINATE, "spot-terminate-",
                                [](MetadataSimulator& s) {
                                  s.SetAwsScheduledEvent(
                                      "instance-event-0d59937288b749b32", "system-reboot", "active",
                                      nodewatch::SystemClock::Get().NowUnixMs() + kHour, 0);
                                }},
                      CloudCase{"gcp", [](MetadataSimulator& s) { s.SetGcpPreempted(true); },
                                nodewatch::v1::INTERRUPTION_KIND_SPOT_TERMINATE, "preempted-",
                                [](MetadataSimulator& s) {
                                  s.SetGcpMaintenance("TERMINATE_ON_HOST_MAINTENANCE");
                                }},
                      CloudCase{
                          "azure",
                          [](MetadataSimulator& s) {
                            s.AddAzureEvent("F020BA2E-3BC0-4C40-A10B-86575A9EABD5", "Preempt",
                                            {"nodewatch-vmss_3"},
                                            nodewatch::SystemClock::Get().NowUnixMs() + 30'000);
                          },
                          nodewatch::v1::INTERRUPTION_KIND_SPOT_TERMINATE, "F020BA2E",
                          [](MetadataSimulator& s) {
                            s.AddAzureEvent("C7061BAC-AFDC-4513-B24B-AA5F13A16123", "Freeze",
                                            {"nodewatch-vmss_3"},
                                            nodewatch::SystemClock::Get().NowUnixMs() + 900'000);
                          }}),
    [](const ::testing::TestParamInfo<CloudCase>& info) { return info.param.cloud; });

// Misbehaving metadata services: the agent logs and counts, never crashes, never invents a notice,
// and still sees the real notice afterwards.
TEST(InterruptionFaults, BadMetadataIsCountedAndNeverANotice) {
  Cluster c("e2e-faults");
  c.StartAggregator();
  struct Setup {
    std::string cloud;
    std::function<void(MetadataSimulator&)> break_it;
    std::string counter;
    std::function<void(MetadataSimulator&)> arm;
  };
  std::vector<Setup> setups = {
      {"aws",
       [](MetadataSimulator& s) {
         s.SetAwsTokenMaxTtl(2);  // tokens expire under the agent's feet
         s.InjectFault("/latest/meta-data/spot", MetadataSimulator::Fault::k401, 3);
         s.InjectFault("/latest/meta-data/spot", MetadataSimulator::Fault::kMalformed, 5);
         s.InjectFault("/latest/meta-data/events/recommendations", MetadataSimulator::Fault::k500,
                       5);
       },
       "nodewatch_agent_metadata_malformed_total",
       [](MetadataSimulator& s) { s.ArmAwsSpot("stop"); }},
      {"gcp",
       [](MetadataSimulator& s) {
         s.InjectFault("/computeMetadata/v1/instance/preempted", MetadataSimulator::Fault::kCut, 3);
         s.InjectFault("/computeMetadata/v1/instance/maintenance-event",
                       MetadataSimulator::Fault::kMalformed, 2);
       },
       "nodewatch_agent_metadata_request_errors_total",
       [](MetadataSimulator& s) { s.SetGcpPreempted(true); }},
      {"azure",
       [](MetadataSimulator& s) {
         s.AddAzureEvent("NOT-OURS", "Preempt", {"nodewatch-vmss_7", "other-vm"},
                         nodewatch::SystemClock::Get().NowUnixMs() + 30'000);
         s.InjectFault("/metadata/scheduledevents", MetadataSimulator::Fault::kMalformed, 2);
       },
       "nodewatch_agent_foreign_events_total",
       [](MetadataSimulator& s) {
         s.AddAzureEvent("OURS", "Terminate", {"nodewatch-vmss_3"},
                         nodewatch::SystemClock::Get().NowUnixMs() + 600'000);
       }},
  };
  for (auto& setup : setups) {
    SCOPED_TRACE(setup.cloud);
    MetadataSimulator sim({.cloud = setup.cloud});
    ASSERT_TRUE(sim.Start());
    setup.break_it(sim);
    const std::string node = "faulty-" + setup.cloud;
    const int metrics_port = FreePort();
    c.StartAgent(node, {"--cloud", setup.cloud, "--metadata-endpoint", sim.url(), "--interval",
                        "1s", "--metrics-listen", "127.0.0.1:" + std::to_string(metrics_port)});
    std::this_thread::sleep_for(std::chrono::seconds(4));
    ASSERT_TRUE(c.agent(node).running()) << c.agent(node).log();
    EXPECT_EQ(StoredInterruptions(c, node), 0u) << "no false notice";
    EXPECT_GT(AgentMetric(metrics_port, setup.counter), 0) << setup.counter;
    EXPECT_EQ(AgentMetric(metrics_port, "nodewatch_agent_notices_total"), 0);
    setup.arm(sim);
    EXPECT_TRUE(Cluster::WaitFor([&] { return StoredInterruptions(c, node) == 1; }, 10'000))
        << c.agent(node).log();
    if (setup.cloud == "aws") {
      EXPECT_GT(AgentMetric(metrics_port, "nodewatch_agent_metadata_unauthorized_total") +
                    AgentMetric(metrics_port, "nodewatch_agent_metadata_token_refreshes_total"),
                1);
    }
    c.agent(node).Stop(SIGTERM);
    sim.Stop();
  }
}

// The aggregator tells the agent to acknowledge an Azure event; the agent POSTs StartRequests.
// (Remediation sends this command once the drain is over.)
TEST(InterruptionAzureAck, ACommandDownTheStreamMakesTheAgentAcknowledge) {
  const std::string dir = MakeTempDir("e2e-azure-ack");
  TestPki pki(dir + "/pki");
  auto server = pki.Issue(
      "aggregator", {.cn = "nodewatch-aggregator", .dns = {"localhost"}, .ips = {"127.0.0.1"}});
  auto agg = StartInProcessAggregator(dir, pki, server);
  ASSERT_TRUE(agg.ok()) << agg.status();
  MetadataSimulator sim({.cloud = "azure"});
  ASSERT_TRUE(sim.Start());
  const std::string node = "azure-node";
  auto cert = pki.Issue(node, {.cn = "system:node:" + node, .orgs = {"system:nodes"}});
  Subprocess agent(
      BinaryPath("nodewatch-agent"),
      {"--node-name", node, "--aggregator", "127.0.0.1:" + std::to_string((*agg)->ingest_port()),
       "--spool-dir", dir + "/spool", "--cloud", "azure", "--metadata-endpoint", sim.url(),
       "--tls-ca", pki.ca_file(), "--tls-cert", cert.cert, "--tls-key", cert.key},
      dir + "/agent.log");
  agent.Start();
  const std::string event = "F020BA2E-3BC0-4C40-A10B-86575A9EABD5";
  sim.AddAzureEvent(event, "Redeploy", {"nodewatch-vmss_3"},
                    nodewatch::SystemClock::Get().NowUnixMs() + 600'000);
  ASSERT_TRUE(Cluster::WaitFor(
      [&] {
        auto n = (*agg)->engine().GetNode(node);
        return n && n->interruptions() == 1;
      },
      15'000))
      << agent.log();
  nodewatch::v1::Command command;
  command.set_id("drain-done-1");
  command.mutable_acknowledge_scheduled_event()->set_provider("azure");
  command.mutable_acknowledge_scheduled_event()->set_event_id(event);
  EXPECT_EQ((*agg)->SendCommand("no-such-node", command), 0);
  EXPECT_EQ((*agg)->SendCommand(node, command), 1);
  EXPECT_TRUE(Cluster::WaitFor([&] { return !sim.AzureStartRequests().empty(); }, 10'000))
      << agent.log();
  EXPECT_THAT(sim.AzureStartRequests(), ::testing::ElementsAre(event));
  // The stream keeps working after the command: a later notice still arrives.
  sim.AddAzureEvent("second", "Reboot", {"nodewatch-vmss_3"},
                    nodewatch::SystemClock::Get().NowUnixMs() + 600'000);
  EXPECT_TRUE(Cluster::WaitFor([&] { return (*agg)->engine().GetNode(node)->interruptions() == 2; },
                               10'000));
  agent.Stop(SIGTERM);
  sim.Stop();
  (*agg)->Shutdown();
  std::filesystem::remove_all(dir);
}

TEST(InterruptionCli, HistoryShowsTheNotice) {
  Cluster c("e2e-cli");
  MetadataSimulator sim({.cloud = "aws"});
  ASSERT_TRUE(sim.Start());
  c.StartAggregator();
  c.StartAgent("cli-node", {"--cloud", "aws", "--metadata-endpoint", sim.url()});
  sim.ArmAwsSpot("terminate");
  ASSERT_TRUE(Cluster::WaitFor([&] { return StoredInterruptions(c, "cli-node") == 1; }, 15'000));
  Subprocess cli(BinaryPath("nodewatch"),
                 {"--server", c.query_address(), "--tls-ca", c.pki().ca_file(), "--tls-cert",
                  c.operator_cert().cert, "--tls-key", c.operator_cert().key, "history", "cli-node",
                  "--kind", "interruption"},
                 c.dir() + "/cli.out");
  cli.Start();
  Cluster::WaitFor([&] { return !cli.running(); }, 10'000);
  EXPECT_THAT(cli.log(), ::testing::HasSubstr("aws spot-terminate event=spot-terminate-"));
  EXPECT_THAT(cli.log(), ::testing::HasSubstr("state=ACTIVE"));
  sim.Stop();
}

}  // namespace
}  // namespace nodewatch::testing
