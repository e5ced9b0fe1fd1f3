#include "aggregator/config/aggregator_config.h"

#include "absl/strings/str_cat.h"
#include "aggregator/cost/transfer_classifier.h"

namespace nodewatch::aggregator {

void RegisterAggregatorOptions(OptionSet& o, AggregatorConfig* c) {
  o.AddString("listen", &c->listen, "Address for agent streams (gRPC, mTLS).");
  o.AddString("query-listen", &c->query_listen, "Address of the read-only operator API.");
  o.AddString("metrics-listen", &c->metrics_listen,
              "Address of the Prometheus /metrics endpoint; empty disables it.");
  o.AddString("http-listen", &c->http_listen,
              "Address of the operator JSON API (HTTPS with the server certificate, plain HTTP "
              "with --insecure); empty disables it.");
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
  RemediationConfig* r = &c->remediation;
  o.AddString("remediation", &r->mode,
              "auto|on|off. auto: act on notices when a Kubernetes API is reachable (in-cluster "
              "or a kubeconfig); on: refuse to start without one.");
  o.AddString("kubeconfig", &r->kubeconfig,
              "kubeconfig file; empty: in-cluster service account, then $KUBECONFIG, then "
              "~/.kube/config.");
  o.AddString("kube-api-server", &r->kube_api_server,
              "Kubernetes API URL; overrides the kubeconfig's server (with --kube-token-file, "
              "or alone for a local test server).");
  o.AddString("kube-token-file", &r->kube_token_file,
              "Bearer token file for --kube-api-server; re-read every minute and after a 401.");
  o.AddBool("dry-run", &r->dry_run,
            "Log and record the remediation plan; change nothing in the cluster.");
  o.AddBool("leader-elect", &r->leader_elect,
            "Elect one acting replica with a coordination.k8s.io Lease (turn off only for a "
            "single replica).");
  o.AddString("lease-namespace", &r->lease_namespace,
              "Namespace of the Lease; empty: the service account's namespace.");
  o.AddString("lease-name", &r->lease_name, "Name of the Lease.");
  o.AddDuration("lease-duration", &r->lease_duration_ms,
                "How long a leader's Lease holds without renewal.");
  o.AddDuration("lease-renew-deadline", &r->lease_renew_deadline_ms,
                "A leader that cannot renew for this long stops acting.");
  o.AddDuration("lease-retry-period", &r->lease_retry_period_ms,
                "Interval of renewals and acquisition attempts.");
  o.AddString("identity", &r->identity, "Leader identity; empty: <hostname>_<random>.");
  o.AddStringList("policy", &r->policies,
                  "Per-kind action, KIND=drain|cordon|taint|none (repeatable). Defaults: "
                  "spot-*, terminate, reboot, redeploy, scheduled-maintenance=drain; "
                  "rebalance=taint; freeze=none.");
  o.AddString("taint-key", &r->taint_key, "Key of the taint put on interrupted nodes.");
  o.AddBool("exclude-from-load-balancers", &r->exclude_from_load_balancers,
            "Label drained nodes node.kubernetes.io/exclude-from-external-load-balancers.");
  o.AddDuration("drain-margin", &r->drain_margin_ms,
                "Pods must be gone this long before the deadline; graces are clamped to fit.");
  o.AddDuration("pdb-retry", &r->pdb_retry_ms,
                "Retry delay for evictions a PodDisruptionBudget refused without Retry-After.");
  o.AddDuration("drain-poll", &r->drain_poll_ms, "How often evicted pods are checked for.");
  o.AddDuration("drain-timeout", &r->drain_without_deadline_ms,
                "Longest drain for a notice without a deadline.");
  o.AddDuration("maintenance-lead", &r->maintenance_lead_ms,
                "Scheduled maintenance is drained this long before NotBefore.");
  o.AddDuration("rebalance-ttl", &r->rebalance_ttl_ms,
                "A rebalance taint (and cordon) is cleared after this long.");
  o.AddBool("rebalance-cordon", &r->rebalance_cordon, "Also cordon on a rebalance notice.");
  o.AddString("webhook-url", &r->webhook_url,
              "POST a message here when a notice arrives and when its drain ends; empty: off.");
  o.AddString("webhook-template", &r->webhook_template,
              "JSON body with {{node}} {{provider}} {{kind}} {{event_id}} {{deadline}} "
              "{{action}} {{message}} {{text}}; default Slack-compatible {\"text\":\"{{text}}\"}.");
  o.AddStringList("webhook-header", &r->webhook_headers,
                  "Extra header for the webhook, 'Name: value' (repeatable).");
  o.AddDuration("webhook-timeout", &r->webhook_timeout_ms, "Timeout of one webhook attempt.");
  o.AddInt("webhook-retries", &r->webhook_retries, "Webhook attempts after the first.", 0, 10);
  RegisterCostOptions(o, &c->cost);
}

void RegisterCostOptions(OptionSet& o, CostConfig* c) {
  CostMonitorOptions* m = &c->monitor;
  o.AddString("cluster", &m->cluster, "Cluster name on cost figures, metrics and alerts.");
  o.AddString("environment", &m->environment,
              "Environment label on cost figures and metrics (prod, staging, ...).");
  o.AddString("price-table", &c->price_table,
              "YAML price table (docs/cost.md); empty: the built-in list prices.");
  o.AddStringList("transfer-cidr", &c->transfer_cidrs,
                  "Where an address range is, for data-transfer classes: CIDR=REGION[/ZONE] or "
                  "CIDR=same-zone|cross-zone|cross-region|internet|unclassified (repeatable).");
  o.AddDuration("cost-interval", &m->interval_ms, "How often cost and alerts are evaluated.");
  o.AddDouble("monthly-budget", &m->monthly_budget_usd,
              "Monthly budget in USD for the budget alerts; 0: no budget alerts.", 0, 1e12);
  o.AddDouble("budget-forecast-ratio", &m->forecast_ratio,
              "budget-forecast fires when the month-end forecast passes this share of the "
              "budget.",
              0.01, 10);
  o.AddDuration("alert-interruption-window", &m->interruption_window_ms,
                "Window of the spot-interruption-spike rule.");
  o.AddInt("alert-interruption-count", &m->interruption_spike_count,
           "spot-interruption-spike fires at this many spot reclaims in the window.", 1, 1'000'000);
  o.AddDouble("alert-fallback-share", &m->fallback_share,
              "spot-interruption-spike also fires when on-demand fallback node-hours reach this "
              "share of spot plus fallback node-hours this month.",
              0, 1);
  o.AddDouble("alert-transfer-spike-factor", &m->transfer_spike_factor,
              "transfer-cost-spike fires when the last 24 h of transfer cost pass this multiple "
              "of the daily average of the week before.",
              1, 1000);
  o.AddDouble("alert-transfer-spike-min", &m->transfer_spike_min_usd,
              "transfer-cost-spike needs at least this many USD per day.", 0, 1e9);
  o.AddDuration("alert-disk-full-within", &m->disk_full_within_ms,
                "disk-filling fires for a filesystem predicted full within this long.");
  o.AddInt("alert-repeated-interruptions", &m->repeated_count,
           "repeated-interruptions fires for a node with this many notices in the window.", 2,
           1'000'000);
  o.AddDuration("alert-repeated-window", &m->repeated_window_ms,
                "Window of the repeated-interruptions rule.");
  o.AddDuration("alert-pending-for", &m->pending_for_ms,
                "Spike and disk conditions must hold this long before they fire.");
  o.AddDuration("alert-resolve-after", &c->alerts.resolve_after_ms,
                "A firing alert resolves after its condition was false this long (no flapping).");
  o.AddDuration("alert-renotify-after", &c->alerts.renotify_after_ms,
                "An alert firing again within this long of its last message is not sent again.");
  o.AddInt("alert-max-per-hour", &c->alerts.max_notifications_per_hour,
           "Most alert messages sent per hour; the rest are counted as rate limited.", 1, 100'000);
  o.AddString("alert-webhook-url", &c->webhook_url,
              "POST alert messages here (Slack-compatible JSON by default); empty: alerts are "
              "only kept and exported as metrics.");
  o.AddString("alert-webhook-template", &c->webhook_template,
              "JSON body with {{text}} {{rule}} {{subject}} {{state}} {{message}} {{value}} "
              "{{threshold}}.");
  o.AddStringList("alert-webhook-header", &c->webhook_headers,
                  "Extra header for the alert webhook, 'Name: value' (repeatable).");
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
  if (!c.http_listen.empty() && !is_address(c.http_listen)) {
    return bad("http-listen", "'" + c.http_listen + "' is not host:port");
  }
  if (c.data_dir.empty()) return bad("data-dir", "must be set");
  if (c.cost.monitor.interval_ms < 1000) return bad("cost-interval", "must be at least 1s");
  if (c.cost.monitor.cluster.empty()) return bad("cluster", "must not be empty");
  for (const auto& spec : c.cost.transfer_cidrs) {
    if (auto o = ParseCidrOverride(spec); !o.ok()) return o.status();
  }
  if (c.retention_ms < 3600'000) return bad("retention", "must be at least 1h");
  if (c.max_message_bytes < 64 * 1024 || c.max_message_bytes > (1ull << 30)) {
    return bad("max-message-bytes", "must be between 64KiB and 1GiB");
  }
  const auto& r = c.remediation;
  if (r.mode != "auto" && r.mode != "on" && r.mode != "off") {
    return bad("remediation", "'" + r.mode + "' is not auto, on or off");
  }
  if (auto policies = ParsePolicies(r.policies); !policies.ok()) return policies.status();
  if (r.lease_duration_ms <= r.lease_renew_deadline_ms ||
      r.lease_renew_deadline_ms * 5 <= r.lease_retry_period_ms * 6) {
    return bad("lease-duration",
               "need lease-duration > lease-renew-deadline > 1.2 x lease-retry-period");
  }
  if (r.drain_margin_ms < 0) return bad("drain-margin", "must not be negative");
  if (r.pdb_retry_ms < 100) return bad("pdb-retry", "must be at least 100ms");
  if (r.drain_poll_ms < 50) return bad("drain-poll", "must be at least 50ms");
  if (!c.insecure) {
    if (c.tls_ca.empty()) return bad("tls-ca", "required unless --insecure");
    if (c.tls_cert.empty()) return bad("tls-cert", "required unless --insecure");
    if (c.tls_key.empty()) return bad("tls-key", "required unless --insecure");
  }
  return absl::OkStatus();
}

}  // namespace nodewatch::aggregator
