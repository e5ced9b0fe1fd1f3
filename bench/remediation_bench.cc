// Remediation benchmarks against the fake Kubernetes API server, with the real notice windows.
//
//   remediation_bench [--trials 50] [--clouds aws,gcp,azure,azure-fast] [--parts cordon,drain,mass]
//
// cordon: notice visible in the metadata simulator → cordon PATCH received by the API server,
//         through a real nodewatch-agent and an in-process aggregator (mTLS), per cloud, with the
//         agent's default polling; azure-fast polls Azure every 200 ms for comparison.
// drain:  a 110-pod node with no PDB whose pods take 2 s to stop: notice → last pod gone, and the
//         handler's own overhead (that minus the pods' own termination time).
// mass:   50 nodes of 40 pods (DaemonSets, mirror pods, 300 s graces, a PDB that never allows a
//         disruption) interrupted at once with the AWS 2-minute window: time to cordon all, and
//         how many were drained before their deadline.
#include <signal.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <random>
#include <thread>

#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "aggregator/remediation/drain.h"
#include "aggregator/remediation/kube_api.h"
#include "bench/bench_support.h"
#include "bench/cloud_notices.h"
#include "common/logging.h"
#include "tests/support/fake_kube_api.h"
#include "tests/support/inprocess_aggregator.h"
#include "tests/support/kube_scenarios.h"
#include "tests/support/metadata_simulator.h"
#include "tests/support/process.h"

namespace agg = nodewatch::aggregator;
namespace nb = nodewatch::bench;
namespace nt = nodewatch::testing;

using nodewatch::bench::NowMs;
using nodewatch::bench::Percentile;

namespace {

bool IsCordon(const nt::FakeKubeApi::Request& r) {
  return r.method == "PATCH" && r.body == R"({"spec":{"unschedulable":true}})";
}

// Time the API server received the first cordon of `node` at or after `since_ms`; 0 if none.
int64_t CordonTime(nt::FakeKubeApi& api, const std::string& node, int64_t since_ms) {
  for (const auto& r : api.Journal()) {
    if (IsCordon(r) && r.path == "/api/v1/nodes/" + node && r.time_ms >= since_ms) return r.time_ms;
  }
  return 0;
}

void ConfigureRemediation(agg::AggregatorConfig& c, const std::string& api_url) {
  c.remediation.mode = "on";
  c.remediation.kube_api_server = api_url;
  c.remediation.lease_namespace = "nodewatch";
  c.log_level = "warn";
}

bool WaitForLeader(agg::Aggregator& a) {
  for (int i = 0; i < 100; ++i) {
    if (a.remediator() != nullptr && a.remediator()->IsLeader()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return false;
}

int CordonLatency(const std::string& dir, nt::TestPki& pki, const nt::CertFiles& server, int trials,
                  const std::string& clouds) {
  nt::FakeKubeApi api({.max_termination_ms = 200});
  if (!api.Start()) return 1;
  auto aggregator = nt::StartInProcessAggregator(
      dir + "/cordon", pki, server,
      [&](agg::AggregatorConfig& c) { ConfigureRemediation(c, api.url()); });
  if (!aggregator.ok() || !WaitForLeader(**aggregator)) {
    std::fprintf(stderr, "aggregator did not start or lead\n");
    return 1;
  }
  const std::string ingest = "127.0.0.1:" + std::to_string((*aggregator)->ingest_port());
  std::mt19937 rng(42);
  int failures = 0;
  for (const std::string& name : std::vector<std::string>(absl::StrSplit(clouds, ','))) {
    // "azure-fast": Azure polled every 200 ms instead of Microsoft's recommended second.
    const bool fast = name == "azure-fast";
    const std::string cloud = fast ? "azure" : name;
    nt::MetadataSimulator sim({.cloud = cloud});
    if (!sim.Start()) return 1;
    const std::string node = "cordon-" + name;
    api.AddNode(nt::FakeKubeApi::MakeNode(node));
    auto cert = pki.Issue(node, {.cn = "system:node:" + node, .orgs = {"system:nodes"}});
    nt::Subprocess agent(nt::BinaryPath("nodewatch-agent"),
                         {"--node-name",
                          node,
                          "--aggregator",
                          ingest,
                          "--spool-dir",
                          dir + "/spool-" + name,
                          "--interval",
                          "1h",
                          "--cloud",
                          cloud,
                          "--metadata-endpoint",
                          sim.url(),
                          "--tls-ca",
                          pki.ca_file(),
                          "--tls-cert",
                          cert.cert,
                          "--tls-key",
                          cert.key,
                          "--log-level",
                          "warn",
                          "--azure-poll-interval",
                          fast ? "200ms" : "1s"},
                         dir + "/agent-" + name + ".log");
    agent.Start();
    for (int i = 0; i < 100 && !(*aggregator)->engine().GetNode(node); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1500));  // watchers running
    std::vector<double> latencies;
    for (int t = 0; t < trials; ++t) {
      api.AddNode(nt::FakeKubeApi::MakeNode(node));  // schedulable again for the next notice
      const int64_t before = NowMs();
      nb::ArmNotice(sim, cloud, t, rng);
      const int64_t visible = sim.last_visible_ms();
      int64_t cordoned = 0;
      for (int64_t give_up = NowMs() + 10'000; !cordoned && NowMs() < give_up;) {
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
        cordoned = CordonTime(api, node, before);
      }
      if (cordoned) {
        latencies.push_back(static_cast<double>(cordoned - visible));
      } else {
        ++failures;
      }
      nb::ClearNotice(sim, cloud, t, 500);
      api.ClearJournal();
    }
    agent.Stop(SIGTERM);
    sim.Stop();
    std::printf("%s: %zu of %d notices led to a cordon\n", name.c_str(), latencies.size(), trials);
    const std::string suffix = fast ? "azure_poll_200ms" : cloud;
    nb::PrintBench("notice_to_cordon_p50_ms_" + suffix, Percentile(latencies, 0.5), "ms");
    nb::PrintBench("notice_to_cordon_p99_ms_" + suffix, Percentile(latencies, 0.99), "ms");
  }
  (*aggregator)->Shutdown();
  return failures;
}

int Drain110(const std::string& dir) {
  constexpr int kPods = 110;
  constexpr int64_t kPodStopMs = 2'000;
  nt::FakeKubeApi api({.max_termination_ms = kPodStopMs});
  if (!api.Start()) return 1;
  api.AddNode(nt::FakeKubeApi::MakeNode("full-node"));
  for (int i = 0; i < kPods; ++i) {
    api.AddPod(nt::FakeKubeApi::MakePod("default", "pod-" + std::to_string(i), "full-node",
                                        {.owner_kind = "ReplicaSet", .grace_seconds = 30}));
  }
  auto client = agg::MakeCurlKubeClient({.server = api.url()});
  agg::KubeApi kube(*client);
  agg::Drainer drainer(kube, nodewatch::SystemClock::Get());
  std::atomic<bool> cancel{false};
  const int64_t start = NowMs();
  auto report = drainer.Drain("full-node", {.deadline_unix_ms = start + 120'000}, cancel,
                              [] { return true; });
  const int64_t took = NowMs() - start;
  if (!report.ok() || !report->complete) {
    std::fprintf(stderr, "drain failed\n");
    return 1;
  }
  // The last eviction the server accepted, plus the pods' own stop time, is when the last pod
  // could at best be gone; everything beyond is the handler's.
  int64_t last_eviction = start;
  int requests = 0;
  for (const auto& r : api.Journal()) {
    ++requests;
    if (r.method == "POST" && r.status == 201) last_eviction = std::max(last_eviction, r.time_ms);
  }
  const int64_t overhead = took - kPodStopMs;
  std::printf(
      "drain of %d pods: %lld ms (pods stop in %lld ms; last eviction accepted at +%lld ms;"
      " %d API requests)\n",
      kPods, static_cast<long long>(took), static_cast<long long>(kPodStopMs),
      static_cast<long long>(last_eviction - start), requests);
  nb::PrintBench("drain_110_pods_total_ms", static_cast<double>(took), "ms");
  nb::PrintBench("drain_110_pods_handler_overhead_ms", static_cast<double>(overhead), "ms");
  return 0;
}

int Mass(const std::string& dir, nt::TestPki& pki, const nt::CertFiles& server) {
  constexpr int kNodes = 50;
  nt::FakeKubeApi api({.max_termination_ms = 2'000});
  if (!api.Start()) return 1;
  for (int i = 0; i < kNodes; ++i) nt::SeedInterruptibleNode(api, "mass-" + std::to_string(i));
  auto aggregator = nt::StartInProcessAggregator(
      dir + "/mass", pki, server,
      [&](agg::AggregatorConfig& c) { ConfigureRemediation(c, api.url()); });
  if (!aggregator.ok() || !WaitForLeader(**aggregator)) return 1;
  auto& engine = (*aggregator)->engine();
  // Notices enter through the ingest engine, exactly as agents' batches do after the gRPC layer.
  for (int i = 0; i < kNodes; ++i) {
    nodewatch::v1::Hello hello;
    hello.set_spool_id("mass");
    engine.SubmitHello("mass-" + std::to_string(i), hello, [](absl::StatusOr<uint64_t>) {});
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  const int64_t start = NowMs();
  const int64_t deadline = start + 120'000;
  for (int i = 0; i < kNodes; ++i) {
    nodewatch::v1::RecordBatch batch;
    auto* r = batch.add_records();
    r->set_seq(1);
    r->set_time_unix_ms(start);
    auto* n = r->mutable_interruption();
    n->set_provider("aws");
    n->set_kind(nodewatch::v1::INTERRUPTION_KIND_SPOT_TERMINATE);
    n->set_event_id("spot-mass-" + std::to_string(i));
    n->set_deadline_unix_ms(deadline);
    n->set_state(nodewatch::v1::NOTICE_STATE_ACTIVE);
    engine.SubmitBatch("mass-" + std::to_string(i), batch, [](absl::StatusOr<uint64_t>) {});
  }
  int64_t last_cordon = 0;
  for (int64_t give_up = start + 30'000; NowMs() < give_up;) {
    int cordoned = 0;
    last_cordon = 0;
    for (const auto& r : api.Journal()) {
      if (IsCordon(r)) {
        ++cordoned;
        last_cordon = std::max(last_cordon, r.time_ms);
      }
    }
    if (cordoned >= kNodes) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  std::printf("50 nodes: all cordoned %lld ms after the notices; waiting for the drains...\n",
              static_cast<long long>(last_cordon - start));
  auto drained_nodes = [&] {
    int n = 0;
    for (int i = 0; i < kNodes; ++i) {
      n += api.PodsOnNode("mass-" + std::to_string(i)).size() ==
           static_cast<size_t>(nt::kInterruptibleNodeStaying);
    }
    return n;
  };
  while (NowMs() < deadline && drained_nodes() < kNodes) {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  const int64_t done = NowMs();
  const int drained = drained_nodes();
  std::printf("%d of %d nodes drained %lld ms before their deadline\n", drained, kNodes,
              static_cast<long long>(deadline - done));
  nb::PrintBench("mass_interruption_50_nodes_cordoned_s",
                 static_cast<double>(last_cordon - start) / 1000, "s");
  nb::PrintBench("mass_interruption_50_nodes_drained_before_deadline", drained, "nodes");
  (*aggregator)->Shutdown();
  return drained == kNodes ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  (void)nodewatch::SetLogLevel("warn");
  int trials = 50;
  std::string clouds = "aws,gcp,azure,azure-fast";
  std::string parts = "cordon,drain,mass";
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--trials")) trials = std::atoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--clouds")) clouds = argv[i + 1];
    if (!std::strcmp(argv[i], "--parts")) parts = argv[i + 1];
  }
  std::string dir = nt::MakeTempDir("nodewatch-remediation-bench");
  nt::TestPki pki(dir + "/pki");
  auto server = pki.Issue(
      "aggregator", {.cn = "nodewatch-aggregator", .dns = {"localhost"}, .ips = {"127.0.0.1"}});
  int failures = 0;
  if (parts.find("cordon") != std::string::npos)
    failures += CordonLatency(dir, pki, server, trials, clouds);
  if (parts.find("drain") != std::string::npos) failures += Drain110(dir);
  if (parts.find("mass") != std::string::npos) failures += Mass(dir, pki, server);
  std::filesystem::remove_all(dir);
  return failures == 0 ? 0 : 1;
}
