#include "aggregator/metrics/metrics.h"

namespace nodewatch::aggregator {

absl::StatusOr<std::unique_ptr<MetricsEndpoint>> StartAggregatorMetrics(
    const std::string& address, IngestEngine& engine, IngestService& ingest, QueryService& query,
    Store& store, const Remediator* remediator, const CostMonitor* cost, NodeSignals* signals,
    const Clock& clock) {
  return MetricsEndpoint::Start(
      "metrics-listen", address,
      [&engine, &ingest, &query, &store, remediator, cost, signals, &clock] {
        const auto& c = engine.counters();
        const auto& s = ingest.counters();
        auto d = [](uint64_t v) { return static_cast<double>(v); };
        MetricFamilies f;
        f.Gauge("nodewatch_agents_connected", "Agent streams open and past Hello.",
                d(engine.connected_streams()));
        f.Gauge("nodewatch_nodes_known", "Nodes in the node directory.",
                d(engine.ListNodes().size()));
        f.Gauge("nodewatch_ingest_queue_depth", "Agent messages waiting for the store writer.",
                d(engine.queue_depth()));
        f.Gauge("nodewatch_store_size_bytes", "Approximate size of the RocksDB store.",
                d(store.ApproximateSizeBytes()));
        f.Counter("nodewatch_ingest_records_total", "Records durably stored.", d(c.records_stored));
        f.Counter("nodewatch_ingest_duplicate_records_total",
                  "Records received again and skipped (already stored).", d(c.duplicates));
        f.Counter("nodewatch_ingest_lost_records_total",
                  "Records agents dropped before delivery (spool full), as reported by their seqs.",
                  d(c.lost_records));
        f.Counter(
            "nodewatch_ingest_duplicate_notices_total",
            "Interruption notices an agent spooled twice (same cloud event and state), stored "
            "once.",
            d(c.duplicate_notices));
        f.Counter("nodewatch_ingest_clamped_timestamps_total",
                  "Records whose time was absurd and were filed under the receive time.",
                  d(c.clamped_times));
        f.Counter("nodewatch_ingest_commits_total", "Synced group commits to the store.",
                  d(c.commits));
        f.Counter("nodewatch_ingest_commit_errors_total", "Group commits that failed.",
                  d(c.commit_errors));
        f.Counter("nodewatch_ingest_commit_seconds_total", "Time spent in group commits.",
                  static_cast<double>(c.commit_micros_total.load()) / 1e6);
        f.Counter("nodewatch_agent_streams_opened_total",
                  "Agent streams accepted by the transport.", d(s.streams_opened));
        const char* rejected = "nodewatch_agent_streams_rejected_total";
        const char* rejected_help = "Agent streams or messages refused, by reason.";
        f.Counter(rejected, rejected_help, d(s.streams_rejected_identity),
                  {{"reason", "identity"}});
        f.Counter(rejected, rejected_help, d(s.streams_rejected_protocol),
                  {{"reason", "protocol"}});
        f.Counter(rejected, rejected_help, d(s.streams_rejected_capacity),
                  {{"reason", "capacity"}});
        f.Counter(rejected, rejected_help, d(c.rejected_batches), {{"reason", "invalid_batch"}});
        f.Counter(rejected, rejected_help, d(s.malformed_messages), {{"reason", "malformed"}});
        f.Counter("nodewatch_query_denied_total",
                  "Operator API calls refused for lack of credentials.", d(query.denied()));
        if (remediator != nullptr) remediator->CollectMetrics(f);
        if (cost != nullptr) cost->CollectMetrics(f);
        if (signals != nullptr) signals->CollectMetrics(f, clock.NowUnixMs());
        return f.Take();
      });
}

}  // namespace nodewatch::aggregator
