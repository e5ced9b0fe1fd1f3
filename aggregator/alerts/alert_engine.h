// AlertEngine: one small state machine per alert (rule x subject), persisted in the store's state
// column family, deduplicated and rate-limited, delivered by webhook and readable as metrics.
//
//   inactive --condition true--> pending --true for `for_ms`--> firing (notify)
//   pending  --condition false--> inactive (nothing was sent)
//   firing   --condition false for `resolve_after_ms`--> resolved (notify)
//   resolved --condition true--> pending again; resolved entries are forgotten after a week
//
// A firing alert is notified once, and its resolution once. A firing within `renotify_after_ms`
// of the alert's last "firing" message, or beyond the shared `max_notifications_per_hour`, is
// held back and counted, then sent on a later cycle if it is still firing once the limits allow;
// if it resolves first, neither message goes out. The hold before resolving keeps an alert that
// hovers around its threshold from flapping.
//
//   AlertEngine engine(store, webhook, options);
//   RETURN_IF_ERROR(engine.Load());
//   engine.Evaluate(conditions, clock.NowUnixMs());   // every cycle, one thread
//   for (const auto& a : engine.List(false)) ...       // any thread
#pragma once

#include <atomic>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "aggregator/notify/webhook.h"
#include "aggregator/store/store.h"
#include "nodewatch/internal/store.pb.h"

namespace nodewatch::aggregator {

// What one rule says about one subject this cycle. Subjects a rule does not mention are false.
struct AlertCondition {
  std::string rule;
  std::string subject;
  bool active = false;
  double value = 0;
  double threshold = 0;
  std::string message;
  int64_t for_ms = 0;  // how long it must hold before firing
};

struct AlertEngineOptions {
  int64_t resolve_after_ms = 15 * 60'000;
  int64_t renotify_after_ms = 4 * 3'600'000;
  int64_t max_notifications_per_hour = 60;
  int64_t forget_resolved_after_ms = 7 * 86'400'000LL;
};

struct AlertCounters {
  std::atomic<uint64_t> fired{0};
  std::atomic<uint64_t> resolved{0};
  std::atomic<uint64_t> notifications{0};
  std::atomic<uint64_t> suppressed{0};  // rate-limited
  std::atomic<uint64_t> persist_errors{0};
};

class AlertEngine {
 public:
  // `webhook` may be null or disabled: alerts are then only stored and exported.
  AlertEngine(Store& store, Webhook* webhook, AlertEngineOptions options);

  absl::Status Load();
  void Evaluate(const std::vector<AlertCondition>& conditions, int64_t now_ms);
  std::vector<nodewatch::v1::Alert> List(bool include_resolved) const;
  const AlertCounters& counters() const { return counters_; }

 private:
  using Key = std::pair<std::string, std::string>;
  void Transition(nodewatch::internal::StoredAlert& s, const std::string& state, int64_t now_ms);
  void Notify(nodewatch::internal::StoredAlert& s, int64_t now_ms);
  bool TakeNotificationToken(int64_t now_ms);
  void Persist(const Key& key, const nodewatch::internal::StoredAlert& s);
  void Forget(const Key& key);

  Store& store_;
  Webhook* webhook_;
  const AlertEngineOptions options_;
  AlertCounters counters_;
  mutable std::mutex mu_;
  std::map<Key, nodewatch::internal::StoredAlert> alerts_;
  std::vector<int64_t> sent_times_;  // notifications of the last hour
};

}  // namespace nodewatch::aggregator
