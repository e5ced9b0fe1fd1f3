// Cost arithmetic against hand-computed cases, the price table, transfer classes, and the transfer
// rollups as the ingest engine commits them (exactly once, across restarts).
#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <rocksdb/env.h>

#include <ctime>
#include <future>

#include "aggregator/cost/cost_ledger.h"
#include "aggregator/cost/cost_model.h"
#include "aggregator/cost/price_table.h"
#include "aggregator/cost/transfer_classifier.h"

namespace nodewatch::aggregator {
namespace {

using nodewatch::v1::NodeSummary;
using ::testing::DoubleNear;
using ::testing::HasSubstr;

int64_t Utc(int year, int month, int day, int hour = 0, int minute = 0) {
  tm t{};
  t.tm_year = year - 1900;
  t.tm_mon = month - 1;
  t.tm_mday = day;
  t.tm_hour = hour;
  t.tm_min = minute;
  return static_cast<int64_t>(timegm(&t)) * 1000;
}

NodeSummary Node(const std::string& name, const std::string& type, nodewatch::v1::Lifecycle life,
                 int64_t first_seen, int64_t last_seen, bool connected,
                 const std::string& region = "us-east-1", const std::string& provider = "aws") {
  NodeSummary n;
  n.set_name(name);
  n.mutable_info()->set_provider(provider);
  n.mutable_info()->set_region(region);
  n.mutable_info()->set_zone(region + "a");
  n.mutable_info()->set_instance_type(type);
  n.mutable_info()->set_lifecycle(life);
  n.set_first_seen_unix_ms(first_seen);
  n.set_last_seen_unix_ms(last_seen);
  n.set_connected(connected);
  return n;
}

std::string V4(const char* text) {
  char buf[4];
  inet_pton(AF_INET, text, buf);
  return std::string(buf, 4);
}

std::string V6(const char* text) {
  char buf[16];
  inet_pton(AF_INET6, text, buf);
  return std::string(buf, 16);
}

constexpr double kCent = 1e-6;

TEST(PriceTable, BuiltInCoversTheAdvertisedMachineTypes) {
  const PriceTable& t = PriceTable::BuiltIn();
  EXPECT_THAT(t.source(), HasSubstr("2026-11"));
  for (const auto& [provider, type] :
       std::vector<std::pair<std::string, std::string>>{{"aws", "t3.medium"},
                                                        {"aws", "t3a.large"},
                                                        {"aws", "t4g.small"},
                                                        {"aws", "m5.xlarge"},
                                                        {"aws", "m5a.2xlarge"},
                                                        {"gcp", "e2-standard-4"},
                                                        {"digitalocean", "s-2vcpu-4gb"}}) {
    auto p = t.Instance(provider, "any-region-1", type);
    ASSERT_TRUE(p.has_value()) << provider << " " << type;
    EXPECT_GT(p->on_demand, 0);
    if (provider != "digitalocean") {
      EXPECT_GT(p->spot, 0);
      EXPECT_LT(p->spot, p->on_demand);
    }
  }
  EXPECT_DOUBLE_EQ(
      t.Transfer("aws", "us-east-1").per_gb[static_cast<int>(TransferClass::kInternet)], 0.09);
}

TEST(PriceTable, ExactRegionWinsOverWildcardAndSpotFallsBackToOnDemand) {
  auto t = PriceTable::Parse(R"(
instances:
  - {provider: aws, region: "*", type: t3.small, on_demand: 0.02, spot: 0.01}
  - {provider: aws, region: eu-west-1, type: t3.small, on_demand: 0.03}
)",
                             "test");
  ASSERT_TRUE(t.ok()) << t.status();
  nodewatch::v1::NodeInfo info;
  info.set_provider("aws");
  info.set_instance_type("t3.small");
  info.set_lifecycle(nodewatch::v1::LIFECYCLE_SPOT);
  info.set_region("us-east-1");
  EXPECT_DOUBLE_EQ(*t->HourlyPrice(info), 0.01);
  info.set_region("eu-west-1");  // no spot price there: on-demand, an upper bound
  EXPECT_DOUBLE_EQ(*t->HourlyPrice(info), 0.03);
  info.set_instance_type("x9.huge");
  EXPECT_FALSE(t->HourlyPrice(info).has_value());
}

TEST(PriceTable, BadTablesAreRefusedWithTheEntryNamed) {
  auto missing = PriceTable::Parse("instances:\n  - {provider: aws, region: x, type: t}\n", "f");
  EXPECT_THAT(missing.status().message(), HasSubstr("instances[0]: 'on_demand' is required"));
  auto negative = PriceTable::Parse(
      "instances:\n  - {provider: aws, region: x, type: t, on_demand: -1}\n", "f");
  EXPECT_THAT(negative.status().message(), HasSubstr("'on_demand' must be a price"));
  auto text = PriceTable::Parse(
      "instances:\n  - {provider: aws, region: x, type: t, on_demand: cheap}\n", "f");
  EXPECT_FALSE(text.ok());
  EXPECT_FALSE(PriceTable::Parse("[1, 2", "f").ok());
  EXPECT_FALSE(PriceTable::Parse("instances: 3", "f").ok());
  EXPECT_FALSE(PriceTable::LoadFile("/nonexistent/prices.yaml").ok());
  auto regional = PriceTable::Parse(
      "instances: []\ntransfer:\n  - {provider: aws, region: us-east-1, internet: 0.09}\n", "f");
  EXPECT_THAT(regional.status().message(), HasSubstr("transfer prices are per provider"));
  auto storage = PriceTable::Parse("instances: []\nstorage:\n  - {provider: aws}\n", "f");
  EXPECT_THAT(storage.status().message(), HasSubstr("storage[0]: 'per_gb_month' is required"));
}

TEST(PriceTable, StoragePricesForStoppedInstances) {
  auto t = PriceTable::Parse(R"(
instances: []
storage:
  - {provider: aws, region: "*", per_gb_month: 0.08}
  - {provider: aws, region: eu-west-1, per_gb_month: 0.088}
)",
                             "test");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_DOUBLE_EQ(*t->StoragePerGbMonth("aws", "us-east-1"), 0.08);
  EXPECT_DOUBLE_EQ(*t->StoragePerGbMonth("aws", "eu-west-1"), 0.088);
  EXPECT_FALSE(t->StoragePerGbMonth("digitalocean", "nyc1").has_value());
  EXPECT_DOUBLE_EQ(*PriceTable::BuiltIn().StoragePerGbMonth("gcp", "us-central1"), 0.10);
}

TEST(TransferClassifier, ClassifiesByNodeAddressesOverridesAndRanges) {
  std::vector<CidrOverride> overrides;
  for (const char* spec :
       {"10.9.0.0/16=us-east-1/us-east-1a", "10.8.0.0/16=internet", "10.7.0.0/16=eu-west-1"}) {
    auto o = ParseCidrOverride(spec);
    ASSERT_TRUE(o.ok()) << o.status();
    overrides.push_back(*o);
  }
  TransferClassifier c(overrides);
  auto with_address = [](NodeSummary n, const std::string& zone, const std::string& address) {
    n.mutable_info()->set_zone(zone);
    auto* a = n.mutable_info()->add_addresses();
    a->set_type("InternalIP");
    a->set_address(address);
    return n;
  };
  const auto od = nodewatch::v1::LIFECYCLE_ON_DEMAND;
  c.Update(
      {with_address(Node("a2", "t3.small", od, 0, 0, true), "us-east-1a", "10.0.1.7"),
       with_address(Node("b", "t3.small", od, 0, 0, true), "us-east-1b", "10.0.2.5"),
       with_address(Node("w", "t3.small", od, 0, 0, true, "us-west-2"), "us-west-2a", "10.1.0.5"),
       with_address(Node("g", "e2-small", od, 0, 0, true, "us-east1", "gcp"), "us-east1-b",
                    "10.0.3.5"),
       with_address(Node("v6", "t3.small", od, 0, 0, true), "us-east-1b", "2600:1f18::5")});
  const NodeLocation from{"aws", "us-east-1", "us-east-1a"};
  EXPECT_EQ(c.Classify(from, V4("10.0.1.7")), TransferClass::kSameZone);
  EXPECT_EQ(c.Classify(from, V4("10.0.2.5")), TransferClass::kCrossZone);
  EXPECT_EQ(c.Classify(from, V4("10.1.0.5")), TransferClass::kCrossRegion);
  EXPECT_EQ(c.Classify(from, V4("10.0.3.5")), TransferClass::kInternet);  // another cloud
  EXPECT_EQ(c.Classify(from, V6("2600:1f18::5")), TransferClass::kCrossZone);
  EXPECT_EQ(c.Classify(from, V4("10.9.4.4")), TransferClass::kSameZone);     // override
  EXPECT_EQ(c.Classify(from, V4("10.8.4.4")), TransferClass::kInternet);     // override
  EXPECT_EQ(c.Classify(from, V4("10.7.4.4")), TransferClass::kCrossRegion);  // override
  EXPECT_EQ(c.Classify(from, V4("10.0.9.9")), TransferClass::kUnclassified);
  EXPECT_EQ(c.Classify(from, V4("100.64.1.1")), TransferClass::kUnclassified);
  EXPECT_EQ(c.Classify(from, V6("fd00::1")), TransferClass::kUnclassified);
  EXPECT_EQ(c.Classify(from, V4("127.0.0.1")), TransferClass::kSameZone);
  EXPECT_EQ(c.Classify(from, V4("8.8.8.8")), TransferClass::kInternet);
  EXPECT_EQ(c.Classify(from, V6("2001:4860::8888")), TransferClass::kInternet);
  EXPECT_EQ(c.Classify(from, "abc"), TransferClass::kUnclassified);  // neither 4 nor 16 bytes
}

TEST(TransferClassifier, BadOverridesNameTheKey) {
  for (const char* spec : {"10.0.0.0/8", "10.0.0.0/33=internet", "nonsense=internet",
                           "10.0.0.0/8=", "::/129=same-zone", "10.0.0.0/8=/zone"}) {
    auto o = ParseCidrOverride(spec);
    EXPECT_FALSE(o.ok()) << spec;
    EXPECT_THAT(o.status().message(), HasSubstr("transfer-cidr")) << spec;
  }
}

TEST(CostModel, NodeAcrossTheMonthBoundaryCountsOnlyThisMonthsHours) {
  CostInputs in;
  in.now_ms = Utc(2026, 11, 1, 2);
  in.nodes = {Node("n", "t3.medium", nodewatch::v1::LIFECYCLE_ON_DEMAND, Utc(2026, 10, 31, 22),
                   in.now_ms, true)};
  auto r = ComputeCost(in);
  EXPECT_EQ(r.month(), "2026-11");
  EXPECT_THAT(r.hourly_usd(), DoubleNear(0.0416, kCent));
  EXPECT_THAT(r.month_to_date_usd(), DoubleNear(2 * 0.0416, kCent));  // not the 4 h it ran
  EXPECT_THAT(r.today_usd(), DoubleNear(2 * 0.0416, kCent));
  // 30 days of November minus the 2 h gone: 718 h more at 0.0416.
  EXPECT_THAT(r.forecast_usd(), DoubleNear(2 * 0.0416 + 718 * 0.0416, kCent));
  ASSERT_EQ(r.groups_size(), 1);
  EXPECT_EQ(r.groups(0).lifecycle(), "on-demand");
  EXPECT_EQ(r.groups(0).nodes_running(), 1u);
  EXPECT_THAT(r.groups(0).node_hours_month(), DoubleNear(2, 1e-9));
}

TEST(CostModel, ANodeThatLived37Minutes) {
  CostInputs in;
  in.now_ms = Utc(2026, 11, 12);
  in.include_nodes = true;
  in.nodes = {Node("short", "m5.large", nodewatch::v1::LIFECYCLE_SPOT, Utc(2026, 11, 10, 10),
                   Utc(2026, 11, 10, 10, 37), false)};
  auto r = ComputeCost(in);
  const double hours = 37.0 / 60;
  EXPECT_THAT(r.month_to_date_usd(), DoubleNear(hours * 0.0365, kCent));
  EXPECT_DOUBLE_EQ(r.hourly_usd(), 0);  // gone
  EXPECT_DOUBLE_EQ(r.today_usd(), 0);
  EXPECT_THAT(r.forecast_usd(), DoubleNear(hours * 0.0365, kCent));
  EXPECT_THAT(r.spot().on_demand_equivalent_usd(), DoubleNear(hours * 0.096, kCent));
  EXPECT_THAT(r.spot().gross_savings_usd(), DoubleNear(hours * (0.096 - 0.0365), kCent));
  ASSERT_EQ(r.nodes_size(), 1);
  EXPECT_FALSE(r.nodes(0).running());
  EXPECT_THAT(r.nodes(0).month_to_date_usd(), DoubleNear(hours * 0.0365, kCent));
}

TEST(CostModel, SpotNodeReplacedByOnDemandAfterAnInterruption) {
  CostInputs in;
  in.now_ms = Utc(2026, 11, 6, 10, 5);
  const auto spot = nodewatch::v1::LIFECYCLE_SPOT;
  const auto od = nodewatch::v1::LIFECYCLE_ON_DEMAND;
  in.nodes = {Node("spot-a", "m5.large", spot, Utc(2026, 11, 5), Utc(2026, 11, 5, 10), false),
              // Seven minutes after the reclaim: the fallback.
              Node("od-b", "m5.large", od, Utc(2026, 11, 5, 10, 5), in.now_ms, true),
              // Two hours after: ordinary growth, not a fallback.
              Node("od-c", "m5.large", od, Utc(2026, 11, 5, 12, 5), in.now_ms, true),
              // Same time, other region: not a fallback either.
              Node("od-d", "m5.large", od, Utc(2026, 11, 5, 10, 1), in.now_ms, true, "eu-west-1")};
  in.interruptions = {{.node = "spot-a",
                       .event_id = "i-spot-a-terminate",
                       .time_ms = Utc(2026, 11, 5, 9, 58),
                       .kind = nodewatch::v1::INTERRUPTION_KIND_SPOT_TERMINATE,
                       .state = nodewatch::v1::NOTICE_STATE_ACTIVE,
                       .provider = "aws"},
                      {.node = "spot-a",  // the same reclaim reported again
                       .event_id = "i-spot-a-terminate",
                       .time_ms = Utc(2026, 11, 5, 9, 59),
                       .kind = nodewatch::v1::INTERRUPTION_KIND_SPOT_TERMINATE,
                       .state = nodewatch::v1::NOTICE_STATE_ACTIVE,
                       .provider = "aws"}};
  auto r = ComputeCost(in);
  const auto& s = r.spot();
  EXPECT_EQ(s.interruptions_month(), 1u);
  EXPECT_THAT(s.spot_usd_month(), DoubleNear(10 * 0.0365, kCent));
  EXPECT_THAT(s.on_demand_equivalent_usd(), DoubleNear(10 * 0.096, kCent));
  EXPECT_THAT(s.gross_savings_usd(), DoubleNear(10 * (0.096 - 0.0365), kCent));
  EXPECT_THAT(s.fallback_node_hours(), DoubleNear(24, 1e-9));
  EXPECT_THAT(s.fallback_extra_usd(), DoubleNear(24 * (0.096 - 0.0365), kCent));
  EXPECT_THAT(s.on_demand_fallback_share(), DoubleNear(24.0 / 34, 1e-9));
  EXPECT_THAT(s.effective_savings_usd(), DoubleNear(10 * 0.0595 - 24 * 0.0595, kCent));
  EXPECT_THAT(r.month_to_date_usd(),
              DoubleNear(10 * 0.0365 + 24 * 0.096 + 22 * 0.096 + (24 + 4.0 / 60) * 0.096, kCent));
}

TEST(CostModel, ForecastOfASyntheticMonthWithTransfer) {
  CostInputs in;
  in.now_ms = Utc(2026, 11, 16);  // 360 of November's 720 hours gone
  for (int i = 0; i < 10; ++i) {
    in.nodes.push_back(Node("n" + std::to_string(i), "t3.large", nodewatch::v1::LIFECYCLE_ON_DEMAND,
                            Utc(2026, 11, 1), in.now_ms, true));
  }
  // 100 GB to the internet this month, 10 GB of it today, and 50 GB in the same zone (free).
  ClassBytes month{};
  month[static_cast<size_t>(TransferClass::kInternet)] = 100'000'000'000;
  month[static_cast<size_t>(TransferClass::kSameZone)] = 50'000'000'000;
  in.transfer_month.total = month;
  in.transfer_month.by_provider["aws"] = month;
  in.transfer_month.by_namespace[{"aws", "shop"}] = month;
  ClassBytes today{};
  today[static_cast<size_t>(TransferClass::kInternet)] = 10'000'000'000;
  in.transfer_today.total = today;
  in.transfer_today.by_provider["aws"] = today;
  auto r = ComputeCost(in);
  EXPECT_THAT(r.hourly_usd(), DoubleNear(0.832, kCent));
  EXPECT_THAT(r.month_to_date_usd(), DoubleNear(10 * 0.0832 * 360 + 9, kCent));
  // The whole month's instance cost plus the transfer rate kept up: 2 x $9.
  EXPECT_THAT(r.forecast_usd(), DoubleNear(10 * 0.0832 * 720 + 18, kCent));
  EXPECT_THAT(r.today_usd(), DoubleNear(0.9, kCent));  // midnight: no instance hours yet today
  const auto& internet = r.transfer(static_cast<int>(TransferClass::kInternet));
  EXPECT_EQ(internet.transfer_class(), "internet");
  EXPECT_THAT(internet.usd_month(), DoubleNear(9, kCent));
  EXPECT_THAT(internet.usd_forecast(), DoubleNear(18, kCent));
  ASSERT_EQ(r.namespaces_size(), 1);
  EXPECT_EQ(r.namespaces(0).namespace_(), "shop");
  EXPECT_EQ(r.namespaces(0).egress_bytes_month(), 100'000'000'000u);  // same-zone is not billable
}

TEST(CostModel, UnpricedNodesAreCountedNotGuessed) {
  CostInputs in;
  in.now_ms = Utc(2026, 11, 2);
  in.nodes = {Node("odd", "x9.mystery", nodewatch::v1::LIFECYCLE_ON_DEMAND, Utc(2026, 11, 1),
                   in.now_ms, true)};
  auto r = ComputeCost(in);
  ASSERT_EQ(r.groups_size(), 1);
  EXPECT_EQ(r.groups(0).unpriced_nodes(), 1u);
  EXPECT_DOUBLE_EQ(r.month_to_date_usd(), 0);
}

nodewatch::v1::NodeLife Life(const std::string& instance, const std::string& type, int64_t start,
                             int64_t last_seen, const std::string& ended,
                             const std::string& noticed_end = "") {
  nodewatch::v1::NodeLife l;
  l.set_instance_id(instance);
  l.set_instance_type(type);
  l.set_lifecycle(type == "t3.medium" ? nodewatch::v1::LIFECYCLE_ON_DEMAND
                                      : nodewatch::v1::LIFECYCLE_SPOT);
  l.set_start_unix_ms(start);
  l.set_last_seen_unix_ms(last_seen);
  l.set_ended(ended);
  l.set_noticed_end(noticed_end);
  l.set_persistent_disk_bytes(100'000'000'000);  // 100 GB of EBS
  return l;
}

// Each life at its own price; a stop bills the disks, not the instance; a reboot bills through.
TEST(CostModel, LivesArePricedByTheirOwnTypeAndStoppedTimeIsBilledAsStorage) {
  CostInputs in;
  in.now_ms = Utc(2026, 11, 10);
  in.include_nodes = true;
  const auto spot = nodewatch::v1::LIFECYCLE_SPOT;
  const auto od = nodewatch::v1::LIFECYCLE_ON_DEMAND;
  // Stopped 10:00-15:00, back as an m5.xlarge (its launch template changed) and running.
  NodeSummary stopped = Node("s", "m5.xlarge", spot, Utc(2026, 11, 9), in.now_ms, true);
  *stopped.add_lives() = Life("i-s", "m5.large", Utc(2026, 11, 9), Utc(2026, 11, 9, 10), "stopped",
                              "stop");
  *stopped.add_lives() = Life("i-s", "m5.xlarge", Utc(2026, 11, 9, 15), in.now_ms, "");
  // Rebooted at 06:00, back at 06:10: the instance was billed all along.
  NodeSummary rebooted = Node("r", "t3.medium", od, Utc(2026, 11, 9), in.now_ms, true);
  *rebooted.add_lives() = Life("i-r", "t3.medium", Utc(2026, 11, 9), Utc(2026, 11, 9, 6),
                               "rebooted", "reboot");
  *rebooted.add_lives() = Life("i-r", "t3.medium", Utc(2026, 11, 9, 6, 10), in.now_ms, "");
  // Stopped at 20:00 and not back yet: its disks are still billed, now and until it returns.
  NodeSummary away = Node("a", "m5.large", spot, Utc(2026, 11, 9), Utc(2026, 11, 9, 20), false);
  *away.add_lives() = Life("i-a", "m5.large", Utc(2026, 11, 9), Utc(2026, 11, 9, 20), "", "stop");
  in.nodes = {stopped, rebooted, away};

  auto r = ComputeCost(in);
  const double disk_hour = 100 * 0.08 / 730;  // gp3, per hour
  EXPECT_THAT(r.month_to_date_usd(),
              DoubleNear(10 * 0.0365 + 9 * 0.0730 + 5 * disk_hour  // s
                             + 24 * 0.0416                         // r, through its reboot
                             + 20 * 0.0365 + 4 * disk_hour,        // a
                         kCent));
  EXPECT_THAT(r.hourly_usd(), DoubleNear(0.0730 + 0.0416 + disk_hour, kCent));
  ASSERT_EQ(r.groups_size(), 2);
  const auto& on_demand = r.groups(0);
  const auto& spot_group = r.groups(1);
  EXPECT_EQ(spot_group.lifecycle(), "spot");
  EXPECT_EQ(spot_group.nodes_running(), 1u);
  EXPECT_THAT(spot_group.node_hours_month(), DoubleNear(10 + 9 + 20, 1e-9));
  EXPECT_THAT(spot_group.stopped_hours_month(), DoubleNear(5 + 4, 1e-9));
  EXPECT_THAT(spot_group.storage_usd_month(), DoubleNear(9 * disk_hour, kCent));
  EXPECT_THAT(on_demand.node_hours_month(), DoubleNear(24, 1e-9));
  EXPECT_THAT(on_demand.stopped_hours_month(), DoubleNear(0, 1e-9));
  // Spot savings count each life's own on-demand price.
  EXPECT_THAT(r.spot().on_demand_equivalent_usd(), DoubleNear(10 * 0.096 + 9 * 0.192 + 20 * 0.096,
                                                              kCent));

  ASSERT_EQ(r.nodes_size(), 3);  // a, r, s
  EXPECT_EQ(r.nodes(0).node(), "a");
  EXPECT_FALSE(r.nodes(0).running());
  EXPECT_THAT(r.nodes(0).hourly_usd(), DoubleNear(disk_hour, kCent));
  EXPECT_EQ(r.nodes(2).lives(), 2u);
  EXPECT_THAT(r.nodes(2).stopped_hours_month(), DoubleNear(5, 1e-9));
  ASSERT_EQ(r.lives_size(), 5);
  const auto& first = r.lives(3);  // s, life 1
  EXPECT_EQ(first.node(), "s");
  EXPECT_EQ(first.instance_type(), "m5.large");
  EXPECT_EQ(first.ended(), "stopped");
  EXPECT_THAT(first.hours_month(), DoubleNear(10, 1e-9));
  EXPECT_THAT(first.usd_month(), DoubleNear(10 * 0.0365 + 5 * disk_hour, kCent));
  EXPECT_EQ(r.lives(4).end_unix_ms(), 0) << "running";
  EXPECT_EQ(r.lives(0).ended(), "away");
  EXPECT_THAT(r.lives(0).stopped_hours_month(), DoubleNear(4, 1e-9));
}

// The ledger as the ingest engine's tap: rollups commit with the samples, duplicates are not
// counted twice, and a restart reads back exactly what was committed.
class CostLedgerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    env_.reset(rocksdb::NewMemEnv(rocksdb::Env::Default()));
    Reopen();
  }
  void TearDown() override {
    engine_.reset();
    ledger_.reset();
    store_.reset();
  }
  void Reopen() {
    engine_.reset();
    ledger_.reset();
    store_.reset();
    auto store = OpenRocksDbStore({.path = "/mem/db", .env = env_.get()});
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
    ledger_ = std::make_unique<CostLedger>(classifier_, CostLedgerOptions{});
    ASSERT_TRUE(ledger_->Load(*store_, clock_.NowUnixMs()).ok());
    engine_ = std::make_unique<IngestEngine>(*store_, clock_);
    engine_->AddRecordTap(ledger_.get());
    ASSERT_TRUE(engine_->Start().ok());
  }
  absl::StatusOr<uint64_t> Submit(bool hello, const std::string& node,
                                  nodewatch::v1::RecordBatch batch = {}) {
    std::promise<absl::StatusOr<uint64_t>> done;
    auto cb = [&](absl::StatusOr<uint64_t> a) { done.set_value(a); };
    if (hello) {
      nodewatch::v1::Hello h;
      h.set_spool_id("s1");
      auto* info = h.mutable_node_info();
      info->set_provider("aws");
      info->set_region("us-east-1");
      info->set_zone("us-east-1a");
      engine_->SubmitHello(node, h, cb);
    } else {
      engine_->SubmitBatch(node, batch, cb);
    }
    return done.get_future().get();
  }
  static nodewatch::v1::RecordBatch Sample(uint64_t seq, int64_t time) {
    nodewatch::v1::RecordBatch b;
    auto* r = b.add_records();
    r->set_seq(seq);
    r->set_time_unix_ms(time);
    auto* n = r->mutable_network();
    auto flow = [&](const std::string& remote, nodewatch::v1::Direction d, uint64_t bytes,
                    const std::string& ns) {
      auto* f = n->add_flows();
      f->set_remote_address(remote);
      f->set_direction(d);
      f->set_bytes(bytes);
      f->set_pod_namespace(ns);
    };
    flow(V4("8.8.8.8"), nodewatch::v1::DIRECTION_EGRESS, 1'000'000'000, "shop");
    flow(V4("10.0.0.1"), nodewatch::v1::DIRECTION_EGRESS, 500, "");
    flow(V4("8.8.8.8"), nodewatch::v1::DIRECTION_INGRESS, 7'000'000'000, "shop");  // not billed
    flow(V4("1.1.1.1"), nodewatch::v1::DIRECTION_EGRESS, 0, "shop");
    flow("bad", nodewatch::v1::DIRECTION_EGRESS, 3, "a/b");  // hostile: counted, key-safe
    return b;
  }

  FakeClock clock_{Utc(2026, 11, 20, 12)};
  std::unique_ptr<rocksdb::Env> env_;
  TransferClassifier classifier_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<CostLedger> ledger_;
  std::unique_ptr<IngestEngine> engine_;
};

TEST_F(CostLedgerTest, RollupsCommitOnceWithTheirSamplesAndSurviveARestart) {
  ASSERT_TRUE(Submit(true, "n1").ok());
  const int64_t t = clock_.NowUnixMs() - 60'000;
  ASSERT_TRUE(Submit(false, "n1", Sample(1, t)).ok());
  ASSERT_TRUE(Submit(false, "n1", Sample(1, t)).ok());               // resent: a duplicate
  ASSERT_TRUE(Submit(false, "n1", Sample(2, t - 86'400'000)).ok());  // yesterday
  const int64_t today = DayOf(t);
  auto check = [&] {
    auto totals = ledger_->Totals(today, today);
    EXPECT_EQ(totals.total[static_cast<size_t>(TransferClass::kInternet)], 1'000'000'000u);
    EXPECT_EQ(totals.total[static_cast<size_t>(TransferClass::kUnclassified)], 503u);
    EXPECT_EQ(totals.by_node["n1"][static_cast<size_t>(TransferClass::kInternet)], 1'000'000'000u);
    EXPECT_EQ((totals.by_namespace[{"aws", "shop"}][static_cast<size_t>(TransferClass::kInternet)]),
              1'000'000'000u);
    EXPECT_EQ(
        (totals.by_namespace[{"aws", "(host)"}][static_cast<size_t>(TransferClass::kUnclassified)]),
        500u);
    EXPECT_EQ(
        (totals.by_namespace[{"aws", "a_b"}][static_cast<size_t>(TransferClass::kUnclassified)]),
        3u);
    auto two_days = ledger_->Totals(today - 1, today);
    EXPECT_EQ(two_days.total[static_cast<size_t>(TransferClass::kInternet)], 2'000'000'000u);
  };
  check();
  EXPECT_EQ(ledger_->counters().unclassifiable_flows.load(), 2u);
  Reopen();
  check();
}

TEST_F(CostLedgerTest, PruneForgetsOldDaysInMemoryAndInTheStore) {
  ASSERT_TRUE(Submit(true, "n1").ok());
  ASSERT_TRUE(Submit(false, "n1", Sample(1, clock_.NowUnixMs() - 70LL * 86'400'000)).ok());
  ASSERT_TRUE(Submit(false, "n1", Sample(2, clock_.NowUnixMs())).ok());
  ASSERT_TRUE(ledger_->Prune(*store_, clock_.NowUnixMs()).ok());
  const int64_t today = DayOf(clock_.NowUnixMs());
  EXPECT_EQ(ledger_->Totals(0, today).total[static_cast<size_t>(TransferClass::kInternet)],
            1'000'000'000u);
  Reopen();
  EXPECT_EQ(ledger_->Totals(0, today).total[static_cast<size_t>(TransferClass::kInternet)],
            1'000'000'000u);
}

TEST_F(CostLedgerTest, RemembersInterruptionsAndFilesystemForecasts) {
  ASSERT_TRUE(Submit(true, "n1").ok());
  nodewatch::v1::RecordBatch b;
  auto* r = b.add_records();
  r->set_seq(1);
  r->set_time_unix_ms(clock_.NowUnixMs());
  r->mutable_interruption()->set_provider("aws");
  r->mutable_interruption()->set_event_id("e1");
  r->mutable_interruption()->set_kind(nodewatch::v1::INTERRUPTION_KIND_SPOT_TERMINATE);
  r->mutable_interruption()->set_state(nodewatch::v1::NOTICE_STATE_ACTIVE);
  auto* d = b.add_records();
  d->set_seq(2);
  d->set_time_unix_ms(clock_.NowUnixMs());
  auto* fs = d->mutable_disk()->add_filesystems();
  fs->set_mountpoint("/var");
  fs->set_size_bytes(100);
  fs->set_available_bytes(10);
  fs->set_predicted_full_unix_ms(clock_.NowUnixMs() + 3'600'000);
  ASSERT_TRUE(Submit(false, "n1", b).ok());
  auto events = ledger_->Interruptions(0);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].node, "n1");
  EXPECT_TRUE(IsSpotReclaim(events[0]));
  auto forecasts = ledger_->Filesystems();
  ASSERT_EQ(forecasts.size(), 1u);
  EXPECT_NEAR(forecasts[0].used_fraction, 0.9, 1e-9);
  Reopen();  // interruptions come back from the store, with their node's name
  events = ledger_->Interruptions(0);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].node, "n1");
}

}  // namespace
}  // namespace nodewatch::aggregator
