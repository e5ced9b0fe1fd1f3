// Webhook: tells people (Slack, Teams through a relay, a pager) that a node is being taken away
// and how its drain ended. Slack-compatible JSON by default ({"text": ...}); the body template
// and the headers are configurable. Sending is asynchronous with a bounded queue, a timeout per
// attempt and retries with backoff, so a slow receiver never delays a drain.
//
// Template placeholders: {{node}} {{provider}} {{kind}} {{event_id}} {{deadline}} {{action}}
// {{message}} {{text}}; each is JSON-string-escaped, so templates are written as JSON with the
// placeholders inside string quotes.
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace nodewatch::aggregator {

struct WebhookOptions {
  std::string url;  // empty: off
  std::string body_template = R"({"text":"{{text}}"})";
  std::vector<std::string> headers;  // "Name: value"
  int64_t timeout_ms = 5'000;
  int retries = 3;                   // attempts after the first
  int64_t retry_backoff_ms = 1'000;  // doubles per attempt
  size_t max_queue = 1'000;          // beyond: dropped and counted
};

struct WebhookCounters {
  std::atomic<uint64_t> sent{0};
  std::atomic<uint64_t> failed{0};  // gave up after every retry
  std::atomic<uint64_t> retried{0};
  std::atomic<uint64_t> dropped{0};  // queue full
};

class Webhook {
 public:
  explicit Webhook(WebhookOptions options);
  ~Webhook();  // sends what is queued (bounded by one timeout per message), then stops
  bool enabled() const { return !options_.url.empty(); }
  // Fills the template with `fields` (the keys above) and queues it.
  void Send(const std::map<std::string, std::string>& fields);
  const WebhookCounters& counters() const { return counters_; }
  // Renders the body (exposed for tests).
  std::string Render(const std::map<std::string, std::string>& fields) const;

 private:
  void Loop();
  bool Post(const std::string& body);

  const WebhookOptions options_;
  WebhookCounters counters_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::string> queue_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace nodewatch::aggregator
