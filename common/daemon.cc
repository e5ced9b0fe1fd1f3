#include "common/daemon.h"

#include <signal.h>
#include <unistd.h>

#include <csignal>
#include <iostream>

#include "absl/synchronization/mutex.h"
#include "common/logging.h"

namespace nodewatch {
namespace {
volatile std::sig_atomic_t g_stop = 0;
void OnSignal(int) { g_stop = 1; }
}  // namespace

std::optional<int> StartDaemon(OptionSet& options, int argc, char** argv,
                               const std::string& program, const std::string* log_level) {
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  bool version = false;
  options.AddBool("version", &version, "Print the version and exit.");
  auto args = options.Parse(argc, argv);
  if (!args.ok()) {
    std::cerr << program << ": " << args.status().message() << "\n";
    return 2;
  }
  if (options.help_requested()) {
    std::cout << options.Help();
    return 0;
  }
  if (version) {
    std::cout << program << " " << NODEWATCH_VERSION << "\n";
    return 0;
  }
  if (!args->empty()) {
    std::cerr << program << ": unexpected argument '" << args->front() << "' (see --help)\n";
    return 2;
  }
  if (auto s = SetLogLevel(*log_level); !s.ok()) {
    std::cerr << program << ": " << s.message() << "\n";
    return 2;
  }
  std::signal(SIGINT, OnSignal);
  std::signal(SIGTERM, OnSignal);
  std::signal(SIGPIPE, SIG_IGN);
  return std::nullopt;
}

void WaitForTerminationSignal() {
  while (g_stop == 0) pause();
}

}  // namespace nodewatch
