// HttpClient: the seam between cloud providers and instance metadata services (STYLE.md G2).
// CurlHttpClient is the real one; provider tests run against the metadata simulator over real
// HTTP, so no fake is needed for behaviour, only for failure injection.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace nodewatch::agent {

struct HttpRequest {
  std::string method = "GET";
  std::string url;
  std::map<std::string, std::string> headers;
  std::string body;
  int64_t timeout_ms = 2000;
  // When set and it becomes true, the transfer is abandoned within about a second (hanging GETs
  // must not hold up shutdown).
  const std::atomic<bool>* cancel = nullptr;
};

struct HttpResponse {
  int status = 0;
  std::map<std::string, std::string> headers;  // names lower-cased
  std::string body;
  std::string header(const std::string& lower_name) const {
    auto it = headers.find(lower_name);
    return it == headers.end() ? "" : it->second;
  }
};

class HttpClient {
 public:
  virtual ~HttpClient() = default;
  // Transport failures (refused, timed out) are errors; any HTTP status is a response.
  // Thread-safe. Bodies larger than 1 MiB are refused (metadata is small; hostile input is not).
  virtual absl::StatusOr<HttpResponse> Do(const HttpRequest& request) = 0;
};

std::unique_ptr<HttpClient> MakeCurlHttpClient();

}  // namespace nodewatch::agent
