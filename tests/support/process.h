// Subprocess: runs one of the project's binaries as a real process for integration tests, with
// its stdout and stderr in a log file, and lets the test kill it with any signal.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

namespace nodewatch::testing {

class Subprocess {
 public:
  Subprocess(std::string binary, std::vector<std::string> args, std::string log_file);
  ~Subprocess();  // SIGKILL if still running
  Subprocess(const Subprocess&) = delete;
  Subprocess& operator=(const Subprocess&) = delete;

  void Start();
  // Sends `signal` and waits for the exit; returns the wait status.
  int Stop(int signal);
  bool running();
  std::string log() const;
  pid_t pid() const { return pid_; }

 private:
  std::string binary_;
  std::vector<std::string> args_;
  std::string log_file_;
  pid_t pid_ = -1;
};

// A TCP port on 127.0.0.1 that was free a moment ago.
int FreePort();
// Path of a built binary (from the NODEWATCH_BIN_DIR compile definition).
std::string BinaryPath(const std::string& name);
// Fresh empty directory under the test's temporary root.
std::string MakeTempDir(const std::string& prefix);

}  // namespace nodewatch::testing
