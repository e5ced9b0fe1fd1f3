// CloudCollector: receives notices from the cloud provider, keeps each cloud event (provider,
// event id, state) exactly once — also across agent restarts, through a small fsynced ledger in
// the spool directory — and appends it to the spool's urgent lane, which fsyncs before anything
// else happens. Also runs the aggregator's commands that concern the cloud (Azure StartRequests).
//
// CloudHostProbe decorates the host's HostProbe with the cloud's facts (instance id and type,
// region, zone, lifecycle, addresses) so every NodeInfo record carries them.
#pragma once

#include <mutex>
#include <optional>
#include <set>
#include <string>

#include "agent/collectors/cloud/cloud_provider.h"
#include "agent/collectors/host/host_probe.h"
#include "agent/spool/spool.h"
#include "nodewatch/v1/agent.pb.h"

namespace nodewatch::agent {

class CloudCollector final : public NoticeSink {
 public:
  // `ledger_path`: file of notices already spooled (created if missing). `boot_id`: this boot's,
  // stamped on every notice so the aggregator knows which life of the node it concerns.
  CloudCollector(Spool& spool, CloudProvider& provider, const Clock& clock,
                 CloudCounters& counters, std::string ledger_path, std::string boot_id = "");
  ~CloudCollector() override;

  absl::Status Load();
  void Start();
  void Stop();
  void OnNotice(nodewatch::v1::InterruptionNotice notice) override;
  void HandleCommand(const nodewatch::v1::Command& command);

 private:
  static std::string Key(const nodewatch::v1::InterruptionNotice& n);

  Spool& spool_;
  CloudProvider& provider_;
  const Clock& clock_;
  CloudCounters& counters_;
  const std::string ledger_path_;
  const std::string boot_id_;
  std::mutex mu_;
  std::set<std::string> seen_;
  bool started_ = false;
};

class CloudHostProbe final : public HostProbe {
 public:
  CloudHostProbe(std::unique_ptr<HostProbe> host, CloudProvider& provider, const Clock& clock);
  nodewatch::v1::NodeInfo ReadNodeInfo() override;
  HostStats ReadStats() override { return host_->ReadStats(); }
  std::string BootId() override { return host_->BootId(); }

 private:
  std::unique_ptr<HostProbe> host_;
  CloudProvider& provider_;
  const Clock& clock_;
  std::mutex mu_;
  std::optional<nodewatch::v1::NodeInfo> cloud_;
  int64_t fetched_ms_ = 0;
};

}  // namespace nodewatch::agent
