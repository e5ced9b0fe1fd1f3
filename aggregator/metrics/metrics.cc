#include "aggregator/metrics/metrics.h"

#include <prometheus/collectable.h>
#include <prometheus/exposer.h>
#include <prometheus/metric_family.h>

#include "absl/strings/str_cat.h"

namespace nodewatch::aggregator {
namespace {

prometheus::MetricFamily Family(const std::string& name, const std::string& help,
                                prometheus::MetricType type) {
  prometheus::MetricFamily f;
  f.name = name;
  f.help = help;
  f.type = type;
  return f;
}

void AddValue(prometheus::MetricFamily& f, double value,
              std::map<std::string, std::string> labels = {}) {
  prometheus::ClientMetric m;
  for (auto& [k, v] : labels) m.label.push_back({k, v});
  if (f.type == prometheus::MetricType::Counter) {
    m.counter.value = value;
  } else {
    m.gauge.value = value;
  }
  f.metric.push_back(std::move(m));
}

class AggregatorCollectable final : public prometheus::Collectable {
 public:
  AggregatorCollectable(IngestEngine& engine, IngestService& ingest, QueryService& query,
                        Store& store)
      : engine_(engine), ingest_(ingest), query_(query), store_(store) {}

  std::vector<prometheus::MetricFamily> Collect() const override {
    using prometheus::MetricType;
    const auto& c = engine_.counters();
    const auto& s = ingest_.counters();
    std::vector<prometheus::MetricFamily> out;
    auto counter = [&](const std::string& name, const std::string& help, double v) {
      out.push_back(Family(name, help, MetricType::Counter));
      AddValue(out.back(), v);
    };
    auto gauge = [&](const std::string& name, const std::string& help, double v) {
      out.push_back(Family(name, help, MetricType::Gauge));
      AddValue(out.back(), v);
    };
    gauge("nodewatch_agents_connected", "Agent streams open and past Hello.",
          static_cast<double>(engine_.connected_streams()));
    gauge("nodewatch_nodes_known", "Nodes in the node directory.",
          static_cast<double>(engine_.ListNodes().size()));
    gauge("nodewatch_ingest_queue_depth", "Agent messages waiting for the store writer.",
          static_cast<double>(engine_.queue_depth()));
    gauge("nodewatch_store_size_bytes", "Approximate size of the RocksDB store.",
          static_cast<double>(store_.ApproximateSizeBytes()));
    counter("nodewatch_ingest_records_total", "Records durably stored.",
            static_cast<double>(c.records_stored.load()));
    counter("nodewatch_ingest_duplicate_records_total",
            "Records received again and skipped (already stored).",
            static_cast<double>(c.duplicates.load()));
    counter("nodewatch_ingest_lost_records_total",
            "Records agents dropped before delivery (spool full), as reported by their seqs.",
            static_cast<double>(c.lost_records.load()));
    counter("nodewatch_ingest_duplicate_notices_total",
            "Interruption notices an agent spooled twice (same cloud event and state), stored once.",
            static_cast<double>(c.duplicate_notices.load()));
    counter("nodewatch_ingest_clamped_timestamps_total",
            "Records whose time was absurd and were filed under the receive time.",
            static_cast<double>(c.clamped_times.load()));
    counter("nodewatch_ingest_commits_total", "Synced group commits to the store.",
            static_cast<double>(c.commits.load()));
    counter("nodewatch_ingest_commit_errors_total", "Group commits that failed.",
            static_cast<double>(c.commit_errors.load()));
    counter("nodewatch_ingest_commit_seconds_total", "Time spent in group commits.",
            static_cast<double>(c.commit_micros_total.load()) / 1e6);
    counter("nodewatch_agent_streams_opened_total", "Agent streams accepted by the transport.",
            static_cast<double>(s.streams_opened.load()));
    out.push_back(Family("nodewatch_agent_streams_rejected_total",
                         "Agent streams refused, by reason.", MetricType::Counter));
    AddValue(out.back(), static_cast<double>(s.streams_rejected_identity.load()),
             {{"reason", "identity"}});
    AddValue(out.back(), static_cast<double>(s.streams_rejected_protocol.load()),
             {{"reason", "protocol"}});
    AddValue(out.back(), static_cast<double>(s.streams_rejected_capacity.load()),
             {{"reason", "capacity"}});
    AddValue(out.back(), static_cast<double>(c.rejected_batches.load()),
             {{"reason", "invalid_batch"}});
    AddValue(out.back(), static_cast<double>(s.malformed_messages.load()),
             {{"reason", "malformed"}});
    counter("nodewatch_query_denied_total", "Operator API calls refused for lack of credentials.",
            static_cast<double>(query_.denied()));
    return out;
  }

 private:
  IngestEngine& engine_;
  IngestService& ingest_;
  QueryService& query_;
  Store& store_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<MetricsServer>> MetricsServer::Start(const std::string& address,
                                                                    IngestEngine& engine,
                                                                    IngestService& ingest,
                                                                    QueryService& query,
                                                                    Store& store) {
  std::unique_ptr<MetricsServer> server(new MetricsServer());
  try {
    server->exposer_ = std::make_unique<prometheus::Exposer>(address);
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat("metrics-listen '", address, "': cannot listen: ", e.what()));
  }
  auto collectable = std::make_shared<AggregatorCollectable>(engine, ingest, query, store);
  server->exposer_->RegisterCollectable(collectable);
  server->collectable_ = collectable;
  return server;
}

MetricsServer::~MetricsServer() = default;

int MetricsServer::port() const {
  auto ports = exposer_->GetListeningPorts();
  return ports.empty() ? 0 : ports.front();
}

}  // namespace nodewatch::aggregator
