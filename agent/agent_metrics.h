// The agent's own /metrics, read at scrape time from the spool, the uplinks and the cloud
// collector's counters. Listed in docs/metrics.md.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "agent/collectors/cloud/cloud_provider.h"
#include "agent/collectors/disk/filesystem_collector.h"
#include "agent/spool/spool.h"
#include "agent/uplink/uplink.h"
#include "common/metrics_endpoint.h"

namespace nodewatch::agent {

absl::StatusOr<std::unique_ptr<MetricsEndpoint>> StartAgentMetrics(
    const std::string& address, Spool& spool, CloudCounters& cloud, std::string provider,
    std::function<std::vector<UplinkStatus>()> uplinks, const FilesystemCounters* filesystems);

}  // namespace nodewatch::agent
