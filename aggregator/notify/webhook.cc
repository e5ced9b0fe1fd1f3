#include "aggregator/notify/webhook.h"

#include <curl/curl.h>

#include <chrono>

#include "common/logging.h"
#include "nlohmann/json.hpp"

namespace nodewatch::aggregator {
namespace {

size_t Discard(char*, size_t size, size_t n, void*) { return size * n; }

}  // namespace

Webhook::Webhook(WebhookOptions options) : options_(std::move(options)) {
  if (enabled()) thread_ = std::thread([this] { Loop(); });
}

Webhook::~Webhook() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
    cv_.notify_all();
  }
  if (thread_.joinable()) thread_.join();
}

std::string Webhook::Render(const std::map<std::string, std::string>& fields) const {
  std::string out;
  const std::string& t = options_.body_template;
  for (size_t i = 0; i < t.size();) {
    size_t open = t.find("{{", i);
    if (open == std::string::npos) {
      out.append(t, i, std::string::npos);
      break;
    }
    size_t close = t.find("}}", open);
    if (close == std::string::npos) {
      out.append(t, i, std::string::npos);
      break;
    }
    out.append(t, i, open - i);
    auto it = fields.find(t.substr(open + 2, close - open - 2));
    if (it != fields.end()) {
      // JSON-escaped, with quotes; bytes that are not UTF-8 (from an API error) become U+FFFD.
      std::string quoted =
          nlohmann::json(it->second).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
      out.append(quoted, 1, quoted.size() - 2);
    }
    i = close + 2;
  }
  return out;
}

void Webhook::Send(const std::map<std::string, std::string>& fields) {
  if (!enabled()) return;
  std::string body = Render(fields);
  std::lock_guard<std::mutex> lock(mu_);
  if (queue_.size() >= options_.max_queue) {
    ++counters_.dropped;
    return;
  }
  queue_.push_back(std::move(body));
  cv_.notify_one();
}

void Webhook::Loop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
    if (queue_.empty()) return;
    std::string body = std::move(queue_.front());
    queue_.pop_front();
    const bool stopping = stop_;
    lock.unlock();
    bool ok = false;
    int64_t backoff = options_.retry_backoff_ms;
    for (int attempt = 0; attempt <= options_.retries && !ok; ++attempt) {
      if (attempt > 0) {
        ++counters_.retried;
        if (stopping) break;  // shutting down: one attempt each
        std::this_thread::sleep_for(std::chrono::milliseconds(backoff));
        backoff *= 2;
      }
      ok = Post(body);
    }
    ++(ok ? counters_.sent : counters_.failed);
    if (!ok)
      GetLogger("agg.webhook")->warn("webhook: gave up after {} attempt(s)", options_.retries + 1);
    lock.lock();
  }
}

bool Webhook::Post(const std::string& body) {
  CURL* h = curl_easy_init();
  if (h == nullptr) return false;
  curl_slist* headers = curl_slist_append(nullptr, "Content-Type: application/json");
  for (const auto& header : options_.headers) headers = curl_slist_append(headers, header.c_str());
  curl_easy_setopt(h, CURLOPT_URL, options_.url.c_str());
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, static_cast<long>(options_.timeout_ms));
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(h, CURLOPT_POSTFIELDS, body.data());
  curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, static_cast<long>(body.size()));
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, &Discard);
  CURLcode code = curl_easy_perform(h);
  long status = 0;
  curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
  curl_slist_free_all(headers);
  curl_easy_cleanup(h);
  if (code != CURLE_OK) {
    GetLogger("agg.webhook")->warn("webhook: {}", curl_easy_strerror(code));
    return false;
  }
  if (status < 200 || status >= 300) {
    GetLogger("agg.webhook")->warn("webhook: HTTP {}", status);
    return false;
  }
  return true;
}

}  // namespace nodewatch::aggregator
