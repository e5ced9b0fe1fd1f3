// Aggregator: owns the store, the ingest engine, the agent and operator listeners and the metrics
// endpoint. main() builds one from an AggregatorConfig; integration tests and benchmarks do too.
#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "aggregator/alerts/alert_engine.h"
#include "aggregator/alerts/cost_monitor.h"
#include "aggregator/config/aggregator_config.h"
#include "aggregator/ingest/ingest_engine.h"
#include "aggregator/ingest/ingest_service.h"
#include "aggregator/metrics/metrics.h"
#include "aggregator/query/http_api.h"
#include "aggregator/query/query_service.h"
#include "aggregator/remediation/kube_client.h"
#include "aggregator/remediation/remediator.h"
#include "aggregator/store/store.h"
#include "grpcpp/grpcpp.h"

namespace nodewatch::aggregator {

class Aggregator {
 public:
  static absl::StatusOr<std::unique_ptr<Aggregator>> Start(const AggregatorConfig& config,
                                                           const Clock& clock);
  ~Aggregator();
  // Stops accepting, cancels streams, drains the writer. Idempotent.
  void Shutdown();

  int ingest_port() const { return ingest_port_; }
  int query_port() const { return query_port_; }
  int metrics_port() const { return metrics_ ? metrics_->port() : 0; }
  int http_port() const { return http_ ? http_->port() : 0; }
  uint64_t http_refused() const { return http_ ? http_->refused() : 0; }
  CostMonitor& cost() { return *cost_monitor_; }
  IngestEngine& engine() { return *engine_; }
  // nullptr when remediation is off.
  Remediator* remediator() { return remediator_.get(); }
  // Sends a command to `node`'s agent(s); see IngestService::SendCommand.
  int SendCommand(const std::string& node, const nodewatch::v1::Command& command) {
    return ingest_->SendCommand(node, command);
  }

 private:
  Aggregator() = default;
  // Price table, transfer classes, the ledger (tapped into the engine) and the alert engine.
  absl::Status StartCost(const AggregatorConfig& config, const Clock& clock);
  std::unique_ptr<Store> store_;
  std::unique_ptr<PriceTable> prices_;
  std::unique_ptr<TransferClassifier> classifier_;
  std::unique_ptr<CostLedger> ledger_;
  std::unique_ptr<NodeSignals> signals_;
  std::unique_ptr<Webhook> alert_webhook_;
  std::unique_ptr<AlertEngine> alerts_;
  std::unique_ptr<IngestEngine> engine_;
  std::unique_ptr<CostMonitor> cost_monitor_;
  std::unique_ptr<KubeClient> kube_client_;
  std::unique_ptr<KubeApi> kube_api_;
  std::unique_ptr<Remediator> remediator_;
  std::unique_ptr<IngestService> ingest_;
  std::unique_ptr<QueryService> query_;
  std::unique_ptr<grpc::Server> ingest_server_;
  std::unique_ptr<grpc::Server> query_server_;
  std::unique_ptr<MetricsEndpoint> metrics_;
  std::unique_ptr<HttpApi> http_;
  int ingest_port_ = 0;
  int query_port_ = 0;
  bool shut_down_ = false;
};

}  // namespace nodewatch::aggregator
