// nodewatch-aggregator: flags and config in, wiring out.
#include <sys/resource.h>
#include <unistd.h>

#include <csignal>

#include "absl/synchronization/mutex.h"
#include <iostream>

#include "aggregator/aggregator.h"
#include "common/logging.h"

namespace {
volatile std::sig_atomic_t g_stop = 0;
void HandleSignal(int) { g_stop = 1; }
}  // namespace

int main(int argc, char** argv) {
  // Debian's Abseil checks every Mutex acquisition for lock-order cycles (gRPC locks a lot): a
  // debugging aid that costs several percent of CPU in production.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  nodewatch::aggregator::AggregatorConfig config;
  nodewatch::OptionSet options("nodewatch-aggregator",
                               "Stores every node's history, acts on interruptions and answers "
                               "operators' questions.");
  nodewatch::aggregator::RegisterAggregatorOptions(options, &config);
  bool version = false;
  options.AddBool("version", &version, "Print the version and exit.");
  auto args = options.Parse(argc, argv);
  if (!args.ok()) {
    std::cerr << "nodewatch-aggregator: " << args.status().message() << "\n";
    return 2;
  }
  if (options.help_requested()) {
    std::cout << options.Help();
    return 0;
  }
  if (version) {
    std::cout << "nodewatch-aggregator " << NODEWATCH_VERSION << "\n";
    return 0;
  }
  if (auto s = nodewatch::SetLogLevel(config.log_level); !s.ok()) {
    std::cerr << "nodewatch-aggregator: " << s.message() << "\n";
    return 2;
  }
  std::signal(SIGINT, HandleSignal);
  std::signal(SIGTERM, HandleSignal);
  std::signal(SIGPIPE, SIG_IGN);
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
  while (g_stop == 0) pause();
  nodewatch::GetLogger("agg")->info("stopping");
  (*agg)->Shutdown();
  return 0;
}
