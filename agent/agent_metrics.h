// The agent's own /metrics (prometheus-cpp), read at scrape time from the components' counters.
// Listed in docs/metrics.md.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "agent/collectors/cloud/cloud_provider.h"
#include "agent/spool/spool.h"
#include "agent/uplink/uplink.h"

namespace prometheus {
class Exposer;
}

namespace nodewatch::agent {

class AgentMetrics {
 public:
  static absl::StatusOr<std::unique_ptr<AgentMetrics>> Start(
      const std::string& address, Spool& spool, CloudCounters& cloud, std::string provider,
      std::function<std::vector<UplinkStatus>()> uplinks);
  ~AgentMetrics();
  int port() const;

 private:
  AgentMetrics() = default;
  std::unique_ptr<prometheus::Exposer> exposer_;
  std::shared_ptr<void> collectable_;
};

}  // namespace nodewatch::agent
