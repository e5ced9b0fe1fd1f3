#include "aggregator/query/query_service.h"

#include <openssl/crypto.h>

#include <deque>
#include <map>
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

// absl and gRPC share the canonical code numbers.
grpc::Status ToGrpc(const absl::Status& s) {
  if (s.ok()) return grpc::Status::OK;
  return {static_cast<grpc::StatusCode>(s.code()), std::string(s.message())};
}

}  // namespace

QueryService::QueryService(IngestEngine& engine, Store& store, const Clock& clock,
                           CostMonitor* cost, QueryOptions options)
    : engine_(engine), store_(store), clock_(clock), cost_(cost), options_(std::move(options)) {}

absl::Status QueryService::CheckCredential(const std::string& authorization,
                                           const std::string& peer_pem, const std::string& peer) {
  if (!authorization.empty() && !options_.bearer_token.empty() &&
      ConstantTimeEquals(authorization, "Bearer " + options_.bearer_token)) {
    return absl::OkStatus();
  }
  if (!peer_pem.empty()) {
    auto id = ParseCertificateIdentity(peer_pem);
    if (id.ok() && id->HasOrganization(kOperatorGroup)) return absl::OkStatus();
  }
  if (options_.allow_unauthenticated) return absl::OkStatus();
  ++denied_;
  GetLogger("agg.query")->warn("query from {} refused: no operator credential", peer);
  if (!authorization.empty()) return absl::PermissionDeniedError("bearer token not accepted");
  return absl::UnauthenticatedError(absl::StrCat(
      "an operator credential is required: a client certificate with O=", kOperatorGroup,
      " or a bearer token"));
}

grpc::Status QueryService::Authorize(const grpc::CallbackServerContext& context) {
  const auto& metadata = context.client_metadata();
  std::string authorization;
  if (auto header = metadata.find("authorization"); header != metadata.end()) {
    authorization.assign(header->second.data(), header->second.size());
  }
  std::string pem;
  auto auth = context.auth_context();
  if (auth && auth->IsPeerAuthenticated()) {
    auto values = auth->FindPropertyValues(GRPC_X509_PEM_CERT_PROPERTY_NAME);
    if (!values.empty()) pem.assign(values.front().data(), values.front().size());
  }
  return ToGrpc(CheckCredential(authorization, pem, context.peer()));
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

absl::StatusOr<nodewatch::v1::ListInterruptionsResponse> QueryService::Interruptions(
    const nodewatch::v1::ListInterruptionsRequest& request) {
  nodewatch::v1::ListInterruptionsResponse response;
  const int64_t until =
      request.until_unix_ms() > 0 ? request.until_unix_ms() : clock_.NowUnixMs() + 86'400'000;
  std::optional<uint32_t> only;
  if (!request.node().empty()) {
    only = engine_.NodeId(request.node());
    if (!only) return absl::NotFoundError(absl::StrCat("no node '", request.node(), "'"));
  }
  // The drain journal says what remediation made of each notice ("drain/<node>/<provider>/<id>").
  std::map<std::string, nodewatch::internal::DrainJournalEntry> journal;
  auto js = store_.ScanState(
      request.node().empty() ? "drain/" : absl::StrCat("drain/", request.node(), "/"),
      [&](const std::string& key, const std::string& value) {
        nodewatch::internal::DrainJournalEntry entry;
        if (entry.ParseFromString(value)) journal[key] = std::move(entry);
        return true;
      });
  if (!js.ok()) return js;
  std::map<uint32_t, std::optional<nodewatch::v1::NodeSummary>> nodes;  // looked up once each
  auto s = store_.ScanInterruptions(
      request.since_unix_ms(), until, [&](uint32_t id, int64_t time, const Record& r) {
        if (only && *only != id) return true;
        auto* e = response.add_interruptions();
        const std::string name = engine_.NodeName(id).value_or(absl::StrCat("#", id));
        e->set_node(name);
        e->set_seq(r.seq());
        e->set_time_unix_ms(time);
        *e->mutable_notice() = r.interruption();
        auto node = nodes.find(id);
        if (node == nodes.end()) node = nodes.emplace(id, engine_.GetNode(name)).first;
        if (node->second) *e->mutable_node_info() = node->second->info();
        auto j = journal.find(absl::StrCat("drain/", name, "/", r.interruption().provider(), "/",
                                           r.interruption().event_id()));
        if (j != journal.end()) {
          e->set_drain_phase(j->second.phase());
          e->set_drain_outcome(j->second.outcome());
        }
        return response.interruptions_size() < 100'000;
      });
  if (!s.ok()) return s;
  return response;
}

absl::StatusOr<nodewatch::v1::CostReport> QueryService::Cost(
    const nodewatch::v1::CostRequest& request) {
  if (cost_ == nullptr) return absl::UnavailableError("cost accounting is off");
  return cost_->Report(request.include_nodes());
}

absl::StatusOr<nodewatch::v1::ListAlertsResponse> QueryService::Alerts(
    const nodewatch::v1::ListAlertsRequest& request) {
  if (cost_ == nullptr) return absl::UnavailableError("alerts are off");
  nodewatch::v1::ListAlertsResponse response;
  for (auto& a : cost_->Alerts(request.include_resolved())) *response.add_alerts() = std::move(a);
  return response;
}

// Runs `answer` on the executor and finishes the unary call with its result.
template <typename Response, typename Fn>
static grpc::ServerUnaryReactor* Answer(grpc::CallbackServerContext* context,
                                        const grpc::Status& auth, BoundedExecutor& executor,
                                        Response* response, Fn answer) {
  auto* reactor = context->DefaultReactor();
  if (!auth.ok()) {
    reactor->Finish(auth);
    return reactor;
  }
  bool queued = executor.TrySubmit([reactor, response, answer] {
    auto result = answer();
    if (result.ok()) *response = std::move(*result);
    reactor->Finish(ToGrpc(result.status()));
  });
  if (!queued) reactor->Finish({grpc::StatusCode::RESOURCE_EXHAUSTED, "query queue is full"});
  return reactor;
}

grpc::ServerUnaryReactor* QueryService::ListInterruptions(
    grpc::CallbackServerContext* context, const nodewatch::v1::ListInterruptionsRequest* request,
    nodewatch::v1::ListInterruptionsResponse* response) {
  return Answer(context, Authorize(*context), executor_, response,
                [this, request] { return Interruptions(*request); });
}

grpc::ServerUnaryReactor* QueryService::GetCost(grpc::CallbackServerContext* context,
                                                const nodewatch::v1::CostRequest* request,
                                                nodewatch::v1::CostReport* response) {
  return Answer(context, Authorize(*context), executor_, response,
                [this, request] { return Cost(*request); });
}

grpc::ServerUnaryReactor* QueryService::ListAlerts(grpc::CallbackServerContext* context,
                                                   const nodewatch::v1::ListAlertsRequest* request,
                                                   nodewatch::v1::ListAlertsResponse* response) {
  return Answer(context, Authorize(*context), executor_, response,
                [this, request] { return Alerts(*request); });
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
    auto s = service_.store_.ScanRecords(node_id_, cursor_time_, cursor_seq_, until_,
                                         [&](int64_t time, const Record& r) {
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
