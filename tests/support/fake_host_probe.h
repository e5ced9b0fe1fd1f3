// FakeHostProbe: a node whose facts the test sets.
#pragma once

#include <mutex>

#include "agent/collectors/host/host_probe.h"

namespace nodewatch::testing {

class FakeHostProbe final : public agent::HostProbe {
 public:
  nodewatch::v1::NodeInfo ReadNodeInfo() override {
    std::lock_guard<std::mutex> lock(mu_);
    return info;
  }
  agent::HostStats ReadStats() override {
    std::lock_guard<std::mutex> lock(mu_);
    return stats;
  }
  std::string BootId() override { return boot_id; }
  void SetInfo(nodewatch::v1::NodeInfo i) {
    std::lock_guard<std::mutex> lock(mu_);
    info = std::move(i);
  }

  nodewatch::v1::NodeInfo info;
  agent::HostStats stats;
  std::string boot_id = "fake-boot-id";

 private:
  std::mutex mu_;
};

}  // namespace nodewatch::testing
