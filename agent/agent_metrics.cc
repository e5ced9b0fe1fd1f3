#include "agent/agent_metrics.h"

namespace nodewatch::agent {

absl::StatusOr<std::unique_ptr<MetricsEndpoint>> StartAgentMetrics(
    const std::string& address, Spool& spool, CloudCounters& cloud, std::string provider,
    std::function<std::vector<UplinkStatus>()> uplinks, const FilesystemCounters* filesystems) {
  return MetricsEndpoint::Start(
      "metrics-listen", address,
      [&spool, &cloud, provider = std::move(provider), uplinks = std::move(uplinks), filesystems] {
        auto d = [](uint64_t v) { return static_cast<double>(v); };
        MetricFamilies f;
        const auto s = spool.stats();
        f.Gauge("nodewatch_agent_spool_bytes", "Bytes in the spool on disk.", d(s.bytes));
        if (filesystems != nullptr) {
          f.Counter("nodewatch_agent_filesystem_samples_total", "Filesystem samples spooled.",
                    d(filesystems->samples));
          f.Counter("nodewatch_agent_statfs_timeouts_total",
                    "statfs calls that did not answer in time (a hung mount).",
                    d(filesystems->statfs_timeouts));
          f.Counter("nodewatch_agent_statfs_errors_total",
                    "statfs calls that failed (mount gone or unreadable).",
                    d(filesystems->statfs_errors));
          f.Gauge("nodewatch_agent_statfs_stuck", "statfs calls still hanging now.",
                  d(filesystems->stuck));
        }
        f.Gauge("nodewatch_agent_spool_records",
                "Records in the spool not yet acknowledged everywhere.", d(s.records));
        f.Counter("nodewatch_agent_spool_dropped_records_total",
                  "Telemetry records dropped because the spool was full (notices are never "
                  "dropped).",
                  d(s.dropped_records));
        f.Counter("nodewatch_agent_spool_corrupt_frames_total",
                  "Torn or corrupt spool frames truncated at start.", d(s.corrupt_frames));
        f.Gauge("nodewatch_agent_spool_highest_seq", "Highest sequence number assigned.",
                d(s.highest_seq));
        uint64_t connected = 0;
        uint64_t sessions = 0;
        uint64_t sent = 0;
        for (const auto& u : uplinks()) {
          connected += u.connected ? 1 : 0;
          sessions += u.sessions;
          sent += u.records_sent;
        }
        f.Gauge("nodewatch_agent_uplinks_connected", "Aggregator streams open and acknowledged.",
                d(connected));
        f.Counter("nodewatch_agent_uplink_sessions_total",
                  "Aggregator streams opened (reconnects included).", d(sessions));
        f.Counter("nodewatch_agent_uplink_records_sent_total", "Records sent (resends included).",
                  d(sent));
        const MetricFamilies::Labels p = {{"provider", provider}};
        f.Counter("nodewatch_agent_metadata_requests_total",
                  "Requests to the instance metadata service.", d(cloud.requests), p);
        f.Counter("nodewatch_agent_metadata_request_errors_total",
                  "Metadata requests that failed (transport error or HTTP 5xx).",
                  d(cloud.request_errors), p);
        f.Counter("nodewatch_agent_metadata_malformed_total",
                  "Metadata payloads that did not match the documented format (ignored).",
                  d(cloud.malformed_payloads), p);
        f.Counter("nodewatch_agent_metadata_unauthorized_total",
                  "AWS IMDS 401 answers (token renewed).", d(cloud.unauthorized), p);
        f.Counter("nodewatch_agent_metadata_token_refreshes_total", "IMDSv2 tokens fetched.",
                  d(cloud.token_refreshes), p);
        f.Counter("nodewatch_agent_notices_total", "Interruption notices spooled.",
                  d(cloud.notices), p);
        f.Counter("nodewatch_agent_duplicate_notices_total",
                  "Notices reported again by the cloud and recognised as already spooled.",
                  d(cloud.duplicate_notices), p);
        f.Counter("nodewatch_agent_foreign_events_total",
                  "Azure scheduled events that name other VMs (ignored).", d(cloud.foreign_events),
                  p);
        f.Counter("nodewatch_agent_acknowledgements_total", "Azure StartRequests sent.",
                  d(cloud.acknowledgements), p);
        return f.Take();
      });
}

}  // namespace nodewatch::agent
