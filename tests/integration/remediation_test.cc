// Remediation end to end with real processes: the cloud metadata simulator, a real agent, a real
// aggregator (or two), and the fake Kubernetes API server, per cloud. Notice windows are shortened
// (20 s) to keep CI fast; the benchmarks use the real ones.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "nlohmann/json.hpp"
#include "tests/integration/harness.h"
#include "tests/support/fake_kube_api.h"
#include "tests/support/hook_server.h"
#include "tests/support/kube_scenarios.h"
#include "tests/support/metadata_simulator.h"

namespace nodewatch::testing {
namespace {

using nlohmann::json;
using ::testing::Contains;
using ::testing::HasSubstr;

constexpr int64_t kWindowMs = 20'000;
constexpr int64_t kMarginMs = 2'000;

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Remediation flags with short Lease timings so failovers take seconds, not 15 s.
std::vector<std::string> RemediationArgs(const FakeKubeApi& api,
                                         const std::string& extra_hook = "") {
  std::vector<std::string> args = {
      "--kube-api-server",      api.url(),   "--remediation",        "on",
      "--lease-namespace",      "nodewatch", "--lease-duration",     "3s",
      "--lease-renew-deadline", "2s",        "--lease-retry-period", "500ms",
      "--drain-margin",         "2s",        "--pdb-retry",          "1s",
      "--drain-poll",           "250ms"};
  if (!extra_hook.empty()) {
    args.push_back("--webhook-url");
    args.push_back(extra_hook);
  }
  return args;
}

bool HasTaint(const json& node, const std::string& key, const std::string& effect) {
  if (!node["spec"].contains("taints")) return false;
  for (const auto& t : node["spec"]["taints"]) {
    if (t.value("key", "") == key && t.value("effect", "") == effect) return true;
  }
  return false;
}

struct CloudCase {
  std::string cloud;
  std::vector<std::string> agent_args;
  std::function<void(MetadataSimulator&)> arm;  // a 20 s notice
};

class RemediationE2E : public ::testing::TestWithParam<CloudCase> {};

TEST_P(RemediationE2E, BusyNodeIsEmptiedBeforeTheDeadlineAndTheTimelineIsReadable) {
  const CloudCase& tc = GetParam();
  const std::string node = "spot-" + tc.cloud;
  Cluster c("e2e-remediation-" + tc.cloud);
  MetadataSimulator sim({.cloud = tc.cloud});
  ASSERT_TRUE(sim.Start());
  FakeKubeApi api({.max_termination_ms = 1'500});
  ASSERT_TRUE(api.Start());
  SeedInterruptibleNode(api, node);
  HookServer hook(/*failures=*/1);
  c.StartAggregator(RemediationArgs(api, hook.url()));
  std::vector<std::string> agent_args = {"--cloud", tc.cloud, "--metadata-endpoint", sim.url()};
  agent_args.insert(agent_args.end(), tc.agent_args.begin(), tc.agent_args.end());
  c.StartAgent(node, agent_args);
  ASSERT_TRUE(Cluster::WaitFor([&] { return c.GetNode(node).has_value(); }, 15'000));

  const int64_t armed = NowMs();
  tc.arm(sim);
  ASSERT_TRUE(
      Cluster::WaitFor([&] { return Step(c, node, "drained").has_value(); }, kWindowMs + 10'000))
      << c.aggregator().log();
  auto drained = *Step(c, node, "drained");
  const int64_t deadline = drained.remediation().deadline_unix_ms();
  EXPECT_GT(deadline, armed + kWindowMs - 3'000);
  EXPECT_LT(drained.time_unix_ms(), deadline - kMarginMs + 1'000) << "drain ended too late";
  EXPECT_EQ(drained.remediation().pods_evicted() + drained.remediation().pods_force_deleted(),
            static_cast<uint32_t>(kInterruptibleNodeEvictable));
  EXPECT_EQ(drained.remediation().pods_remaining(), 0u);
  EXPECT_EQ(drained.remediation().pods_blocked_by_pdb(), 3u);
  EXPECT_GE(drained.remediation().pods_force_deleted(), 3u);  // the PDB pods, clamped

  // What is left is exactly the DaemonSet and mirror pods.
  auto left = api.PodsOnNode(node);
  EXPECT_EQ(left.size(), static_cast<size_t>(kInterruptibleNodeStaying));
  for (const auto& pod : left) {
    EXPECT_EQ(pod["metadata"]["namespace"], "kube-system");
  }
  json k8s_node = api.GetNode(node).value();
  EXPECT_TRUE(k8s_node["spec"].value("unschedulable", false));
  EXPECT_TRUE(HasTaint(k8s_node, "nodewatch.io/interruption", "NoSchedule"));
  EXPECT_EQ(
      k8s_node["metadata"]["labels"]["node.kubernetes.io/exclude-from-external-load-balancers"],
      "nodewatch");
  // Clamped deletions all end before deadline - margin.
  for (const auto& r : api.Journal()) {
    if (r.method != "DELETE") continue;
    json body = json::parse(r.body);
    EXPECT_LE(r.time_ms + body.value("gracePeriodSeconds", 0) * 1000, deadline - kMarginMs + 1'000)
        << r.path;
  }
  std::vector<std::string> reasons;
  ASSERT_TRUE(Cluster::WaitFor([&] { return api.Events().size() >= 3; }, 5'000));
  for (const auto& e : api.Events()) reasons.push_back(e.value("reason", ""));
  EXPECT_THAT(reasons, Contains("InterruptionNotice"));
  EXPECT_THAT(reasons, Contains("Cordoned"));
  EXPECT_THAT(reasons, Contains("Drained"));
  ASSERT_TRUE(Cluster::WaitFor([&] { return hook.bodies().size() >= 2; }, 10'000));
  EXPECT_THAT(hook.bodies()[0], HasSubstr(node));
  EXPECT_THAT(hook.bodies()[1], HasSubstr("drained"));
  if (tc.cloud == "azure") {
    ASSERT_TRUE(Cluster::WaitFor([&] { return !sim.AzureStartRequests().empty(); }, 10'000));
    EXPECT_THAT(sim.AzureStartRequests()[0], HasSubstr("e2e-preempt"));
    EXPECT_TRUE(Step(c, node, "acknowledged").has_value());
  }

  // The operator reads the whole timeline with the CLI.
  Subprocess cli(BinaryPath("nodewatch"),
                 {"--server", c.query_address(), "--tls-ca", c.pki().ca_file(), "--tls-cert",
                  c.operator_cert().cert, "--tls-key", c.operator_cert().key, "history", node,
                  "--kind", "interruption", "--kind", "remediation"},
                 c.dir() + "/cli.out");
  cli.Start();
  Cluster::WaitFor([&] { return !cli.running(); }, 10'000);
  for (const char* text :
       {"spot-terminate event=", "planned", "cordoned", "tainted", "drain-started", "drained"}) {
    EXPECT_THAT(cli.log(), HasSubstr(text));
  }
  sim.Stop();
}

INSTANTIATE_TEST_SUITE_P(
    Clouds, RemediationE2E,
    ::testing::Values(
        CloudCase{"aws", {}, [](MetadataSimulator& s) { s.ArmAwsSpot("terminate", 0, kWindowMs); }},
        CloudCase{"gcp",
                  {"--gcp-preemption-notice", "20s"},
                  [](MetadataSimulator& s) { s.SetGcpPreempted(true); }},
        CloudCase{"azure",
                  {},
                  [](MetadataSimulator& s) {
                    s.AddAzureEvent("e2e-preempt", "Preempt", {"nodewatch-vmss_3"},
                                    NowMs() + kWindowMs);
                  }}),
    [](const ::testing::TestParamInfo<CloudCase>& info) { return info.param.cloud; });

TEST(RemediationFailover, AKilledAggregatorsDrainIsFinishedByTheNextLeader) {
  const std::string node = "failover-node";
  Cluster c("e2e-remediation-failover");
  MetadataSimulator sim({.cloud = "aws"});
  ASSERT_TRUE(sim.Start());
  FakeKubeApi api({.max_termination_ms = 1'000});
  ASSERT_TRUE(api.Start());
  api.AddNode(FakeKubeApi::MakeNode(node));
  for (int i = 0; i < 6; ++i) {
    api.AddPod(FakeKubeApi::MakePod("default", "slow-" + std::to_string(i), node,
                                    {.owner_kind = "ReplicaSet", .grace_seconds = 30}));
    api.SetPodBehaviour("default", "slow-" + std::to_string(i), {.termination_ms = 6'000});
  }
  c.StartAggregator(RemediationArgs(api));
  c.StartAgent(node, {"--cloud", "aws", "--metadata-endpoint", sim.url()});
  ASSERT_TRUE(Cluster::WaitFor([&] { return c.GetNode(node).has_value(); }, 15'000));
  sim.ArmAwsSpot("terminate", 0, 30'000);
  ASSERT_TRUE(Cluster::WaitFor([&] { return Step(c, node, "drain-started").has_value(); }, 10'000));
  c.KillAggregator(SIGKILL);                // mid-drain: pods are terminating, nothing is finished
  c.StartAggregator(RemediationArgs(api));  // new identity: waits out the dead holder's Lease
  ASSERT_TRUE(Cluster::WaitFor([&] { return Step(c, node, "drained").has_value(); }, 25'000))
      << c.aggregator().log();
  EXPECT_TRUE(api.PodsOnNode(node).empty());
  auto drained = *Step(c, node, "drained");
  EXPECT_LT(drained.time_unix_ms(), drained.remediation().deadline_unix_ms());
  EXPECT_THAT(c.aggregator().log(), HasSubstr("1 unfinished"));
  // The next leader says once that it resumed, and records nothing the first one did again.
  std::map<std::string, int> actions;
  for (const auto& r : Steps(c, node)) ++actions[r.remediation().action()];
  EXPECT_EQ(actions["resumed"], 1);
  for (const char* once : {"planned", "cordoned", "tainted", "drain-started", "drained"}) {
    EXPECT_EQ(actions[once], 1) << once;
  }
  sim.Stop();
}

TEST(RemediationReplicas, OfTwoAggregatorsExactlyOneActs) {
  const std::string node = "replica-node";
  Cluster c("e2e-remediation-replicas");
  MetadataSimulator sim({.cloud = "aws"});
  ASSERT_TRUE(sim.Start());
  FakeKubeApi api({.max_termination_ms = 500});
  ASSERT_TRUE(api.Start());
  api.AddNode(FakeKubeApi::MakeNode(node));
  for (int i = 0; i < 10; ++i) {
    api.AddPod(FakeKubeApi::MakePod("default", "web-" + std::to_string(i), node,
                                    {.owner_kind = "ReplicaSet", .grace_seconds = 1}));
  }
  c.StartAggregator(RemediationArgs(api));
  // The second replica: same CA and server certificate, its own store and ports.
  const int ingest_b = FreePort();
  const int query_b = FreePort();
  auto server_b = c.pki().Issue(
      "aggregator-b", {.cn = "nodewatch-aggregator", .dns = {"localhost"}, .ips = {"127.0.0.1"}});
  std::vector<std::string> args_b = {"--listen",         "127.0.0.1:" + std::to_string(ingest_b),
                                     "--query-listen",   "127.0.0.1:" + std::to_string(query_b),
                                     "--metrics-listen", "",
                                     "--http-listen",    "",
                                     "--data-dir",       c.dir() + "/aggregator-b",
                                     "--tls-ca",         c.pki().ca_file(),
                                     "--tls-cert",       server_b.cert,
                                     "--tls-key",        server_b.key};
  auto remediation = RemediationArgs(api);
  args_b.insert(args_b.end(), remediation.begin(), remediation.end());
  Subprocess b(BinaryPath("nodewatch-aggregator"), args_b, c.dir() + "/aggregator-b.log");
  b.Start();
  c.StartAgent(node, {"--cloud", "aws", "--metadata-endpoint", sim.url(), "--aggregator",
                      "127.0.0.1:" + std::to_string(ingest_b)});
  ASSERT_TRUE(Cluster::WaitFor([&] { return c.GetNode(node).has_value(); }, 15'000));
  ASSERT_TRUE(Cluster::WaitFor(
      [&] { return api.GetLease("nodewatch", "nodewatch-aggregator").has_value(); }, 10'000));
  sim.ArmAwsSpot("terminate", 0, kWindowMs);
  ASSERT_TRUE(Cluster::WaitFor([&] { return api.PodsOnNode(node).empty(); }, kWindowMs));
  std::this_thread::sleep_for(std::chrono::seconds(2));  // let a second actor show itself
  int cordons = 0;
  std::map<std::string, int> evictions;
  for (const auto& r : api.Journal()) {
    if (r.method == "PATCH" && r.body == R"({"spec":{"unschedulable":true}})") ++cordons;
    if (r.method == "POST" && r.path.find("/eviction") != std::string::npos) ++evictions[r.path];
  }
  EXPECT_EQ(cordons, 1);
  EXPECT_EQ(evictions.size(), 10u);
  for (const auto& [path, n] : evictions) EXPECT_EQ(n, 1) << path;
  const std::string holder =
      api.GetLease("nodewatch", "nodewatch-aggregator").value()["spec"]["holderIdentity"];
  EXPECT_FALSE(holder.empty());
  b.Stop(SIGTERM);
  sim.Stop();
}

TEST(RemediationAws, RebalanceIsClearedAfterItsTtlAndACanceledMaintenanceIsUndone) {
  const std::string node = "maint-node";
  Cluster c("e2e-remediation-maint");
  MetadataSimulator sim({.cloud = "aws"});
  ASSERT_TRUE(sim.Start());
  FakeKubeApi api({});
  ASSERT_TRUE(api.Start());
  api.AddNode(FakeKubeApi::MakeNode(node));
  api.AddPod(FakeKubeApi::MakePod("default", "web", node, {.owner_kind = "ReplicaSet"}));
  api.SetPodBehaviour("default", "web", {.stuck = true});
  auto args = RemediationArgs(api);
  args.insert(args.end(), {"--rebalance-ttl", "4s", "--maintenance-lead", "10m"});
  c.StartAggregator(args);
  c.StartAgent(node, {"--cloud", "aws", "--metadata-endpoint", sim.url()});
  ASSERT_TRUE(Cluster::WaitFor([&] { return c.GetNode(node).has_value(); }, 15'000));

  sim.ArmAwsRebalance();
  ASSERT_TRUE(Cluster::WaitFor(
      [&] {
        return HasTaint(api.GetNode(node).value(), "nodewatch.io/interruption", "PreferNoSchedule");
      },
      10'000));
  EXPECT_FALSE(api.GetNode(node).value()["spec"].value("unschedulable", false));
  ASSERT_TRUE(Cluster::WaitFor([&] { return Step(c, node, "cleared").has_value(); }, 15'000));
  EXPECT_FALSE(
      HasTaint(api.GetNode(node).value(), "nodewatch.io/interruption", "PreferNoSchedule"));

  // Maintenance in 5 minutes (inside the 10 minute lead): drained now; then AWS cancels it.
  const std::string event = "instance-event-0d59937288b749b32";
  sim.SetAwsScheduledEvent(event, "system-reboot", "active", NowMs() + 300'000, 0);
  ASSERT_TRUE(Cluster::WaitFor([&] { return Step(c, node, "drain-started").has_value(); }, 15'000))
      << c.aggregator().log();
  EXPECT_TRUE(api.GetNode(node).value()["spec"].value("unschedulable", false));
  sim.SetAwsScheduledEvent(event, "system-reboot", "canceled", NowMs() + 300'000, 0);
  ASSERT_TRUE(Cluster::WaitFor([&] { return Step(c, node, "undone").has_value(); }, 15'000))
      << c.aggregator().log();
  json k8s_node = api.GetNode(node).value();
  EXPECT_FALSE(k8s_node["spec"].value("unschedulable", false));
  EXPECT_FALSE(HasTaint(k8s_node, "nodewatch.io/interruption", "NoSchedule"));
  sim.Stop();
}

}  // namespace
}  // namespace nodewatch::testing
