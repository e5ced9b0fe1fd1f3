// Reads a sample from a process's Prometheus /metrics over HTTP, for tests and benchmarks.
#pragma once

#include <string>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "agent/collectors/cloud/http_client.h"

namespace nodewatch::testing {

// Reads one sample from the agent's /metrics: `name` is the metric name, optionally with its exact
// label set ("m{a=\"b\"}"). -1 if absent or unreachable.
inline double AgentMetric(int port, const std::string& name) {
  auto http = agent::MakeCurlHttpClient();
  auto r = http->Do({.url = "http://127.0.0.1:" + std::to_string(port) + "/metrics"});
  if (!r.ok() || r->status != 200) return -1;
  for (absl::string_view line : absl::StrSplit(r->body, '\n')) {
    const bool has_labels = name.find('{') != std::string::npos;
    if ((has_labels && absl::StartsWith(line, name + " ")) ||
        (!has_labels &&
         (absl::StartsWith(line, name + "{") || absl::StartsWith(line, name + " ")))) {
      double v = 0;
      (void)absl::SimpleAtod(line.substr(line.rfind(' ') + 1), &v);
      return v;
    }
  }
  return -1;
}

}  // namespace nodewatch::testing
