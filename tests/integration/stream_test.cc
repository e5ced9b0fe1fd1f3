// The agent → aggregator stream never loses a record and stores each exactly once, across
// aggregator crashes (SIGKILL) and agent crashes (SIGKILL), with real processes over mTLS.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>

#include "agent/spool/spool.h"
#include "tests/integration/harness.h"

namespace nodewatch::testing {
namespace {

using nodewatch::v1::Record;

constexpr char kHourInterval[] = "1h";  // only the load generator produces records mid-test

// Waits until the aggregator's watermark for `node` is at least `min_acked` and has not moved
// for two seconds (the agent has nothing left to send).
uint64_t WaitForSettledWatermark(Cluster& c, const std::string& node, uint64_t min_acked) {
  uint64_t last = 0;
  auto last_change = std::chrono::steady_clock::now();
  bool settled = Cluster::WaitFor(
      [&] {
        auto n = c.GetNode(node);
        uint64_t acked = n ? n->acked_seq() : 0;
        auto now = std::chrono::steady_clock::now();
        if (acked != last) {
          last = acked;
          last_change = now;
        }
        return acked >= min_acked && now - last_change > std::chrono::seconds(2);
      },
      120'000);
  EXPECT_TRUE(settled) << node << " settled at " << last << ", wanted at least " << min_acked;
  return last;
}

// Stops the agent, reads the highest seq its spool ever assigned, and checks that the aggregator
// stored exactly 1..highest, once each. Returns the stored records in seq order.
std::vector<Record> ExpectExactlyOnce(Cluster& c, const std::string& node) {
  c.agent(node).Stop(SIGTERM);
  auto spool = agent::Spool::Open({.dir = c.SpoolDir(node)});
  EXPECT_TRUE(spool.ok()) << spool.status();
  uint64_t highest = (*spool)->highest_seq();
  EXPECT_EQ((*spool)->stats().dropped_records, 0u);

  auto summary = c.GetNode(node);
  EXPECT_TRUE(summary.has_value());
  EXPECT_EQ(summary->acked_seq(), highest) << node;
  EXPECT_EQ(summary->records(), highest) << node;
  EXPECT_EQ(summary->lost_records(), 0u) << node;

  auto history = c.History(node);
  std::sort(history.begin(), history.end(),
            [](const Record& a, const Record& b) { return a.seq() < b.seq(); });
  EXPECT_EQ(history.size(), highest) << node;
  for (size_t i = 0; i < history.size(); ++i) {
    if (history[i].seq() != i + 1) {
      ADD_FAILURE() << node << ": expected seq " << i + 1 << " at position " << i << ", got "
                    << history[i].seq();
      break;
    }
  }
  return history;
}

// The load generator numbers its records 0, 1, 2, ... (heartbeat.spool_records) per process run.
// Returns the runs' lengths; fails if any run has a hole or a repeat.
std::vector<uint64_t> SyntheticRuns(const std::vector<Record>& by_seq) {
  std::vector<uint64_t> runs;
  for (const auto& r : by_seq) {
    if (!r.has_heartbeat() || r.heartbeat().memory_total_bytes() != 0) {
      continue;  // a real heartbeat or NodeInfo
    }
    uint64_t marker = r.heartbeat().spool_records();
    if (marker == 0) {
      runs.push_back(1);
    } else if (!runs.empty() && marker == runs.back()) {
      ++runs.back();
    } else {
      ADD_FAILURE() << "synthetic record " << marker << " out of order at seq " << r.seq();
      return runs;
    }
  }
  return runs;
}

TEST(StreamIntegration, ThreeAgentsLoseNothingWhileTheAggregatorIsKilledTwice) {
  Cluster c("kill-aggregator");
  c.StartAggregator();
  const std::vector<std::string> nodes = {"node-a", "node-b", "node-c"};
  constexpr uint64_t kPerAgent = 33'334;  // 100,002 records in all
  for (const auto& n : nodes) {
    c.StartAgent(n, {"--interval", kHourInterval, "--synthetic-records-per-second", "6000",
                     "--synthetic-records-total", std::to_string(kPerAgent)});
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(2000));
  c.KillAggregator(SIGKILL);
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));  // agents spool meanwhile
  c.StartAggregator();
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  c.KillAggregator(SIGKILL);
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  c.StartAggregator();

  for (const auto& n : nodes) {
    WaitForSettledWatermark(c, n, kPerAgent);
    auto history = ExpectExactlyOnce(c, n);
    EXPECT_THAT(SyntheticRuns(history), ::testing::ElementsAre(kPerAgent)) << n;
  }
  // The aggregator really was down: the agents had to reconnect.
  for (const auto& n : nodes) {
    EXPECT_THAT(c.agent(n).log(), ::testing::HasSubstr("stream closed")) << n;
  }
}

TEST(StreamIntegration, AnAgentKilledMidStreamLosesNothingAfterRestart) {
  Cluster c("kill-agent");
  c.StartAggregator();
  const std::vector<std::string> args = {"--interval",
                                         kHourInterval,
                                         "--synthetic-records-per-second",
                                         "5000",
                                         "--synthetic-records-total",
                                         "20000"};
  c.StartAgent("node-k", args);
  ASSERT_TRUE(Cluster::WaitFor(
      [&] {
        auto n = c.GetNode("node-k");
        return n && n->acked_seq() > 3000;
      },
      30'000));
  c.agent("node-k").Stop(SIGKILL);
  c.StartAgent("node-k", args);
  WaitForSettledWatermark(c, "node-k", 20'000);
  auto history = ExpectExactlyOnce(c, "node-k");
  auto runs = SyntheticRuns(history);
  ASSERT_EQ(runs.size(), 2u);  // the killed run's records, then the full second run
  EXPECT_GT(runs[0], 3000u);
  EXPECT_EQ(runs[1], 20'000u);
}

TEST(StreamIntegration, TheCliShowsNodesAndHistory) {
  Cluster c("cli");
  c.StartAggregator();
  const int metrics_port = FreePort();
  c.StartAgent("node-cli", {"--interval", "500ms", "--bpf-stats=true", "--metrics-listen",
                            "127.0.0.1:" + std::to_string(metrics_port)});
  ASSERT_TRUE(Cluster::WaitFor(
      [&] {
        auto n = c.GetNode("node-cli");
        return n && n->acked_seq() >= 3;
      },
      20'000));
  auto cli = [&](std::vector<std::string> args) {
    std::vector<std::string> all = {"--server",        c.query_address(),    "--tls-ca",
                                    c.pki().ca_file(), "--tls-cert",         c.operator_cert().cert,
                                    "--tls-key",       c.operator_cert().key};
    all.insert(all.end(), args.begin(), args.end());
    std::string log = c.dir() + "/cli-" + std::to_string(std::rand()) + ".out";
    Subprocess p(BinaryPath("nodewatch"), all, log);
    p.Start();
    Cluster::WaitFor([&] { return !p.running(); }, 20'000);
    return p.log();
  };
  std::string nodes = cli({"nodes"});
  EXPECT_THAT(nodes, ::testing::HasSubstr("node-cli"));
  EXPECT_THAT(nodes, ::testing::HasSubstr("CONNECTED"));
  std::string history = cli({"history", "node-cli", "--since", "1h"});
  EXPECT_THAT(history, ::testing::HasSubstr("node-info"));
  EXPECT_THAT(history, ::testing::HasSubstr("heartbeat"));
  std::string json = cli({"history", "node-cli", "--kind", "heartbeat", "-o", "json"});
  EXPECT_THAT(json, ::testing::HasSubstr("\"heartbeat\""));
  EXPECT_THAT(json, ::testing::Not(::testing::HasSubstr("\"node_info\"")));
  EXPECT_THAT(cli({"history", "no-such-node"}), ::testing::HasSubstr("no node 'no-such-node'"));
  // The agent samples this machine's filesystems: "/" with its real capacity reaches the history.
  std::string disk = cli({"history", "node-cli", "--kind", "disk", "--limit", "20"});
  EXPECT_THAT(disk, ::testing::ContainsRegex(" / [0-9]+% used of "));
  // eBPF (CI runs as root, so the programs load): the agent counts its own stream to the
  // aggregator on the cgroup v2 root, and says so in its metrics.
  EXPECT_EQ(AgentMetric(metrics_port, "nodewatch_agent_bpf_collector_up{collector=\"network\"}"),
            1);
  EXPECT_EQ(AgentMetric(metrics_port, "nodewatch_agent_bpf_collector_up{collector=\"block_io\"}"),
            1);
  EXPECT_GT(AgentMetric(metrics_port,
                        "nodewatch_agent_bpf_program_runs_total{program=\"nw_count_egress\"}"),
            0);
  EXPECT_GT(AgentMetric(metrics_port, "nodewatch_agent_bpf_map_max_entries{map=\"flows\"}"), 0);
  // Runs the kernel skipped are exported for every program (0 on a quiet machine).
  EXPECT_GE(
      AgentMetric(metrics_port,
                  "nodewatch_agent_bpf_program_missed_runs_total{program=\"nw_block_complete\"}"),
      0);
  EXPECT_GE(AgentMetric(metrics_port, "nodewatch_agent_block_io_uncounted_total"), 0);
  ASSERT_TRUE(Cluster::WaitFor(
      [&] {
        return cli({"history", "node-cli", "--kind", "network", "--limit", "20"}).find(" tx ") !=
               std::string::npos;
      },
      20'000));
}

}  // namespace
}  // namespace nodewatch::testing
