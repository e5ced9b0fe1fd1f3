// AggregatorConfig: every setting of nodewatch-aggregator, its YAML/flag schema and validation.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "aggregator/alerts/alert_engine.h"
#include "aggregator/alerts/cost_monitor.h"
#include "aggregator/remediation/remediator.h"
#include "common/options.h"

namespace nodewatch::aggregator {

// Cost, alerts and the JSON API.
struct CostConfig {
  std::string price_table;                  // YAML file; empty: the built-in table
  std::vector<std::string> transfer_cidrs;  // "CIDR=CLASS" or "CIDR=REGION[/ZONE]"
  CostMonitorOptions monitor;
  AlertEngineOptions alerts;
  std::string webhook_url;  // empty: alerts only stored and exported as metrics
  std::string webhook_template = R"({"text":"{{text}}"})";
  std::vector<std::string> webhook_headers;
};

struct AggregatorConfig {
  std::string listen = "0.0.0.0:7443";          // agent streams (mTLS)
  std::string query_listen = "0.0.0.0:7444";    // operator API
  std::string metrics_listen = "0.0.0.0:9464";  // Prometheus /metrics; empty: off
  std::string http_listen = "0.0.0.0:7445";     // JSON over HTTP(S) for operators; empty: off
  std::string data_dir = "/var/lib/nodewatch";
  int64_t retention_ms = 14LL * 24 * 3600 * 1000;
  std::string tls_ca;
  std::string tls_cert;
  std::string tls_key;
  std::string operator_token_file;
  bool insecure = false;
  int64_t max_streams = 10'000;
  uint64_t max_message_bytes = 8ull << 20;
  std::string log_level = "info";
  RemediationConfig remediation;
  CostConfig cost;
};

void RegisterAggregatorOptions(OptionSet& options, AggregatorConfig* config);
void RegisterCostOptions(OptionSet& options, CostConfig* config);
absl::Status ValidateAggregatorConfig(const AggregatorConfig& config);

}  // namespace nodewatch::aggregator
