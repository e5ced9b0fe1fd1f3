#include "agent/agent_metrics.h"

#include <prometheus/collectable.h>
#include <prometheus/exposer.h>
#include <prometheus/metric_family.h>

#include "absl/strings/str_cat.h"

namespace nodewatch::agent {
namespace {

class Collectable final : public prometheus::Collectable {
 public:
  Collectable(Spool& spool, CloudCounters& cloud, std::string provider,
              std::function<std::vector<UplinkStatus>()> uplinks)
      : spool_(spool), cloud_(cloud), provider_(std::move(provider)), uplinks_(std::move(uplinks)) {}

  std::vector<prometheus::MetricFamily> Collect() const override {
    std::vector<prometheus::MetricFamily> out;
    auto add = [&](const std::string& name, const std::string& help, prometheus::MetricType type,
                   double value, std::vector<prometheus::ClientMetric::Label> labels = {}) {
      if (out.empty() || out.back().name != name) {
        prometheus::MetricFamily f;
        f.name = name;
        f.help = help;
        f.type = type;
        out.push_back(std::move(f));
      }
      prometheus::ClientMetric m;
      m.label = std::move(labels);
      (type == prometheus::MetricType::Counter ? m.counter.value : m.gauge.value) = value;
      out.back().metric.push_back(std::move(m));
    };
    using prometheus::MetricType;
    const auto s = spool_.stats();
    add("nodewatch_agent_spool_bytes", "Bytes in the spool on disk.", MetricType::Gauge,
        static_cast<double>(s.bytes));
    add("nodewatch_agent_spool_records", "Records in the spool not yet acknowledged everywhere.",
        MetricType::Gauge, static_cast<double>(s.records));
    add("nodewatch_agent_spool_dropped_records_total",
        "Telemetry records dropped because the spool was full (notices are never dropped).",
        MetricType::Counter, static_cast<double>(s.dropped_records));
    add("nodewatch_agent_spool_corrupt_frames_total", "Torn or corrupt spool frames truncated at start.",
        MetricType::Counter, static_cast<double>(s.corrupt_frames));
    add("nodewatch_agent_spool_highest_seq", "Highest sequence number assigned.", MetricType::Gauge,
        static_cast<double>(s.highest_seq));
    int connected = 0;
    uint64_t sessions = 0;
    uint64_t sent = 0;
    for (const auto& u : uplinks_()) {
      connected += u.connected ? 1 : 0;
      sessions += u.sessions;
      sent += u.records_sent;
    }
    add("nodewatch_agent_uplinks_connected", "Aggregator streams open and acknowledged.",
        MetricType::Gauge, connected);
    add("nodewatch_agent_uplink_sessions_total", "Aggregator streams opened (reconnects included).",
        MetricType::Counter, static_cast<double>(sessions));
    add("nodewatch_agent_uplink_records_sent_total", "Records sent (resends included).",
        MetricType::Counter, static_cast<double>(sent));
    std::vector<prometheus::ClientMetric::Label> p = {{"provider", provider_}};
    auto cloud = [&](const std::string& name, const std::string& help,
                     const std::atomic<uint64_t>& v) {
      add(name, help, MetricType::Counter, static_cast<double>(v.load()), p);
    };
    cloud("nodewatch_agent_metadata_requests_total", "Requests to the instance metadata service.",
          cloud_.requests);
    cloud("nodewatch_agent_metadata_request_errors_total",
          "Metadata requests that failed (transport error or HTTP 5xx).", cloud_.request_errors);
    cloud("nodewatch_agent_metadata_malformed_total",
          "Metadata payloads that did not match the documented format (ignored).",
          cloud_.malformed_payloads);
    cloud("nodewatch_agent_metadata_unauthorized_total", "AWS IMDS 401 answers (token renewed).",
          cloud_.unauthorized);
    cloud("nodewatch_agent_metadata_token_refreshes_total", "IMDSv2 tokens fetched.",
          cloud_.token_refreshes);
    cloud("nodewatch_agent_notices_total", "Interruption notices spooled.", cloud_.notices);
    cloud("nodewatch_agent_duplicate_notices_total",
          "Notices reported again by the cloud and recognised as already spooled.",
          cloud_.duplicate_notices);
    cloud("nodewatch_agent_foreign_events_total",
          "Azure scheduled events that name other VMs (ignored).", cloud_.foreign_events);
    cloud("nodewatch_agent_acknowledgements_total", "Azure StartRequests sent.",
          cloud_.acknowledgements);
    return out;
  }

 private:
  Spool& spool_;
  CloudCounters& cloud_;
  std::string provider_;
  std::function<std::vector<UplinkStatus>()> uplinks_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<AgentMetrics>> AgentMetrics::Start(
    const std::string& address, Spool& spool, CloudCounters& cloud, std::string provider,
    std::function<std::vector<UplinkStatus>()> uplinks) {
  std::unique_ptr<AgentMetrics> metrics(new AgentMetrics());
  try {
    metrics->exposer_ = std::make_unique<prometheus::Exposer>(address);
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat("metrics-listen '", address, "': cannot listen: ", e.what()));
  }
  auto c = std::make_shared<Collectable>(spool, cloud, std::move(provider), std::move(uplinks));
  metrics->exposer_->RegisterCollectable(c);
  metrics->collectable_ = c;
  return metrics;
}

AgentMetrics::~AgentMetrics() = default;

int AgentMetrics::port() const {
  auto ports = exposer_->GetListeningPorts();
  return ports.empty() ? 0 : ports.front();
}

}  // namespace nodewatch::agent
