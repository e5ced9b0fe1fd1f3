// Agent footprint at steady state: CPU % of one core and RSS of a real nodewatch-agent process
// streaming to a real aggregator over mTLS.
//
//   agent_footprint_bench [--seconds 30] [--interval 1s]
//
// The interval defaults to 1 s, ten times the agent's default rate, so the figure is an upper
// bound for a default deployment. Prints BENCH agent_cpu_pct and agent_rss_mib.
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
  int seconds = 30;
  std::string interval = "1s";
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--seconds")) seconds = std::atoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--interval")) interval = argv[i + 1];
  }
  std::string dir = nt::MakeTempDir("nodewatch-footprint-bench");
  nt::TestPki pki(dir + "/pki");
  auto server = pki.Issue(
      "aggregator", {.cn = "nodewatch-aggregator", .dns = {"localhost"}, .ips = {"127.0.0.1"}});
  auto node = pki.Issue("node", {.cn = "system:node:bench-node", .orgs = {"system:nodes"}});
  std::string ingest = "127.0.0.1:" + std::to_string(nt::FreePort());
  nt::Subprocess aggregator(
      nt::BinaryPath("nodewatch-aggregator"),
      {"--listen", ingest, "--query-listen", "127.0.0.1:" + std::to_string(nt::FreePort()),
       "--metrics-listen", "", "--http-listen", "", "--data-dir", dir + "/agg", "--tls-ca",
       pki.ca_file(), "--tls-cert", server.cert, "--tls-key", server.key, "--remediation", "off"},
      dir + "/aggregator.log");
  aggregator.Start();
  std::this_thread::sleep_for(std::chrono::seconds(1));
  nt::Subprocess agent(nt::BinaryPath("nodewatch-agent"),
                       {"--node-name", "bench-node", "--aggregator", ingest, "--spool-dir",
                        dir + "/spool", "--interval", interval, "--cloud", "none", "--tls-ca",
                        pki.ca_file(), "--tls-cert", node.cert, "--tls-key", node.key},
                       dir + "/agent.log");
  agent.Start();
  std::this_thread::sleep_for(std::chrono::seconds(3));  // warm-up: connect, first records
  double cpu0 = nb::CpuSeconds(agent.pid());
  auto t0 = std::chrono::steady_clock::now();
  double peak_rss = 0;
  for (int s = 0; s < seconds; ++s) {
    std::this_thread::sleep_for(std::chrono::seconds(1));
    peak_rss = std::max(peak_rss, nb::RssMiB(agent.pid()));
  }
  double cpu = nb::CpuSeconds(agent.pid()) - cpu0;
  double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  bool alive = agent.running();
  agent.Stop(SIGTERM);
  aggregator.Stop(SIGTERM);
  if (!alive) {
    std::fprintf(stderr, "agent exited early:\n%s\n", agent.log().c_str());
    return 1;
  }
  std::printf("agent: %d s steady state at --interval %s; %.3f CPU-seconds\n", seconds,
              interval.c_str(), cpu);
  nb::PrintBench("agent_cpu_pct", 100.0 * cpu / wall, "percent_of_one_core");
  nb::PrintBench("agent_rss_mib", peak_rss, "MiB");
  std::filesystem::remove_all(dir);
  return 0;
}
