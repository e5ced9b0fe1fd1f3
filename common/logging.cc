#include "common/logging.h"

#include <mutex>

#include "spdlog/sinks/stdout_color_sinks.h"

namespace nodewatch {
namespace {

std::mutex& LevelMutex() {
  static std::mutex mu;
  return mu;
}
spdlog::level::level_enum& CurrentLevel() {
  static spdlog::level::level_enum level = spdlog::level::info;
  return level;
}

}  // namespace

std::shared_ptr<spdlog::logger> GetLogger(const std::string& component) {
  std::lock_guard<std::mutex> lock(LevelMutex());
  if (auto existing = spdlog::get(component)) return existing;
  auto logger = spdlog::stderr_color_mt(component);
  logger->set_pattern("%Y-%m-%dT%H:%M:%S.%eZ %^%-5l%$ [%n] %v", spdlog::pattern_time_type::utc);
  logger->set_level(CurrentLevel());
  return logger;
}

absl::Status SetLogLevel(const std::string& level) {
  auto parsed = spdlog::level::from_str(level);
  if (parsed == spdlog::level::off && level != "off") {
    return absl::InvalidArgumentError("log-level: unknown level '" + level +
                                      "' (want trace|debug|info|warn|error|off)");
  }
  std::lock_guard<std::mutex> lock(LevelMutex());
  CurrentLevel() = parsed;
  spdlog::set_level(parsed);
  spdlog::apply_all([parsed](const std::shared_ptr<spdlog::logger>& l) { l->set_level(parsed); });
  return absl::OkStatus();
}

}  // namespace nodewatch
