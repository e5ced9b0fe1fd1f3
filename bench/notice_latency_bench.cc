// Interruption notice latency: notice visible in the metadata simulator → notice durably stored at
// the aggregator, per cloud, with a real nodewatch-agent and nodewatch-aggregator over mTLS.
//
//   notice_latency_bench [--trials 50] [--clouds aws,gcp,azure]
//
// The agent runs with its defaults: AWS polled every second, GCP hanging GETs, Azure polled every
// second (Microsoft's recommendation); polled notices are armed at a random phase of the poll.
// Prints BENCH notice_to_stored_p50_ms_<cloud> and notice_to_stored_p99_ms_<cloud>.
#include <signal.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <random>
#include <thread>

#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "bench/bench_support.h"
#include "bench/cloud_notices.h"
#include "common/logging.h"
#include "tests/support/inprocess_aggregator.h"
#include "tests/support/metadata_simulator.h"
#include "tests/support/process.h"

namespace nb = nodewatch::bench;
namespace nt = nodewatch::testing;

using nodewatch::bench::NowMs;
using nodewatch::bench::Percentile;

int main(int argc, char** argv) {
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  (void)nodewatch::SetLogLevel("warn");
  int trials = 50;
  std::string clouds = "aws,gcp,azure";
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--trials")) trials = std::atoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--clouds")) clouds = argv[i + 1];
  }
  std::string dir = nt::MakeTempDir("nodewatch-latency-bench");
  nt::TestPki pki(dir + "/pki");
  auto server = pki.Issue(
      "aggregator", {.cn = "nodewatch-aggregator", .dns = {"localhost"}, .ips = {"127.0.0.1"}});
  // The aggregator runs in this process so "stored" is read straight from the ingest engine
  // (no query round trip in the measurement); the agent is a real process over mTLS.
  auto aggregator = nt::StartInProcessAggregator(dir, pki, server);
  if (!aggregator.ok()) {
    std::fprintf(stderr, "aggregator: %s\n", aggregator.status().ToString().c_str());
    return 1;
  }
  const std::string ingest = "127.0.0.1:" + std::to_string((*aggregator)->ingest_port());
  auto stored = [&](const std::string& node) -> int64_t {
    auto summary = (*aggregator)->engine().GetNode(node);
    return summary ? static_cast<int64_t>(summary->interruptions()) : -1;
  };
  std::mt19937 rng(42);
  int failures = 0;
  for (const std::string& cloud : std::vector<std::string>(absl::StrSplit(clouds, ','))) {
    nt::MetadataSimulator sim({.cloud = cloud});
    if (!sim.Start()) return 1;
    const std::string node = "latency-" + cloud;
    auto cert = pki.Issue(node, {.cn = "system:node:" + node, .orgs = {"system:nodes"}});
    nt::Subprocess agent(nt::BinaryPath("nodewatch-agent"),
                         {"--node-name",
                          node,
                          "--aggregator",
                          ingest,
                          "--spool-dir",
                          dir + "/spool-" + cloud,
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
                          "warn"},
                         dir + "/agent-" + cloud + ".log");
    agent.Start();
    for (int i = 0; i < 100 && stored(node) < 0; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1500));  // watchers running
    std::vector<double> latencies;
    for (int t = 0; t < trials; ++t) {
      const int64_t baseline = stored(node);
      nb::ArmNotice(sim, cloud, t, rng);
      const int64_t visible = sim.last_visible_ms();
      const int64_t give_up = NowMs() + 10'000;
      while (stored(node) <= baseline && NowMs() < give_up) {
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      }
      if (stored(node) > baseline) {
        latencies.push_back(static_cast<double>(NowMs() - visible));
      } else {
        ++failures;
      }
      nb::ClearNotice(sim, cloud, t, 300);
    }
    agent.Stop(SIGTERM);
    sim.Stop();
    std::printf("%s: %zu of %d notices stored; slowest:", cloud.c_str(), latencies.size(), trials);
    std::vector<double> sorted = latencies;
    std::sort(sorted.rbegin(), sorted.rend());
    for (size_t i = 0; i < std::min<size_t>(5, sorted.size()); ++i) std::printf(" %.0f", sorted[i]);
    std::printf(" ms\n");
    nb::PrintBench("notice_to_stored_p50_ms_" + cloud, Percentile(latencies, 0.5), "ms");
    nb::PrintBench("notice_to_stored_p99_ms_" + cloud, Percentile(latencies, 0.99), "ms");
  }
  (*aggregator)->Shutdown();
  std::filesystem::remove_all(dir);
  return failures == 0 ? 0 : 1;
}
