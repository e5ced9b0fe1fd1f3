#include "aggregator/config/aggregator_config.h"

#include "absl/strings/str_cat.h"

namespace nodewatch::aggregator {

void RegisterAggregatorOptions(OptionSet& o, AggregatorConfig* c) {
  o.AddString("listen", &c->listen, "Address for agent streams (gRPC, mTLS).");
  o.AddString("query-listen", &c->query_listen, "Address of the read-only operator API.");
  o.AddString("metrics-listen", &c->metrics_listen,
              "Address of the Prometheus /metrics endpoint; empty disables it.");
  o.AddString("data-dir", &c->data_dir, "Directory of the RocksDB store.");
  o.AddDuration("retention", &c->retention_ms, "How long node history is kept.");
  o.AddString("tls-ca", &c->tls_ca, "PEM CA bundle that signs agent and operator certificates.");
  o.AddString("tls-cert", &c->tls_cert, "PEM server certificate.");
  o.AddString("tls-key", &c->tls_key, "PEM private key of --tls-cert.");
  o.AddString("operator-token-file", &c->operator_token_file,
              "File holding a bearer token accepted on the operator API (besides certificates "
              "with O=nodewatch:operators).");
  o.AddBool("insecure", &c->insecure,
            "Plaintext, unauthenticated listeners for a local demo. Never in production.");
  o.AddInt("max-streams", &c->max_streams, "Most agent streams served at once.", 1, 1'000'000);
  o.AddBytes("max-message-bytes", &c->max_message_bytes,
             "Largest agent message accepted; bigger ones are refused with RESOURCE_EXHAUSTED.");
  o.AddString("log-level", &c->log_level, "trace|debug|info|warn|error.");
}

absl::Status ValidateAggregatorConfig(const AggregatorConfig& c) {
  auto bad = [](const std::string& key, const std::string& why) {
    return absl::InvalidArgumentError(absl::StrCat("config key '", key, "': ", why));
  };
  auto is_address = [](const std::string& a) {
    auto colon = a.rfind(':');
    return colon != std::string::npos && colon > 0 && colon + 1 < a.size();
  };
  if (!is_address(c.listen)) return bad("listen", "'" + c.listen + "' is not host:port");
  if (!is_address(c.query_listen)) {
    return bad("query-listen", "'" + c.query_listen + "' is not host:port");
  }
  if (!c.metrics_listen.empty() && !is_address(c.metrics_listen)) {
    return bad("metrics-listen", "'" + c.metrics_listen + "' is not host:port");
  }
  if (c.data_dir.empty()) return bad("data-dir", "must be set");
  if (c.retention_ms < 3600'000) return bad("retention", "must be at least 1h");
  if (c.max_message_bytes < 64 * 1024 || c.max_message_bytes > (1ull << 30)) {
    return bad("max-message-bytes", "must be between 64KiB and 1GiB");
  }
  if (!c.insecure) {
    if (c.tls_ca.empty()) return bad("tls-ca", "required unless --insecure");
    if (c.tls_cert.empty()) return bad("tls-cert", "required unless --insecure");
    if (c.tls_key.empty()) return bad("tls-key", "required unless --insecure");
  }
  return absl::OkStatus();
}

}  // namespace nodewatch::aggregator
