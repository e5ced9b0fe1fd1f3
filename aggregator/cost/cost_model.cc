#include "aggregator/cost/cost_model.h"

#include <algorithm>
#include <ctime>
#include <map>
#include <set>
#include <tuple>

#include "absl/strings/str_format.h"
#include "aggregator/ingest/node_lives.h"

namespace nodewatch::aggregator {

using nodewatch::v1::CostReport;
using nodewatch::v1::NodeSummary;

namespace {

constexpr double kHourMs = 3'600'000.0;
constexpr double kBytesPerGb = 1e9;

std::string LifecycleName(nodewatch::v1::Lifecycle l) {
  switch (l) {
    case nodewatch::v1::LIFECYCLE_SPOT:
      return "spot";
    case nodewatch::v1::LIFECYCLE_ON_DEMAND:
      return "on-demand";
    default:
      return "unknown";
  }
}

double OverlapHours(int64_t a_start, int64_t a_end, int64_t b_start, int64_t b_end) {
  const int64_t start = std::max(a_start, b_start);
  const int64_t end = std::min(a_end, b_end);
  return end > start ? static_cast<double>(end - start) / kHourMs : 0.0;
}

// One life of a node, as billed: its instance hours [start, end) at its own type's price, then
// the time it spent stopped [stopped_start, stopped_end) at its disks' storage price.
struct LifeFacts {
  const NodeSummary* node;
  nodewatch::v1::NodeLife life;
  nodewatch::v1::NodeInfo info;  // the node's, with the life's type, lifecycle and zone
  bool current = false;
  bool running = false;  // the current life, and the node is up
  bool stopped_now = false;  // the current life, away after a stop notice
  int64_t start = 0;
  int64_t end = 0;
  int64_t stopped_start = 0;
  int64_t stopped_end = 0;
  std::optional<double> hourly;       // its instance price, by lifecycle
  std::optional<InstancePrice> list;  // the table row
  double storage_hourly = 0;          // its persistent disks, USD per hour
  double hours_month = 0;
  double hours_today = 0;
  double stopped_hours_month = 0;
  double stopped_hours_today = 0;
  double usd_month() const { return hourly.value_or(0) * hours_month + storage_usd_month(); }
  double storage_usd_month() const { return storage_hourly * stopped_hours_month; }
  bool billed_this_month() const { return running || hours_month > 0 || stopped_hours_month > 0; }
};

constexpr double kHoursPerMonth = 730.0;  // how clouds turn a GB-month into an hourly rate

// Splits a node into its billed lives. A life ends its instance hours where the node was last
// heard from, except across a reboot (the instance is billed through it); a stop is billed as
// storage until the next life (or until now while the node is still away after a stop notice).
std::vector<LifeFacts> LivesOf(const NodeSummary& n, const CostInputs& in,
                               const PriceTable& prices) {
  std::vector<nodewatch::v1::NodeLife> lives(n.lives().begin(), n.lives().end());
  if (lives.empty()) {  // a summary without lives: the node's whole time is one life
    lives.push_back(
        OneLife(n.info(), n.boot_id(), n.first_seen_unix_ms(), n.last_seen_unix_ms()));
  }
  const bool node_running =
      n.connected() || in.now_ms - n.last_seen_unix_ms() <= in.running_grace_ms;
  std::vector<LifeFacts> out;
  out.reserve(lives.size());
  for (size_t i = 0; i < lives.size(); ++i) {
    LifeFacts f{.node = &n, .life = lives[i], .info = n.info()};
    f.info.set_instance_type(lives[i].instance_type());
    f.info.set_lifecycle(lives[i].lifecycle());
    if (!lives[i].zone().empty()) f.info.set_zone(lives[i].zone());
    f.current = i + 1 == lives.size();
    const auto& life = lives[i];
    f.start = life.start_unix_ms();
    const int64_t last_seen = std::max(life.last_seen_unix_ms(), f.start);
    if (!f.current) {
      const int64_t next_start = std::max(lives[i + 1].start_unix_ms(), last_seen);
      const bool billed_through = life.ended() == "rebooted" || life.ended() == "restarted";
      f.end = billed_through ? next_start : last_seen;
      if (life.ended() == "stopped") {
        f.stopped_start = last_seen;
        f.stopped_end = next_start;
      }
    } else {
      f.running = node_running;
      f.stopped_now = !node_running && life.noticed_end() == "stop";
      f.end = f.running ? in.now_ms : std::max(n.last_seen_unix_ms(), last_seen);
      if (f.stopped_now) {
        f.stopped_start = f.end;
        f.stopped_end = in.now_ms;
      }
    }
    f.list = prices.Instance(f.info.provider(), f.info.region(), f.info.instance_type());
    f.hourly = prices.HourlyPrice(f.info);
    f.storage_hourly = static_cast<double>(life.persistent_disk_bytes()) / kBytesPerGb *
                       prices.StoragePerGbMonth(f.info.provider(), f.info.region()).value_or(0) /
                       kHoursPerMonth;
    out.push_back(std::move(f));
  }
  return out;
}

int64_t MonthStart(int64_t unix_ms, int month_offset) {
  time_t seconds = static_cast<time_t>(unix_ms / 1000);
  tm utc{};
  gmtime_r(&seconds, &utc);
  tm start{};
  start.tm_year = utc.tm_year;
  start.tm_mon = utc.tm_mon + month_offset;
  start.tm_mday = 1;
  return static_cast<int64_t>(timegm(&start)) * 1000;
}

void AddSpot(const std::vector<LifeFacts>& facts, const std::vector<InterruptionEvent>& events,
             const CostInputs& in, int64_t month_start, CostReport* report) {
  auto* spot = report->mutable_spot();
  std::map<std::string, std::vector<const LifeFacts*>> by_name;  // each node's lives, oldest first
  for (const auto& f : facts) by_name[f.node->name()].push_back(&f);
  double spot_hours = 0;
  for (const auto& f : facts) {
    if (f.info.lifecycle() != nodewatch::v1::LIFECYCLE_SPOT) continue;
    spot_hours += f.hours_month;
    if (!f.list) continue;
    spot->set_spot_usd_month(spot->spot_usd_month() + *f.hourly * f.hours_month);
    spot->set_on_demand_equivalent_usd(spot->on_demand_equivalent_usd() +
                                       f.list->on_demand * f.hours_month);
  }
  spot->set_gross_savings_usd(spot->on_demand_equivalent_usd() - spot->spot_usd_month());
  // Match each spot reclaim of the month (oldest first) with the first unmatched on-demand life
  // of the same provider and region that began within the window after it.
  std::vector<const InterruptionEvent*> reclaims;
  std::set<std::pair<std::string, std::string>> seen;  // (provider, event id): once per event
  for (const auto& e : events) {
    if (e.time_ms < month_start || e.time_ms > in.now_ms || !IsSpotReclaim(e)) continue;
    if (!seen.insert({e.provider, e.event_id}).second) continue;
    reclaims.push_back(&e);
  }
  std::sort(reclaims.begin(), reclaims.end(),
            [](const auto* a, const auto* b) { return a->time_ms < b->time_ms; });
  spot->set_interruptions_month(static_cast<uint32_t>(reclaims.size()));
  std::set<const LifeFacts*> used;
  for (const auto* e : reclaims) {
    auto lives = by_name.find(e->node);
    if (lives == by_name.end()) continue;
    // The life the reclaim ended: the last one begun before it.
    const LifeFacts* victim = nullptr;
    for (const LifeFacts* f : lives->second) {
      if (f->start <= e->time_ms) victim = f;
    }
    if (victim == nullptr || victim->info.lifecycle() != nodewatch::v1::LIFECYCLE_SPOT) {
      continue;  // only a reclaimed spot life has a fallback
    }
    const LifeFacts* best = nullptr;
    for (const auto& f : facts) {
      if (f.info.lifecycle() != nodewatch::v1::LIFECYCLE_ON_DEMAND || used.count(&f) > 0 ||
          f.info.provider() != victim->info.provider() ||
          f.info.region() != victim->info.region() || f.start < e->time_ms ||
          f.start > e->time_ms + in.fallback_window_ms) {
        continue;
      }
      if (best == nullptr || f.start < best->start) best = &f;
    }
    if (best == nullptr || !best->hourly) continue;
    used.insert(best);
    const double victim_rate = victim->hourly.value_or(0);
    spot->set_fallback_node_hours(spot->fallback_node_hours() + best->hours_month);
    spot->set_fallback_extra_usd(spot->fallback_extra_usd() +
                                 std::max(0.0, *best->hourly - victim_rate) * best->hours_month);
  }
  const double denominator = spot_hours + spot->fallback_node_hours();
  spot->set_on_demand_fallback_share(denominator > 0 ? spot->fallback_node_hours() / denominator
                                                     : 0);
  spot->set_effective_savings_usd(spot->gross_savings_usd() - spot->fallback_extra_usd());
  spot->set_effective_savings_pct(spot->on_demand_equivalent_usd() > 0
                                      ? 100.0 * spot->effective_savings_usd() /
                                            spot->on_demand_equivalent_usd()
                                      : 0);
}

}  // namespace

int64_t MonthStartMs(int64_t unix_ms) { return MonthStart(unix_ms, 0); }
int64_t NextMonthStartMs(int64_t unix_ms) { return MonthStart(unix_ms, 1); }

double TransferUsd(const ClassBytes& bytes, const TransferPrice& price) {
  double usd = 0;
  for (int c = 0; c < kTransferClasses; ++c) {
    usd += static_cast<double>(bytes[static_cast<size_t>(c)]) / kBytesPerGb * price.per_gb[c];
  }
  return usd;
}

CostReport ComputeCost(const CostInputs& in) {
  const PriceTable& prices = in.prices != nullptr ? *in.prices : PriceTable::BuiltIn();
  const int64_t month_start = MonthStartMs(in.now_ms);
  const int64_t month_end = NextMonthStartMs(in.now_ms);
  const int64_t day_start = DayOf(in.now_ms) * 86'400'000;
  const double hours_left = static_cast<double>(month_end - in.now_ms) / kHourMs;
  const double hours_elapsed =
      std::max(1.0, static_cast<double>(in.now_ms - month_start) / kHourMs);

  CostReport report;
  report.set_computed_unix_ms(in.now_ms);
  {
    time_t seconds = static_cast<time_t>(in.now_ms / 1000);
    tm utc{};
    gmtime_r(&seconds, &utc);
    report.set_month(absl::StrFormat("%04d-%02d", utc.tm_year + 1900, utc.tm_mon + 1));
  }
  report.set_monthly_budget_usd(in.monthly_budget_usd);
  report.set_price_table(prices.origin());

  std::vector<LifeFacts> facts;
  facts.reserve(in.nodes.size());
  for (const auto& n : in.nodes) {
    for (LifeFacts& f : LivesOf(n, in, prices)) {
      f.hours_month = OverlapHours(f.start, f.end, month_start, in.now_ms);
      f.hours_today = OverlapHours(f.start, f.end, day_start, in.now_ms);
      f.stopped_hours_month = OverlapHours(f.stopped_start, f.stopped_end, month_start, in.now_ms);
      f.stopped_hours_today = OverlapHours(f.stopped_start, f.stopped_end, day_start, in.now_ms);
      facts.push_back(std::move(f));
    }
  }

  using GroupKey = std::tuple<std::string, std::string, std::string>;  // provider, region, life
  std::map<GroupKey, nodewatch::v1::CostGroup> groups;
  for (const auto& f : facts) {
    if (!f.billed_this_month()) continue;
    auto& g = groups[{f.info.provider(), f.info.region(), LifecycleName(f.info.lifecycle())}];
    g.set_node_hours_month(g.node_hours_month() + f.hours_month);
    g.set_stopped_hours_month(g.stopped_hours_month() + f.stopped_hours_month);
    if (f.running) g.set_nodes_running(g.nodes_running() + 1);
    // A stopped node's disks are billed by the hour and go on until it comes back.
    const double storage_today = f.storage_hourly * f.stopped_hours_today;
    g.set_storage_usd_month(g.storage_usd_month() + f.storage_usd_month());
    g.set_today_usd(g.today_usd() + storage_today);
    g.set_month_to_date_usd(g.month_to_date_usd() + f.storage_usd_month());
    if (f.stopped_now) g.set_hourly_usd(g.hourly_usd() + f.storage_hourly);
    if (!f.hourly) {
      if (f.running || f.hours_month > 0) g.set_unpriced_nodes(g.unpriced_nodes() + 1);
      continue;
    }
    if (f.running) g.set_hourly_usd(g.hourly_usd() + *f.hourly);
    g.set_today_usd(g.today_usd() + *f.hourly * f.hours_today);
    g.set_month_to_date_usd(g.month_to_date_usd() + *f.hourly * f.hours_month);
  }
  for (auto& [key, g] : groups) {
    g.set_cluster(in.cluster);
    g.set_environment(in.environment);
    g.set_provider(std::get<0>(key));
    g.set_region(std::get<1>(key));
    g.set_lifecycle(std::get<2>(key));
    g.set_forecast_usd(g.month_to_date_usd() + g.hourly_usd() * hours_left);
    report.set_hourly_usd(report.hourly_usd() + g.hourly_usd());
    report.set_today_usd(report.today_usd() + g.today_usd());
    report.set_month_to_date_usd(report.month_to_date_usd() + g.month_to_date_usd());
    *report.add_groups() = std::move(g);
  }

  // Data transfer, priced at each provider's rates.
  double transfer_month_usd = 0;
  for (int c = 0; c < kTransferClasses; ++c) {
    auto* t = report.add_transfer();
    t->set_transfer_class(TransferClassName(static_cast<TransferClass>(c)));
    t->set_bytes_month(in.transfer_month.total[static_cast<size_t>(c)]);
    t->set_bytes_today(in.transfer_today.total[static_cast<size_t>(c)]);
  }
  auto price_class = [&](const std::map<std::string, ClassBytes>& by_provider, bool month) {
    for (const auto& [provider, bytes] : by_provider) {
      const TransferPrice price = prices.Transfer(provider, "*");
      for (int c = 0; c < kTransferClasses; ++c) {
        auto* t = report.mutable_transfer(c);
        const double usd =
            static_cast<double>(bytes[static_cast<size_t>(c)]) / kBytesPerGb * price.per_gb[c];
        if (month) {
          t->set_usd_month(t->usd_month() + usd);
          transfer_month_usd += usd;
        } else {
          t->set_usd_today(t->usd_today() + usd);
        }
      }
    }
  };
  price_class(in.transfer_month.by_provider, true);
  price_class(in.transfer_today.by_provider, false);
  const double transfer_per_hour = transfer_month_usd / hours_elapsed;
  for (auto& t : *report.mutable_transfer()) {
    t.set_usd_forecast(t.usd_month() + t.usd_month() / hours_elapsed * hours_left);
    report.set_today_usd(report.today_usd() + t.usd_today());
  }
  report.set_month_to_date_usd(report.month_to_date_usd() + transfer_month_usd);
  report.set_forecast_usd(report.month_to_date_usd() +
                          (report.hourly_usd() + transfer_per_hour) * hours_left);

  std::vector<nodewatch::v1::NamespaceTransfer> namespaces;
  std::map<std::string, nodewatch::v1::NamespaceTransfer> by_ns;
  for (const auto& [key, bytes] : in.transfer_month.by_namespace) {
    auto& ns = by_ns[key.second];
    ns.set_namespace_(key.second);
    ClassBytes billable = bytes;
    billable[static_cast<size_t>(TransferClass::kSameZone)] = 0;
    for (uint64_t b : billable) ns.set_egress_bytes_month(ns.egress_bytes_month() + b);
    ns.set_usd_month(ns.usd_month() + TransferUsd(bytes, prices.Transfer(key.first, "*")));
  }
  for (auto& [name, ns] : by_ns) namespaces.push_back(std::move(ns));
  std::sort(namespaces.begin(), namespaces.end(), [](const auto& a, const auto& b) {
    return a.usd_month() != b.usd_month() ? a.usd_month() > b.usd_month()
                                          : a.egress_bytes_month() > b.egress_bytes_month();
  });
  if (namespaces.size() > 20) namespaces.resize(20);
  for (auto& ns : namespaces) *report.add_namespaces() = std::move(ns);

  AddSpot(facts, in.interruptions, in, month_start, &report);

  if (in.include_nodes) {
    std::map<std::string, std::vector<const LifeFacts*>> by_node;  // name order, lives in order
    for (const auto& f : facts) {
      if (f.billed_this_month()) by_node[f.node->name()].push_back(&f);
    }
    for (const auto& [name, lives] : by_node) {
      const LifeFacts& now = *lives.back();
      auto* n = report.add_nodes();
      n->set_node(name);
      n->set_region(now.info.region());
      n->set_instance_type(now.info.instance_type());
      n->set_lifecycle(LifecycleName(now.info.lifecycle()));
      n->set_running(now.running && now.current);
      n->set_priced(now.hourly.has_value());
      n->set_hourly_usd(now.running ? now.hourly.value_or(0)
                                    : now.stopped_now ? now.storage_hourly : 0);
      n->set_lives(static_cast<uint32_t>(lives.size()));
      for (const LifeFacts* f : lives) {
        n->set_month_to_date_usd(n->month_to_date_usd() + f->usd_month());
        n->set_stopped_hours_month(n->stopped_hours_month() + f->stopped_hours_month);
        n->set_storage_usd_month(n->storage_usd_month() + f->storage_usd_month());
        auto* l = report.add_lives();
        l->set_node(name);
        l->set_instance_id(f->life.instance_id());
        l->set_instance_type(f->info.instance_type());
        l->set_lifecycle(LifecycleName(f->info.lifecycle()));
        l->set_start_unix_ms(f->start);
        l->set_end_unix_ms(f->running ? 0 : f->end);
        l->set_ended(!f->current ? f->life.ended() : f->running ? "" : "away");
        l->set_hours_month(f->hours_month);
        l->set_usd_month(f->usd_month());
        l->set_priced(f->hourly.has_value());
        l->set_stopped_hours_month(f->stopped_hours_month);
        l->set_storage_usd_month(f->storage_usd_month());
      }
      if (auto it = in.transfer_month.by_node.find(name); it != in.transfer_month.by_node.end()) {
        n->set_transfer_usd_month(
            TransferUsd(it->second, prices.Transfer(now.info.provider(), "*")));
      }
    }
  }
  return report;
}

}  // namespace nodewatch::aggregator
