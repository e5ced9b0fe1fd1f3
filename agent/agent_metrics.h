// The agent's own /metrics, read at scrape time from the spool, the uplinks and the cloud
// collector's counters. Listed in docs/metrics.md.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "agent/collectors/cloud/cloud_provider.h"
#include "agent/collectors/disk/block_io_collector.h"
#include "agent/collectors/disk/filesystem_collector.h"
#include "agent/collectors/net/network_collector.h"
#include "agent/spool/spool.h"
#include "agent/uplink/uplink.h"
#include "common/metrics_endpoint.h"

namespace nodewatch::agent {

// The eBPF collectors as /metrics sees them: either may be null (switched off or not loadable,
// with the reason in `unavailable`, collector name -> reason), the kernel's features as probed at
// start and the path each signal is counted on.
struct BpfView {
  NetworkCollector* network = nullptr;
  BlockIoCollector* block_io = nullptr;
  std::map<std::string, std::string> unavailable;
  KernelFeatures features;
  std::vector<SignalPath> paths;  // tcp_bytes, udp_bytes, tcp_events, block_io
};

absl::StatusOr<std::unique_ptr<MetricsEndpoint>> StartAgentMetrics(
    const std::string& address, Spool& spool, CloudCounters& cloud, std::string provider,
    std::function<std::vector<UplinkStatus>()> uplinks, const FilesystemCounters* filesystems,
    const BpfView* bpf);

// The BPF program, map and collector series (nodewatch_agent_bpf_*, nodewatch_agent_network_*,
// nodewatch_agent_block_io_*).
void AddBpfMetrics(MetricFamilies& f, const BpfView& bpf);

}  // namespace nodewatch::agent
