#include "agent/collectors/cloud/provider_base.h"

#include <chrono>

#include "absl/strings/str_cat.h"

namespace nodewatch::agent {

void AddAddress(nodewatch::v1::NodeInfo& info, const std::string& type, const std::string& address) {
  if (address.empty()) return;
  auto* a = info.add_addresses();
  a->set_type(type);
  a->set_address(address);
}

ProviderBase::ProviderBase(const CloudOptions& options, HttpClient& http, const Clock& clock,
                           CloudCounters& counters, const std::string& default_base)
    : options_(options),
      http_(http),
      clock_(clock),
      counters_(counters),
      base_([&] {
        std::string b = options.metadata_endpoint.empty() ? default_base : options.metadata_endpoint;
        while (!b.empty() && b.back() == '/') b.pop_back();
        return b;
      }()),
      log_(GetLogger("agent.cloud")) {}

ProviderBase::~ProviderBase() { Stop(); }

void ProviderBase::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  for (auto& t : threads_) {
    if (t.joinable()) t.join();
  }
  threads_.clear();
}

void ProviderBase::Spawn(std::function<void()> body) {
  threads_.emplace_back([this, body = std::move(body)] {
    while (!stopping()) body();
  });
}

bool ProviderBase::Sleep(int64_t ms) {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait_for(lock, std::chrono::milliseconds(ms), [&] { return stop_.load(); });
  return !stop_.load();
}

absl::StatusOr<HttpResponse> ProviderBase::Fetch(HttpRequest request) {
  if (request.cancel == nullptr) request.cancel = &stop_;
  ++counters_.requests;
  auto response = http_.Do(request);
  if (!response.ok() || response->status >= 500) ++counters_.request_errors;
  return response;
}

void ProviderBase::Malformed(const std::string& what, const std::string& body) {
  ++counters_.malformed_payloads;
  WarnThrottled(absl::StrCat(name(), ": malformed ", what, " ignored: '",
                             body.substr(0, 200), body.size() > 200 ? "…" : "", "'"));
}

void ProviderBase::WarnThrottled(const std::string& message) {
  const int64_t now = clock_.MonotonicNs();
  std::lock_guard<std::mutex> lock(mu_);
  if (warn_streak_++ == 0 || now - last_warn_ns_ > 60'000'000'000) {
    last_warn_ns_ = now;
    log_->warn("{}", message);
  }
}

}  // namespace nodewatch::agent
