// Alert state machines (fire once, no flapping, resolve, restart, rate limits), webhook delivery
// with retries against a local receiver that fails first, and the monitor's rules.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <rocksdb/env.h>

#include <future>
#include <thread>

#include "aggregator/alerts/alert_engine.h"
#include "aggregator/alerts/cost_monitor.h"
#include "tests/support/hook_server.h"

namespace nodewatch::aggregator {
namespace {

using ::testing::HasSubstr;

constexpr int64_t kMinute = 60'000;

AlertCondition Budget(bool active, double value = 120) {
  return {.rule = "budget-actual",
          .subject = "prod",
          .active = active,
          .value = value,
          .threshold = 100,
          .message = "over budget"};
}

class AlertEngineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    env_.reset(rocksdb::NewMemEnv(rocksdb::Env::Default()));
    auto store = OpenRocksDbStore({.path = "/mem/db", .env = env_.get()});
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
    Restart();
  }
  void Restart(AlertEngineOptions options = {}) {
    engine_ = std::make_unique<AlertEngine>(*store_, nullptr, options);
    ASSERT_TRUE(engine_->Load().ok());
  }
  nodewatch::v1::Alert Only() {
    auto alerts = engine_->List(true);
    EXPECT_EQ(alerts.size(), 1u);
    return alerts.empty() ? nodewatch::v1::Alert() : alerts[0];
  }

  std::unique_ptr<rocksdb::Env> env_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<AlertEngine> engine_;
  int64_t now_ = 1'790'000'000'000;
};

TEST_F(AlertEngineTest, FiresOnceWhileTheConditionHolds) {
  for (int i = 0; i < 10; ++i) engine_->Evaluate({Budget(true, 120 + i)}, now_ + i * kMinute);
  auto a = Only();
  EXPECT_EQ(a.state(), "firing");
  EXPECT_EQ(a.notifications(), 1u);
  EXPECT_EQ(a.fired_unix_ms(), now_);
  EXPECT_EQ(a.value(), 129);  // the latest value
  EXPECT_EQ(engine_->counters().fired.load(), 1u);
}

TEST_F(AlertEngineTest, PendingUntilItHeldLongEnoughAndForgottenIfItStops) {
  AlertCondition c = Budget(true);
  c.for_ms = 5 * kMinute;
  engine_->Evaluate({c}, now_);
  EXPECT_EQ(Only().state(), "pending");
  engine_->Evaluate({c}, now_ + 4 * kMinute);
  EXPECT_EQ(Only().state(), "pending");
  engine_->Evaluate({}, now_ + 4 * kMinute + 30'000);  // stopped before firing: nothing sent
  EXPECT_TRUE(engine_->List(true).empty());
  engine_->Evaluate({c}, now_ + 10 * kMinute);
  engine_->Evaluate({c}, now_ + 15 * kMinute);
  EXPECT_EQ(Only().state(), "firing");
  EXPECT_EQ(Only().notifications(), 1u);
}

TEST_F(AlertEngineTest, DoesNotFlapAroundItsThresholdAndResolvesAfterTheHold) {
  engine_->Evaluate({Budget(true)}, now_);
  // Hovering: false, true, false again, each for less than the 15-minute hold.
  engine_->Evaluate({Budget(false)}, now_ + 1 * kMinute);
  engine_->Evaluate({Budget(true)}, now_ + 10 * kMinute);
  engine_->Evaluate({Budget(false)}, now_ + 11 * kMinute);
  engine_->Evaluate({Budget(false)}, now_ + 25 * kMinute);
  EXPECT_EQ(Only().state(), "firing");
  EXPECT_EQ(Only().notifications(), 1u);
  engine_->Evaluate({Budget(false)}, now_ + 26 * kMinute);
  auto a = Only();
  EXPECT_EQ(a.state(), "resolved");
  EXPECT_EQ(a.resolved_unix_ms(), now_ + 26 * kMinute);
  EXPECT_EQ(a.notifications(), 2u);  // fired, resolved
  EXPECT_TRUE(engine_->List(false).empty());
}

TEST_F(AlertEngineTest, SurvivesARestartWithoutSendingAgain) {
  engine_->Evaluate({Budget(true)}, now_);
  engine_->Evaluate({Budget(false)}, now_ + kMinute);  // the hold has started
  Restart();
  auto a = Only();
  EXPECT_EQ(a.state(), "firing");
  EXPECT_EQ(a.notifications(), 1u);
  engine_->Evaluate({Budget(false)}, now_ + 16 * kMinute);  // the hold kept its start
  EXPECT_EQ(Only().state(), "resolved");
  Restart();
  EXPECT_EQ(Only().state(), "resolved");
  EXPECT_EQ(Only().notifications(), 2u);
}

TEST_F(AlertEngineTest, RefiringSoonAfterResolvingIsHeldBackThenSentIfItPersists) {
  engine_->Evaluate({Budget(true)}, now_);
  engine_->Evaluate({Budget(false)}, now_ + kMinute);
  engine_->Evaluate({Budget(false)}, now_ + 20 * kMinute);
  ASSERT_EQ(Only().state(), "resolved");
  engine_->Evaluate({Budget(true)}, now_ + 30 * kMinute);
  auto a = Only();
  EXPECT_EQ(a.state(), "firing");
  EXPECT_EQ(a.notifications(), 2u);  // fired, resolved; this firing is held back
  EXPECT_EQ(a.suppressed(), 1u);
  EXPECT_EQ(engine_->counters().suppressed.load(), 1u);
  engine_->Evaluate({Budget(true)}, now_ + 3 * 60 * kMinute);
  EXPECT_EQ(Only().notifications(), 2u);  // still inside the 4 h re-notify window
  Restart();                              // what is owed survives a restart
  engine_->Evaluate({Budget(true)}, now_ + 4 * 60 * kMinute + kMinute);
  EXPECT_EQ(Only().notifications(), 3u);  // still firing past the window: sent now
  EXPECT_EQ(Only().suppressed(), 1u);
}

TEST_F(AlertEngineTest, AHeldBackFiringThatResolvesIsNeverAnnounced) {
  engine_->Evaluate({Budget(true)}, now_);
  engine_->Evaluate({Budget(false)}, now_ + kMinute);
  engine_->Evaluate({Budget(false)}, now_ + 20 * kMinute);
  engine_->Evaluate({Budget(true)}, now_ + 30 * kMinute);  // held back
  engine_->Evaluate({Budget(false)}, now_ + 31 * kMinute);
  engine_->Evaluate({Budget(false)}, now_ + 50 * kMinute);
  EXPECT_EQ(Only().state(), "resolved");
  EXPECT_EQ(Only().notifications(), 2u);  // neither its firing nor its resolution went out
}

TEST_F(AlertEngineTest, AllNotificationsShareAnHourlyBudget) {
  Restart({.max_notifications_per_hour = 2});
  std::vector<AlertCondition> disks;
  for (int i = 0; i < 5; ++i) {
    disks.push_back({.rule = "disk-filling", .subject = "n" + std::to_string(i), .active = true});
  }
  engine_->Evaluate(disks, now_);
  EXPECT_EQ(engine_->counters().notifications.load(), 2u);
  EXPECT_EQ(engine_->counters().suppressed.load(), 3u);
  EXPECT_EQ(engine_->List(false).size(), 5u);  // all five are firing and listed
  engine_->Evaluate(disks, now_ + 30 * kMinute);
  EXPECT_EQ(engine_->counters().notifications.load(), 2u);  // the hour's budget is spent
  engine_->Evaluate(disks, now_ + 61 * kMinute);
  EXPECT_EQ(engine_->counters().notifications.load(), 4u);  // two more as the budget refills
  engine_->Evaluate(disks, now_ + 122 * kMinute);
  EXPECT_EQ(engine_->counters().notifications.load(), 5u);  // every firing sent exactly once
  EXPECT_EQ(engine_->counters().suppressed.load(), 3u);
}

TEST_F(AlertEngineTest, ADamagedStoredAlertIsSkippedNotFatal) {
  engine_->Evaluate({Budget(true)}, now_);
  ASSERT_TRUE(store_->PutState("alert/garbage/x", "\xff\xff not a protobuf").ok());
  Restart();
  EXPECT_EQ(Only().rule(), "budget-actual");
}

TEST(AlertWebhook, RetriesAReceiverThatFailsFirstAndSendsSlackJson) {
  testing::HookServer hook(/*failures=*/2);
  std::unique_ptr<rocksdb::Env> env(rocksdb::NewMemEnv(rocksdb::Env::Default()));
  auto store = OpenRocksDbStore({.path = "/mem/db", .env = env.get()});
  ASSERT_TRUE(store.ok());
  Webhook webhook({.url = hook.url(), .retries = 3, .retry_backoff_ms = 50});
  AlertEngine engine(**store, &webhook, {});
  engine.Evaluate({Budget(true)}, 1'790'000'000'000);
  for (int i = 0; i < 200 && hook.bodies().empty(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_EQ(hook.bodies().size(), 1u);
  EXPECT_EQ(hook.attempts(), 3);
  EXPECT_THAT(hook.bodies()[0], HasSubstr(R"({"text":")"));
  EXPECT_THAT(hook.bodies()[0], HasSubstr("budget-actual (prod): over budget"));
  EXPECT_EQ(webhook.counters().retried.load(), 2u);
}

// The monitor's rules over a real ingest engine and ledger.
class CostMonitorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    env_.reset(rocksdb::NewMemEnv(rocksdb::Env::Default()));
    auto store = OpenRocksDbStore({.path = "/mem/db", .env = env_.get()});
    ASSERT_TRUE(store.ok());
    store_ = std::move(*store);
    ledger_ = std::make_unique<CostLedger>(classifier_, CostLedgerOptions{});
    ASSERT_TRUE(ledger_->Load(*store_, clock_.NowUnixMs()).ok());
    engine_ = std::make_unique<IngestEngine>(*store_, clock_);
    engine_->AddRecordTap(ledger_.get());
    ASSERT_TRUE(engine_->Start().ok());
    alerts_ = std::make_unique<AlertEngine>(*store_, nullptr, AlertEngineOptions{});
  }
  void TearDown() override {
    monitor_.reset();
    engine_.reset();
  }
  void StartMonitor(CostMonitorOptions options) {
    monitor_ = std::make_unique<CostMonitor>(*engine_, *store_, clock_, PriceTable::BuiltIn(),
                                             *ledger_, classifier_, *alerts_, options);
  }
  void Submit(const std::string& node, nodewatch::v1::RecordBatch* batch) {
    std::promise<absl::StatusOr<uint64_t>> done;
    auto cb = [&](absl::StatusOr<uint64_t> a) { done.set_value(a); };
    if (batch == nullptr) {
      nodewatch::v1::Hello h;
      h.set_spool_id("s");
      h.mutable_node_info()->set_provider("aws");
      h.mutable_node_info()->set_region("us-east-1");
      h.mutable_node_info()->set_instance_type("m5.large");
      h.mutable_node_info()->set_lifecycle(nodewatch::v1::LIFECYCLE_ON_DEMAND);
      engine_->SubmitHello(node, h, cb);
    } else {
      engine_->SubmitBatch(node, *batch, cb);
    }
    ASSERT_TRUE(done.get_future().get().ok());
  }
  void Notice(const std::string& node, uint64_t seq, const std::string& event) {
    nodewatch::v1::RecordBatch b;
    auto* r = b.add_records();
    r->set_seq(seq);
    r->set_time_unix_ms(clock_.NowUnixMs() - 1000);
    auto* n = r->mutable_interruption();
    n->set_provider("aws");
    n->set_event_id(event);
    n->set_kind(nodewatch::v1::INTERRUPTION_KIND_SPOT_TERMINATE);
    n->set_state(nodewatch::v1::NOTICE_STATE_ACTIVE);
    Submit(node, &b);
  }
  const AlertCondition* Find(const std::vector<AlertCondition>& cs, const std::string& rule,
                             const std::string& subject) {
    for (const auto& c : cs) {
      if (c.rule == rule && c.subject == subject) return &c;
    }
    return nullptr;
  }

  FakeClock clock_{1'795'000'000'000};  // 2026-11-17
  std::unique_ptr<rocksdb::Env> env_;
  std::unique_ptr<Store> store_;
  TransferClassifier classifier_;
  std::unique_ptr<CostLedger> ledger_;
  std::unique_ptr<IngestEngine> engine_;
  std::unique_ptr<AlertEngine> alerts_;
  std::unique_ptr<CostMonitor> monitor_;
};

TEST_F(CostMonitorTest, RulesForInterruptionsDisksAndBudgets) {
  StartMonitor({.cluster = "prod",
                .monthly_budget_usd = 1.0,
                .interruption_spike_count = 3,
                .repeated_count = 2});
  for (const char* n : {"a", "b", "c"}) {
    Submit(n, nullptr);
    engine_->StreamOpened(n);
  }
  Notice("a", 1, "e1");
  Notice("b", 1, "e2");
  Notice("a", 2, "e3");
  nodewatch::v1::RecordBatch disk;
  auto* r = disk.add_records();
  r->set_seq(1);
  r->set_time_unix_ms(clock_.NowUnixMs());
  auto* fs = r->mutable_disk()->add_filesystems();
  fs->set_mountpoint("/var/lib/containerd");
  fs->set_size_bytes(1000);
  fs->set_available_bytes(50);
  fs->set_predicted_full_unix_ms(clock_.NowUnixMs() + 2 * 3'600'000);
  Submit("c", &disk);
  const int64_t noticed = clock_.NowUnixMs();
  clock_.Advance(2LL * 24 * 3'600'000);  // three m5.large nodes for two days: over $1
  auto report = monitor_->Report(false);
  EXPECT_NEAR(report.month_to_date_usd(), 3 * 48 * 0.096, 1e-6);
  auto cs = monitor_->Conditions(report, noticed + 60'000);
  const auto* spike = Find(cs, "spot-interruption-spike", "prod");
  ASSERT_NE(spike, nullptr);
  EXPECT_TRUE(spike->active);
  EXPECT_EQ(spike->value, 3);
  const auto* repeated = Find(cs, "repeated-interruptions", "a");
  ASSERT_NE(repeated, nullptr);
  EXPECT_EQ(repeated->value, 2);
  EXPECT_EQ(Find(cs, "repeated-interruptions", "b"), nullptr);
  const auto* full = Find(cs, "disk-filling", "c:/var/lib/containerd");
  ASSERT_NE(full, nullptr);
  EXPECT_THAT(full->message, HasSubstr("95% used"));
  const auto* actual = Find(cs, "budget-actual", "prod");
  ASSERT_NE(actual, nullptr);
  EXPECT_TRUE(actual->active);
  // A whole cycle stores the alerts and exports them.
  monitor_->RunOnce();
  bool budget_firing = false;
  for (const auto& a : monitor_->Alerts(false)) {
    budget_firing |= a.rule() == "budget-actual" && a.state() == "firing";
  }
  EXPECT_TRUE(budget_firing);
  MetricFamilies f;
  monitor_->CollectMetrics(f);
  bool exported = false;
  for (const auto& family : f.Take()) exported |= family.name == "nodewatch_alert_firing";
  EXPECT_TRUE(exported);
}

TEST_F(CostMonitorTest, TransferCostSpikeAgainstTheWeekBefore) {
  StartMonitor({.cluster = "prod", .transfer_spike_factor = 3, .transfer_spike_min_usd = 1});
  const int64_t now = clock_.NowUnixMs();
  const int64_t today = DayOf(now);
  auto internet = [&](int64_t day, uint64_t gb) {
    ledger_->CountersCommitted(
        {{CostLedger::NodeKey(day, "a", TransferClass::kInternet), gb * 1'000'000'000},
         {"x/" + DayName(day) + "/s/aws/shop/" +
              std::to_string(static_cast<int>(TransferClass::kInternet)),
          gb * 1'000'000'000}});
  };
  for (int64_t d = today - 8; d <= today - 1; ++d) internet(d, 100);  // $9 a day
  auto spike = [&] {
    auto cs = monitor_->Conditions(monitor_->Report(false), now);
    const auto* c = Find(cs, "transfer-cost-spike", "prod");
    EXPECT_NE(c, nullptr);
    return c != nullptr && c->active;
  };
  EXPECT_FALSE(spike());  // the last 24 h hold about one day of $9
  internet(today, 400);   // $36 today alone: over 3 x $9
  EXPECT_TRUE(spike());
}

}  // namespace
}  // namespace nodewatch::aggregator
