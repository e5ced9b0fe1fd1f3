// Prometheus exposition of the aggregator's own health. Values are read from the components'
// counters at scrape time (a prometheus::Collectable), so the hot paths only bump atomics.
// Every metric is listed in docs/metrics.md.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "aggregator/ingest/ingest_engine.h"
#include "aggregator/ingest/ingest_service.h"
#include "aggregator/query/query_service.h"

namespace prometheus {
class Exposer;
}

namespace nodewatch::aggregator {

class MetricsServer {
 public:
  static absl::StatusOr<std::unique_ptr<MetricsServer>> Start(const std::string& address,
                                                              IngestEngine& engine,
                                                              IngestService& ingest,
                                                              QueryService& query, Store& store);
  ~MetricsServer();
  int port() const;

 private:
  MetricsServer() = default;
  std::unique_ptr<prometheus::Exposer> exposer_;
  std::shared_ptr<void> collectable_;
};

}  // namespace nodewatch::aggregator
