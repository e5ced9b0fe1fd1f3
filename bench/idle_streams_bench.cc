// Aggregator memory with thousands of idle agent streams: a real nodewatch-aggregator process,
// N simulated agents (one TLS connection and one node certificate each) that say Hello and stay.
//
//   idle_streams_bench [--streams 5000]
//
// Prints BENCH aggregator_rss_mib_5000_streams (the name carries the default count).
#include <signal.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <thread>

#include "bench/bench_support.h"
#include "bench/sim_agent.h"
#include "tests/support/process.h"

namespace nb = nodewatch::bench;
namespace nt = nodewatch::testing;

int main(int argc, char** argv) {
  int streams = 5000;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--streams")) streams = std::atoi(argv[i + 1]);
  }
  nb::RaiseFileLimit();  // inherited by the aggregator too
  std::string dir = nt::MakeTempDir("nodewatch-idle-bench");
  nt::TestPki pki(dir + "/pki");
  auto server = pki.Issue(
      "aggregator", {.cn = "nodewatch-aggregator", .dns = {"localhost"}, .ips = {"127.0.0.1"}});
  std::string ingest = "127.0.0.1:" + std::to_string(nt::FreePort());
  nt::Subprocess aggregator(nt::BinaryPath("nodewatch-aggregator"),
                            {"--listen",         ingest,
                             "--query-listen",   "127.0.0.1:" + std::to_string(nt::FreePort()),
                             "--metrics-listen", "",
                             "--http-listen",    "",
                             "--data-dir",       dir + "/agg",
                             "--tls-ca",         pki.ca_file(),
                             "--tls-cert",       server.cert,
                             "--tls-key",        server.key,
                             "--log-level",      "warn",
                             "--remediation",    "off"},
                            dir + "/aggregator.log");
  aggregator.Start();
  std::this_thread::sleep_for(std::chrono::seconds(1));
  double baseline = nb::RssMiB(aggregator.pid());

  std::atomic<uint64_t> acked{0};
  std::vector<std::unique_ptr<nodewatch::v1::AgentService::Stub>> stubs;
  std::vector<std::unique_ptr<nb::SimAgent>> agents;
  auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < streams; ++i) {
    std::string node = "idle-" + std::to_string(i);
    auto cert = pki.Issue(node, {.cn = "system:node:" + node, .orgs = {"system:nodes"}});
    stubs.push_back(nodewatch::v1::AgentService::NewStub(
        nb::AgentChannel(ingest, nb::StaticCreds(pki.ca_file(), cert))));
    agents.push_back(std::make_unique<nb::SimAgent>(stubs.back().get(), node, 0, 0, &acked));
    agents.back()->Start();
  }
  int connected = 0;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(300);
  for (auto& a : agents) {
    while (!a->hello_acked() && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    connected += a->hello_acked() ? 1 : 0;
  }
  double connect_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::this_thread::sleep_for(std::chrono::seconds(3));
  double rss = nb::RssMiB(aggregator.pid());
  for (auto& a : agents) a->Cancel();
  for (auto& a : agents) a->WaitDone();
  aggregator.Stop(SIGTERM);
  std::printf(
      "aggregator: %d of %d streams connected (mTLS) in %.1f s; RSS %.1f MiB before, "
      "%.1f MiB with them\n",
      connected, streams, connect_s, baseline, rss);
  if (connected != streams) return 1;
  nb::PrintBench("aggregator_rss_mib_" + std::to_string(streams) + "_streams", rss, "MiB");
  std::filesystem::remove_all(dir);
  return 0;
}
