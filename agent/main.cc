// nodewatch-agent: flags and config in, wiring out; everything else lives in the libraries.
#include <iostream>

#include "agent/agent.h"
#include "common/daemon.h"
#include "common/logging.h"

int main(int argc, char** argv) {
  nodewatch::agent::AgentConfig config;
  nodewatch::OptionSet options("nodewatch-agent",
                               "Streams this node's interruption notices, network and disk "
                               "signals to the nodewatch aggregator.");
  nodewatch::agent::RegisterAgentOptions(options, &config);
  if (auto code = nodewatch::StartDaemon(options, argc, argv, "nodewatch-agent", &config.log_level)) {
    return *code;
  }
  auto agent = nodewatch::agent::Agent::Create(
      config, std::make_unique<nodewatch::agent::HostProbeImpl>(config.proc_root),
      nodewatch::SystemClock::Get());
  if (!agent.ok()) {
    std::cerr << "nodewatch-agent: " << agent.status().message() << "\n";
    return 1;
  }
  (*agent)->Start();
  nodewatch::WaitForTerminationSignal();
  nodewatch::GetLogger("agent")->info("stopping");
  (*agent)->Stop();
  return 0;
}
