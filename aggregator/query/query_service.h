// QueryService: the read-only operator API (ListNodes, GetNode, NodeHistory, ListInterruptions)
// on its own listener. Every call needs an operator credential: a verified client certificate
// with O=nodewatch:operators, or `authorization: Bearer <token>` matching the token file. Node
// certificates are refused. RocksDB scans run on a small bounded executor, never in reactions.
#pragma once

#include <atomic>
#include <memory>
#include <string>

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
  QueryService(IngestEngine& engine, Store& store, const Clock& clock, QueryOptions options);

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
      grpc::CallbackServerContext* context,
      const nodewatch::v1::ListInterruptionsRequest* request,
      nodewatch::v1::ListInterruptionsResponse* response) override;

  uint64_t denied() const { return denied_.load(); }

 private:
  class HistoryReactor;
  grpc::Status Authorize(const grpc::CallbackServerContext& context);

  IngestEngine& engine_;
  Store& store_;
  const Clock& clock_;
  const QueryOptions options_;
  BoundedExecutor executor_{2, 256};
  std::atomic<uint64_t> denied_{0};
};

}  // namespace nodewatch::aggregator
