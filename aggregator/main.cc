// nodewatch-aggregator: flags and config in, wiring out.
#include <sys/resource.h>

#include <iostream>

#include "aggregator/aggregator.h"
#include "common/daemon.h"
#include "common/logging.h"

int main(int argc, char** argv) {
  nodewatch::aggregator::AggregatorConfig config;
  nodewatch::OptionSet options("nodewatch-aggregator",
                               "Stores every node's history, acts on interruptions and answers "
                               "operators' questions.");
  nodewatch::aggregator::RegisterAggregatorOptions(options, &config);
  if (auto code =
          nodewatch::StartDaemon(options, argc, argv, "nodewatch-aggregator", &config.log_level)) {
    return *code;
  }
  // One connection per agent: allow as many descriptors as the system lets us.
  rlimit files{};
  if (getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur < files.rlim_max) {
    files.rlim_cur = files.rlim_max;
    setrlimit(RLIMIT_NOFILE, &files);
  }
  auto agg = nodewatch::aggregator::Aggregator::Start(config, nodewatch::SystemClock::Get());
  if (!agg.ok()) {
    std::cerr << "nodewatch-aggregator: " << agg.status().message() << "\n";
    return 1;
  }
  nodewatch::WaitForTerminationSignal();
  nodewatch::GetLogger("agg")->info("stopping");
  (*agg)->Shutdown();
  return 0;
}
