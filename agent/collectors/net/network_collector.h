// NetworkCollector: every interval, reads the kernel's network counters (NetCounterSource), turns
// cumulative totals into per-interval deltas, attributes each flow's cgroup to a pod (or the node)
// and appends one NetworkSample record to the spool's telemetry lane (none when nothing moved).
//
// Bounds: kernel entries idle for `idle_intervals` are taken out of the map (their last counts
// are kept: lookup-and-delete), so the map holds only active flows; a sample carries the
// `max_flows` largest flows with their remote addresses, the rest folded into one flow per
// (pod, direction) without one. Packets the kernel could not count because its map was full are
// reported as `dropped_flows` (a packet count) and in the agent's metrics.
#pragma once

#include <atomic>
#include <map>
#include <memory>
#include <mutex>

#include "agent/collectors/net/net_counters.h"
#include "agent/collectors/net/pod_resolver.h"
#include "agent/spool/spool.h"
#include "common/clock.h"
#include "common/periodic_thread.h"
#include "nodewatch/v1/records.pb.h"

namespace nodewatch::agent {

struct NetworkCollectorOptions {
  int64_t interval_ms = 10'000;
  int idle_intervals = 3;
  size_t max_flows = 4096;
};

struct NetworkCounters {
  std::atomic<uint64_t> samples{0};
  std::atomic<uint64_t> read_errors{0};
  std::atomic<uint64_t> spool_errors{0};   // samples the spool refused: that interval is lost
  std::atomic<uint64_t> flows_evicted{0};  // idle kernel entries taken out of the map
  std::atomic<uint64_t> flows_folded{0};   // flows beyond max_flows folded into per-pod totals
  std::atomic<uint64_t> flow_map_full{0};  // packets the kernel could not count (map full)
  std::atomic<uint64_t> connect_map_full{0};
  std::atomic<uint64_t> trouble_map_full{0};
  std::atomic<uint64_t> flow_entries{0};  // kernel map entries after the last read
};

class NetworkCollector {
 public:
  NetworkCollector(Spool& spool, std::unique_ptr<NetCounterSource> source,
                   std::unique_ptr<PodResolver> pods, const Clock& clock,
                   NetworkCollectorOptions options);
  ~NetworkCollector();

  // One interval: reads, diffs, spools. Returns the sample (also when nothing was appended).
  absl::StatusOr<nodewatch::v1::NetworkSample> CollectOnce();
  void Start() { thread_.Start(); }
  void Stop() { thread_.Stop(); }
  const NetworkCounters& counters() const { return counters_; }
  NetCounterSource& source() { return *source_; }

 private:
  struct Entry {
    FlowTotals last;
    int idle = 0;
  };
  Spool& spool_;
  std::unique_ptr<NetCounterSource> source_;
  std::unique_ptr<PodResolver> pods_;
  const Clock& clock_;
  const NetworkCollectorOptions options_;
  NetworkCounters counters_;
  std::mutex mu_;  // one CollectOnce at a time
  std::map<FlowKey, Entry> flows_;
  TcpTotals last_tcp_;
  int64_t last_ms_ = 0;
  PeriodicThread thread_;
};

}  // namespace nodewatch::agent
