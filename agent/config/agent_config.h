// AgentConfig: every setting of nodewatch-agent, with defaults, its YAML/flag schema and
// validation. Libraries get the sub-structs they need (SpoolOptions, UplinkOptions).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "common/options.h"

namespace nodewatch::agent {

struct AgentConfig {
  std::string node_name;                 // default: hostname
  std::vector<std::string> aggregators;  // host:port, one stream each
  std::string spool_dir = "/var/lib/nodewatch/spool";
  uint64_t spool_max_bytes = 256ull << 20;
  uint64_t spool_segment_bytes = 4ull << 20;
  int64_t interval_ms = 10'000;
  std::string tls_ca;
  std::string tls_cert;
  std::string tls_key;
  bool insecure = false;
  std::string proc_root = "/proc";
  bool filesystems = true;            // capacity, inodes and time to full of the node's mounts
  int64_t statfs_timeout_ms = 2'000;  // a hung mount is reported as timed out after this
  // eBPF signals (agent/collectors/net, agent/collectors/disk; programs in bpf/).
  bool bpf = true;                   // off: no network counters and no block I/O latency
  std::string bpf_cgroup;            // cgroup v2 directory counted; empty: the cgroup v2 root
  int64_t bpf_flow_entries = 16384;  // kernel flows map size
  bool bpf_tcp = true;               // TCP retransmits, connects, resets
  bool bpf_block_io = true;          // block request latency and errors
  bool bpf_stats = false;            // kernel-wide run-time statistics (every BPF program pays)
  std::string pods_log_dir = "/var/log/pods";  // pod names for attribution
  std::string log_level = "info";
  int64_t max_backoff_ms = 30'000;
  std::string metrics_listen;  // empty: no /metrics
  // Cloud metadata (agent/collectors/cloud).
  std::string cloud = "auto";
  std::string metadata_endpoint;
  bool aws_imdsv1_fallback = false;
  int64_t aws_poll_interval_ms = 500;  // p99 notice → cordon under 1 s; 4 IMDS GETs/s
  int64_t aws_scheduled_poll_interval_ms = 10'000;
  int64_t gcp_preemption_notice_ms = 30'000;
  int64_t azure_poll_interval_ms = 1000;
  std::string azure_resource_name;
  int64_t synthetic_records_per_second = 0;
  int64_t synthetic_records_total = 0;
};

void RegisterAgentOptions(OptionSet& options, AgentConfig* config);
// Checks the whole config; the error names the key at fault.
absl::Status ValidateAgentConfig(const AgentConfig& config);

}  // namespace nodewatch::agent
