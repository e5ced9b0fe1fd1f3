// Uplink: one long-lived AgentService.Stream per aggregator endpoint, fed from the spool.
//
// A dedicated thread per endpoint connects, sends Hello, waits for the aggregator's first Ack
// (its durable watermark for this node), then sends every spooled record above it: urgent
// records (interruption notices) first, telemetry in seq order, with at most
// `max_unacked_records` in flight. Acks are reported to an AckListener, which trims the spool
// once every endpoint has acknowledged. A broken stream is retried with jittered exponential
// backoff and resumes from the aggregator's watermark, so a record is never skipped.
//
// The gRPC reactor (callback API) only records events and signals the thread; all spool I/O
// happens on the thread (STYLE.md G8: reactions stay fast).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "agent/spool/spool.h"
#include "common/clock.h"
#include "grpcpp/grpcpp.h"
#include "nodewatch/v1/agent.grpc.pb.h"

namespace nodewatch::agent {

struct UplinkOptions {
  std::string endpoint;                                    // host:port
  std::shared_ptr<grpc::ChannelCredentials> credentials;   // mTLS, or insecure for demos
  int64_t min_backoff_ms = 500;
  int64_t max_backoff_ms = 30'000;
  int64_t hello_timeout_ms = 15'000;     // no first Ack within this: reconnect
  size_t batch_records = 512;
  size_t batch_bytes = 1u << 20;
  uint64_t max_unacked_records = 20'000;
};

struct UplinkStatus {
  bool connected = false;   // stream open and Hello acknowledged
  uint64_t acked_seq = 0;   // highest watermark this endpoint reported
  uint64_t sessions = 0;    // streams opened
  uint64_t records_sent = 0;
  std::string last_error;
};

// Builds the Hello for a new session (fresh spool watermarks, current NodeInfo).
using HelloFactory = std::function<nodewatch::v1::Hello()>;
// Called from the uplink thread with each new watermark of this endpoint.
using AckListener = std::function<void(const std::string& endpoint, uint64_t acked_seq)>;
// Called from the uplink thread for each command the aggregator sends.
using CommandListener = std::function<void(const nodewatch::v1::Command&)>;

class Uplink {
 public:
  Uplink(UplinkOptions options, Spool& spool, HelloFactory hello, AckListener on_ack,
         CommandListener on_command, const Clock& clock);
  ~Uplink();
  Uplink(const Uplink&) = delete;
  Uplink& operator=(const Uplink&) = delete;

  void Start();
  // Closes the stream and joins the thread. Idempotent.
  void Stop();
  UplinkStatus status() const;
  const std::string& endpoint() const { return options_.endpoint; }

 private:
  class Session;
  void Run();
  // One connection: returns true if the aggregator acknowledged the Hello.
  bool RunSession();
  bool Pump(Session& session);

  const UplinkOptions options_;
  Spool& spool_;
  HelloFactory hello_;
  AckListener on_ack_;
  CommandListener on_command_;
  const Clock& clock_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<nodewatch::v1::AgentService::Stub> stub_;
  std::atomic<bool> running_{false};
  std::thread thread_;
  mutable std::mutex mu_;
  std::condition_variable stop_cv_;
  UplinkStatus status_;
  Session* current_ = nullptr;  // guarded by mu_, for Stop() to cancel
};

// Channel arguments for agent streams: keepalive 60 s / 20 s (reference §1.4), bounded
// reconnect backoff, message size limit.
grpc::ChannelArguments AgentChannelArguments(int64_t max_backoff_ms);

}  // namespace nodewatch::agent
