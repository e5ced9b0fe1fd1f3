#include "aggregator/alerts/alert_engine.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/logging.h"

namespace nodewatch::aggregator {

using nodewatch::internal::StoredAlert;

namespace {

constexpr char kPrefix[] = "alert/";

std::string StateKey(const std::string& rule, const std::string& subject) {
  return absl::StrCat(kPrefix, rule, "/", subject);
}

}  // namespace

AlertEngine::AlertEngine(Store& store, Webhook* webhook, AlertEngineOptions options)
    : store_(store), webhook_(webhook), options_(options) {}

absl::Status AlertEngine::Load() {
  std::lock_guard<std::mutex> lock(mu_);
  alerts_.clear();
  size_t bad = 0;
  auto s = store_.ScanState(kPrefix, [&](const std::string& key, const std::string& value) {
    StoredAlert a;
    if (!a.ParseFromString(value) || a.alert().rule().empty()) {
      ++bad;  // keep going: one damaged entry must not hide the others
      return true;
    }
    alerts_[{a.alert().rule(), a.alert().subject()}] = std::move(a);
    return true;
  });
  if (bad > 0) GetLogger("agg.alerts")->warn("{} stored alert(s) do not parse; ignored", bad);
  return s;
}

void AlertEngine::Persist(const Key& key, const StoredAlert& s) {
  auto status = store_.PutState(StateKey(key.first, key.second), s.SerializeAsString());
  if (!status.ok()) {
    ++counters_.persist_errors;
    GetLogger("agg.alerts")->warn("alert {}/{} not persisted: {}", key.first, key.second, status);
  }
}

void AlertEngine::Forget(const Key& key) {
  auto status = store_.DeleteState(StateKey(key.first, key.second));
  if (!status.ok()) ++counters_.persist_errors;
}

bool AlertEngine::TakeNotificationToken(int64_t now_ms) {
  std::erase_if(sent_times_, [&](int64_t t) { return t <= now_ms - 3'600'000; });
  if (static_cast<int64_t>(sent_times_.size()) >= options_.max_notifications_per_hour) return false;
  sent_times_.push_back(now_ms);
  return true;
}

void AlertEngine::Notify(StoredAlert& s, int64_t now_ms) {
  auto& a = *s.mutable_alert();
  const bool firing = a.state() == "firing";
  if (!firing && !s.firing_sent()) {
    s.set_owed(false);  // nobody was told it fired: its resolution is not news
    return;
  }
  const bool too_soon = firing && s.last_notified_unix_ms() > 0 &&
                        now_ms - s.last_notified_unix_ms() < options_.renotify_after_ms;
  if (too_soon || !TakeNotificationToken(now_ms)) {
    if (firing && !s.owed()) {
      s.set_owed(true);  // retried every cycle while it fires, once the limits allow
      a.set_suppressed(a.suppressed() + 1);
      ++counters_.suppressed;
    }
    return;
  }
  if (firing) {
    s.set_last_notified_unix_ms(now_ms);
    s.set_firing_sent(true);
    s.set_owed(false);
  }
  a.set_notifications(a.notifications() + 1);
  ++counters_.notifications;
  if (webhook_ == nullptr || !webhook_->enabled()) return;
  const std::string text = firing ? absl::StrCat(":rotating_light: nodewatch alert ", a.rule(),
                                                 " (", a.subject(), "): ", a.message())
                                  : absl::StrCat(":white_check_mark: nodewatch alert ", a.rule(),
                                                 " (", a.subject(), ") resolved");
  webhook_->Send({{"text", text},
                  {"rule", a.rule()},
                  {"subject", a.subject()},
                  {"state", a.state()},
                  {"message", a.message()},
                  {"value", absl::StrFormat("%.6g", a.value())},
                  {"threshold", absl::StrFormat("%.6g", a.threshold())}});
}

void AlertEngine::Transition(StoredAlert& s, const std::string& state, int64_t now_ms) {
  auto& a = *s.mutable_alert();
  a.set_state(state);
  auto log = GetLogger("agg.alerts");
  if (state == "firing") {
    a.set_fired_unix_ms(now_ms);
    a.set_resolved_unix_ms(0);
    s.set_condition_false_since_unix_ms(0);
    s.set_firing_sent(false);
    ++counters_.fired;
    log->warn("alert {} ({}) firing: {}", a.rule(), a.subject(), a.message());
    Notify(s, now_ms);
  } else if (state == "resolved") {
    a.set_resolved_unix_ms(now_ms);
    ++counters_.resolved;
    log->info("alert {} ({}) resolved", a.rule(), a.subject());
    Notify(s, now_ms);
  }
}

void AlertEngine::Evaluate(const std::vector<AlertCondition>& conditions, int64_t now_ms) {
  std::lock_guard<std::mutex> lock(mu_);
  std::map<Key, const AlertCondition*> current;
  for (const auto& c : conditions) {
    if (c.active) current[{c.rule, c.subject}] = &c;
  }
  // Conditions that hold: start, advance or keep their alert.
  for (const auto& [key, c] : current) {
    auto [it, created] = alerts_.try_emplace(key);
    StoredAlert& s = it->second;
    auto& a = *s.mutable_alert();
    const std::string before = a.state();
    const int64_t false_before = s.condition_false_since_unix_ms();
    a.set_rule(c->rule);
    a.set_subject(c->subject);
    a.set_value(c->value);
    a.set_threshold(c->threshold);
    a.set_message(c->message);
    if (created || a.state() == "resolved") {
      a.set_state("pending");
      a.set_active_since_unix_ms(now_ms);
      a.set_fired_unix_ms(0);
    }
    if (a.state() == "pending" && now_ms - a.active_since_unix_ms() >= c->for_ms) {
      Transition(s, "firing", now_ms);
    }
    bool retried = false;
    if (a.state() == "firing") {
      s.set_condition_false_since_unix_ms(0);
      if (s.owed() && a.state() == before) {
        Notify(s, now_ms);  // a message held back by the rate limits
        retried = !s.owed();
      }
    }
    // The value and message are refreshed every cycle; only transitions are worth a synced write.
    if (a.state() != before || created || false_before != 0 || retried) Persist(key, s);
  }
  // Alerts whose condition no longer holds.
  for (auto it = alerts_.begin(); it != alerts_.end();) {
    if (current.count(it->first) > 0) {
      ++it;
      continue;
    }
    StoredAlert& s = it->second;
    const std::string state = s.alert().state();
    if (state == "pending") {
      Forget(it->first);
      it = alerts_.erase(it);
      continue;
    }
    if (state == "firing") {
      if (s.condition_false_since_unix_ms() == 0) {
        s.set_condition_false_since_unix_ms(now_ms);
        Persist(it->first, s);
      } else if (now_ms - s.condition_false_since_unix_ms() >= options_.resolve_after_ms) {
        Transition(s, "resolved", now_ms);
        Persist(it->first, s);
      }
    } else if (state == "resolved" &&
               now_ms - s.alert().resolved_unix_ms() >= options_.forget_resolved_after_ms) {
      Forget(it->first);
      it = alerts_.erase(it);
      continue;
    }
    ++it;
  }
}

std::vector<nodewatch::v1::Alert> AlertEngine::List(bool include_resolved) const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<nodewatch::v1::Alert> out;
  for (const auto& [key, s] : alerts_) {
    if (s.alert().state() == "resolved" && !include_resolved) continue;
    out.push_back(s.alert());
  }
  return out;
}

}  // namespace nodewatch::aggregator
