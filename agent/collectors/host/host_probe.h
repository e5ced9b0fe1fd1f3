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

// Bytes of the block devices under `sys_block` ("/sys/block") that a cloud keeps while the
// instance is stopped: every whole disk but loop, RAM, device-mapper, MD, optical and network
// block devices (which stack on or are not disks) and the instance's own ephemeral storage (NVMe
// models "Amazon EC2 NVMe Instance Storage", GCE local SSD "nvme_card" / "EphemeralDisk").
uint64_t PersistentDiskBytes(const std::string& sys_block);

// Reads the real host. `proc_root` is "/proc" or, in a container, the host's /proc mount.
class HostProbeImpl final : public HostProbe {
 public:
  explicit HostProbeImpl(std::string proc_root = "/proc", std::string sys_block = "/sys/block")
      : proc_root_(std::move(proc_root)), sys_block_(std::move(sys_block)) {}
  nodewatch::v1::NodeInfo ReadNodeInfo() override;
  HostStats ReadStats() override;
  std::string BootId() override;

 private:
  std::string proc_root_;
  std::string sys_block_;
};

}  // namespace nodewatch::agent
