// The aggregator's Prometheus /metrics: fleet health read at scrape time from the components'
// counters, so the hot paths only bump atomics. Every metric is listed in docs/metrics.md.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "aggregator/alerts/cost_monitor.h"
#include "aggregator/ingest/ingest_engine.h"
#include "aggregator/ingest/ingest_service.h"
#include "aggregator/query/query_service.h"
#include "aggregator/remediation/remediator.h"
#include "aggregator/signals/node_signals.h"
#include "common/metrics_endpoint.h"

namespace nodewatch::aggregator {

absl::StatusOr<std::unique_ptr<MetricsEndpoint>> StartAggregatorMetrics(
    const std::string& address, IngestEngine& engine, IngestService& ingest, QueryService& query,
    Store& store, const Remediator* remediator, const CostMonitor* cost, NodeSignals* signals,
    const Clock& clock);

}  // namespace nodewatch::aggregator
