// Start-up and shutdown shared by the nodewatch daemons, so each main.cc stays wiring only.
#pragma once

#include <optional>
#include <string>

#include "common/options.h"

namespace nodewatch {

// Registers --version, parses flags and the config file, handles --help/--version and sets the
// log level from `*log_level`. Returns the exit code when the process should stop now (usage
// error: 2, help/version: 0), nullopt when it should run. Also turns off Debian Abseil's mutex
// deadlock detection, a debugging aid that costs several percent of CPU under gRPC.
std::optional<int> StartDaemon(OptionSet& options, int argc, char** argv,
                               const std::string& program, const std::string* log_level);

// Blocks until SIGINT or SIGTERM.
void WaitForTerminationSignal();

}  // namespace nodewatch
