// An aggregator inside the calling process (mTLS with `server`'s certificate, RocksDB on disk
// under `dir`, ephemeral ports), for tests and benchmarks that read its engine directly or send
// commands through it. The caller links nodewatch::aggregator.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "aggregator/aggregator.h"
#include "tests/support/test_pki.h"

namespace nodewatch::testing {

// `adjust` may change the configuration (e.g. point remediation at a fake API server).
inline absl::StatusOr<std::unique_ptr<aggregator::Aggregator>> StartInProcessAggregator(
    const std::string& dir, const TestPki& pki, const CertFiles& server,
    const std::function<void(aggregator::AggregatorConfig&)>& adjust = nullptr) {
  aggregator::AggregatorConfig config;
  config.listen = "127.0.0.1:0";
  config.query_listen = "127.0.0.1:0";
  config.metrics_listen = "";
  config.http_listen = "";
  config.data_dir = dir + "/aggregator";
  config.tls_ca = pki.ca_file();
  config.tls_cert = server.cert;
  config.tls_key = server.key;
  config.remediation.mode = "off";
  if (adjust) adjust(config);
  return aggregator::Aggregator::Start(config, SystemClock::Get());
}

}  // namespace nodewatch::testing
