#include "aggregator/ingest/ingest_service.h"

#include <deque>
#include <mutex>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/tls.h"

namespace nodewatch::aggregator {

using nodewatch::v1::AgentMessage;
using nodewatch::v1::AggregatorMessage;

namespace {

// The node a verified client certificate speaks for.
absl::StatusOr<std::string> NodeFromPeer(const grpc::CallbackServerContext& context) {
  auto auth = context.auth_context();
  if (!auth || !auth->IsPeerAuthenticated()) {
    return absl::UnauthenticatedError("no verified client certificate");
  }
  auto pem = auth->FindPropertyValues(GRPC_X509_PEM_CERT_PROPERTY_NAME);
  if (pem.empty()) return absl::UnauthenticatedError("no client certificate");
  auto id = ParseCertificateIdentity(std::string(pem.front().data(), pem.front().size()));
  if (!id.ok()) return id.status();
  return NodeNameFromIdentity(*id);
}

grpc::Status ToGrpc(const absl::Status& s) {
  return grpc::Status(static_cast<grpc::StatusCode>(s.code()), std::string(s.message()));
}

}  // namespace

// Lifecycle: created per stream; deletes itself in OnDone. Finish is only called when no engine
// completion is outstanding, so the engine never calls into a deleted reactor.
class IngestService::Reactor final
    : public grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer> {
 public:
  Reactor(IngestService& service, grpc::CallbackServerContext* context)
      : service_(service), peer_(context->peer()) {
    ++service_.open_streams_;
    ++service_.counters_.streams_opened;
    if (service_.open_streams_.load() > service_.max_streams_) {
      ++service_.counters_.streams_rejected_capacity;
      FinishOnce(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, "too many agent streams"));
      return;
    }
    if (!service_.insecure_) {
      auto node = NodeFromPeer(*context);
      if (!node.ok()) {
        ++service_.counters_.streams_rejected_identity;
        Reject(node.status());
        return;
      }
      cert_node_ = *node;
    }
    StartRead(&in_buffer_);
  }

  void OnReadDone(bool ok) override {
    if (!ok) {  // client half-closed or cancelled
      std::lock_guard<std::mutex> lock(mu_);
      FinishLocked(grpc::Status::OK);
      return;
    }
    in_.Clear();
    auto parsed = grpc::SerializationTraits<AgentMessage>::Deserialize(&in_buffer_, &in_);
    if (!parsed.ok()) {
      ++service_.counters_.malformed_messages;
      Reject(absl::InvalidArgumentError("malformed message: not a nodewatch.v1.AgentMessage"));
      return;
    }
    if (node_.empty()) {
      HandleHello();
    } else if (in_.has_batch()) {
      std::string node = node_;
      service_.engine_.SubmitBatch(node, std::move(*in_.mutable_batch()),
                                   [this](absl::StatusOr<uint64_t> acked) { OnCommitted(acked); });
    } else {
      ++service_.counters_.streams_rejected_protocol;
      Reject(absl::InvalidArgumentError("expected a RecordBatch after Hello"));
    }
  }

  void OnWriteDone(bool ok) override {
    std::lock_guard<std::mutex> lock(mu_);
    write_in_flight_ = false;
    if (ok && !finish_wanted_ && WriteNextLocked()) return;
    if (finish_wanted_) FinishLocked(finish_status_);
  }

  // Queues a command for this agent; false if the stream is ending.
  bool QueueCommand(const nodewatch::v1::Command& command) {
    std::lock_guard<std::mutex> lock(mu_);
    if (finished_ || finish_wanted_) return false;
    commands_.push_back(command);
    if (!write_in_flight_) WriteNextLocked();
    return true;
  }

  void OnCancel() override {}

  void OnDone() override {
    if (!node_.empty()) {
      service_.Unregister(node_, this);
      service_.engine_.StreamClosed(node_);
    }
    --service_.open_streams_;
    delete this;
  }

 private:
  void HandleHello() {
    if (!in_.has_hello()) {
      ++service_.counters_.streams_rejected_protocol;
      Reject(absl::InvalidArgumentError("the first message must be Hello"));
      return;
    }
    const auto& hello = in_.hello();
    std::string node = service_.insecure_ ? hello.node_name() : cert_node_;
    if (service_.insecure_ && node.empty()) {
      Reject(absl::InvalidArgumentError("Hello.node_name is empty"));
      return;
    }
    if (!hello.node_name().empty() && hello.node_name() != node) {
      ++service_.counters_.streams_rejected_identity;
      Reject(absl::PermissionDeniedError(absl::StrCat(
          "certificate is for node '", node, "' but Hello claims '", hello.node_name(), "'")));
      return;
    }
    node_ = node;
    service_.engine_.StreamOpened(node_);
    service_.Register(node_, this);
    GetLogger("agg.ingest")->info("agent stream from node {} ({}), agent {}, highest seq {}",
                                  node_, peer_, hello.agent_version(), hello.highest_seq());
    service_.engine_.SubmitHello(node_, std::move(*in_.mutable_hello()),
                                 [this](absl::StatusOr<uint64_t> acked) { OnCommitted(acked); });
  }

  // Engine completion (writer thread): ack, then read the next message.
  void OnCommitted(const absl::StatusOr<uint64_t>& acked) {
    std::lock_guard<std::mutex> lock(mu_);
    hello_committed_ = true;
    if (!acked.ok()) {
      if (acked.status().code() == absl::StatusCode::kInvalidArgument) {
        ++service_.counters_.streams_rejected_protocol;
      }
      GetLogger("agg.ingest")->warn("node {}: {}", node_, acked.status());
      FinishLocked(ToGrpc(acked.status()));
      return;
    }
    pending_ack_ = std::max(pending_ack_, *acked);
    if (!write_in_flight_) WriteNextLocked();
    if (!finish_wanted_) StartRead(&in_buffer_);
  }

  // Starts the next write, if any: the newest ack first (the first ack answers Hello, which
  // must come before anything else), then queued commands. One write in flight at a time.
  bool WriteNextLocked() {
    AggregatorMessage message;
    if (pending_ack_ > written_ack_ || !hello_acked_) {
      if (!hello_acked_ && !hello_committed_) return false;
      message.mutable_ack()->set_acked_seq(pending_ack_);
      written_ack_ = pending_ack_;
      hello_acked_ = true;
    } else if (!commands_.empty()) {
      *message.mutable_command() = std::move(commands_.front());
      commands_.pop_front();
    } else {
      return false;
    }
    bool own_buffer = false;
    out_buffer_.Clear();
    (void)grpc::SerializationTraits<AggregatorMessage>::Serialize(message, &out_buffer_, &own_buffer);
    write_in_flight_ = true;
    StartWrite(&out_buffer_);
    return true;
  }

  void Reject(const absl::Status& status) {
    if (status.code() == absl::StatusCode::kPermissionDenied ||
        status.code() == absl::StatusCode::kUnauthenticated) {
      GetLogger("agg.ingest")->warn("refused agent stream from {}: {}", peer_, status);
    } else {
      GetLogger("agg.ingest")->warn("closing agent stream from {}: {}", peer_, status);
    }
    std::lock_guard<std::mutex> lock(mu_);
    FinishLocked(ToGrpc(status));
  }

  // Finish now, or once the ack being written completes (never with a write outstanding).
  void FinishLocked(const grpc::Status& status) {
    if (finished_) return;
    if (write_in_flight_) {
      if (!finish_wanted_) {
        finish_wanted_ = true;
        finish_status_ = status;
      }
      return;
    }
    finished_ = true;
    Finish(status);
  }
  void FinishOnce(const grpc::Status& status) {
    std::lock_guard<std::mutex> lock(mu_);
    FinishLocked(status);
  }

  IngestService& service_;
  const std::string peer_;
  std::string cert_node_;
  std::string node_;
  grpc::ByteBuffer in_buffer_;
  grpc::ByteBuffer out_buffer_;
  AgentMessage in_;
  std::mutex mu_;
  bool write_in_flight_ = false;
  bool finish_wanted_ = false;
  bool finished_ = false;
  grpc::Status finish_status_;
  uint64_t written_ack_ = 0;
  uint64_t pending_ack_ = 0;
  bool hello_committed_ = false;  // the engine answered the Hello
  bool hello_acked_ = false;      // ... and that first ack went out
  std::deque<nodewatch::v1::Command> commands_;
};

IngestService::IngestService(IngestEngine& engine, bool insecure, size_t max_streams)
    : engine_(engine), insecure_(insecure), max_streams_(max_streams) {}

void IngestService::Register(const std::string& node, Reactor* reactor) {
  std::lock_guard<std::mutex> lock(registry_mu_);
  live_.emplace(node, reactor);
}

void IngestService::Unregister(const std::string& node, Reactor* reactor) {
  std::lock_guard<std::mutex> lock(registry_mu_);
  auto [begin, end] = live_.equal_range(node);
  for (auto it = begin; it != end; ++it) {
    if (it->second == reactor) {
      live_.erase(it);
      break;
    }
  }
}

int IngestService::SendCommand(const std::string& node, const nodewatch::v1::Command& command) {
  // Holding the registry lock keeps every listed reactor alive (OnDone unregisters first).
  std::lock_guard<std::mutex> lock(registry_mu_);
  int sent = 0;
  auto [begin, end] = live_.equal_range(node);
  for (auto it = begin; it != end; ++it) sent += it->second->QueueCommand(command) ? 1 : 0;
  if (sent > 0) {
    GetLogger("agg.ingest")->info("node {}: command {} sent on {} stream(s)", node, command.id(), sent);
  }
  return sent;
}

grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer>* IngestService::Stream(
    grpc::CallbackServerContext* context) {
  return new Reactor(*this, context);
}

}  // namespace nodewatch::aggregator
