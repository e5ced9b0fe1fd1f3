// Agent: wires the spool, the collectors and one uplink per aggregator. Built by main() from an
// AgentConfig; tests build it the same way.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "agent/agent_metrics.h"
#include "agent/collectors/cloud/cloud_collector.h"
#include "agent/collectors/disk/filesystem_collector.h"
#include "agent/collectors/host/heartbeat_collector.h"
#include "agent/config/agent_config.h"
#include "agent/spool/spool.h"
#include "agent/uplink/uplink.h"

namespace nodewatch::agent {

class Agent {
 public:
  static absl::StatusOr<std::unique_ptr<Agent>> Create(const AgentConfig& config,
                                                       std::unique_ptr<HostProbe> probe,
                                                       const Clock& clock);
  ~Agent();
  void Start();
  void Stop();
  Spool& spool() { return *spool_; }
  const CloudCounters& cloud_counters() const { return cloud_counters_; }
  std::vector<UplinkStatus> uplink_status() const;

 private:
  Agent(AgentConfig config, const Clock& clock) : config_(std::move(config)), clock_(clock) {}
  void OnAck(const std::string& endpoint, uint64_t acked);

  AgentConfig config_;
  const Clock& clock_;
  CloudCounters cloud_counters_;
  std::unique_ptr<HttpClient> http_;
  std::unique_ptr<CloudProvider> provider_;
  std::unique_ptr<HostProbe> probe_;
  std::unique_ptr<Spool> spool_;
  std::unique_ptr<CloudCollector> cloud_;
  std::unique_ptr<MetricsEndpoint> metrics_;
  std::unique_ptr<HeartbeatCollector> heartbeat_;
  std::unique_ptr<LoadGenerator> load_;
  std::unique_ptr<FilesystemCollector> filesystems_;  // null with --filesystems=false
  // eBPF collectors: null when switched off or refused by the kernel (reason in bpf_view_).
  void SetUpBpf();
  std::optional<BpfStatsScope> bpf_stats_;
  std::unique_ptr<NetworkCollector> network_;
  std::unique_ptr<BlockIoCollector> block_io_;
  BpfView bpf_view_;
  std::vector<std::unique_ptr<Uplink>> uplinks_;
  std::mutex acks_mu_;
  std::map<std::string, uint64_t> acks_;  // endpoint → watermark
  std::string boot_id_;
};

}  // namespace nodewatch::agent
