// Returning nodes end to end: the cloud metadata simulator, a real agent whose boot id comes from
// its --proc-root (so the test can boot the node again), a real aggregator and the fake
// Kubernetes API server. Each scenario: a notice, the node cordoned, tainted, labelled, drained
// and given the InterruptionNotice condition; the node goes away and comes back (or the cloud
// event completes); the Node must end exactly as it was before the notice, plus the condition at
// False, within 5 s of the agent's return, and the history must tell the story.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "nlohmann/json.hpp"
#include "tests/integration/harness.h"
#include "tests/support/fake_kube_api.h"
#include "tests/support/metadata_simulator.h"

namespace nodewatch::testing {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;

constexpr int64_t kWindowMs = 20'000;
constexpr char kVm[] = "nodewatch-vmss_3";  // the simulator's Azure VM name

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// A /proc for the agent: the host's files it reads, and a boot id the test controls.
class FakeProcRoot {
 public:
  explicit FakeProcRoot(const std::string& dir) : dir_(dir) {
    std::filesystem::create_directories(dir_ + "/sys/kernel/random");
    for (const char* entry : {"uptime", "loadavg", "meminfo", "diskstats", "1", "self", "mounts"}) {
      std::filesystem::create_symlink(std::string("/proc/") + entry, dir_ + "/" + entry);
    }
  }
  void Boot(const std::string& boot_id) {
    std::ofstream(dir_ + "/sys/kernel/random/boot_id") << boot_id << "\n";
  }
  const std::string& path() const { return dir_; }

 private:
  std::string dir_;
};

// What nodewatch may touch on a Node, in a comparable form: the cordon, taints (without the
// node lifecycle controller's timeAdded), labels, and every condition but nodewatch's own.
json Marks(const json& node) {
  json taints = json::array();
  if (node["spec"].contains("taints")) {
    for (const auto& t : node["spec"]["taints"]) {
      taints.push_back({t.value("key", ""), t.value("value", ""), t.value("effect", "")});
    }
  }
  std::sort(taints.begin(), taints.end());
  json conditions = json::object();
  if (node.contains("status") && node["status"].contains("conditions")) {
    for (const auto& c : node["status"]["conditions"]) {
      if (c.value("type", "") != "InterruptionNotice") conditions[c.value("type", "")] = c;
    }
  }
  return {{"unschedulable", node["spec"].value("unschedulable", false)},
          {"taints", taints},
          {"labels", node["metadata"].value("labels", json::object())},
          {"conditions", conditions}};
}

std::optional<json> InterruptionCondition(const json& node) {
  if (!node.contains("status") || !node["status"].contains("conditions")) return std::nullopt;
  for (const auto& c : node["status"]["conditions"]) {
    if (c.value("type", "") == "InterruptionNotice") return c;
  }
  return std::nullopt;
}

struct ReturnCase {
  std::string name;
  std::string cloud;
  std::vector<std::string> agent_args;
  // The instance's settings, served before its agent starts.
  std::function<void(MetadataSimulator&)> configure = [](MetadataSimulator&) {};
  std::function<void(MetadataSimulator&)> arm;
  std::string acted_step = "drained";  // the step that says the node was taken
  std::string condition_reason;        // InterruptionNotice's reason while the notice is active
  // While the node is away: what the cloud does (the notice goes, an event completes...).
  std::function<void(MetadataSimulator&, FakeKubeApi&)> away;
  bool reboot = true;  // the node boots again; false: it never went down (live migration)
  std::string ending = "returned";
  bool operator_cordoned = false;
  // How the node directory says the first life ended ("": it did not, one life).
  std::string life_ended = "stopped";
};

class NodeReturns : public ::testing::TestWithParam<ReturnCase> {};

TEST_P(NodeReturns, TheNodeEndsAsItWasAndTheHistoryTellsTheStory) {
  const ReturnCase& tc = GetParam();
  const std::string node = "back-" + tc.name;
  Cluster c("e2e-return-" + tc.name);
  MetadataSimulator sim({.cloud = tc.cloud});
  ASSERT_TRUE(sim.Start());
  tc.configure(sim);
  FakeKubeApi api({.max_termination_ms = 1'000});
  ASSERT_TRUE(api.Start());
  json seeded = FakeKubeApi::MakeNode(node);
  seeded["metadata"]["labels"]["node.kubernetes.io/instance-type"] = "m5.large";
  seeded["spec"]["taints"] = json::array({{{"key", "team.io/batch"}, {"effect", "NoSchedule"}}});
  seeded["status"]["conditions"] =
      json::array({{{"type", "Ready"}, {"status", "True"}, {"reason", "KubeletReady"}}});
  if (tc.operator_cordoned) seeded["spec"]["unschedulable"] = true;
  api.AddNode(seeded);
  for (int i = 0; i < 4; ++i) {
    api.AddPod(FakeKubeApi::MakePod("default", node + "-web-" + std::to_string(i), node,
                                    {.owner_kind = "ReplicaSet", .grace_seconds = 1}));
  }
  // The node lifecycle controller's taint for a cordoned node settles before the snapshot.
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  const json before = Marks(api.GetNode(node).value());

  c.StartAggregator({"--kube-api-server", api.url(), "--remediation", "on", "--leader-elect=false",
                     "--drain-margin", "2s", "--pdb-retry", "1s", "--drain-poll", "250ms"});
  FakeProcRoot proc(c.dir() + "/proc-" + node);
  proc.Boot("11111111-1111-4111-8111-111111111111");
  std::vector<std::string> agent_args = {"--cloud",     tc.cloud,    "--metadata-endpoint",
                                         sim.url(),     "--proc-root", proc.path(),
                                         "--bpf=false", "--filesystems=false"};
  agent_args.insert(agent_args.end(), tc.agent_args.begin(), tc.agent_args.end());
  c.StartAgent(node, agent_args);
  ASSERT_TRUE(Cluster::WaitFor([&] { return c.GetNode(node).has_value(); }, 15'000));

  tc.arm(sim);
  ASSERT_TRUE(Cluster::WaitFor([&] { return Step(c, node, tc.acted_step).has_value(); }, kWindowMs))
      << c.aggregator().log();
  json taken = api.GetNode(node).value();
  EXPECT_TRUE(taken["spec"].value("unschedulable", false));
  auto active = InterruptionCondition(taken);
  ASSERT_TRUE(active.has_value()) << taken.dump();
  EXPECT_EQ((*active)["status"], "True");
  EXPECT_EQ((*active)["reason"], tc.condition_reason);

  // Away: the instance stops (the agent dies with it), the cloud moves on, the node boots again.
  int64_t back_ms = NowMs();
  if (tc.reboot) {
    c.agent(node).Stop(SIGKILL);
    tc.away(sim, api);
    std::this_thread::sleep_for(std::chrono::seconds(2));
    proc.Boot("22222222-2222-4222-8222-222222222222");
    back_ms = NowMs();
    c.StartAgent(node, agent_args);
  } else {
    tc.away(sim, api);
  }
  ASSERT_TRUE(Cluster::WaitFor([&] { return Step(c, node, tc.ending).has_value(); }, 10'000))
      << c.aggregator().log();
  const auto ended = *Step(c, node, tc.ending);
  EXPECT_LT(ended.time_unix_ms() - back_ms, 5'000) << "given back too late";
  EXPECT_FALSE(ended.remediation().instance_id().empty()) << "the step names the instance";

  std::vector<std::string> actions;
  for (const auto& r : Steps(c, node)) actions.push_back(r.remediation().action());
  const std::vector<std::string> story = {"planned", "cordoned", "tainted", tc.acted_step,
                                          tc.ending};
  EXPECT_THAT(actions, ::testing::IsSupersetOf(story));

  // The node directory has the lives, as `nodewatch node` and `nodewatch cost` show them.
  auto summary = c.GetNode(node);
  ASSERT_TRUE(summary.has_value());
  ASSERT_EQ(summary->lives_size(), tc.life_ended.empty() ? 1 : 2);
  if (!tc.life_ended.empty()) {
    EXPECT_EQ(summary->lives(0).ended(), tc.life_ended);
    EXPECT_EQ(summary->lives(1).ended(), "");
    EXPECT_NE(summary->lives(0).boot_id(), summary->lives(1).boot_id());
    EXPECT_GT(summary->lives(1).start_unix_ms(), summary->lives(0).last_seen_unix_ms());
  }
  if (tc.ending == "node-deleted") {
    EXPECT_FALSE(api.GetNode(node).has_value());
    // One ending, no error loop: read the history again after a while.
    std::this_thread::sleep_for(std::chrono::seconds(1));
    int endings = 0;
    for (const auto& r : Steps(c, node)) endings += r.remediation().action() == "node-deleted";
    EXPECT_EQ(endings, 1);
    return;
  }
  // The node lifecycle controller drops its unschedulable taint shortly after the uncordon.
  EXPECT_TRUE(Cluster::WaitFor([&] { return Marks(api.GetNode(node).value()) == before; }, 3'000))
      << "before: " << before.dump() << "\nafter:  " << Marks(api.GetNode(node).value()).dump();
  auto over = InterruptionCondition(api.GetNode(node).value());
  ASSERT_TRUE(over.has_value());
  EXPECT_EQ((*over)["status"], "False");
  EXPECT_EQ((*over)["reason"], "Returned");
  if (tc.operator_cordoned) {
    EXPECT_THAT(ended.remediation().message(), HasSubstr("nodewatch did not set it"));
  }
  if (tc.ending == "replaced") {
    EXPECT_NE(ended.remediation().instance_id(), ended.remediation().new_instance_id());
  }
  if (tc.reboot) {
    EXPECT_GE(ended.remediation().downtime_ms(), 2'000);
  }
  std::vector<std::string> reasons;
  ASSERT_TRUE(Cluster::WaitFor(
      [&] {
        reasons.clear();
        for (const auto& e : api.Events()) reasons.push_back(e.value("reason", ""));
        return std::count(reasons.begin(), reasons.end(), "NodeReturned") +
                   std::count(reasons.begin(), reasons.end(), "NodeReplaced") ==
               1;
      },
      5'000))
      << ::testing::PrintToString(reasons);

  // The operator reads the story.
  Subprocess cli(BinaryPath("nodewatch"),
                 {"--server", c.query_address(), "--tls-ca", c.pki().ca_file(), "--tls-cert",
                  c.operator_cert().cert, "--tls-key", c.operator_cert().key, "history", node,
                  "--kind", "remediation"},
                 c.dir() + "/cli.out");
  cli.Start();
  Cluster::WaitFor([&] { return !cli.running(); }, 10'000);
  std::printf("nodewatch history %s --kind remediation:\n%s", node.c_str(), cli.log().c_str());
  EXPECT_THAT(cli.log(), HasSubstr(tc.ending));
  EXPECT_THAT(cli.log(), HasSubstr("back: "));
  Subprocess lives(BinaryPath("nodewatch"),
                   {"--server", c.query_address(), "--tls-ca", c.pki().ca_file(), "--tls-cert",
                    c.operator_cert().cert, "--tls-key", c.operator_cert().key, "node", node},
                   c.dir() + "/node.out");
  lives.Start();
  Cluster::WaitFor([&] { return !lives.running(); }, 10'000);
  std::printf("nodewatch node %s:\n%s", node.c_str(), lives.log().c_str());
  EXPECT_THAT(lives.log(), HasSubstr("Lives:"));
  if (!tc.life_ended.empty()) {
    EXPECT_THAT(lives.log(), HasSubstr(tc.life_ended));
  }
  sim.Stop();
}

const auto kNothing = [](MetadataSimulator& s, FakeKubeApi&) { s.Clear(); };

INSTANTIATE_TEST_SUITE_P(
    Lifecycles, NodeReturns,
    ::testing::Values(
        ReturnCase{.name = "aws-spot-stop",
                   .cloud = "aws",
                   .arm = [](MetadataSimulator& s) { s.ArmAwsSpot("stop", 0, kWindowMs); },
                   .condition_reason = "SpotStop",
                   .away = kNothing},
        ReturnCase{.name = "aws-spot-hibernate",
                   .cloud = "aws",
                   .arm = [](MetadataSimulator& s) { s.ArmAwsSpot("hibernate", 0, kWindowMs); },
                   .acted_step = "drain-skipped",
                   .condition_reason = "SpotHibernate",
                   .away = kNothing},
        ReturnCase{.name = "aws-scheduled-reboot",
                   .cloud = "aws",
                   .arm =
                       [](MetadataSimulator& s) {
                         s.SetAwsScheduledEvent("instance-event-0d59937288b749b32",
                                                "system-reboot", "active", NowMs() + 300'000, 0);
                       },
                   .condition_reason = "ScheduledMaintenance",
                   .away =
                       [](MetadataSimulator& s, FakeKubeApi&) {
                         s.SetAwsScheduledEvent("instance-event-0d59937288b749b32",
                                                "system-reboot", "completed", NowMs() - 60'000, 0);
                       },
                   .life_ended = "rebooted"},
        ReturnCase{.name = "gcp-spot-stop",
                   .cloud = "gcp",
                   .agent_args = {"--gcp-preemption-notice", "20s"},
                   .configure = [](MetadataSimulator& s) { s.SetGcpTerminationAction("STOP"); },
                   .arm = [](MetadataSimulator& s) { s.SetGcpPreempted(true); },
                   .condition_reason = "SpotStop",
                   .away = kNothing},
        ReturnCase{.name = "gcp-migration",
                   .cloud = "gcp",
                   .arm =
                       [](MetadataSimulator& s) {
                         s.SetGcpMaintenance("MIGRATE_ON_HOST_MAINTENANCE");
                       },
                   .condition_reason = "ScheduledMaintenance",
                   .away = [](MetadataSimulator& s,
                              FakeKubeApi&) { s.SetGcpMaintenance("NONE"); },
                   .reboot = false,
                   .life_ended = ""},
        ReturnCase{.name = "azure-reboot",
                   .cloud = "azure",
                   .arm =
                       [](MetadataSimulator& s) {
                         s.AddAzureEvent("e2e-reboot", "Reboot", {kVm}, NowMs() + kWindowMs);
                       },
                   .condition_reason = "ScheduledReboot",
                   .away = [](MetadataSimulator& s,
                              FakeKubeApi&) { s.RemoveAzureEvent("e2e-reboot"); },
                   .life_ended = "rebooted"},
        ReturnCase{.name = "aws-operator-cordoned",
                   .cloud = "aws",
                   .arm = [](MetadataSimulator& s) { s.ArmAwsSpot("stop", 0, kWindowMs); },
                   .condition_reason = "SpotStop",
                   .away = kNothing,
                   .operator_cordoned = true},
        ReturnCase{.name = "aws-replaced",
                   .cloud = "aws",
                   .arm = [](MetadataSimulator& s) { s.ArmAwsSpot("terminate", 0, kWindowMs); },
                   .condition_reason = "SpotTerminate",
                   .away =
                       [](MetadataSimulator& s, FakeKubeApi&) {
                         s.Clear();
                         s.SetAwsInstanceId("i-0feedfacecafe0001");
                       },
                   .ending = "replaced",
                   .life_ended = "replaced"},
        ReturnCase{.name = "aws-node-deleted",
                   .cloud = "aws",
                   .arm = [](MetadataSimulator& s) { s.ArmAwsSpot("stop", 0, kWindowMs); },
                   .condition_reason = "SpotStop",
                   .away =
                       [](MetadataSimulator& s, FakeKubeApi& api) {
                         s.Clear();
                         api.RemoveNode("back-aws-node-deleted");
                       },
                   .ending = "node-deleted"}),
    [](const ::testing::TestParamInfo<ReturnCase>& info) {
      std::string name = info.param.name;
      std::replace(name.begin(), name.end(), '-', '_');
      return name;
    });

}  // namespace
}  // namespace nodewatch::testing
