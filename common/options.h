// Typed configuration with one schema for both sources: a YAML file (`--config FILE`) and
// command-line flags of the same names, flags winning (STYLE.md G11). Each binary declares its
// options against the fields of its own config struct; libraries never see flags.
//
//   AgentConfig cfg;
//   OptionSet opts("nodewatch-agent", "Streams node signals to the aggregator.");
//   opts.AddDuration("interval", &cfg.interval_ms, "Heartbeat interval.");
//   auto args = opts.Parse(argc, argv);   // error names the offending key
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace nodewatch {

// "250ms", "10s", "5m", "6h", "14d" → milliseconds.
absl::StatusOr<int64_t> ParseDurationMs(const std::string& text);
// "256MiB", "4KiB", "1GiB", "1000" → bytes.
absl::StatusOr<uint64_t> ParseBytes(const std::string& text);
std::string FormatDurationMs(int64_t ms);
// How long something took or lasted, rounded for people: "41s", "3m12s", "2h05m", "3d04h".
std::string FormatElapsed(int64_t ms);

class OptionSet {
 public:
  OptionSet(std::string program, std::string summary);

  void AddString(const std::string& name, std::string* target, const std::string& help);
  void AddInt(const std::string& name, int64_t* target, const std::string& help, int64_t min,
              int64_t max);
  void AddDouble(const std::string& name, double* target, const std::string& help, double min,
                 double max);
  void AddBool(const std::string& name, bool* target, const std::string& help);
  void AddDuration(const std::string& name, int64_t* target_ms, const std::string& help);
  void AddBytes(const std::string& name, uint64_t* target, const std::string& help);
  // Repeatable flag; a YAML sequence in the file. Flags replace the file's list.
  void AddStringList(const std::string& name, std::vector<std::string>* target,
                     const std::string& help);

  // Loads `--config FILE` if given, then applies every flag. Returns the positional arguments.
  // Errors name the key or flag at fault. `--help` sets help_requested() and returns OK.
  absl::StatusOr<std::vector<std::string>> Parse(int argc, const char* const* argv);
  // Applies one YAML document (the content of a config file). Unknown keys are errors.
  absl::Status ApplyYaml(const std::string& yaml_text, const std::string& source_name);

  bool help_requested() const { return help_requested_; }
  std::string Help() const;

 private:
  enum class Kind { kString, kInt, kDouble, kBool, kDuration, kBytes, kList };
  struct Option {
    Kind kind;
    std::string help;
    std::string default_text;
    std::function<absl::Status(const std::string&)> set;
    std::function<void()> clear;  // lists only
  };
  void Add(const std::string& name, Kind kind, const std::string& help, std::string default_text,
           std::function<absl::Status(const std::string&)> set,
           std::function<void()> clear = nullptr);

  std::string program_;
  std::string summary_;
  std::map<std::string, Option> options_;
  std::vector<std::string> order_;
  bool help_requested_ = false;
};

}  // namespace nodewatch
