// Shared plumbing of the cloud providers: watcher threads with an interruptible sleep, HTTP with
// counters, and log lines that do not flood when a metadata service misbehaves for hours.
#pragma once

#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "agent/collectors/cloud/cloud_provider.h"
#include "common/logging.h"

namespace nodewatch::agent {

// Appends an address of `type` ("InternalIP", "ExternalIP", "Hostname") unless it is empty.
void AddAddress(nodewatch::v1::NodeInfo& info, const std::string& type, const std::string& address);

class ProviderBase : public CloudProvider {
 public:
  ProviderBase(const CloudOptions& options, HttpClient& http, const Clock& clock,
               CloudCounters& counters, const std::string& default_base);
  ~ProviderBase() override;
  void Stop() override;

 protected:
  // Runs `body` on its own thread until Stop().
  void Spawn(std::function<void()> body);
  // Sleeps unless stopping; false once Stop() was called.
  bool Sleep(int64_t ms);
  bool stopping() const { return stop_.load(); }
  // HTTP with the counters kept: transport errors and 5xx count as request errors.
  absl::StatusOr<HttpResponse> Fetch(HttpRequest request);
  // A payload that does not match the documented format: counted, logged (not too often), and
  // never turned into a notice.
  void Malformed(const std::string& what, const std::string& body);
  // Logs a warning for the first failure in a streak and then once a minute.
  void WarnThrottled(const std::string& message);
  void ClearWarning() {
    std::lock_guard<std::mutex> lock(mu_);
    warn_streak_ = 0;
  }

  const CloudOptions options_;
  HttpClient& http_;
  const Clock& clock_;
  CloudCounters& counters_;
  const std::string base_;  // metadata endpoint without a trailing slash
  std::shared_ptr<spdlog::logger> log_;

 private:
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::thread> threads_;
  int64_t warn_streak_ = 0;
  int64_t last_warn_ns_ = 0;
};

}  // namespace nodewatch::agent
