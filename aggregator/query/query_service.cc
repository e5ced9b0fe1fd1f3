#include "aggregator/query/query_service.h"

#include <openssl/crypto.h>

#include <deque>
#include <set>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/tls.h"

namespace nodewatch::aggregator {

using nodewatch::v1::Record;
using nodewatch::v1::RecordKind;

namespace {

RecordKind KindOf(const Record& r) {
  switch (r.payload_case()) {
    case Record::kNodeInfo:
      return nodewatch::v1::RECORD_KIND_NODE_INFO;
    case Record::kHeartbeat:
      return nodewatch::v1::RECORD_KIND_HEARTBEAT;
    case Record::kInterruption:
      return nodewatch::v1::RECORD_KIND_INTERRUPTION;
    case Record::kNetwork:
      return nodewatch::v1::RECORD_KIND_NETWORK;
    case Record::kDisk:
      return nodewatch::v1::RECORD_KIND_DISK;
    case Record::kRemediation:
      return nodewatch::v1::RECORD_KIND_REMEDIATION;
    default:
      return nodewatch::v1::RECORD_KIND_UNSPECIFIED;
  }
}

bool ConstantTimeEquals(const std::string& a, const std::string& b) {
  return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

}  // namespace

QueryService::QueryService(IngestEngine& engine, Store& store, const Clock& clock,
                           QueryOptions options)
    : engine_(engine), store_(store), clock_(clock), options_(std::move(options)) {}

grpc::Status QueryService::Authorize(const grpc::CallbackServerContext& context) {
  const auto& metadata = context.client_metadata();
  auto header = metadata.find("authorization");
  if (header != metadata.end() && !options_.bearer_token.empty()) {
    std::string value(header->second.data(), header->second.size());
    if (ConstantTimeEquals(value, "Bearer " + options_.bearer_token)) return grpc::Status::OK;
  }
  auto auth = context.auth_context();
  if (auth && auth->IsPeerAuthenticated()) {
    auto pem = auth->FindPropertyValues(GRPC_X509_PEM_CERT_PROPERTY_NAME);
    if (!pem.empty()) {
      auto id = ParseCertificateIdentity(std::string(pem.front().data(), pem.front().size()));
      if (id.ok() && id->HasOrganization(kOperatorGroup)) return grpc::Status::OK;
    }
  }
  if (options_.allow_unauthenticated) return grpc::Status::OK;
  ++denied_;
  GetLogger("agg.query")->warn("query from {} refused: no operator credential", context.peer());
  if (header != metadata.end()) {
    return {grpc::StatusCode::PERMISSION_DENIED, "bearer token not accepted"};
  }
  return {grpc::StatusCode::UNAUTHENTICATED,
          absl::StrCat("an operator credential is required: a client certificate with O=",
                       kOperatorGroup, " or a bearer token")};
}

grpc::ServerUnaryReactor* QueryService::ListNodes(grpc::CallbackServerContext* context,
                                                  const nodewatch::v1::ListNodesRequest*,
                                                  nodewatch::v1::ListNodesResponse* response) {
  auto* reactor = context->DefaultReactor();
  grpc::Status status = Authorize(*context);
  if (status.ok()) {
    for (auto& node : engine_.ListNodes()) *response->add_nodes() = std::move(node);
  }
  reactor->Finish(status);
  return reactor;
}

grpc::ServerUnaryReactor* QueryService::GetNode(grpc::CallbackServerContext* context,
                                                const nodewatch::v1::GetNodeRequest* request,
                                                nodewatch::v1::NodeSummary* response) {
  auto* reactor = context->DefaultReactor();
  grpc::Status status = Authorize(*context);
  if (status.ok()) {
    auto node = engine_.GetNode(request->name());
    if (node) {
      *response = std::move(*node);
    } else {
      status = {grpc::StatusCode::NOT_FOUND, absl::StrCat("no node '", request->name(), "'")};
    }
  }
  reactor->Finish(status);
  return reactor;
}

grpc::ServerUnaryReactor* QueryService::ListInterruptions(
    grpc::CallbackServerContext* context, const nodewatch::v1::ListInterruptionsRequest* request,
    nodewatch::v1::ListInterruptionsResponse* response) {
  auto* reactor = context->DefaultReactor();
  grpc::Status status = Authorize(*context);
  if (!status.ok()) {
    reactor->Finish(status);
    return reactor;
  }
  bool queued = executor_.TrySubmit([this, reactor, request, response] {
    const int64_t until = request->until_unix_ms() > 0 ? request->until_unix_ms()
                                                       : clock_.NowUnixMs() + 86'400'000;
    std::optional<uint32_t> only;
    if (!request->node().empty()) {
      only = engine_.NodeId(request->node());
      if (!only) {
        reactor->Finish({grpc::StatusCode::NOT_FOUND, "no node '" + request->node() + "'"});
        return;
      }
    }
    auto s = store_.ScanInterruptions(
        request->since_unix_ms(), until, [&](uint32_t id, int64_t time, const Record& r) {
          if (only && *only != id) return true;
          auto* e = response->add_interruptions();
          e->set_node(engine_.NodeName(id).value_or(absl::StrCat("#", id)));
          e->set_seq(r.seq());
          e->set_time_unix_ms(time);
          *e->mutable_notice() = r.interruption();
          return response->interruptions_size() < 100'000;
        });
    reactor->Finish(s.ok() ? grpc::Status::OK
                           : grpc::Status(grpc::StatusCode::INTERNAL, std::string(s.message())));
  });
  if (!queued) reactor->Finish({grpc::StatusCode::RESOURCE_EXHAUSTED, "query queue is full"});
  return reactor;
}

// Streams a node's history page by page: each page is read on the executor, then written one
// record at a time (one write in flight, as gRPC requires).
class QueryService::HistoryReactor final : public grpc::ServerWriteReactor<Record> {
 public:
  HistoryReactor(QueryService& service, grpc::CallbackServerContext* context,
                 const nodewatch::v1::NodeHistoryRequest& request)
      : service_(service) {
    grpc::Status status = service_.Authorize(*context);
    if (!status.ok()) {
      Finish(status);
      return;
    }
    auto id = service_.engine_.NodeId(request.node());
    if (!id) {
      Finish({grpc::StatusCode::NOT_FOUND, absl::StrCat("no node '", request.node(), "'")});
      return;
    }
    if (request.until_unix_ms() != 0 && request.until_unix_ms() < request.since_unix_ms()) {
      Finish({grpc::StatusCode::INVALID_ARGUMENT, "until is before since"});
      return;
    }
    node_id_ = *id;
    cursor_time_ = request.since_unix_ms();
    until_ = request.until_unix_ms() > 0 ? request.until_unix_ms()
                                         : service_.clock_.NowUnixMs() + 86'400'000;
    remaining_ = request.limit() > 0 ? request.limit() : UINT64_MAX;
    for (int k : request.kinds()) kinds_.insert(k);
    Load();
  }

  void OnWriteDone(bool ok) override {
    if (!ok) {
      Finish({grpc::StatusCode::CANCELLED, "client went away"});
      return;
    }
    page_.pop_front();
    Next();
  }
  void OnDone() override { delete this; }

 private:
  void Load() {
    if (!service_.executor_.TrySubmit([this] { LoadPage(); })) {
      Finish({grpc::StatusCode::RESOURCE_EXHAUSTED, "query queue is full"});
    }
  }

  void LoadPage() {
    const size_t page = service_.options_.page_records;
    size_t visited = 0;
    bool more = false;
    auto s = service_.store_.ScanRecords(
        node_id_, cursor_time_, cursor_seq_, until_, [&](int64_t time, const Record& r) {
          if (visited >= 4 * page || page_.size() >= page) {
            more = true;
            return false;
          }
          ++visited;
          cursor_time_ = time;
          cursor_seq_ = r.seq() + 1;
          if (kinds_.empty() || kinds_.count(KindOf(r)) > 0) {
            if (remaining_ == 0) return false;
            --remaining_;
            page_.push_back(r);
          }
          return true;
        });
    if (!s.ok()) {
      Finish({grpc::StatusCode::INTERNAL, std::string(s.message())});
      return;
    }
    more_ = more && remaining_ > 0;
    Next();
  }

  void Next() {
    if (!page_.empty()) {
      StartWrite(&page_.front());
    } else if (more_) {
      Load();
    } else {
      Finish(grpc::Status::OK);
    }
  }

  QueryService& service_;
  uint32_t node_id_ = 0;
  int64_t cursor_time_ = 0;
  uint64_t cursor_seq_ = 0;
  int64_t until_ = 0;
  uint64_t remaining_ = 0;
  std::set<int> kinds_;
  std::deque<Record> page_;
  bool more_ = false;
};

grpc::ServerWriteReactor<Record>* QueryService::NodeHistory(
    grpc::CallbackServerContext* context, const nodewatch::v1::NodeHistoryRequest* request) {
  return new HistoryReactor(*this, context, *request);
}

}  // namespace nodewatch::aggregator
