// IngestService: AgentService.Stream on the gRPC callback API. One ServerBidiReactor per agent
// stream: it authenticates the node from its client certificate, then moves each message into the
// IngestEngine's queue and answers with the engine's Ack. Reactions never block: the next read
// starts only after the previous message is committed, so each stream has at most one message
// queued (backpressure reaches the agent through HTTP/2 flow control).
#pragma once

#include <atomic>
#include <map>
#include <mutex>
#include <string>

#include "aggregator/ingest/ingest_engine.h"
#include "grpcpp/support/proto_buffer_reader.h"
#include "grpcpp/support/proto_buffer_writer.h"
#include "nodewatch/v1/agent.grpc.pb.h"

namespace nodewatch::aggregator {

struct IngestServiceCounters {
  std::atomic<uint64_t> streams_opened{0};
  std::atomic<uint64_t> streams_rejected_identity{0};   // no node certificate / wrong node
  std::atomic<uint64_t> streams_rejected_protocol{0};   // bad first message, bad batch
  std::atomic<uint64_t> malformed_messages{0};          // not parsable as AgentMessage
  std::atomic<uint64_t> streams_rejected_capacity{0};
};

// The raw (ByteBuffer) flavour of the generated service, so that a message that is not valid
// protobuf is answered with INVALID_ARGUMENT and counted, instead of looking like a half-close.
using AgentServiceRawBase =
    nodewatch::v1::AgentService::WithRawCallbackMethod_Stream<nodewatch::v1::AgentService::Service>;

class IngestService final : public AgentServiceRawBase {
 public:
  // insecure: no client certificates; the node name is taken from Hello (local demos only).
  IngestService(IngestEngine& engine, bool insecure, size_t max_streams);

  grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer>* Stream(
      grpc::CallbackServerContext* context) override;

  const IngestServiceCounters& counters() const { return counters_; }
  size_t open_streams() const { return open_streams_.load(); }

  // Sends `command` down every open stream of `node` (after any pending ack). Returns the number
  // of streams it was queued on; 0 when the node's agent is not connected. Thread-safe.
  int SendCommand(const std::string& node, const nodewatch::v1::Command& command);

 private:
  class Reactor;
  void Register(const std::string& node, Reactor* reactor);
  void Unregister(const std::string& node, Reactor* reactor);
  std::mutex registry_mu_;
  std::multimap<std::string, Reactor*> live_;  // streams past Hello, by node
  IngestEngine& engine_;
  const bool insecure_;
  const size_t max_streams_;
  std::atomic<size_t> open_streams_{0};
  IngestServiceCounters counters_;
};

}  // namespace nodewatch::aggregator
