// CostLedger: the aggregator's running account of what costs money besides instance hours.
//
// As a RecordTap on the ingest engine it turns every stored NetworkSample into data-transfer
// counters (egress bytes per UTC day, node and transfer class, and per day, provider, namespace
// and class) that commit in the same RocksDB write as the sample, so the rollups are exact across
// crashes and outlive the history's retention. It also keeps, in memory, the last 40 days of
// interruption notices and each node's latest filesystem forecasts, for the alert rules.
//
//   CostLedger ledger(classifier, {});
//   RETURN_IF_ERROR(ledger.Load(store, clock.NowUnixMs()));   // before engine.Start()
//   engine.AddRecordTap(&ledger);
//   TransferTotals t = ledger.Totals(month_start_day, today);
//
// Thread-safe: the tap calls come from the ingest writer, reads from the evaluator and queries.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "aggregator/cost/transfer_classifier.h"
#include "aggregator/ingest/ingest_engine.h"

namespace nodewatch::aggregator {

using ClassBytes = std::array<uint64_t, kTransferClasses>;

// Days are UTC calendar days numbered from the Unix epoch.
int64_t DayOf(int64_t unix_ms);
std::string DayName(int64_t day);  // "2026-11-30"

struct InterruptionEvent {
  std::string node;
  std::string event_id;  // with provider: one cloud event (ACTIVE then COMPLETED is one event)
  int64_t time_ms = 0;
  nodewatch::v1::InterruptionKind kind = nodewatch::v1::INTERRUPTION_KIND_UNSPECIFIED;
  nodewatch::v1::NoticeState state = nodewatch::v1::NOTICE_STATE_UNSPECIFIED;
  std::string provider;
};
bool IsSpotReclaim(const InterruptionEvent& e);

struct FilesystemForecast {
  std::string node;
  std::string mountpoint;
  int64_t observed_ms = 0;
  int64_t predicted_full_ms = 0;
  double used_fraction = 0;
};

// Transfer over a range of days, summed.
struct TransferTotals {
  ClassBytes total{};
  std::unordered_map<std::string, ClassBytes> by_node;
  std::map<std::pair<std::string, std::string>, ClassBytes> by_namespace;  // (provider, ns)
  std::map<std::string, ClassBytes> by_provider;
};

struct CostLedgerOptions {
  int64_t keep_days = 62;                // rollup days kept (two full months)
  size_t max_namespaces_per_day = 2000;  // beyond: counted under "(other)"
  size_t max_filesystems_per_node = 64;  // beyond: not remembered
  size_t max_interruptions = 200'000;    // remembered notices (40 days of a big fleet)
  uint64_t max_flow_bytes = 1ull << 48;  // a flow claiming more in one sample is clamped
};

struct CostLedgerCounters {
  std::atomic<uint64_t> samples{0};
  std::atomic<uint64_t> flows{0};
  std::atomic<uint64_t> unclassifiable_flows{0};  // remote address neither 4 nor 16 bytes
  std::atomic<uint64_t> namespaces_folded{0};     // flows counted under "(other)"
  std::atomic<uint64_t> clamped_flows{0};         // absurd byte counts clamped
  std::atomic<uint64_t> dropped_entries{0};       // filesystems or notices over the bounds
};

class CostLedger final : public RecordTap {
 public:
  CostLedger(const TransferClassifier& classifier, CostLedgerOptions options);

  // Reads the rollups and the interruptions of the last 40 days. Call before the engine starts.
  absl::Status Load(Store& store, int64_t now_ms);
  // Forgets days older than keep_days, in memory and in the store.
  absl::Status Prune(Store& store, int64_t now_ms);

  void Derive(const std::string& node, const nodewatch::v1::NodeInfo& info, int64_t key_time_ms,
              const nodewatch::v1::Record& record, std::vector<CounterDelta>* out) override;
  void Stored(const std::string& node, const nodewatch::v1::NodeInfo& info, int64_t key_time_ms,
              const nodewatch::v1::Record& record) override;
  void CountersCommitted(const std::vector<CounterDelta>& deltas) override;

  // Sums of the days in [first_day, last_day].
  TransferTotals Totals(int64_t first_day, int64_t last_day) const;
  // Only the per-provider sums of [first_day, last_day] (cheap: no per-node maps).
  std::map<std::string, ClassBytes> ProviderTotals(int64_t first_day, int64_t last_day) const;
  std::vector<InterruptionEvent> Interruptions(int64_t since_ms) const;
  std::vector<FilesystemForecast> Filesystems() const;
  const CostLedgerCounters& counters() const { return counters_; }
  size_t rollup_entries() const;

  // Exposed for tests and tools: the counter key of a (day, node, class) and its parser.
  static std::string NodeKey(int64_t day, const std::string& node, TransferClass c);

 private:
  struct Day {
    std::unordered_map<std::string, ClassBytes> nodes;
    std::map<std::pair<std::string, std::string>, ClassBytes> namespaces;
    std::map<std::string, ClassBytes> providers;
    ClassBytes total{};
  };
  void Apply(const std::string& key, uint64_t delta);  // mu_ held
  static void Add(ClassBytes& into, const ClassBytes& from);

  const TransferClassifier& classifier_;
  const CostLedgerOptions options_;
  CostLedgerCounters counters_;
  mutable std::mutex mu_;
  std::map<int64_t, Day> days_;
  std::vector<InterruptionEvent> interruptions_;  // time order (roughly: agents may lag)
  std::map<std::pair<std::string, std::string>, FilesystemForecast> filesystems_;
  int64_t pruned_before_day_ = INT64_MIN;  // Prune's thread only
  // Namespaces seen per day by Derive, for the cardinality bound.
  std::map<int64_t, std::unordered_map<std::string, bool>> derive_namespaces_;
};

}  // namespace nodewatch::aggregator
