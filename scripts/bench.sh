#!/usr/bin/env bash
# `make bench [BENCH=<name-prefix>]`: runs every benchmark whose figures' names start with the
# prefix (all of them without one). Each prints `BENCH <name> <value> <unit>` lines.
set -euo pipefail
BIN=$(cd "${1:-build}/bin" && pwd)
PREFIX=${2:-}

# benchmark binary : the figures it prints
BENCHES=(
  "ingest_bench:ingest_records_per_s rocksdb_raw_records_per_s ingest_vs_rocksdb_ratio"
  "agent_footprint_bench:agent_cpu_pct agent_rss_mib"
  "idle_streams_bench:aggregator_rss_mib_5000_streams"
  "notice_latency_bench:notice_to_stored_p50_ms_aws notice_to_stored_p99_ms_aws notice_to_stored_p50_ms_gcp notice_to_stored_p99_ms_gcp notice_to_stored_p50_ms_azure notice_to_stored_p99_ms_azure"
  "cost_bench:cost_eval_5000_nodes_ms cost_eval_max_ms cost_eval_rss_mib cost_eval_ledger_mib"
  "bpf_bench:bpf_net_ns_per_packet bpf_net_ns_per_packet_tcp bpf_net_ns_per_packet_udp bpf_net_ns_per_packet_tcp_per_packet_path bpf_net_ns_per_packet_udp_per_packet_path bpf_net_ns_per_udp_socket_one_exchange bpf_net_ns_per_udp_socket_one_exchange_per_packet_path bpf_cpu_share_pct_small_packets bpf_empty_prog_ns_per_packet bpf_tcp_ns_per_event bpf_disk_ns_per_io bpf_disk_ns_per_io_hash_path bpf_empty_tracepoint_ns_per_io throughput_loss_pct_small_packets throughput_loss_pct_empty_programs cpu_overhead_pct_small_packets load_connections_per_s load_stream_mbit_per_s agent_cpu_pct_under_load agent_rss_mib_under_load agent_bpf_map_mib"
  "remediation_bench:notice_to_cordon_p50_ms_aws notice_to_cordon_p99_ms_aws notice_to_cordon_p50_ms_gcp notice_to_cordon_p99_ms_gcp notice_to_cordon_p50_ms_azure notice_to_cordon_p99_ms_azure drain_110_pods_total_ms drain_110_pods_handler_overhead_ms mass_interruption_50_nodes_cordoned_s mass_interruption_50_nodes_drained_before_deadline"
)

ran=0
for entry in "${BENCHES[@]}"; do
  binary=${entry%%:*}
  names=${entry#*:}
  selected=0
  for name in $names; do
    [[ -z "$PREFIX" || "$name" == "$PREFIX"* ]] && selected=1
  done
  [ "$selected" -eq 1 ] || continue
  echo "== $binary"
  "$BIN/$binary"
  ran=$((ran + 1))
done
if [ "$ran" -eq 0 ]; then
  echo "no benchmark prints a figure starting with '$PREFIX'" >&2
  exit 2
fi
