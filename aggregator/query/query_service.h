// QueryService: the read-only operator API (ListNodes, GetNode, NodeHistory, ListInterruptions,
// GetCost, ListAlerts) on its own listener. The JSON API (http_api.h) answers from the same
// methods. Every call needs an operator credential: a verified client certificate
// with O=nodewatch:operators, or `authorization: Bearer <token>` matching the token file. Node
// certificates are refused. RocksDB scans run on a small bounded executor, never in reactions.
#pragma once

#include <atomic>
#include <memory>
#include <string>

#include "aggregator/alerts/cost_monitor.h"
#include "aggregator/ingest/ingest_engine.h"
#include "aggregator/store/store.h"
#include "common/executor.h"
#include "nodewatch/v1/query.grpc.pb.h"

namespace nodewatch::aggregator {

struct QueryOptions {
  bool allow_unauthenticated = false;  // --insecure without a token: local demos only
  std::string bearer_token;            // empty: tokens are not accepted
  size_t page_records = 512;
};

class QueryService final : public nodewatch::v1::QueryService::CallbackService {
 public:
  // `cost` may be null (GetCost and ListAlerts then answer UNAVAILABLE).
  QueryService(IngestEngine& engine, Store& store, const Clock& clock, CostMonitor* cost,
               QueryOptions options);

  grpc::ServerUnaryReactor* ListNodes(grpc::CallbackServerContext* context,
                                      const nodewatch::v1::ListNodesRequest* request,
                                      nodewatch::v1::ListNodesResponse* response) override;
  grpc::ServerUnaryReactor* GetNode(grpc::CallbackServerContext* context,
                                    const nodewatch::v1::GetNodeRequest* request,
                                    nodewatch::v1::NodeSummary* response) override;
  grpc::ServerWriteReactor<nodewatch::v1::Record>* NodeHistory(
      grpc::CallbackServerContext* context,
      const nodewatch::v1::NodeHistoryRequest* request) override;
  grpc::ServerUnaryReactor* ListInterruptions(
      grpc::CallbackServerContext* context, const nodewatch::v1::ListInterruptionsRequest* request,
      nodewatch::v1::ListInterruptionsResponse* response) override;

  grpc::ServerUnaryReactor* GetCost(grpc::CallbackServerContext* context,
                                    const nodewatch::v1::CostRequest* request,
                                    nodewatch::v1::CostReport* response) override;
  grpc::ServerUnaryReactor* ListAlerts(grpc::CallbackServerContext* context,
                                       const nodewatch::v1::ListAlertsRequest* request,
                                       nodewatch::v1::ListAlertsResponse* response) override;

  // The answers themselves, shared with the JSON API. Blocking (RocksDB reads): call them off
  // gRPC reactions.
  absl::StatusOr<nodewatch::v1::ListInterruptionsResponse> Interruptions(
      const nodewatch::v1::ListInterruptionsRequest& request);
  absl::StatusOr<nodewatch::v1::CostReport> Cost(const nodewatch::v1::CostRequest& request);
  absl::StatusOr<nodewatch::v1::ListAlertsResponse> Alerts(
      const nodewatch::v1::ListAlertsRequest& request);

  // Operator credentials: a bearer token (the whole "Bearer ..." header value, may be empty) or
  // a verified client certificate (PEM, may be empty). Counts refusals.
  absl::Status CheckCredential(const std::string& authorization, const std::string& peer_pem,
                               const std::string& peer);
  uint64_t denied() const { return denied_.load(); }

 private:
  class HistoryReactor;
  grpc::Status Authorize(const grpc::CallbackServerContext& context);

  IngestEngine& engine_;
  Store& store_;
  const Clock& clock_;
  CostMonitor* cost_;
  const QueryOptions options_;
  BoundedExecutor executor_{2, 256};
  std::atomic<uint64_t> denied_{0};
};

}  // namespace nodewatch::aggregator
