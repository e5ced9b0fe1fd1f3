// Parsers for the date formats metadata services use. Each returns Unix milliseconds or an
// InvalidArgument error naming the text; none accepts trailing garbage.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"

namespace nodewatch::agent {

// "2017-09-18T08:22:00Z" (AWS spot instance-action, rebalance noticeTime).
absl::StatusOr<int64_t> ParseRfc3339(const std::string& text);
// "21 Jan 2019 09:00:43 GMT" (AWS scheduled events).
absl::StatusOr<int64_t> ParseAwsEventTime(const std::string& text);
// "Mon, 11 Apr 2026 22:26:58 GMT" (Azure NotBefore, RFC 1123).
absl::StatusOr<int64_t> ParseRfc1123(const std::string& text);

}  // namespace nodewatch::agent
