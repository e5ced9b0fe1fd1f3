// nodewatch-agent: flags and config in, wiring out; everything else lives in the libraries.
#include <csignal>

#include "absl/synchronization/mutex.h"
#include <iostream>

#include "agent/agent.h"
#include "common/logging.h"

namespace {
volatile std::sig_atomic_t g_stop = 0;
void HandleSignal(int) { g_stop = 1; }
}  // namespace

int main(int argc, char** argv) {
  // Debian's Abseil checks every Mutex acquisition for lock-order cycles (gRPC locks a lot): a
  // debugging aid that costs several percent of CPU in production.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  nodewatch::agent::AgentConfig config;
  nodewatch::OptionSet options("nodewatch-agent",
                               "Streams this node's interruption notices, network and disk "
                               "signals to the nodewatch aggregator.");
  nodewatch::agent::RegisterAgentOptions(options, &config);
  bool version = false;
  options.AddBool("version", &version, "Print the version and exit.");
  auto args = options.Parse(argc, argv);
  if (!args.ok()) {
    std::cerr << "nodewatch-agent: " << args.status().message() << "\n";
    return 2;
  }
  if (options.help_requested()) {
    std::cout << options.Help();
    return 0;
  }
  if (version) {
    std::cout << "nodewatch-agent " << NODEWATCH_VERSION << "\n";
    return 0;
  }
  if (auto s = nodewatch::SetLogLevel(config.log_level); !s.ok()) {
    std::cerr << "nodewatch-agent: " << s.message() << "\n";
    return 2;
  }
  auto agent = nodewatch::agent::Agent::Create(
      config, std::make_unique<nodewatch::agent::HostProbeImpl>(config.proc_root),
      nodewatch::SystemClock::Get());
  if (!agent.ok()) {
    std::cerr << "nodewatch-agent: " << agent.status().message() << "\n";
    return 1;
  }
  std::signal(SIGINT, HandleSignal);
  std::signal(SIGTERM, HandleSignal);
  (*agent)->Start();
  while (g_stop == 0) pause();
  nodewatch::GetLogger("agent")->info("stopping");
  (*agent)->Stop();
  return 0;
}
