// CostMonitor: every `interval_ms` it prices the fleet (cost_model over the node directory, the
// price table and the ledger's rollups), evaluates the alert rules and hands the conditions to
// the AlertEngine, and keeps the latest CostReport for the query API and /metrics.
//
// Rules (thresholds in CostMonitorOptions; every one configurable):
//   budget-forecast         month-end forecast > forecast_ratio x monthly budget
//   budget-actual           month to date > monthly budget
//   spot-interruption-spike spot reclaims in the window >= count, or on-demand fallback share
//                           >= fallback_share
//   transfer-cost-spike     data-transfer cost of the last 24 h > factor x the daily average of
//                           the 7 whole days before yesterday (and >= min_usd); needs 3 days
//                           of data
//   disk-filling            a filesystem predicted full within disk_full_within_ms
//   repeated-interruptions  a node with >= repeated_count notices in repeated_window_ms
#pragma once

#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "aggregator/alerts/alert_engine.h"
#include "aggregator/cost/cost_ledger.h"
#include "aggregator/cost/cost_model.h"
#include "aggregator/ingest/ingest_engine.h"
#include "common/clock.h"
#include "common/metrics_endpoint.h"
#include "common/periodic_thread.h"

namespace nodewatch::aggregator {

struct CostMonitorOptions {
  int64_t interval_ms = 60'000;
  std::string cluster = "default";
  std::string environment = "default";
  double monthly_budget_usd = 0;  // 0: no budget rules
  double forecast_ratio = 0.8;
  int64_t interruption_window_ms = 3'600'000;
  int64_t interruption_spike_count = 5;
  double fallback_share = 0.5;
  double transfer_spike_factor = 3.0;
  double transfer_spike_min_usd = 1.0;
  int64_t disk_full_within_ms = 24 * 3'600'000;
  int64_t repeated_count = 3;
  int64_t repeated_window_ms = 24 * 3'600'000;
  int64_t pending_for_ms =
      5 * 60'000;  // spikes and disks must hold this long; budgets fire at once
};

class CostMonitor {
 public:
  CostMonitor(IngestEngine& engine, Store& store, const Clock& clock, const PriceTable& prices,
              CostLedger& ledger, TransferClassifier& classifier, AlertEngine& alerts,
              CostMonitorOptions options);
  ~CostMonitor();

  // The periodic loop; RunOnce is also public for tests and benchmarks.
  void Start() { thread_.Start(); }
  void Stop() { thread_.Stop(); }
  // One cycle: refresh the classifier, price, evaluate alerts, prune the ledger.
  void RunOnce();
  // The rule conditions for a report (exposed for tests).
  std::vector<AlertCondition> Conditions(const nodewatch::v1::CostReport& report,
                                         int64_t now_ms) const;
  // The latest report (computed now if no cycle ran yet); per-node lines when asked.
  nodewatch::v1::CostReport Report(bool include_nodes);
  std::vector<nodewatch::v1::Alert> Alerts(bool include_resolved) const {
    return alerts_.List(include_resolved);
  }
  void CollectMetrics(MetricFamilies& f) const;

 private:
  nodewatch::v1::CostReport Compute(int64_t now_ms);

  IngestEngine& engine_;
  Store& store_;
  const Clock& clock_;
  const PriceTable& prices_;
  CostLedger& ledger_;
  TransferClassifier& classifier_;
  AlertEngine& alerts_;
  const CostMonitorOptions options_;
  HistogramData cycle_seconds_{{0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5}};

  mutable std::mutex mu_;
  std::optional<nodewatch::v1::CostReport> latest_;  // with per-node lines
  PeriodicThread thread_;                            // last: stopped before the members it uses go
};

}  // namespace nodewatch::aggregator
