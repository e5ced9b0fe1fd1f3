#include "aggregator/signals/node_signals.h"

namespace nodewatch::aggregator {

void NodeSignals::Stored(const std::string& node, const nodewatch::v1::NodeInfo&, int64_t,
                         const nodewatch::v1::Record& record) {
  if (!record.has_network() && !record.has_disk()) return;
  std::lock_guard<std::mutex> lock(mu_);
  Node& n = nodes_[node];
  n.last_ms = clock_.NowUnixMs();
  if (record.has_network()) {
    const auto& s = record.network();
    n.has_network = true;
    for (const auto& flow : s.flows()) {
      const bool tx = flow.direction() == nodewatch::v1::DIRECTION_EGRESS;
      (tx ? n.net.tx_bytes : n.net.rx_bytes) += flow.bytes();
      (tx ? n.net.tx_packets : n.net.rx_packets) += flow.packets();
    }
    n.net.retransmits += s.tcp_retransmits();
    n.net.connects += s.tcp_connects();
    n.net.failed_connects += s.tcp_failed_connects();
    n.net.resets += s.tcp_resets();
    n.net.dropped_flows += s.dropped_flows();
  }
  for (const auto& d : record.disk().devices()) {
    if (n.devices.count(d.device()) == 0 && n.devices.size() >= options_.max_devices) {
      ++skipped_;
      continue;
    }
    Device& dev = n.devices[d.device()];
    dev.reads += d.reads();
    dev.writes += d.writes();
    dev.read_bytes += d.read_bytes();
    dev.written_bytes += d.written_bytes();
    dev.io_errors += d.io_errors();
  }
  for (const auto& fs : record.disk().filesystems()) {
    if (n.filesystems.count(fs.mountpoint()) == 0 &&
        n.filesystems.size() >= options_.max_filesystems) {
      ++skipped_;
      continue;
    }
    n.filesystems[fs.mountpoint()] = fs;
  }
}

void NodeSignals::CollectMetrics(MetricFamilies& f, int64_t now_ms) {
  std::lock_guard<std::mutex> lock(mu_);
  std::erase_if(
      nodes_, [&](const auto& e) { return e.second.last_ms < now_ms - options_.forget_after_ms; });
  auto d = [](uint64_t v) { return static_cast<double>(v); };
  // One family at a time (MetricFamilies groups consecutive samples of a name).
  auto each_network = [&](const char* name, const char* help, uint64_t Network::*field) {
    for (const auto& [node, n] : nodes_) {
      if (n.has_network) f.Counter(name, help, d(n.net.*field), {{"node", node}});
    }
  };
  each_network("nodewatch_network_transmit_bytes_total", "Bytes sent by the node's workloads.",
               &Network::tx_bytes);
  each_network("nodewatch_network_receive_bytes_total", "Bytes received by the node's workloads.",
               &Network::rx_bytes);
  each_network("nodewatch_network_transmit_packets_total", "Packets sent.", &Network::tx_packets);
  each_network("nodewatch_network_receive_packets_total", "Packets received.",
               &Network::rx_packets);
  each_network("nodewatch_tcp_retransmits_total", "TCP segments retransmitted.",
               &Network::retransmits);
  each_network("nodewatch_tcp_connects_total", "TCP connections attempted.", &Network::connects);
  each_network("nodewatch_tcp_failed_connects_total", "TCP connects refused or timed out.",
               &Network::failed_connects);
  each_network("nodewatch_tcp_resets_total", "TCP resets sent or received.", &Network::resets);
  each_network("nodewatch_network_dropped_flows_total",
               "Packets the agent could not attribute to a flow because its flow map was full.",
               &Network::dropped_flows);

  auto each_device = [&](const char* name, const char* help, uint64_t Device::*field) {
    for (const auto& [node, n] : nodes_) {
      for (const auto& [device, dev] : n.devices) {
        f.Counter(name, help, d(dev.*field), {{"node", node}, {"device", device}});
      }
    }
  };
  each_device("node_disk_reads_completed_total", "The total number of reads completed.",
              &Device::reads);
  each_device("node_disk_writes_completed_total", "The total number of writes completed.",
              &Device::writes);
  each_device("node_disk_read_bytes_total", "The total number of bytes read.", &Device::read_bytes);
  each_device("node_disk_written_bytes_total", "The total number of bytes written.",
              &Device::written_bytes);
  each_device("nodewatch_disk_io_errors_total", "Block requests that completed with an error.",
              &Device::io_errors);

  using Getter = double (*)(const nodewatch::v1::Filesystem&);
  // Capacity series are left out for a mount whose statfs timed out: zeros would read as full.
  auto each_fs = [&](const char* name, const char* help, Getter get, bool only_positive,
                     bool needs_answer = true) {
    for (const auto& [node, n] : nodes_) {
      for (const auto& [mount, fs] : n.filesystems) {
        if (needs_answer && fs.timed_out()) continue;
        const double v = get(fs);
        if (only_positive && v <= 0) continue;
        f.Gauge(name, help, v,
                {{"node", node},
                 {"mountpoint", mount},
                 {"device", fs.device()},
                 {"fstype", fs.fstype()}});
      }
    }
  };
  each_fs(
      "node_filesystem_size_bytes", "Filesystem size in bytes.",
      [](const nodewatch::v1::Filesystem& fs) { return static_cast<double>(fs.size_bytes()); },
      false);
  each_fs(
      "node_filesystem_avail_bytes", "Filesystem space available to non-root users in bytes.",
      [](const nodewatch::v1::Filesystem& fs) { return static_cast<double>(fs.available_bytes()); },
      false);
  each_fs(
      "node_filesystem_files", "Filesystem total file nodes.",
      [](const nodewatch::v1::Filesystem& fs) { return static_cast<double>(fs.inodes()); }, false);
  each_fs(
      "node_filesystem_files_free", "Filesystem total free file nodes.",
      [](const nodewatch::v1::Filesystem& fs) { return static_cast<double>(fs.inodes_free()); },
      false);
  each_fs(
      "nodewatch_filesystem_statfs_timed_out",
      "1 when the agent's statfs of the mount did not answer in time (a hung network mount).",
      [](const nodewatch::v1::Filesystem& fs) { return fs.timed_out() ? 1.0 : 0.0; }, false);
  each_fs(
      "nodewatch_filesystem_predicted_full_timestamp_seconds",
      "When the agent predicts the filesystem full (Unix time); absent when not filling.",
      [](const nodewatch::v1::Filesystem& fs) {
        return static_cast<double>(fs.predicted_full_unix_ms()) / 1000;
      },
      true);
  f.Counter("nodewatch_signals_skipped_total",
            "Devices or mounts beyond the per-node bound, not exported.", d(skipped_.load()));
}

}  // namespace nodewatch::aggregator
