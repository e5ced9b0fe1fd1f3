// Remediation against the fake Kubernetes API server over real HTTP: the client's wire shapes,
// conflict handling, token rotation, kubeconfig loading, the deadline-aware drain, Lease election
// and the Remediator's policies (dry run, cancel, rebalance TTL, resume from the journal).
#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <future>
#include <optional>
#include <thread>

#include "absl/strings/escaping.h"
#include "aggregator/ingest/ingest_engine.h"
#include "aggregator/remediation/drain.h"
#include "aggregator/remediation/kube_api.h"
#include "aggregator/remediation/kube_client.h"
#include "aggregator/remediation/leader.h"
#include "aggregator/remediation/remediator.h"
#include "aggregator/notify/webhook.h"
#include "aggregator/store/store.h"
#include "common/file_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "rocksdb/env.h"
#include "tests/support/fake_kube_api.h"
#include "tests/support/hook_server.h"
#include "tests/support/kube_scenarios.h"
#include "tests/support/process.h"
#include "tests/support/test_pki.h"

namespace nodewatch::aggregator {
namespace {

using nlohmann::json;
using testing::FakeKubeApi;
using ::testing::HasSubstr;
using testing::HookServer;
using testing::SeedInterruptibleNode;

int64_t NowMs() { return SystemClock::Get().NowUnixMs(); }

bool WaitFor(const std::function<bool()>& done, int64_t timeout_ms) {
  const int64_t end = NowMs() + timeout_ms;
  while (NowMs() < end) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return done();
}

bool HasTaint(const json& node, const std::string& key, const std::string& effect) {
  if (!node["spec"].contains("taints")) return false;
  for (const auto& t : node["spec"]["taints"]) {
    if (t.value("key", "") == key && t.value("effect", "") == effect) return true;
  }
  return false;
}

class KubeTest : public ::testing::Test {
 protected:
  void SetUp() override { StartApi({}); }
  void StartApi(FakeKubeApi::Options options) {
    api_ = std::make_unique<FakeKubeApi>(options);
    ASSERT_TRUE(api_->Start());
    KubeConnection conn;
    conn.server = api_->url();
    conn.token_file = token_file_;
    client_ = MakeCurlKubeClient(conn);
    kube_ = std::make_unique<KubeApi>(*client_);
  }
  void AddNodeWithPods(const std::string& node, int replicaset_pods) {
    api_->AddNode(FakeKubeApi::MakeNode(node));
    for (int i = 0; i < replicaset_pods; ++i) {
      api_->AddPod(FakeKubeApi::MakePod("default", node + "-web-" + std::to_string(i), node,
                                        {.owner_kind = "ReplicaSet", .grace_seconds = 2}));
    }
  }

  std::string token_file_;
  std::unique_ptr<FakeKubeApi> api_;
  std::unique_ptr<KubeClient> client_;
  std::unique_ptr<KubeApi> kube_;
};

TEST_F(KubeTest, CordonSendsOneStrategicMergePatchAndNoneWhenAlreadyCordoned) {
  api_->AddNode(FakeKubeApi::MakeNode("n1"));
  ASSERT_TRUE(*kube_->SetUnschedulable("n1", true));
  EXPECT_FALSE(*kube_->SetUnschedulable("n1", true));
  auto patches = api_->Journal();
  int count = 0;
  for (const auto& r : patches) {
    if (r.method != "PATCH") continue;
    ++count;
    EXPECT_EQ(r.content_type, "application/strategic-merge-patch+json");
    EXPECT_EQ(r.body, R"({"spec":{"unschedulable":true}})");
  }
  EXPECT_EQ(count, 1);
  EXPECT_TRUE(api_->GetNode("n1").value()["spec"].value("unschedulable", false));
  EXPECT_TRUE(absl::IsNotFound(kube_->SetUnschedulable("missing", true).status()));
}

TEST_F(KubeTest, TaintUnderAConcurrentWriterKeepsEveryonesTaints) {
  api_->AddNode(FakeKubeApi::MakeNode("n1"));
  api_->OnNextNodeWrite("n1", [](json& node) {
    node["spec"]["taints"] = json::array({{{"key", "other.io/maintenance"},
                                           {"effect", "NoExecute"},
                                           {"timeAdded", "2024-01-01T00:00:00Z"}}});
  });
  ASSERT_TRUE(
      *kube_->PutTaint("n1", {"nodewatch.io/interruption", "spot-terminate", "NoSchedule"}));
  json node = api_->GetNode("n1").value();
  EXPECT_TRUE(HasTaint(node, "other.io/maintenance", "NoExecute"));
  EXPECT_TRUE(HasTaint(node, "nodewatch.io/interruption", "NoSchedule"));
  EXPECT_GE(api_->CountRequests("PATCH", "/api/v1/nodes/n1"), 2);  // the first got 409
  // Putting it again changes nothing; removing leaves the other writer's taint.
  EXPECT_FALSE(
      *kube_->PutTaint("n1", {"nodewatch.io/interruption", "spot-terminate", "NoSchedule"}));
  ASSERT_TRUE(*kube_->RemoveTaint("n1", "nodewatch.io/interruption", "NoSchedule"));
  node = api_->GetNode("n1").value();
  EXPECT_FALSE(HasTaint(node, "nodewatch.io/interruption", "NoSchedule"));
  EXPECT_TRUE(HasTaint(node, "other.io/maintenance", "NoExecute"));
  EXPECT_EQ(node["spec"]["taints"][0].value("timeAdded", ""), "2024-01-01T00:00:00Z");
}

TEST_F(KubeTest, TokenFileIsReloadedAfterA401) {
  auto dir = nodewatch::testing::MakeTempDir("kube-token");
  token_file_ = dir + "/token";
  std::ofstream(token_file_) << "token-one\n";
  StartApi({.valid_tokens = {"token-one"}});
  api_->AddNode(FakeKubeApi::MakeNode("n1"));
  ASSERT_TRUE(kube_->GetNode("n1").ok());
  // The kubelet rotates the projected token and the old one is revoked.
  std::ofstream(token_file_) << "token-two\n";
  api_->SetValidTokens({"token-two"});
  ASSERT_TRUE(kube_->GetNode("n1").ok());
  EXPECT_EQ(client_->counters().unauthorized.load(), 1u);
  EXPECT_EQ(client_->counters().token_reloads.load(), 1u);
  auto journal = api_->Journal();
  EXPECT_EQ(journal.back().authorization, "Bearer token-two");
}

// The API server is always HTTPS in production: the fake sits behind a TLS terminator (socat,
// with client-certificate verification) so the client's CA, client certificate and key blobs are
// exercised for real.
TEST(KubeTlsTest, VerifiesTheServerAndPresentsAClientCertificate) {
  auto dir = nodewatch::testing::MakeTempDir("kube-tls");
  nodewatch::testing::TestPki pki(dir + "/pki");
  auto server = pki.Issue("apiserver", {.cn = "kube-apiserver", .ips = {"127.0.0.1"}});
  auto client = pki.Issue("aggregator", {.cn = "system:serviceaccount:nodewatch:aggregator"});
  auto read = [](const std::string& path) { return ReadFileToString(path).value(); };
  FakeKubeApi api({});
  ASSERT_TRUE(api.Start());
  api.AddNode(FakeKubeApi::MakeNode("n1"));
  const int tls_port = nodewatch::testing::FreePort();
  nodewatch::testing::Subprocess terminator(
      "/usr/bin/socat",
      {"OPENSSL-LISTEN:" + std::to_string(tls_port) + ",bind=127.0.0.1,reuseaddr,fork,cert=" +
           server.cert + ",key=" + server.key + ",cafile=" + pki.ca_file() + ",verify=1",
       "TCP:127.0.0.1:" + std::to_string(api.port())},
      dir + "/socat.log");
  terminator.Start();
  KubeConnection conn{.server = "https://127.0.0.1:" + std::to_string(tls_port),
                      .ca_pem = read(pki.ca_file()),
                      .client_cert_pem = read(client.cert),
                      .client_key_pem = read(client.key)};
  auto client_ok = MakeCurlKubeClient(conn);
  KubeApi kube(*client_ok);
  ASSERT_TRUE(WaitFor([&] { return kube.GetNode("n1").ok(); }, 5'000)) << terminator.log();
  // No client certificate: the server refuses the handshake.
  KubeConnection anonymous = conn;
  anonymous.client_cert_pem.clear();
  anonymous.client_key_pem.clear();
  auto client_anon = MakeCurlKubeClient(anonymous);
  EXPECT_TRUE(absl::IsUnavailable(KubeApi(*client_anon).GetNode("n1").status()));
  // A server the configured CA did not sign is not trusted.
  nodewatch::testing::TestPki other(dir + "/other");
  KubeConnection wrong_ca = conn;
  wrong_ca.ca_pem = read(other.ca_file());
  auto client_wrong = MakeCurlKubeClient(wrong_ca);
  EXPECT_TRUE(absl::IsUnavailable(KubeApi(*client_wrong).GetNode("n1").status()));
}

TEST(KubeconfigTest, InlineDataFilePathsAndTokens) {
  auto dir = nodewatch::testing::MakeTempDir("kubeconfig");
  std::ofstream(dir + "/ca.pem") << "CA PEM";
  std::ofstream(dir + "/config") << R"(apiVersion: v1
kind: Config
current-context: prod
contexts:
- name: prod
  context: {cluster: c1, user: u1, namespace: nodewatch}
- name: other
  context: {cluster: c2, user: u2}
clusters:
- name: c1
  cluster: {server: "https://10.0.0.1:6443/", certificate-authority: ca.pem}
- name: c2
  cluster: {server: "https://10.0.0.2:6443", certificate-authority-data: )"
                                 << absl::Base64Escape("INLINE CA") << R"(}
users:
- name: u1
  user: {token: abc, client-certificate-data: )"
                                 << absl::Base64Escape("CERT") << R"(, client-key-data: )"
                                 << absl::Base64Escape("KEY") << R"(}
- name: u2
  user: {exec: {command: aws}}
)";
  auto c = LoadKubeconfig(dir + "/config");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->server, "https://10.0.0.1:6443");
  EXPECT_EQ(c->ca_pem, "CA PEM");
  EXPECT_EQ(c->token, "abc");
  EXPECT_EQ(c->client_cert_pem, "CERT");
  EXPECT_EQ(c->client_key_pem, "KEY");
  EXPECT_EQ(c->ns, "nodewatch");
  auto other = LoadKubeconfig(dir + "/config", "other");
  EXPECT_TRUE(absl::IsUnimplemented(other.status())) << other.status();
  EXPECT_THAT(std::string(LoadKubeconfig(dir + "/config", "nope").status().message()),
              HasSubstr("context 'nope' not found"));
  std::ofstream(dir + "/bad") << "{{{";
  EXPECT_TRUE(absl::IsInvalidArgument(LoadKubeconfig(dir + "/bad").status()));
}

TEST_F(KubeTest, DrainEmptiesABusyNodeBeforeTheDeadlineDespiteAStubbornPdb) {
  SeedInterruptibleNode(*api_, "n1");
  Drainer drainer(*kube_, SystemClock::Get());
  std::atomic<bool> cancel{false};
  const int64_t start = NowMs();
  const int64_t deadline = start + 12'000;
  auto report = drainer.Drain(
      "n1",
      {.deadline_unix_ms = deadline, .margin_ms = 2'000, .pdb_retry_ms = 1'000, .poll_ms = 200},
      cancel, [] { return true; });
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_TRUE(report->complete);
  EXPECT_LT(NowMs(), deadline - 2'000 + 500);
  EXPECT_EQ(report->skipped_daemonset, 2);
  EXPECT_EQ(report->skipped_mirror, 1);
  EXPECT_EQ(report->remaining, 0);
  EXPECT_EQ(report->pdb_blocked, 3);
  // The PDB pods (grace 3 s) and the databases (grace 300 s: clamped) were deleted in time.
  EXPECT_GE(report->force_deleted, 3);
  EXPECT_EQ(report->evicted + report->force_deleted, 37);
  auto left = api_->PodsOnNode("n1");
  ASSERT_EQ(left.size(), 3u);  // two DaemonSet pods and the mirror pod
  for (const auto& r : api_->Journal()) {
    if (r.method == "DELETE") {
      // Clamped grace: ends before deadline - margin.
      json body = json::parse(r.body);
      EXPECT_LE(r.time_ms + body.value("gracePeriodSeconds", 0) * 1000, deadline - 2'000 + 1'000);
    }
    if (r.method == "POST" && r.path.find("/eviction") != std::string::npos) {
      json body = json::parse(r.body);
      EXPECT_EQ(body["apiVersion"], "policy/v1");
      if (r.path.find("-db-") != std::string::npos) {
        EXPECT_LE(body["deleteOptions"].value("gracePeriodSeconds", 999), 10);  // 300 s clamped
      }
    }
  }
}

TEST_F(KubeTest, DrainHonoursRetryAfterAndTreats404AsGone) {
  AddNodeWithPods("n1", 2);
  api_->InjectFault({.method = "POST",
                     .path_regex = ".*/n1-web-0/eviction",
                     .status = 429,
                     .retry_after_seconds = 1,
                     .count = 1});
  api_->InjectFault(
      {.method = "POST", .path_regex = ".*/n1-web-1/eviction", .status = 404, .count = 1});
  Drainer drainer(*kube_, SystemClock::Get());
  std::atomic<bool> cancel{false};
  auto report = drainer.Drain("n1", {.deadline_unix_ms = NowMs() + 30'000, .poll_ms = 100}, cancel,
                              [] { return true; });
  ASSERT_TRUE(report.ok());
  EXPECT_TRUE(report->complete);
  std::vector<int64_t> attempts;
  for (const auto& r : api_->Journal()) {
    if (r.method == "POST" && r.path.find("n1-web-0/eviction") != std::string::npos) {
      attempts.push_back(r.time_ms);
    }
  }
  ASSERT_EQ(attempts.size(), 2u);
  EXPECT_GE(attempts[1] - attempts[0], 950);  // Retry-After: 1, not the 5 s default
  EXPECT_LT(attempts[1] - attempts[0], 2'000);
}

TEST_F(KubeTest, MultiplePdbsAreReportedAndDeletedWhenTheGraceStopsFitting) {
  api_->AddNode(FakeKubeApi::MakeNode("n1"));
  api_->AddPod(FakeKubeApi::MakePod(
      "default", "both", "n1",
      {.owner_kind = "ReplicaSet", .labels = {{"app", "x"}}, .grace_seconds = 2}));
  api_->AddPdb({.ns = "default", .name = "a", .selector = {{"app", "x"}}});
  api_->AddPdb({.ns = "default", .name = "b", .selector = {{"app", "x"}}});
  Drainer drainer(*kube_, SystemClock::Get());
  std::atomic<bool> cancel{false};
  const int64_t deadline = NowMs() + 6'000;
  auto report =
      drainer.Drain("n1", {.deadline_unix_ms = deadline, .margin_ms = 1'000, .poll_ms = 100},
                    cancel, [] { return true; });
  ASSERT_TRUE(report.ok());
  EXPECT_TRUE(report->complete);
  EXPECT_EQ(report->multiple_pdbs, 1);
  EXPECT_EQ(report->force_deleted, 1);
  ASSERT_FALSE(report->errors.empty());
  EXPECT_THAT(report->errors[0], HasSubstr("more than one PodDisruptionBudget"));
  EXPECT_EQ(api_->CountRequests("POST", ".*/both/eviction"), 1);  // never retried
}

TEST_F(KubeTest, AnEvictionThatIsAlwaysRefusedEndsInATimelyDeleteNotARetryStorm) {
  AddNodeWithPods("n1", 1);
  api_->InjectFault({.method = "POST",
                     .path_regex = ".*/eviction",
                     .status = 403,
                     .count = 1000});  // e.g. RBAC without pods/eviction
  Drainer drainer(*kube_, SystemClock::Get());
  std::atomic<bool> cancel{false};
  const int64_t deadline = NowMs() + 6'000;
  auto report = drainer.Drain(
      "n1",
      {.deadline_unix_ms = deadline, .margin_ms = 1'000, .pdb_retry_ms = 1'000, .poll_ms = 100},
      cancel, [] { return true; });
  ASSERT_TRUE(report.ok());
  EXPECT_TRUE(report->complete);
  EXPECT_EQ(report->force_deleted, 1);
  EXPECT_LE(api_->CountRequests("POST", ".*/eviction"), 5);
  EXPECT_FALSE(report->errors.empty());
}

TEST_F(KubeTest, WithoutTheEvictionApiPodsAreDeleted) {
  AddNodeWithPods("n1", 3);
  api_->SetEvictionSupported(false);
  Drainer drainer(*kube_, SystemClock::Get());
  std::atomic<bool> cancel{false};
  auto report = drainer.Drain("n1", {.deadline_unix_ms = NowMs() + 30'000, .poll_ms = 100}, cancel,
                              [] { return true; });
  ASSERT_TRUE(report.ok());
  EXPECT_TRUE(report->complete);
  EXPECT_EQ(api_->CountRequests("POST", ".*/eviction"), 0);
  EXPECT_EQ(api_->CountRequests("DELETE", "/api/v1/namespaces/default/pods/.*"), 3);
}

TEST_F(KubeTest, ARecreatedNamesakeCountsAsGone) {
  AddNodeWithPods("n1", 1);
  api_->SetPodBehaviour("default", "n1-web-0", {.recreate_same_name = true});
  Drainer drainer(*kube_, SystemClock::Get());
  std::atomic<bool> cancel{false};
  auto report = drainer.Drain("n1", {.deadline_unix_ms = NowMs() + 30'000, .poll_ms = 100}, cancel,
                              [] { return true; });
  ASSERT_TRUE(report.ok());
  EXPECT_TRUE(report->complete);
  EXPECT_EQ(report->evicted, 1);
}

TEST_F(KubeTest, AStuckPodIsReportedAtTheDeadline) {
  AddNodeWithPods("n1", 2);
  api_->SetPodBehaviour("default", "n1-web-1", {.stuck = true});
  Drainer drainer(*kube_, SystemClock::Get());
  std::atomic<bool> cancel{false};
  auto report =
      drainer.Drain("n1", {.deadline_unix_ms = NowMs() + 3'000, .margin_ms = 500, .poll_ms = 100},
                    cancel, [] { return true; });
  ASSERT_TRUE(report.ok());
  EXPECT_FALSE(report->complete);
  EXPECT_EQ(report->remaining, 1);
  EXPECT_THAT(report->remaining_pods, ::testing::ElementsAre("default/n1-web-1"));
}

TEST_F(KubeTest, OnlyOneOfTwoElectorsLeadsAndTheOtherTakesOverOnRelease) {
  auto fast = [](const std::string& id) {
    return LeaderElectionOptions{.ns = "nodewatch",
                                 .name = "agg",
                                 .identity = id,
                                 .lease_duration_ms = 2'000,
                                 .renew_deadline_ms = 1'500,
                                 .retry_period_ms = 200};
  };
  LeaderElector a(*kube_, SystemClock::Get(), fast("a"), nullptr);
  LeaderElector b(*kube_, SystemClock::Get(), fast("b"), nullptr);
  a.Start();
  ASSERT_TRUE(WaitFor([&] { return a.IsLeader(); }, 3'000));
  b.Start();
  std::this_thread::sleep_for(std::chrono::milliseconds(1'000));
  EXPECT_TRUE(a.IsLeader());
  EXPECT_FALSE(b.IsLeader());
  json lease = api_->GetLease("nodewatch", "agg").value();
  EXPECT_EQ(lease["spec"]["holderIdentity"], "a");
  EXPECT_EQ(lease["spec"]["renewTime"].get<std::string>().size(), 27u);  // MicroTime
  a.Stop();  // releases: holder "" and b takes over without waiting for expiry
  ASSERT_TRUE(WaitFor([&] { return b.IsLeader(); }, 2'000));
  lease = api_->GetLease("nodewatch", "agg").value();
  EXPECT_EQ(lease["spec"]["holderIdentity"], "b");
  EXPECT_GE(lease["spec"].value("leaseTransitions", 0), 1);
  b.Stop();
}

TEST_F(KubeTest, ALeaderThatCannotRenewStopsLeading) {
  LeaderElector a(*kube_, SystemClock::Get(),
                  {.ns = "nodewatch",
                   .name = "agg",
                   .identity = "a",
                   .lease_duration_ms = 2'000,
                   .renew_deadline_ms = 1'000,
                   .retry_period_ms = 200},
                  nullptr);
  a.Start();
  ASSERT_TRUE(WaitFor([&] { return a.IsLeader(); }, 3'000));
  api_->InjectFault({.path_regex = "/apis/coordination.k8s.io/.*", .status = 503, .count = 1000});
  EXPECT_TRUE(WaitFor([&] { return !a.IsLeader(); }, 2'500));
  api_->ClearFaults();
  EXPECT_TRUE(WaitFor([&] { return a.IsLeader(); }, 3'000));
  a.Stop();
}

TEST(WebhookTest, RetriesUntilDeliveredAndEscapesFields) {
  HookServer server(/*failures=*/2);
  Webhook hook({.url = server.url(),
                .headers = {"X-Team: sre"},
                .timeout_ms = 2'000,
                .retries = 3,
                .retry_backoff_ms = 50});
  hook.Send({{"text", "node \"n1\": spot\nnotice"}});
  ASSERT_TRUE(WaitFor([&] { return hook.counters().sent.load() == 1; }, 5'000));
  EXPECT_EQ(server.attempts(), 3);
  ASSERT_EQ(server.bodies().size(), 1u);
  json body = json::parse(server.bodies()[0]);
  EXPECT_EQ(body["text"], "node \"n1\": spot\nnotice");
  EXPECT_EQ(hook.counters().retried.load(), 2u);
}

TEST(WebhookTest, GivesUpAfterTheRetriesAndCountsIt) {
  HookServer server(/*failures=*/100);
  Webhook hook({.url = server.url(), .timeout_ms = 1'000, .retries = 1, .retry_backoff_ms = 10});
  hook.Send({{"text", "x"}});
  ASSERT_TRUE(WaitFor([&] { return hook.counters().failed.load() == 1; }, 5'000));
  EXPECT_EQ(server.attempts(), 2);
}

TEST(PolicyTest, DefaultsAndOverrides) {
  auto p = ParsePolicies({"rebalance=cordon", "freeze=drain"});
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->at(nodewatch::v1::INTERRUPTION_KIND_SPOT_TERMINATE), "drain");
  EXPECT_EQ(p->at(nodewatch::v1::INTERRUPTION_KIND_REBALANCE), "cordon");
  EXPECT_EQ(p->at(nodewatch::v1::INTERRUPTION_KIND_FREEZE), "drain");
  EXPECT_THAT(std::string(ParsePolicies({"spot=drain"}).status().message()),
              HasSubstr("unknown kind in 'spot=drain'"));
  EXPECT_THAT(std::string(ParsePolicies({"rebalance=explode"}).status().message()),
              HasSubstr("unknown action"));
}

// The Remediator with a real store and ingest engine.
class RemediatorTest : public KubeTest {
 protected:
  void SetUp() override {
    KubeTest::SetUp();
    env_.reset(rocksdb::NewMemEnv(rocksdb::Env::Default()));
    OpenStore();
  }
  void TearDown() override {
    remediator_.reset();
    if (engine_) engine_->Stop();
  }
  void OpenStore() {
    remediator_.reset();
    if (engine_) engine_->Stop();
    engine_.reset();
    store_.reset();
    auto store = OpenRocksDbStore({.path = "/db", .env = env_.get()});
    ASSERT_TRUE(store.ok());
    store_ = std::move(*store);
    engine_ = std::make_unique<IngestEngine>(*store_, SystemClock::Get());
    ASSERT_TRUE(engine_->Start().ok());
  }
  void Hello(const std::string& node, const std::string& boot_id = "",
             const std::string& instance_id = "") {
    std::promise<absl::StatusOr<uint64_t>> done;
    nodewatch::v1::Hello hello;
    hello.set_spool_id("s1");
    hello.set_boot_id(boot_id);
    hello.mutable_node_info()->set_instance_id(instance_id);
    engine_->SubmitHello(node, hello, [&](absl::StatusOr<uint64_t> r) { done.set_value(r); });
    ASSERT_TRUE(done.get_future().get().ok());
  }
  void StartRemediator(RemediationConfig config) {
    config.leader_elect = false;
    config.drain_poll_ms = 100;
    config.pdb_retry_ms = 500;
    config.drain_margin_ms = 1'000;
    auto policies = ParsePolicies(config.policies);
    ASSERT_TRUE(policies.ok());
    remediator_ = std::make_unique<Remediator>(
        Remediator::Deps{.api = kube_.get(),
                         .store = store_.get(),
                         .engine = engine_.get(),
                         .clock = &SystemClock::Get(),
                         .send_command =
                             [this](const std::string& node, const nodewatch::v1::Command& c) {
                               commands_.push_back(node + " " +
                                                   c.acknowledge_scheduled_event().event_id());
                               return 1;
                             }},
        config, *policies);
    ASSERT_TRUE(remediator_->Start().ok());
  }
  static nodewatch::v1::InterruptionNotice Notice(const std::string& provider,
                                                  nodewatch::v1::InterruptionKind kind,
                                                  const std::string& id, int64_t deadline_ms) {
    nodewatch::v1::InterruptionNotice n;
    n.set_provider(provider);
    n.set_kind(kind);
    n.set_event_id(id);
    n.set_deadline_unix_ms(deadline_ms);
    n.set_not_before_unix_ms(deadline_ms);
    n.set_state(nodewatch::v1::NOTICE_STATE_ACTIVE);
    return n;
  }
  std::vector<nodewatch::v1::RemediationStep> Steps(const std::string& node) {
    std::vector<nodewatch::v1::RemediationStep> steps;
    auto id = engine_->NodeId(node);
    if (!id) return steps;
    (void)store_->ScanRecords(*id, 0, 0, INT64_MAX, [&](int64_t, const nodewatch::v1::Record& r) {
      if (r.has_remediation()) steps.push_back(r.remediation());
      return true;
    });
    return steps;
  }
  bool HasStep(const std::string& node, const std::string& action) {
    for (const auto& s : Steps(node)) {
      if (s.action() == action) return true;
    }
    return false;
  }

  std::unique_ptr<rocksdb::Env> env_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<IngestEngine> engine_;
  std::unique_ptr<Remediator> remediator_;
  std::vector<std::string> commands_;
};

TEST_F(RemediatorTest, SpotNoticeCordonsTaintsLabelsDrainsAndRecordsTheTimeline) {
  AddNodeWithPods("n1", 5);
  Hello("n1");
  StartRemediator({});
  remediator_->OnNotice("n1", Notice("azure", nodewatch::v1::INTERRUPTION_KIND_SPOT_TERMINATE,
                                     "evt-1", NowMs() + 20'000));
  ASSERT_TRUE(WaitFor([&] { return HasStep("n1", "drained"); }, 15'000));
  json node = api_->GetNode("n1").value();
  EXPECT_TRUE(node["spec"].value("unschedulable", false));
  EXPECT_TRUE(HasTaint(node, "nodewatch.io/interruption", "NoSchedule"));
  EXPECT_EQ(node["metadata"]["labels"]["node.kubernetes.io/exclude-from-external-load-balancers"],
            "nodewatch");
  EXPECT_TRUE(api_->PodsOnNode("n1").empty());
  ASSERT_TRUE(WaitFor([&] { return HasStep("n1", "acknowledged"); }, 5'000));
  EXPECT_THAT(commands_, ::testing::ElementsAre("n1 evt-1"));
  std::vector<std::string> actions;
  for (const auto& s : Steps("n1")) actions.push_back(s.action());
  EXPECT_THAT(actions, ::testing::ElementsAre("planned", "cordoned", "tainted", "drain-started",
                                              "drained", "acknowledged"));
  ASSERT_TRUE(WaitFor([&] { return api_->Events().size() >= 3; }, 5'000));
  std::vector<std::string> reasons;
  for (const auto& e : api_->Events()) {
    reasons.push_back(e.value("reason", ""));
    EXPECT_EQ(e["involvedObject"]["kind"], "Node");
    EXPECT_EQ(e["metadata"]["namespace"], "default");
  }
  EXPECT_THAT(reasons, ::testing::ElementsAre("InterruptionNotice", "Cordoned", "Drained"));
  // Pod and drain counts are kept per provider and kind (the metrics), never by node.
  MetricFamilies families;
  remediator_->CollectMetrics(families);
  bool found_evicted = false;
  bool found_histogram = false;
  for (const auto& family : families.Take()) {
    for (const auto& metric : family.metric) {
      std::map<std::string, std::string> labels;
      for (const auto& l : metric.label) labels[l.name] = l.value;
      EXPECT_EQ(labels.count("node"), 0u);
      if (family.name == "nodewatch_remediation_pods_evicted_total") {
        EXPECT_EQ(labels["provider"], "azure");
        EXPECT_EQ(labels["kind"], "spot-terminate");
        EXPECT_EQ(metric.counter.value, 5);
        found_evicted = true;
      }
      if (family.name == "nodewatch_remediation_notice_to_cordon_seconds") {
        EXPECT_EQ(metric.histogram.sample_count, 1u);
        found_histogram = true;
      }
    }
  }
  EXPECT_TRUE(found_evicted);
  EXPECT_TRUE(found_histogram);
}

TEST_F(RemediatorTest, DryRunChangesNothing) {
  AddNodeWithPods("n1", 3);
  Hello("n1");
  StartRemediator({.dry_run = true});
  remediator_->OnNotice("n1", Notice("aws", nodewatch::v1::INTERRUPTION_KIND_SPOT_TERMINATE, "i-1",
                                     NowMs() + 20'000));
  ASSERT_TRUE(WaitFor([&] { return Steps("n1").size() >= 2; }, 5'000));
  for (const auto& r : api_->Journal()) EXPECT_EQ(r.method, "GET") << r.path;
  EXPECT_EQ(api_->PodsOnNode("n1").size(), 3u);
  EXPECT_TRUE(Steps("n1").back().dry_run());
  EXPECT_THAT(Steps("n1").back().message(), HasSubstr("would evict 3 pod(s)"));
}

TEST_F(RemediatorTest, CanceledMaintenanceIsUndone) {
  AddNodeWithPods("n1", 1);
  api_->SetPodBehaviour("default", "n1-web-0", {.stuck = true});
  Hello("n1");
  StartRemediator({});
  auto n = Notice("aws", nodewatch::v1::INTERRUPTION_KIND_SCHEDULED_MAINTENANCE, "instance-event-1",
                  NowMs() + 60'000);
  remediator_->OnNotice("n1", n);
  ASSERT_TRUE(WaitFor([&] { return HasStep("n1", "drain-started"); }, 5'000));
  n.set_state(nodewatch::v1::NOTICE_STATE_CANCELED);
  remediator_->OnNotice("n1", n);
  ASSERT_TRUE(WaitFor([&] { return HasStep("n1", "undone"); }, 5'000));
  json node = api_->GetNode("n1").value();
  EXPECT_FALSE(node["spec"].value("unschedulable", false));
  EXPECT_FALSE(HasTaint(node, "nodewatch.io/interruption", "NoSchedule"));
  EXPECT_FALSE(node["metadata"].contains("labels") &&
               node["metadata"]["labels"].contains(
                   "node.kubernetes.io/exclude-from-external-load-balancers"));
  EXPECT_EQ(remediator_->counters().undone.load(), 1u);
}

TEST_F(RemediatorTest, RebalanceTaintsPreferNoScheduleAndClearsAfterTheTtl) {
  AddNodeWithPods("n1", 1);
  Hello("n1");
  StartRemediator({.rebalance_ttl_ms = 1'500});
  remediator_->OnNotice(
      "n1", Notice("aws", nodewatch::v1::INTERRUPTION_KIND_REBALANCE, "rebalance-1", 0));
  ASSERT_TRUE(WaitFor(
      [&] {
        return HasTaint(api_->GetNode("n1").value(), "nodewatch.io/interruption",
                        "PreferNoSchedule");
      },
      5'000));
  EXPECT_FALSE(api_->GetNode("n1").value()["spec"].value("unschedulable", false));
  EXPECT_EQ(api_->PodsOnNode("n1").size(), 1u);  // no drain
  ASSERT_TRUE(WaitFor([&] { return HasStep("n1", "cleared"); }, 5'000));
  EXPECT_FALSE(
      HasTaint(api_->GetNode("n1").value(), "nodewatch.io/interruption", "PreferNoSchedule"));
}

TEST_F(RemediatorTest, UnknownNodeIsCountedNotFatal) {
  Hello("ghost");
  StartRemediator({});
  remediator_->OnNotice("ghost", Notice("gcp", nodewatch::v1::INTERRUPTION_KIND_SPOT_TERMINATE,
                                        "p-1", NowMs() + 30'000));
  ASSERT_TRUE(WaitFor([&] { return HasStep("ghost", "skipped"); }, 5'000));
  EXPECT_EQ(remediator_->counters().unknown_nodes.load(), 1u);
}

TEST_F(RemediatorTest, ARestartResumesTheDrainFromTheJournal) {
  AddNodeWithPods("n1", 3);
  api_->SetPodBehaviour("default", "n1-web-2", {.termination_ms = 3'000});
  Hello("n1");
  StartRemediator({});
  remediator_->OnNotice("n1", Notice("aws", nodewatch::v1::INTERRUPTION_KIND_SPOT_TERMINATE, "i-9",
                                     NowMs() + 30'000));
  ASSERT_TRUE(WaitFor([&] { return HasStep("n1", "drain-started"); }, 5'000));
  OpenStore();  // the aggregator dies mid-drain (the store survives)
  ASSERT_TRUE(WaitFor([&] { return engine_->NodeId("n1").has_value(); }, 1'000));
  StartRemediator({});
  ASSERT_TRUE(WaitFor([&] { return HasStep("n1", "drained"); }, 15'000));
  EXPECT_TRUE(api_->PodsOnNode("n1").empty());
  int cordons = 0;
  int labels = 0;
  for (const auto& r : api_->Journal()) {
    if (r.method != "PATCH") continue;
    cordons += r.body == R"({"spec":{"unschedulable":true}})";
    labels += r.body.find("exclude-from-external-load-balancers") != std::string::npos;
  }
  EXPECT_EQ(cordons, 1);  // the resumed run found the steps done and did not repeat them
  EXPECT_EQ(labels, 1);
  // The history tells it once: one resumed step, saying what was already done, and no step of
  // the first run recorded again.
  std::map<std::string, int> actions;
  std::string resumed;
  for (const auto& step : Steps("n1")) {
    ++actions[step.action()];
    if (step.action() == "resumed") resumed = step.message();
  }
  EXPECT_EQ(actions["resumed"], 1);
  for (const char* once : {"planned", "cordoned", "tainted", "drain-started", "drained"}) {
    EXPECT_EQ(actions[once], 1) << once;
  }
  EXPECT_THAT(resumed, HasSubstr("already cordoned, tainted, excluded from load balancers"));
  EXPECT_THAT(resumed, HasSubstr("drain started"));
  int marked_events = 0;
  for (const auto& e : api_->Events()) marked_events += e.value("reason", "") == "Cordoned";
  EXPECT_EQ(marked_events, 1);
}

// An API error mid-drain is retried by the same leader: quietly, with no resumed step, and the
// drained outcome counts what was overcome instead of quoting it.
TEST_F(RemediatorTest, ARetryAfterAnApiErrorRepeatsNothingAndTheOutcomeDoesNotQuoteIt) {
  AddNodeWithPods("n1", 3);
  Hello("n1");
  // The taint's read of the Node (after the cordon) fails once: the attempt ends there, and the
  // scheduler relaunches it a second later.
  api_->InjectFault({.method = "GET", .path_regex = "^/api/v1/nodes/n1$", .status = 500});
  // And one eviction is answered 500 once, then retried by the drain.
  api_->InjectFault({.method = "POST", .path_regex = "n1-web-1/eviction$", .status = 500});
  StartRemediator({});
  remediator_->OnNotice("n1", Notice("aws", nodewatch::v1::INTERRUPTION_KIND_SPOT_TERMINATE, "i-7",
                                     NowMs() + 30'000));
  ASSERT_TRUE(WaitFor([&] { return HasStep("n1", "drained"); }, 15'000));
  std::map<std::string, int> actions;
  for (const auto& step : Steps("n1")) ++actions[step.action()];
  int refused = 0;
  for (const auto& r : api_->Journal()) refused += r.method == "GET" && r.status == 500;
  ASSERT_EQ(refused, 1) << "the fault was not hit: this test proves nothing";
  EXPECT_EQ(actions["resumed"], 0);
  EXPECT_EQ(actions["cordoned"], 1);
  EXPECT_EQ(actions["tainted"], 1);
  EXPECT_EQ(actions["drain-started"], 1);
  std::string drained;
  for (const auto& step : Steps("n1")) {
    if (step.action() == "drained") drained = step.message();
  }
  EXPECT_THAT(drained, HasSubstr("(1 API error(s) retried)"));
  EXPECT_THAT(drained, ::testing::Not(HasSubstr("InternalError")));
}

// A node's life ends with a new boot: what the agent's Hello tells the remediator.
IngestEngine::NodeBoot Boot(const std::string& node, const std::string& boot,
                            const std::string& instance, const std::string& previous_boot,
                            const std::string& previous_instance, int64_t away_ms) {
  const int64_t now = NowMs();
  return {.node = node,
          .boot_id = boot,
          .instance_id = instance,
          .previous_boot_id = previous_boot,
          .previous_instance_id = previous_instance,
          .previous_last_seen_unix_ms = now - away_ms,
          .unix_ms = now};
}

std::optional<json> Condition(const json& node, const std::string& type) {
  if (!node.contains("status") || !node["status"].contains("conditions")) return std::nullopt;
  for (const auto& c : node["status"]["conditions"]) {
    if (c.value("type", "") == type) return c;
  }
  return std::nullopt;
}

bool HasLabel(const json& node, const std::string& key) {
  return node["metadata"].contains("labels") && node["metadata"]["labels"].contains(key);
}

constexpr char kLbLabel[] = "node.kubernetes.io/exclude-from-external-load-balancers";

nodewatch::v1::RemediationStep StepOf(const std::vector<nodewatch::v1::RemediationStep>& steps,
                                      const std::string& action) {
  for (const auto& s : steps) {
    if (s.action() == action) return s;
  }
  return {};
}

TEST_F(RemediatorTest, AStoppedNodeThatComesBackIsGivenBackExactlyWhatNodewatchTook) {
  json seeded = FakeKubeApi::MakeNode("n1");
  seeded["spec"]["taints"] = json::array({{{"key", "team.io/gpu"}, {"effect", "NoSchedule"}}});
  seeded["status"]["conditions"] =
      json::array({{{"type", "Ready"}, {"status", "True"}, {"reason", "KubeletReady"}}});
  api_->AddNode(seeded);
  api_->AddPod(FakeKubeApi::MakePod("default", "web", "n1", {.owner_kind = "ReplicaSet"}));
  Hello("n1", "boot-1", "i-0aaa");
  StartRemediator({});
  auto notice =
      Notice("aws", nodewatch::v1::INTERRUPTION_KIND_SPOT_STOP, "spot-stop-1", NowMs() + 20'000);
  notice.set_boot_id("boot-1");
  notice.set_instance_id("i-0aaa");
  remediator_->OnNotice("n1", notice);
  ASSERT_TRUE(WaitFor([&] { return HasStep("n1", "drained"); }, 15'000));
  json away = api_->GetNode("n1").value();
  EXPECT_TRUE(away["spec"].value("unschedulable", false));
  auto active = Condition(away, "InterruptionNotice");
  ASSERT_TRUE(active.has_value()) << away.dump();
  EXPECT_EQ((*active)["status"], "True");
  EXPECT_EQ((*active)["reason"], "SpotStop");
  EXPECT_THAT((*active)["message"].get<std::string>(), HasSubstr("the node goes at "));
  ASSERT_TRUE(Condition(away, "Ready").has_value()) << "someone else's condition was lost";

  // The same boot saying Hello again (a network blip) is not a return.
  remediator_->OnBoot(Boot("n1", "boot-1", "i-0aaa", "boot-1", "i-0aaa", 1'000));
  std::this_thread::sleep_for(std::chrono::milliseconds(400));
  EXPECT_FALSE(HasStep("n1", "returned"));

  remediator_->OnBoot(Boot("n1", "boot-2", "i-0aaa", "boot-1", "i-0aaa", 95'000));
  ASSERT_TRUE(WaitFor([&] { return HasStep("n1", "returned"); }, 5'000));
  json back = api_->GetNode("n1").value();
  EXPECT_FALSE(back["spec"].value("unschedulable", false));
  EXPECT_FALSE(HasTaint(back, "nodewatch.io/interruption", "NoSchedule"));
  EXPECT_TRUE(HasTaint(back, "team.io/gpu", "NoSchedule"));
  EXPECT_FALSE(HasLabel(back, kLbLabel));
  auto over = Condition(back, "InterruptionNotice");
  ASSERT_TRUE(over.has_value());
  EXPECT_EQ((*over)["status"], "False");
  EXPECT_EQ((*over)["reason"], "Returned");
  EXPECT_EQ(Condition(back, "Ready").value()["status"], "True");
  const auto returned = StepOf(Steps("n1"), "returned");
  EXPECT_EQ(returned.downtime_ms() / 1000, 95);
  EXPECT_EQ(returned.instance_id(), "i-0aaa");
  EXPECT_EQ(returned.new_instance_id(), "i-0aaa");
  EXPECT_THAT(returned.message(), HasSubstr("the same instance i-0aaa, new boot, after 1m35s away"));
  EXPECT_THAT(returned.message(), HasSubstr("uncordoned"));
  EXPECT_EQ(remediator_->counters().returned.load(), 1u);
  ASSERT_TRUE(WaitFor(
      [&] {
        for (const auto& e : api_->Events()) {
          if (e.value("reason", "") == "NodeReturned") return true;
        }
        return false;
      },
      5'000));
  // A second Hello of the new life changes nothing more.
  const size_t steps = Steps("n1").size();
  remediator_->OnBoot(Boot("n1", "boot-2", "i-0aaa", "boot-2", "i-0aaa", 0));
  std::this_thread::sleep_for(std::chrono::milliseconds(400));
  EXPECT_EQ(Steps("n1").size(), steps);
}

TEST_F(RemediatorTest, ANodeAnOperatorCordonedStaysCordonedWhenItReturns) {
  json seeded = FakeKubeApi::MakeNode("n1");
  seeded["spec"]["unschedulable"] = true;  // cordoned by an operator before the notice
  api_->AddNode(seeded);
  Hello("n1", "boot-1", "i-1");
  StartRemediator({});
  auto notice = Notice("gcp", nodewatch::v1::INTERRUPTION_KIND_SPOT_TERMINATE, "preempted-1",
                       NowMs() + 20'000);
  notice.set_boot_id("boot-1");
  remediator_->OnNotice("n1", notice);
  ASSERT_TRUE(WaitFor([&] { return HasStep("n1", "drained"); }, 15'000));
  remediator_->OnBoot(Boot("n1", "boot-2", "i-1", "boot-1", "i-1", 30'000));
  ASSERT_TRUE(WaitFor([&] { return HasStep("n1", "returned"); }, 5'000));
  json back = api_->GetNode("n1").value();
  EXPECT_TRUE(back["spec"].value("unschedulable", false));
  EXPECT_FALSE(HasTaint(back, "nodewatch.io/interruption", "NoSchedule"));
  EXPECT_THAT(StepOf(Steps("n1"), "returned").message(),
              HasSubstr("left the cordon as it was (nodewatch did not set it)"));
}

TEST_F(RemediatorTest, ANewInstanceUnderTheSameNameIsAReplacement) {
  api_->AddNode(FakeKubeApi::MakeNode("n1"));
  Hello("n1", "boot-1", "i-old");
  StartRemediator({});
  auto notice = Notice("aws", nodewatch::v1::INTERRUPTION_KIND_SPOT_TERMINATE, "spot-term-1",
                       NowMs() + 20'000);
  notice.set_boot_id("boot-1");
  notice.set_instance_id("i-old");
  remediator_->OnNotice("n1", notice);
  ASSERT_TRUE(WaitFor([&] { return HasStep("n1", "drained"); }, 15'000));
  remediator_->OnBoot(Boot("n1", "boot-9", "i-new", "boot-1", "i-old", 300'000));
  ASSERT_TRUE(WaitFor([&] { return HasStep("n1", "replaced"); }, 5'000));
  json node = api_->GetNode("n1").value();
  EXPECT_FALSE(node["spec"].value("unschedulable", false));
  EXPECT_FALSE(HasTaint(node, "nodewatch.io/interruption", "NoSchedule"));
  EXPECT_EQ(Condition(node, "InterruptionNotice").value()["status"], "False");
  const auto replaced = StepOf(Steps("n1"), "replaced");
  EXPECT_EQ(replaced.instance_id(), "i-old");
  EXPECT_EQ(replaced.new_instance_id(), "i-new");
  EXPECT_THAT(replaced.message(), HasSubstr("a new instance i-new under the name (was i-old)"));
  EXPECT_EQ(remediator_->counters().replaced.load(), 1u);
}

TEST_F(RemediatorTest, ANodeDeletedWhileAwayEndsTheEntryOnce) {
  api_->AddNode(FakeKubeApi::MakeNode("n1"));
  Hello("n1", "boot-1", "i-1");
  StartRemediator({});
  auto notice =
      Notice("aws", nodewatch::v1::INTERRUPTION_KIND_SPOT_STOP, "spot-stop-2", NowMs() + 20'000);
  notice.set_boot_id("boot-1");
  remediator_->OnNotice("n1", notice);
  ASSERT_TRUE(WaitFor([&] { return HasStep("n1", "drained"); }, 15'000));
  api_->RemoveNode("n1");
  remediator_->OnBoot(Boot("n1", "boot-2", "i-1", "boot-1", "i-1", 10'000));
  ASSERT_TRUE(WaitFor([&] { return HasStep("n1", "node-deleted"); }, 5'000));
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  int ended = 0;
  for (const auto& step : Steps("n1")) ended += step.action() == "node-deleted";
  EXPECT_EQ(ended, 1);
  EXPECT_EQ(remediator_->counters().nodes_deleted.load(), 1u);
  EXPECT_EQ(remediator_->counters().api_errors.load(), 0u);
}

TEST_F(RemediatorTest, ACompletedMaintenanceGivesTheNodeBack) {
  AddNodeWithPods("n1", 1);
  Hello("n1", "boot-1", "i-1");
  StartRemediator({});
  auto n = Notice("aws", nodewatch::v1::INTERRUPTION_KIND_REBOOT, "instance-event-7",
                  NowMs() + 60'000);
  n.set_boot_id("boot-1");
  remediator_->OnNotice("n1", n);
  ASSERT_TRUE(WaitFor([&] { return HasStep("n1", "drained"); }, 10'000));
  EXPECT_EQ(Condition(api_->GetNode("n1").value(), "InterruptionNotice").value()["reason"],
            "ScheduledReboot");
  n.set_state(nodewatch::v1::NOTICE_STATE_COMPLETED);
  remediator_->OnNotice("n1", n);
  ASSERT_TRUE(WaitFor([&] { return HasStep("n1", "returned"); }, 5'000));
  json node = api_->GetNode("n1").value();
  EXPECT_FALSE(node["spec"].value("unschedulable", false));
  EXPECT_EQ(Condition(node, "InterruptionNotice").value()["reason"], "Returned");
  EXPECT_THAT(StepOf(Steps("n1"), "returned").message(), HasSubstr("aws reports the event completed"));
}

TEST_F(RemediatorTest, ARefusedConditionNeitherHoldsUpTheDrainNorTheReturn) {
  AddNodeWithPods("n1", 2);
  Hello("n1", "boot-1", "i-1");
  // An older RBAC without nodes/status: every condition PATCH is forbidden.
  api_->InjectFault({.method = "PATCH", .path_regex = "/status$", .status = 403, .count = 100});
  StartRemediator({});
  auto n = Notice("aws", nodewatch::v1::INTERRUPTION_KIND_SPOT_STOP, "spot-stop-4", NowMs() + 20'000);
  n.set_boot_id("boot-1");
  remediator_->OnNotice("n1", n);
  ASSERT_TRUE(WaitFor([&] { return HasStep("n1", "drained"); }, 15'000));
  EXPECT_FALSE(Condition(api_->GetNode("n1").value(), "InterruptionNotice").has_value());
  EXPECT_GE(remediator_->counters().api_errors.load(), 1u);
  remediator_->OnBoot(Boot("n1", "boot-2", "i-1", "boot-1", "i-1", 5'000));
  ASSERT_TRUE(WaitFor([&] { return HasStep("n1", "returned"); }, 5'000));
  EXPECT_FALSE(api_->GetNode("n1").value()["spec"].value("unschedulable", false));
}

TEST_F(RemediatorTest, ANoticeFromAnEarlierBootIsNotActedOn) {
  api_->AddNode(FakeKubeApi::MakeNode("n1"));
  Hello("n1", "boot-1", "i-1");
  Hello("n1", "boot-2", "i-1");  // the node is back already
  StartRemediator({});
  auto late =
      Notice("aws", nodewatch::v1::INTERRUPTION_KIND_SPOT_STOP, "spot-stop-3", NowMs() + 20'000);
  late.set_boot_id("boot-1");  // spooled in the old life, delivered in the new one
  remediator_->OnNotice("n1", late);
  std::this_thread::sleep_for(std::chrono::milliseconds(600));
  EXPECT_FALSE(api_->GetNode("n1").value()["spec"].value("unschedulable", false));
  EXPECT_EQ(api_->CountRequests("PATCH", ""), 0);
  // The same notice seen in the node's current life is acted on: the remediator was running.
  auto now = Notice("aws", nodewatch::v1::INTERRUPTION_KIND_SPOT_STOP, "spot-stop-5",
                    NowMs() + 20'000);
  now.set_boot_id("boot-2");
  remediator_->OnNotice("n1", now);
  ASSERT_TRUE(WaitFor(
      [&] { return api_->GetNode("n1").value()["spec"].value("unschedulable", false); }, 5'000));
}

}  // namespace
}  // namespace nodewatch::aggregator
