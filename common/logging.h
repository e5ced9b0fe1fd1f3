// Named spdlog loggers, one per component ("agent.spool", "agg.ingest", ...).
//
// Levels: error = an operator must act (lost data, cannot start, credentials refused);
// warn = degraded but self-healing (reconnecting, dropped bad input); info = lifecycle
// (started, connected, listening); debug = per-batch detail. Anything a dashboard or alert needs
// is a metric, not a log line.
#pragma once

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "spdlog/spdlog.h"

namespace nodewatch {

// Returns the logger for `component`, creating it (stderr, shared format) on first use.
std::shared_ptr<spdlog::logger> GetLogger(const std::string& component);

// Sets the level of every existing and future logger: trace|debug|info|warn|error|off.
absl::Status SetLogLevel(const std::string& level);

}  // namespace nodewatch

template <>
struct fmt::formatter<absl::Status> : fmt::formatter<std::string> {
  template <typename Ctx>
  auto format(const absl::Status& s, Ctx& ctx) const {
    return fmt::formatter<std::string>::format(s.ToString(), ctx);
  }
};
