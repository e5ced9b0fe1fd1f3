#include "agent/agent_metrics.h"

namespace nodewatch::agent {

absl::StatusOr<std::unique_ptr<MetricsEndpoint>> StartAgentMetrics(
    const std::string& address, Spool& spool, CloudCounters& cloud, std::string provider,
    std::function<std::vector<UplinkStatus>()> uplinks, const FilesystemCounters* filesystems,
    const BpfView* bpf) {
  return MetricsEndpoint::Start(
      "metrics-listen", address,
      [&spool, &cloud, provider = std::move(provider), uplinks = std::move(uplinks), filesystems,
       bpf] {
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
        if (bpf != nullptr) AddBpfMetrics(f, *bpf);
        return f.Take();
      });
}

void AddBpfMetrics(MetricFamilies& f, const BpfView& bpf) {
  auto d = [](uint64_t v) { return static_cast<double>(v); };
  std::vector<ProgramStats> programs;
  std::vector<MapStats> maps;
  if (bpf.network != nullptr) {
    for (auto& p : bpf.network->source().Programs()) programs.push_back(std::move(p));
    for (auto& m : bpf.network->source().Maps()) maps.push_back(std::move(m));
  }
  if (bpf.block_io != nullptr) {
    for (auto& p : bpf.block_io->source().Programs()) programs.push_back(std::move(p));
    for (auto& m : bpf.block_io->source().Maps()) maps.push_back(std::move(m));
  }
  for (const auto& [name, probe] : bpf.features.List()) {
    f.Gauge("nodewatch_agent_kernel_feature",
            "1 if the kernel runs this BPF feature (probed at start; the start log and "
            "`nodewatch node` give the kernel's answer when 0).",
            probe->available ? 1 : 0, {{"feature", name}});
  }
  for (const auto& [signal, paths] : KnownCountingPaths()) {
    std::string active = "off";
    for (const SignalPath& p : bpf.paths) {
      if (p.signal == signal) active = p.path;
    }
    for (const std::string& path : paths) {
      f.Gauge("nodewatch_agent_bpf_counting_path",
              "1 for the path each signal is counted on (bytes: socket or packet, the same bytes "
              "either way; events: tp_btf; off), 0 for the others.",
              path == active ? 1 : 0, {{"signal", signal}, {"path", path}});
    }
  }
  const std::pair<const char*, bool> collectors[] = {{"network", bpf.network != nullptr},
                                                     {"block_io", bpf.block_io != nullptr}};
  for (const auto& [name, up] : collectors) {
    f.Gauge("nodewatch_agent_bpf_collector_up",
            "1 if the collector's BPF programs are loaded; 0 if switched off or refused (the log "
            "says why).",
            up ? 1 : 0, {{"collector", name}});
  }
  for (const auto& p : programs) {
    f.Gauge("nodewatch_agent_bpf_program_loaded",
            "1 if the program is loaded and attached; 0 if this kernel cannot run it.",
            p.loaded ? 1 : 0, {{"program", p.name}, {"attach", p.attach}});
  }
  for (const auto& p : programs) {
    if (p.loaded) {
      f.Counter("nodewatch_agent_bpf_program_runs_total",
                "Runs of the program (counted while bpf_stats is on, see --bpf-stats).",
                d(p.run_count), {{"program", p.name}});
    }
  }
  for (const auto& p : programs) {
    if (p.loaded) {
      f.Counter("nodewatch_agent_bpf_program_run_seconds_total",
                "Kernel time spent in the program (counted while bpf_stats is on).",
                static_cast<double>(p.run_time_ns) / 1e9, {{"program", p.name}});
    }
  }
  for (const auto& p : programs) {
    if (p.loaded) {
      f.Counter("nodewatch_agent_bpf_program_missed_runs_total",
                "Runs the kernel skipped because the program was already running on that CPU "
                "(tracing programs; what they would have counted is missing).",
                d(p.missed_runs), {{"program", p.name}});
    }
  }
  for (const auto& m : maps) {
    // The collector's own count for flows: a walk here would race its deletions and could count
    // entries twice.
    const uint64_t entries = m.name == "flows" && bpf.network != nullptr
                                 ? bpf.network->counters().flow_entries.load()
                                 : m.entries;
    f.Gauge("nodewatch_agent_bpf_map_entries", "Entries in the map now.", d(entries),
            {{"map", m.name}});
  }
  for (const auto& m : maps) {
    f.Gauge("nodewatch_agent_bpf_map_max_entries", "Capacity of the map.", d(m.max_entries),
            {{"map", m.name}});
  }
  for (const auto& m : maps) {
    f.Gauge("nodewatch_agent_bpf_map_memory_bytes", "Kernel memory charged for the map.",
            d(m.memory_bytes), {{"map", m.name}});
  }
  const char* const full_help =
      "Events the kernel could not record because the map was full (never silent).";
  if (bpf.network != nullptr) {
    const auto& c = bpf.network->counters();
    f.Counter("nodewatch_agent_bpf_map_full_total", full_help, d(c.flow_map_full),
              {{"map", "flows"}});
    f.Counter("nodewatch_agent_bpf_map_full_total", full_help, d(c.connect_map_full),
              {{"map", "connect_start"}});
    f.Counter("nodewatch_agent_bpf_map_full_total", full_help, d(c.trouble_map_full),
              {{"map", "tcp_trouble"}});
  }
  if (bpf.block_io != nullptr) {
    const auto& c = bpf.block_io->counters();
    f.Counter("nodewatch_agent_bpf_map_full_total", full_help, d(c.device_map_full),
              {{"map", "disk_io"}});
  }
  if (bpf.network != nullptr) {
    const auto& c = bpf.network->counters();
    f.Counter("nodewatch_agent_network_samples_total", "Network samples spooled.", d(c.samples));
    f.Counter("nodewatch_agent_network_flows_evicted_total",
              "Idle flows taken out of the kernel map (their last counts kept).",
              d(c.flows_evicted));
    f.Counter("nodewatch_agent_network_flows_folded_total",
              "Small flows folded into per-pod totals because a sample had too many.",
              d(c.flows_folded));
  }
  if (bpf.block_io != nullptr) {
    f.Counter("nodewatch_agent_block_io_samples_total", "Block I/O samples spooled.",
              d(bpf.block_io->counters().samples));
    f.Counter("nodewatch_agent_block_io_untimed_total",
              "Completed I/Os without a start stamp (the device's queue/iostats is 0): counted, "
              "not in the latency histograms.",
              d(bpf.block_io->counters().untimed));
    f.Counter("nodewatch_agent_block_io_uncounted_total",
              "Completed reads and writes in /proc/diskstats that the block I/O program did not "
              "count (a lower bound, from comparing the two every interval; includes missed runs "
              "and map-full drops; see docs/ebpf.md).",
              d(bpf.block_io->counters().uncounted));
  }
  const char* const read_errors_help = "Failed reads of the kernel maps.";
  if (bpf.network != nullptr) {
    f.Counter("nodewatch_agent_bpf_read_errors_total", read_errors_help,
              d(bpf.network->counters().read_errors), {{"collector", "network"}});
  }
  if (bpf.block_io != nullptr) {
    f.Counter("nodewatch_agent_bpf_read_errors_total", read_errors_help,
              d(bpf.block_io->counters().read_errors), {{"collector", "block_io"}});
  }
  const char* const spool_errors_help =
      "Samples the spool refused (disk full or failing): that interval's counts are lost.";
  if (bpf.network != nullptr) {
    f.Counter("nodewatch_agent_bpf_spool_errors_total", spool_errors_help,
              d(bpf.network->counters().spool_errors), {{"collector", "network"}});
  }
  if (bpf.block_io != nullptr) {
    f.Counter("nodewatch_agent_bpf_spool_errors_total", spool_errors_help,
              d(bpf.block_io->counters().spool_errors), {{"collector", "block_io"}});
  }
}

}  // namespace nodewatch::agent
