// NodeSignals: the latest network and disk state of every node, from the NetworkSample and
// DiskSample records its agent sends, for /metrics. A RecordTap on the ingest engine: it sees
// each stored sample once (never a resend) and keeps running totals in memory.
//
// Exported with node_exporter's names where they mean the same (node_disk_*, node_filesystem_*),
// nodewatch_ names otherwise, base units, and a `node` label. Cardinality is bounded: no remote
// addresses or pods as labels (fleet-level transfer classes are the cost ledger's), at most
// `max_devices` devices and `max_filesystems` mounts per node (more are counted and skipped), and
// nodes silent for `forget_after_ms` are dropped.
//
// Counters restart from zero when the aggregator restarts (Prometheus handles counter resets);
// the samples themselves stay in the node history.
#pragma once

#include <atomic>
#include <map>
#include <mutex>
#include <string>

#include "aggregator/ingest/ingest_engine.h"
#include "common/clock.h"
#include "common/metrics_endpoint.h"

namespace nodewatch::aggregator {

struct NodeSignalsOptions {
  size_t max_devices = 32;
  size_t max_filesystems = 64;
  int64_t forget_after_ms = 3'600'000;
};

class NodeSignals final : public RecordTap {
 public:
  // Nodes are aged by when their samples arrived (`clock`), not by the agents' clocks.
  explicit NodeSignals(const Clock& clock, NodeSignalsOptions options = {})
      : clock_(clock), options_(options) {}

  void Derive(const std::string&, const nodewatch::v1::NodeInfo&, int64_t,
              const nodewatch::v1::Record&, std::vector<CounterDelta>*) override {}
  void Stored(const std::string& node, const nodewatch::v1::NodeInfo& info, int64_t,
              const nodewatch::v1::Record& record) override;
  void CountersCommitted(const std::vector<CounterDelta>&) override {}

  // Exports every node's series; forgets nodes silent for longer than forget_after_ms.
  void CollectMetrics(MetricFamilies& f, int64_t now_ms);

 private:
  struct Network {
    uint64_t tx_bytes = 0, rx_bytes = 0, tx_packets = 0, rx_packets = 0;
    uint64_t retransmits = 0, connects = 0, failed_connects = 0, resets = 0, dropped_flows = 0;
  };
  struct Device {
    uint64_t reads = 0, writes = 0, read_bytes = 0, written_bytes = 0, io_errors = 0;
  };
  struct Node {
    int64_t last_ms = 0;
    bool has_network = false;
    Network net;
    std::map<std::string, Device> devices;
    std::map<std::string, nodewatch::v1::Filesystem> filesystems;  // latest, by mountpoint
  };

  const Clock& clock_;
  const NodeSignalsOptions options_;
  std::atomic<uint64_t> skipped_{0};  // devices or mounts over the per-node bound
  std::mutex mu_;
  std::map<std::string, Node> nodes_;
};

}  // namespace nodewatch::aggregator
