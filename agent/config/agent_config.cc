#include "agent/config/agent_config.h"

#include "absl/strings/str_cat.h"

namespace nodewatch::agent {

void RegisterAgentOptions(OptionSet& o, AgentConfig* c) {
  o.AddString("node-name", &c->node_name,
              "Kubernetes node name; must match the client certificate's CN system:node:<name>. "
              "Empty: the hostname.");
  o.AddStringList("aggregator", &c->aggregators,
                  "Aggregator endpoint host:port; repeat for every replica (records go to all).");
  o.AddString("spool-dir", &c->spool_dir, "Directory of the durable outbox.");
  o.AddBytes("spool-max-bytes", &c->spool_max_bytes,
             "Bound of the spool; when full the oldest telemetry is dropped (never a notice).");
  o.AddBytes("spool-segment-bytes", &c->spool_segment_bytes, "Size of one spool segment file.");
  o.AddDuration("interval", &c->interval_ms, "Heartbeat and sampling interval.");
  o.AddString("tls-ca", &c->tls_ca, "PEM CA bundle that signed the aggregator's certificate.");
  o.AddString("tls-cert", &c->tls_cert, "PEM client certificate of this node.");
  o.AddString("tls-key", &c->tls_key, "PEM private key of --tls-cert.");
  o.AddBool("insecure", &c->insecure, "Plaintext gRPC, for local demos only.");
  o.AddString("proc-root", &c->proc_root, "Host /proc (a different path inside a container).");
  o.AddBool("filesystems", &c->filesystems,
            "Sample the node's filesystems (capacity, inodes, time to full) every interval.");
  o.AddDuration("statfs-timeout", &c->statfs_timeout_ms,
                "A mount whose statfs takes longer is reported as timed out (dead NFS server).");
  o.AddBool("bpf", &c->bpf,
            "Count network traffic per pod and remote address, TCP health and block I/O latency "
            "with eBPF (needs CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN).");
  o.AddString("bpf-cgroup", &c->bpf_cgroup,
              "cgroup v2 directory whose sockets are counted (and every cgroup below); empty: the "
              "cgroup v2 root, i.e. pods and host processes.");
  o.AddInt("bpf-flow-entries", &c->bpf_flow_entries,
           "Size of the kernel flows map: distinct (cgroup, remote address, direction) per "
           "interval. When full, packets are counted as dropped.",
           16, 1 << 22);
  o.AddBool("bpf-tcp", &c->bpf_tcp, "TCP retransmits, connect latency, failed connects, resets.");
  o.AddBool("bpf-block-io", &c->bpf_block_io,
            "Block request latency histograms and I/O errors per device.");
  o.AddBool("bpf-stats", &c->bpf_stats,
            "Per-program run counts and times for /metrics. Kernel-wide: every BPF program on the "
            "node (the CNI's too) pays about 20 ns per run while it is on; needs CAP_SYS_ADMIN.");
  o.AddString("pods-log-dir", &c->pods_log_dir,
              "The kubelet's pod log directory: pod namespaces and names for attribution.");
  o.AddString("log-level", &c->log_level, "trace|debug|info|warn|error.");
  o.AddDuration("max-backoff", &c->max_backoff_ms, "Longest wait between reconnect attempts.");
  o.AddString("metrics-listen", &c->metrics_listen,
              "Address of the agent's own Prometheus /metrics (e.g. 127.0.0.1:9465); empty: off.");
  o.AddString("cloud", &c->cloud, "auto|aws|gcp|azure|digitalocean|none.");
  o.AddString("metadata-endpoint", &c->metadata_endpoint,
              "Base URL of the instance metadata service (default http://169.254.169.254); "
              "point it at a simulator for tests.");
  o.AddBool("aws-imdsv1-fallback", &c->aws_imdsv1_fallback,
            "AWS: use IMDSv1 when no IMDSv2 token can be had (off: IMDSv2 only).");
  o.AddDuration("aws-poll-interval", &c->aws_poll_interval_ms,
                "AWS: how often spot instance-action and rebalance are read (at most 1s).");
  o.AddDuration("aws-scheduled-poll-interval", &c->aws_scheduled_poll_interval_ms,
                "AWS: how often scheduled maintenance events are read (at most 10s).");
  o.AddDuration("gcp-preemption-notice", &c->gcp_preemption_notice_ms,
                "GCP: time from the preemption notice to shutdown (30s for Spot VMs, 120s with "
                "preemptionNoticeDuration).");
  o.AddDuration("azure-poll-interval", &c->azure_poll_interval_ms,
                "Azure: how often Scheduled Events are read (at most 1s).");
  o.AddString("azure-resource-name", &c->azure_resource_name,
              "Azure: this VM's name in Scheduled Events Resources (default: compute.name).");
  o.AddInt("synthetic-records-per-second", &c->synthetic_records_per_second,
           "Load testing: also spool this many synthetic heartbeat records per second.", 0,
           10'000'000);
  o.AddInt("synthetic-records-total", &c->synthetic_records_total,
           "Load testing: stop the synthetic records after this many (0: never).", 0,
           1'000'000'000'000);
}

absl::Status ValidateAgentConfig(const AgentConfig& c) {
  auto bad = [](const std::string& key, const std::string& why) {
    return absl::InvalidArgumentError(absl::StrCat("config key '", key, "': ", why));
  };
  if (c.aggregators.empty()) return bad("aggregator", "at least one endpoint is required");
  for (const auto& a : c.aggregators) {
    auto colon = a.rfind(':');
    if (colon == std::string::npos || colon == 0 || colon + 1 == a.size()) {
      return bad("aggregator", absl::StrCat("'", a, "' is not host:port"));
    }
  }
  if (c.spool_dir.empty()) return bad("spool-dir", "must be set");
  if (c.spool_segment_bytes < 4096) return bad("spool-segment-bytes", "must be at least 4KiB");
  if (c.spool_max_bytes < 4 * c.spool_segment_bytes) {
    return bad("spool-max-bytes", "must be at least 4 segments (see spool-segment-bytes)");
  }
  if (c.interval_ms < 100) return bad("interval", "must be at least 100ms");
  if (c.statfs_timeout_ms < 10 || c.statfs_timeout_ms > 60'000) {
    return bad("statfs-timeout", "must be between 10ms and 1m");
  }
  if (c.max_backoff_ms < 100) return bad("max-backoff", "must be at least 100ms");
  for (const char* cloud : {"auto", "aws", "gcp", "azure", "digitalocean", "none"}) {
    if (c.cloud == cloud) break;
    if (std::string(cloud) == "none")
      return bad("cloud", "'" + c.cloud + "' is not auto|aws|gcp|azure|digitalocean|none");
  }
  if (c.aws_poll_interval_ms < 100 || c.aws_poll_interval_ms > 1000) {
    return bad("aws-poll-interval", "must be between 100ms and 1s");
  }
  if (c.aws_scheduled_poll_interval_ms < 100 || c.aws_scheduled_poll_interval_ms > 10'000) {
    return bad("aws-scheduled-poll-interval", "must be between 100ms and 10s");
  }
  if (c.azure_poll_interval_ms < 100 || c.azure_poll_interval_ms > 1000) {
    return bad("azure-poll-interval", "must be between 100ms and 1s");
  }
  if (c.gcp_preemption_notice_ms < 1000) return bad("gcp-preemption-notice", "must be at least 1s");
  if (!c.metadata_endpoint.empty() && c.metadata_endpoint.rfind("http://", 0) != 0) {
    return bad("metadata-endpoint", "must start with http://");
  }
  if (!c.insecure) {
    if (c.tls_ca.empty()) return bad("tls-ca", "required unless --insecure");
    if (c.tls_cert.empty()) return bad("tls-cert", "required unless --insecure");
    if (c.tls_key.empty()) return bad("tls-key", "required unless --insecure");
  }
  return absl::OkStatus();
}

}  // namespace nodewatch::agent
