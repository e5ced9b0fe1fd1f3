// Cost and alert evaluation for a 5,000-node fleet with 14 days of history: the time of one
// evaluation cycle (pricing every node, the month's transfer rollups, spot savings and fallback
// matching, every alert rule, persisting alert states) and the aggregator's memory with it.
//
//   cost_bench [--nodes 5000] [--days 14] [--cycles 10]
//
// The fleet: 70 % spot across the built-in AWS types, 10 % of nodes gone before now, 2 % of spot
// nodes reclaimed per day (with on-demand fallbacks), three filesystems per node (a few filling),
// and per day and node egress in three transfer classes from ten namespaces of ~200. Nodes and
// notices go through the real ingest engine into RocksDB on disk; the rollups are injected as the
// engine would commit them.
//
// Prints BENCH cost_eval_5000_nodes_ms (median cycle), cost_eval_max_ms, cost_eval_rss_mib and
// cost_eval_ledger_mib (what the rollups and alert state add).
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <future>
#include <random>

#include "aggregator/alerts/cost_monitor.h"
#include "bench/bench_support.h"
#include "bench/sim_agent.h"
#include "common/logging.h"
#include "common/options.h"
#include "tests/support/process.h"

namespace na = nodewatch::aggregator;
namespace nb = nodewatch::bench;

namespace {

constexpr int64_t kDayMs = 86'400'000;

void Submit(na::IngestEngine& engine, const std::string& node, const nodewatch::v1::Hello* hello,
            const nodewatch::v1::RecordBatch* batch) {
  std::promise<absl::StatusOr<uint64_t>> done;
  auto cb = [&](absl::StatusOr<uint64_t> a) { done.set_value(a); };
  if (hello != nullptr) {
    engine.SubmitHello(node, *hello, cb);
  } else {
    engine.SubmitBatch(node, *batch, cb);
  }
  auto r = done.get_future().get();
  if (!r.ok()) {
    std::fprintf(stderr, "submit: %s\n", std::string(r.status().message()).c_str());
    std::exit(1);
  }
}

}  // namespace

int main(int argc, char** argv) {
  int64_t nodes = 5000;
  int64_t days = 14;
  int64_t cycles = 10;
  nodewatch::OptionSet options("cost_bench", "Cost and alert evaluation time and memory.");
  options.AddInt("nodes", &nodes, "Fleet size.", 1, 1'000'000);
  options.AddInt("days", &days, "Days of history.", 1, 60);
  options.AddInt("cycles", &cycles, "Evaluation cycles timed.", 1, 1000);
  if (auto p = options.Parse(argc, argv); !p.ok() || options.help_requested()) {
    std::fprintf(stderr, "%s", options.Help().c_str());
    return p.ok() ? 0 : 2;
  }
  (void)nodewatch::SetLogLevel("error");  // the fleet fires ~150 disk alerts
  const std::string dir = nodewatch::testing::MakeTempDir("cost-bench");
  const int64_t now = nb::NowMs();
  nodewatch::FakeClock clock(now - days * kDayMs);
  auto store = na::OpenRocksDbStore({.path = dir + "/db", .sync = false});
  if (!store.ok()) return 1;
  na::TransferClassifier classifier;
  na::CostLedger ledger(classifier, {});
  (void)ledger.Load(**store, clock.NowUnixMs());
  na::IngestEngine engine(**store, clock);
  engine.AddRecordTap(&ledger);
  (void)engine.Start();
  na::AlertEngine alerts(**store, nullptr, {});

  const std::vector<std::string> types = {"t3.medium", "t3.large",  "t3a.large", "t4g.large",
                                          "m5.large",  "m5.xlarge", "m5a.large", "m5a.2xlarge"};
  const std::vector<std::string> zones = {"us-east-1a", "us-east-1b", "us-east-1c"};
  std::mt19937_64 rng(42);
  std::vector<std::string> names;
  std::vector<bool> is_spot;
  for (int64_t i = 0; i < nodes; ++i) {
    names.push_back("ip-10-" + std::to_string(i / 250) + "-" + std::to_string(i % 250) +
                    ".ec2.internal");
    nodewatch::v1::Hello h;
    h.set_spool_id("s" + std::to_string(i));
    auto* info = h.mutable_node_info();
    info->set_provider("aws");
    info->set_region("us-east-1");
    info->set_zone(zones[static_cast<size_t>(i) % zones.size()]);
    info->set_instance_type(types[rng() % types.size()]);
    const bool spot = rng() % 10 < 7;
    is_spot.push_back(spot);
    info->set_lifecycle(spot ? nodewatch::v1::LIFECYCLE_SPOT : nodewatch::v1::LIFECYCLE_ON_DEMAND);
    auto* a = info->add_addresses();
    a->set_type("InternalIP");
    a->set_address("10." + std::to_string(i / 62500) + "." + std::to_string(i / 250 % 250) + "." +
                   std::to_string(i % 250));
    Submit(engine, names.back(), &h, nullptr);
  }
  // Reclaims spread over the days, with the records' own times.
  uint64_t notices = 0;
  std::vector<uint64_t> seq(static_cast<size_t>(nodes), 0);
  for (int64_t d = 0; d < days; ++d) {
    for (int64_t i = 0; i < nodes; ++i) {
      if (!is_spot[static_cast<size_t>(i)] || rng() % 1000 >= 20) continue;
      nodewatch::v1::RecordBatch b;
      auto* r = b.add_records();
      r->set_seq(++seq[static_cast<size_t>(i)]);
      r->set_time_unix_ms(clock.NowUnixMs() + d * kDayMs + static_cast<int64_t>(rng() % kDayMs));
      auto* n = r->mutable_interruption();
      n->set_provider("aws");
      n->set_event_id("e" + std::to_string(notices));
      n->set_kind(nodewatch::v1::INTERRUPTION_KIND_SPOT_TERMINATE);
      n->set_state(nodewatch::v1::NOTICE_STATE_ACTIVE);
      Submit(engine, names[static_cast<size_t>(i)], nullptr, &b);
      ++notices;
    }
  }
  clock.Set(now);
  for (int64_t i = 0; i < nodes; ++i) {
    if (i % 10 != 0) engine.StreamOpened(names[static_cast<size_t>(i)]);  // 10 % are gone
  }
  const double rss_before = nb::RssMiB();
  // Transfer rollups, as the engine would commit them from the samples.
  std::vector<na::CounterDelta> deltas;
  for (int64_t d = 0; d < days; ++d) {
    const int64_t day = na::DayOf(now) - d;
    for (int64_t i = 0; i < nodes; ++i) {
      for (auto c : {na::TransferClass::kSameZone, na::TransferClass::kCrossZone,
                     na::TransferClass::kInternet}) {
        deltas.push_back({na::CostLedger::NodeKey(day, names[static_cast<size_t>(i)], c),
                          1'000'000 + rng() % 5'000'000'000});
      }
    }
    for (int ns = 0; ns < 200; ++ns) {
      for (int c = 0; c < 3; ++c) {
        deltas.push_back({"x/" + na::DayName(day) + "/s/aws/team-" + std::to_string(ns) + "/" +
                              std::to_string(c),
                          rng() % 50'000'000'000});
      }
    }
    ledger.CountersCommitted(deltas);
    deltas.clear();
  }
  // Filesystems: three per node, one in a hundred filling within the day.
  for (int64_t i = 0; i < nodes; ++i) {
    nodewatch::v1::Record r;
    for (const char* mount : {"/", "/var/lib/containerd", "/var/lib/kubelet"}) {
      auto* fs = r.mutable_disk()->add_filesystems();
      fs->set_mountpoint(mount);
      fs->set_size_bytes(100ull << 30);
      fs->set_available_bytes(40ull << 30);
      if (rng() % 100 == 0) fs->set_predicted_full_unix_ms(now + 6 * 3'600'000);
    }
    ledger.Stored(names[static_cast<size_t>(i)], {}, now, r);
  }

  na::CostMonitor monitor(engine, **store, clock, na::PriceTable::BuiltIn(), ledger, classifier,
                          alerts, {.cluster = "bench", .monthly_budget_usd = 50'000});
  std::vector<double> ms;
  for (int64_t c = 0; c < cycles; ++c) {
    const auto start = std::chrono::steady_clock::now();
    monitor.RunOnce();
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
                     .count());
    clock.Advance(60'000);
  }
  std::sort(ms.begin(), ms.end());
  const auto report = monitor.Report(false);
  std::printf(
      "fleet: %lld nodes, %lld days, %llu notices, %zu rollup entries, %zu alerts; "
      "month to date $%.0f, forecast $%.0f\n",
      static_cast<long long>(nodes), static_cast<long long>(days),
      static_cast<unsigned long long>(notices), ledger.rollup_entries(),
      monitor.Alerts(true).size(), report.month_to_date_usd(), report.forecast_usd());
  std::printf("BENCH cost_eval_5000_nodes_ms %.1f ms\n", ms[ms.size() / 2]);
  std::printf("BENCH cost_eval_max_ms %.1f ms\n", ms.back());
  std::printf("BENCH cost_eval_rss_mib %.1f MiB\n", nb::RssMiB());
  std::printf("BENCH cost_eval_ledger_mib %.1f MiB\n", nb::RssMiB() - rss_before);
  engine.Stop();
  store->reset();
  std::filesystem::remove_all(dir);
  return 0;
}
