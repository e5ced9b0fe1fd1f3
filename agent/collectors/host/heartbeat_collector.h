// HeartbeatCollector: every interval, one Heartbeat record (node load and memory, agent RSS,
// spool health); a NodeInfo record at start and whenever the node's facts change. Records go to
// the spool's telemetry lane.
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>

#include "agent/collectors/host/host_probe.h"
#include "agent/spool/spool.h"
#include "common/clock.h"
#include "common/periodic_thread.h"

namespace nodewatch::agent {

class HeartbeatCollector {
 public:
  HeartbeatCollector(Spool& spool, HostProbe& probe, const Clock& clock, int64_t interval_ms);
  ~HeartbeatCollector();

  // Emits the records of one interval. Public so tests drive it without a thread.
  absl::Status CollectOnce();
  void Start() { thread_.Start(); }
  void Stop() { thread_.Stop(); }
  // NodeInfo as last read; used for Hello.
  nodewatch::v1::NodeInfo node_info() const;
  // The kernel features and counting paths of the eBPF collectors (NodeInfo fields 12 and 13),
  // added to every NodeInfo from now on; a change is sent as a NodeInfo record.
  void SetKernelCounting(const nodewatch::v1::NodeInfo& counting);

 private:
  Spool& spool_;
  HostProbe& probe_;
  const Clock& clock_;
  const int64_t started_ms_;
  mutable std::mutex mu_;
  bool have_node_info_ = false;
  nodewatch::v1::NodeInfo node_info_;
  nodewatch::v1::NodeInfo counting_;  // kernel_features and counting_paths only
  PeriodicThread thread_;  // last: stopped before the members it uses go
};

// LoadGenerator: appends synthetic Heartbeat records at a fixed rate, for load tests and
// benchmarks (`--synthetic-records-per-second`). Off by default.
class LoadGenerator {
 public:
  LoadGenerator(Spool& spool, const Clock& clock, int64_t records_per_second, int64_t total);
  ~LoadGenerator();
  void Start();
  void Stop();

 private:
  void Run();
  Spool& spool_;
  const Clock& clock_;
  const int64_t rate_;
  const int64_t total_;
  std::atomic<bool> running_{false};
  std::thread thread_;
};

}  // namespace nodewatch::agent
