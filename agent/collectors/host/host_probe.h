// HostProbe: what the node itself says about its identity and health (uname, /proc, interfaces).
// The seam between the heartbeat collector and the kernel (STYLE.md G2); tests use FakeHostProbe.
#pragma once

#include <cstdint>
#include <string>

#include "nodewatch/v1/records.pb.h"

namespace nodewatch::agent {

struct HostStats {
  uint64_t uptime_seconds = 0;
  double load1 = 0;
  uint64_t memory_total_bytes = 0;
  uint64_t memory_available_bytes = 0;
  uint64_t self_rss_bytes = 0;
};

class HostProbe {
 public:
  virtual ~HostProbe() = default;
  // Hostname, kernel, OS image, architecture and addresses. Cloud fields stay empty: cloud
  // providers (a later collector) fill them.
  virtual nodewatch::v1::NodeInfo ReadNodeInfo() = 0;
  virtual HostStats ReadStats() = 0;
  // Changes on every boot; empty if unknown.
  virtual std::string BootId() = 0;
};

// Reads the real host. `proc_root` is "/proc" or, in a container, the host's /proc mount.
class HostProbeImpl final : public HostProbe {
 public:
  explicit HostProbeImpl(std::string proc_root = "/proc") : proc_root_(std::move(proc_root)) {}
  nodewatch::v1::NodeInfo ReadNodeInfo() override;
  HostStats ReadStats() override;
  std::string BootId() override;

 private:
  std::string proc_root_;
};

}  // namespace nodewatch::agent
