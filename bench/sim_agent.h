// SimAgent: one simulated agent stream for benchmarks (callback API client reactor). It says
// Hello, then sends `batches` batches of `records_per_batch` heartbeat records, one batch in flight
// at a time (the next goes when the previous is acked), and reports when the last ack arrives.
// With batches == 0 it stays connected and idle after the Hello is acked.
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <mutex>

#include "grpcpp/grpcpp.h"
#include "nodewatch/v1/agent.grpc.pb.h"

namespace nodewatch::bench {

nodewatch::v1::Record BenchRecord(uint64_t seq, int64_t time_ms);

class SimAgent final
    : public grpc::ClientBidiReactor<nodewatch::v1::AgentMessage, nodewatch::v1::AggregatorMessage> {
 public:
  SimAgent(nodewatch::v1::AgentService::Stub* stub, std::string node, int batches,
           int records_per_batch, std::atomic<uint64_t>* acked_records);
  // Opens the stream and says Hello.
  void Start();
  // Starts sending batches (call once hello_acked()).
  void Go();
  // Cancels the stream (idle agents) and waits for OnDone.
  void Cancel();
  void WaitDone();
  bool hello_acked() const { return hello_acked_.load(); }
  bool ok() const { return status_ok_.load(); }

  void OnWriteDone(bool ok) override;
  void OnReadDone(bool ok) override;
  void OnDone(const grpc::Status& status) override;

 private:
  void SendNextBatch();

  grpc::ClientContext context_;
  const std::string node_;
  const int batches_;
  const int records_per_batch_;
  std::atomic<uint64_t>* acked_records_;
  nodewatch::v1::AgentMessage out_;
  nodewatch::v1::AggregatorMessage in_;
  int sent_batches_ = 0;
  uint64_t last_seq_ = 0;
  uint64_t acked_seq_ = 0;
  std::atomic<bool> hello_acked_{false};
  std::atomic<bool> started_{false};
  std::atomic<bool> hold_removed_{false};
  std::atomic<bool> status_ok_{false};
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  bool writes_done_ = false;
};

// Reads VmRSS of a process in MiB (pid 0: this process).
double RssMiB(int pid = 0);
// User+system CPU seconds of a process so far.
double CpuSeconds(int pid);
// Raises RLIMIT_NOFILE to its hard limit (thousands of connections).
void RaiseFileLimit();

}  // namespace nodewatch::bench
