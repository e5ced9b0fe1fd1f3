// AggregatorConfig: every setting of nodewatch-aggregator, its YAML/flag schema and validation.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "aggregator/remediation/remediator.h"
#include "common/options.h"

namespace nodewatch::aggregator {

struct AggregatorConfig {
  std::string listen = "0.0.0.0:7443";         // agent streams (mTLS)
  std::string query_listen = "0.0.0.0:7444";   // operator API
  std::string metrics_listen = "0.0.0.0:9464"; // Prometheus /metrics; empty: off
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
};

void RegisterAggregatorOptions(OptionSet& options, AggregatorConfig* config);
absl::Status ValidateAggregatorConfig(const AggregatorConfig& config);

}  // namespace nodewatch::aggregator
