#include "common/options.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <fstream>
#include <set>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/status_macros.h"

namespace nodewatch {
namespace {

absl::StatusOr<std::pair<double, std::string>> SplitNumberUnit(const std::string& text) {
  size_t i = 0;
  while (i < text.size() && (std::isdigit(static_cast<unsigned char>(text[i])) || text[i] == '.')) {
    ++i;
  }
  double value = 0;
  if (i == 0 || !absl::SimpleAtod(text.substr(0, i), &value)) {
    return absl::InvalidArgumentError(absl::StrCat("'", text, "' does not start with a number"));
  }
  return std::make_pair(value, text.substr(i));
}

}  // namespace

absl::StatusOr<int64_t> ParseDurationMs(const std::string& text) {
  ASSIGN_OR_RETURN(auto parts, SplitNumberUnit(text));
  static const std::map<std::string, double> kUnits = {
      {"ms", 1}, {"s", 1e3}, {"m", 60e3}, {"h", 3600e3}, {"d", 86400e3}};
  auto unit = kUnits.find(parts.second);
  if (unit == kUnits.end()) {
    return absl::InvalidArgumentError(
        absl::StrCat("'", text, "' is not a duration (use ms, s, m, h or d, e.g. 10s)"));
  }
  double ms = parts.first * unit->second;
  if (ms > 9e15) return absl::InvalidArgumentError(absl::StrCat("'", text, "' is too long"));
  return static_cast<int64_t>(ms);
}

absl::StatusOr<uint64_t> ParseBytes(const std::string& text) {
  ASSIGN_OR_RETURN(auto parts, SplitNumberUnit(text));
  static const std::map<std::string, double> kUnits = {
      {"", 1},     {"B", 1},    {"KiB", 1024.0}, {"MiB", 1048576.0}, {"GiB", 1073741824.0},
      {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}};
  auto unit = kUnits.find(parts.second);
  if (unit == kUnits.end()) {
    return absl::InvalidArgumentError(
        absl::StrCat("'", text, "' is not a size (use B, KiB, MiB or GiB, e.g. 256MiB)"));
  }
  double bytes = parts.first * unit->second;
  if (bytes > 1.8e19) return absl::InvalidArgumentError(absl::StrCat("'", text, "' is too big"));
  return static_cast<uint64_t>(bytes);
}

std::string FormatDurationMs(int64_t ms) {
  if (ms != 0 && ms % 86400000 == 0) return absl::StrCat(ms / 86400000, "d");
  if (ms != 0 && ms % 3600000 == 0) return absl::StrCat(ms / 3600000, "h");
  if (ms != 0 && ms % 60000 == 0) return absl::StrCat(ms / 60000, "m");
  if (ms % 1000 == 0) return absl::StrCat(ms / 1000, "s");
  return absl::StrCat(ms, "ms");
}

std::string FormatElapsed(int64_t ms) {
  const int64_t s = std::max<int64_t>(0, ms / 1000);
  if (s >= 48 * 3600) return absl::StrFormat("%dd%02dh", s / 86400, (s % 86400) / 3600);
  if (s >= 3600) return absl::StrFormat("%dh%02dm", s / 3600, (s % 3600) / 60);
  if (s >= 60) return absl::StrFormat("%dm%02ds", s / 60, s % 60);
  return absl::StrCat(s, "s");
}

OptionSet::OptionSet(std::string program, std::string summary)
    : program_(std::move(program)), summary_(std::move(summary)) {}

void OptionSet::Add(const std::string& name, Kind kind, const std::string& help,
                    std::string default_text, std::function<absl::Status(const std::string&)> set,
                    std::function<void()> clear) {
  options_[name] = Option{kind, help, std::move(default_text), std::move(set), std::move(clear)};
  order_.push_back(name);
}

void OptionSet::AddString(const std::string& name, std::string* target, const std::string& help) {
  Add(name, Kind::kString, help, *target, [target](const std::string& v) {
    *target = v;
    return absl::OkStatus();
  });
}

void OptionSet::AddInt(const std::string& name, int64_t* target, const std::string& help,
                       int64_t min, int64_t max) {
  Add(name, Kind::kInt, help, absl::StrCat(*target), [target, min, max](const std::string& v) {
    int64_t parsed = 0;
    if (!absl::SimpleAtoi(v, &parsed)) {
      return absl::InvalidArgumentError(absl::StrCat("'", v, "' is not an integer"));
    }
    if (parsed < min || parsed > max) {
      return absl::InvalidArgumentError(
          absl::StrCat(parsed, " is out of range [", min, ", ", max, "]"));
    }
    *target = parsed;
    return absl::OkStatus();
  });
}

void OptionSet::AddDouble(const std::string& name, double* target, const std::string& help,
                          double min, double max) {
  Add(name, Kind::kDouble, help, absl::StrCat(*target), [target, min, max](const std::string& v) {
    double parsed = 0;
    if (!absl::SimpleAtod(v, &parsed) || !std::isfinite(parsed)) {
      return absl::InvalidArgumentError(absl::StrCat("'", v, "' is not a number"));
    }
    if (parsed < min || parsed > max) {
      return absl::InvalidArgumentError(
          absl::StrCat(parsed, " is out of range [", min, ", ", max, "]"));
    }
    *target = parsed;
    return absl::OkStatus();
  });
}

void OptionSet::AddBool(const std::string& name, bool* target, const std::string& help) {
  Add(name, Kind::kBool, help, *target ? "true" : "false", [target](const std::string& v) {
    if (v == "true" || v == "1" || v == "yes") {
      *target = true;
    } else if (v == "false" || v == "0" || v == "no") {
      *target = false;
    } else {
      return absl::InvalidArgumentError(absl::StrCat("'", v, "' is not a boolean"));
    }
    return absl::OkStatus();
  });
}

void OptionSet::AddDuration(const std::string& name, int64_t* target_ms, const std::string& help) {
  Add(name, Kind::kDuration, help, FormatDurationMs(*target_ms), [target_ms](const std::string& v) {
    ASSIGN_OR_RETURN(*target_ms, ParseDurationMs(v));
    return absl::OkStatus();
  });
}

void OptionSet::AddBytes(const std::string& name, uint64_t* target, const std::string& help) {
  Add(name, Kind::kBytes, help, absl::StrCat(*target), [target](const std::string& v) {
    ASSIGN_OR_RETURN(*target, ParseBytes(v));
    return absl::OkStatus();
  });
}

void OptionSet::AddStringList(const std::string& name, std::vector<std::string>* target,
                              const std::string& help) {
  std::string def;
  for (const auto& v : *target) def += (def.empty() ? "" : ",") + v;
  Add(
      name, Kind::kList, help, def,
      [target](const std::string& v) {
        target->push_back(v);
        return absl::OkStatus();
      },
      [target] { target->clear(); });
}

absl::Status OptionSet::ApplyYaml(const std::string& yaml_text, const std::string& source_name) {
  YAML::Node root;
  try {
    root = YAML::Load(yaml_text);
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(source_name, ": not valid YAML: ", e.what()));
  }
  if (root.IsNull()) return absl::OkStatus();
  if (!root.IsMap()) {
    return absl::InvalidArgumentError(absl::StrCat(source_name, ": top level must be a mapping"));
  }
  for (const auto& entry : root) {
    std::string key = entry.first.Scalar();
    auto it = options_.find(key);
    if (it == options_.end()) {
      return absl::InvalidArgumentError(absl::StrCat(source_name, ": unknown key '", key, "'"));
    }
    Option& opt = it->second;
    auto fail = [&](const std::string& why) {
      return absl::InvalidArgumentError(absl::StrCat(source_name, ": key '", key, "': ", why));
    };
    if (opt.kind == Kind::kList) {
      opt.clear();
      if (entry.second.IsScalar()) {
        if (auto s = opt.set(entry.second.Scalar()); !s.ok()) return fail(std::string(s.message()));
        continue;
      }
      if (!entry.second.IsSequence()) return fail("want a list");
      for (const auto& item : entry.second) {
        if (!item.IsScalar()) return fail("list items must be scalars");
        if (auto s = opt.set(item.Scalar()); !s.ok()) return fail(std::string(s.message()));
      }
      continue;
    }
    if (!entry.second.IsScalar()) return fail("want a single value");
    if (auto s = opt.set(entry.second.Scalar()); !s.ok()) return fail(std::string(s.message()));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::string>> OptionSet::Parse(int argc, const char* const* argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  // The config file is applied first so that flags override it wherever they appear.
  for (size_t i = 0; i < args.size(); ++i) {
    std::string path;
    if (args[i] == "--config" && i + 1 < args.size()) {
      path = args[i + 1];
    } else if (args[i].rfind("--config=", 0) == 0) {
      path = args[i].substr(9);
    } else {
      continue;
    }
    std::ifstream in(path);
    if (!in) return absl::InvalidArgumentError(absl::StrCat("config: cannot read '", path, "'"));
    std::stringstream text;
    text << in.rdbuf();
    RETURN_IF_ERROR(ApplyYaml(text.str(), path));
  }
  std::vector<std::string> positional;
  std::set<std::string> lists_seen;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (arg == "--help" || arg == "-h") {
      help_requested_ = true;
      continue;
    }
    if (arg.rfind("--", 0) != 0 || arg.size() == 2) {
      positional.push_back(arg);
      continue;
    }
    std::string name = arg.substr(2);
    std::string value;
    bool has_value = false;
    if (auto eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
      has_value = true;
    }
    if (name == "config") {
      if (!has_value) ++i;
      continue;
    }
    auto it = options_.find(name);
    if (it == options_.end()) {
      return absl::InvalidArgumentError(absl::StrCat("unknown flag --", name, " (see --help)"));
    }
    Option& opt = it->second;
    if (!has_value) {
      if (opt.kind == Kind::kBool) {
        value = "true";
      } else if (i + 1 < args.size()) {
        value = args[++i];
      } else {
        return absl::InvalidArgumentError(absl::StrCat("flag --", name, " needs a value"));
      }
    }
    if (opt.kind == Kind::kList && lists_seen.insert(name).second) opt.clear();
    if (auto s = opt.set(value); !s.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("flag --", name, ": ", s.message()));
    }
  }
  return positional;
}

std::string OptionSet::Help() const {
  std::string out = absl::StrCat(program_, ": ", summary_, "\n\nOptions (also keys of the YAML ",
                                 "file given with --config FILE; flags override the file):\n");
  for (const auto& name : order_) {
    const Option& opt = options_.at(name);
    absl::StrAppend(&out, "  --", name);
    if (opt.kind != Kind::kBool) absl::StrAppend(&out, " VALUE");
    absl::StrAppend(&out, "\n      ", opt.help);
    if (!opt.default_text.empty()) absl::StrAppend(&out, " (default: ", opt.default_text, ")");
    absl::StrAppend(&out, "\n");
  }
  absl::StrAppend(&out, "  --config FILE\n      YAML file with any of the keys above.\n");
  return out;
}

}  // namespace nodewatch
