#include "agent/collectors/cloud/cloud_time.h"

#include <ctime>

#include "absl/strings/str_cat.h"

namespace nodewatch::agent {
namespace {

absl::StatusOr<int64_t> Parse(const std::string& text, const char* format, const char* what) {
  tm t{};
  const char* end = strptime(text.c_str(), format, &t);
  if (end == nullptr || *end != '\0') {
    return absl::InvalidArgumentError(absl::StrCat("'", text, "' is not a ", what, " time"));
  }
  time_t seconds = timegm(&t);
  if (seconds == static_cast<time_t>(-1)) {
    return absl::InvalidArgumentError(absl::StrCat("'", text, "' is out of range"));
  }
  return static_cast<int64_t>(seconds) * 1000;
}

}  // namespace

absl::StatusOr<int64_t> ParseRfc3339(const std::string& text) {
  // Fractional seconds are allowed ("…:00.123Z") and dropped.
  std::string whole = text;
  if (auto dot = whole.find('.'); dot != std::string::npos && !whole.empty() && whole.back() == 'Z') {
    whole = whole.substr(0, dot) + "Z";
  }
  return Parse(whole, "%Y-%m-%dT%H:%M:%SZ", "RFC 3339");
}

absl::StatusOr<int64_t> ParseAwsEventTime(const std::string& text) {
  return Parse(text, "%d %b %Y %H:%M:%S GMT", "scheduled-event");
}

absl::StatusOr<int64_t> ParseRfc1123(const std::string& text) {
  return Parse(text, "%a, %d %b %Y %H:%M:%S GMT", "RFC 1123");
}

}  // namespace nodewatch::agent
