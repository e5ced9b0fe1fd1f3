#include "aggregator/alerts/cost_monitor.h"

#include <map>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/time.h"
#include "common/logging.h"

namespace nodewatch::aggregator {

namespace {
constexpr int64_t kDayMs = 86'400'000;
}  // namespace

CostMonitor::CostMonitor(IngestEngine& engine, Store& store, const Clock& clock,
                         const PriceTable& prices, CostLedger& ledger,
                         TransferClassifier& classifier, AlertEngine& alerts,
                         CostMonitorOptions options)
    : engine_(engine),
      store_(store),
      clock_(clock),
      prices_(prices),
      ledger_(ledger),
      classifier_(classifier),
      alerts_(alerts),
      options_(std::move(options)),
      thread_(options_.interval_ms, [this] { RunOnce(); }) {}

CostMonitor::~CostMonitor() { Stop(); }

nodewatch::v1::CostReport CostMonitor::Compute(int64_t now_ms) {
  CostInputs in;
  in.now_ms = now_ms;
  in.cluster = options_.cluster;
  in.environment = options_.environment;
  in.monthly_budget_usd = options_.monthly_budget_usd;
  in.include_nodes = true;
  in.prices = &prices_;
  in.nodes = engine_.ListNodes();
  classifier_.Update(in.nodes);
  const int64_t today = DayOf(now_ms);
  in.transfer_month = ledger_.Totals(DayOf(MonthStartMs(now_ms)), today);
  in.transfer_today = ledger_.Totals(today, today);
  in.interruptions = ledger_.Interruptions(MonthStartMs(now_ms));
  return ComputeCost(in);
}

void CostMonitor::RunOnce() {
  const int64_t start = clock_.MonotonicNs();
  const int64_t now = clock_.NowUnixMs();
  nodewatch::v1::CostReport report = Compute(now);
  alerts_.Evaluate(Conditions(report, now), now);
  if (auto s = ledger_.Prune(store_, now); !s.ok()) {
    GetLogger("agg.cost")->warn("pruning old transfer rollups failed: {}", s);
  }
  cycle_seconds_.Observe(static_cast<double>(clock_.MonotonicNs() - start) / 1e9);
  std::lock_guard<std::mutex> lock(mu_);
  latest_ = std::move(report);
}

nodewatch::v1::CostReport CostMonitor::Report(bool include_nodes) {
  nodewatch::v1::CostReport report;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (latest_) report = *latest_;
  }
  if (report.computed_unix_ms() == 0) report = Compute(clock_.NowUnixMs());
  if (!include_nodes) report.clear_nodes();
  return report;
}

std::vector<AlertCondition> CostMonitor::Conditions(const nodewatch::v1::CostReport& report,
                                                    int64_t now_ms) const {
  std::vector<AlertCondition> out;
  const std::string& cluster = options_.cluster;
  const double budget = options_.monthly_budget_usd;
  if (budget > 0) {
    const double limit = options_.forecast_ratio * budget;
    out.push_back(
        {.rule = "budget-forecast",
         .subject = cluster,
         .active = report.forecast_usd() > limit,
         .value = report.forecast_usd(),
         .threshold = limit,
         .message = absl::StrFormat("month-end forecast $%.2f is above %.0f%% of the $%.2f budget",
                                    report.forecast_usd(), 100 * options_.forecast_ratio, budget)});
    out.push_back({.rule = "budget-actual",
                   .subject = cluster,
                   .active = report.month_to_date_usd() > budget,
                   .value = report.month_to_date_usd(),
                   .threshold = budget,
                   .message = absl::StrFormat("spent $%.2f this month, over the $%.2f budget",
                                              report.month_to_date_usd(), budget)});
  }

  // Spot reclaims in the window, and per node over the repeated window.
  const auto events = ledger_.Interruptions(
      now_ms - std::max(options_.interruption_window_ms, options_.repeated_window_ms));
  // Distinct cloud events: a notice stored as ACTIVE and again as COMPLETED is one event.
  std::set<std::pair<std::string, std::string>> reclaim_events;
  std::map<std::string, std::set<std::pair<std::string, std::string>>> node_events;
  for (const auto& e : events) {
    const auto id = std::make_pair(e.provider, e.event_id);
    if (IsSpotReclaim(e) && e.time_ms >= now_ms - options_.interruption_window_ms) {
      reclaim_events.insert(id);
    }
    if (e.state != nodewatch::v1::NOTICE_STATE_CANCELED && !e.node.empty() &&
        e.time_ms >= now_ms - options_.repeated_window_ms) {
      node_events[e.node].insert(id);
    }
  }
  const auto reclaims = static_cast<int64_t>(reclaim_events.size());
  std::map<std::string, int64_t> per_node;
  for (const auto& [node, ids] : node_events) per_node[node] = static_cast<int64_t>(ids.size());
  const double share = report.spot().on_demand_fallback_share();
  const bool spike = reclaims >= options_.interruption_spike_count ||
                     (share >= options_.fallback_share && report.spot().fallback_node_hours() > 0);
  out.push_back(
      {.rule = "spot-interruption-spike",
       .subject = cluster,
       .active = spike,
       .value = static_cast<double>(reclaims),
       .threshold = static_cast<double>(options_.interruption_spike_count),
       .message = absl::StrFormat(
           "%d spot reclaim(s) in the last %s; on-demand fallback share %.0f%%", reclaims,
           absl::FormatDuration(absl::Milliseconds(options_.interruption_window_ms)), 100 * share),
       .for_ms = 0});
  for (const auto& [node, count] : per_node) {
    if (count < options_.repeated_count) continue;
    out.push_back({.rule = "repeated-interruptions",
                   .subject = node,
                   .active = true,
                   .value = static_cast<double>(count),
                   .threshold = static_cast<double>(options_.repeated_count),
                   .message = absl::StrFormat(
                       "%d interruption notices in the last %s", count,
                       absl::FormatDuration(absl::Milliseconds(options_.repeated_window_ms)))});
  }

  // Data transfer: the last 24 hours (today, plus yesterday's share of the window, from the day
  // rollups) against the daily average of the seven whole days before yesterday.
  auto day_usd = [&](int64_t day) {
    double usd = 0;
    for (const auto& [provider, bytes] : ledger_.ProviderTotals(day, day)) {
      usd += TransferUsd(bytes, prices_.Transfer(provider, "*"));
    }
    return usd;
  };
  const int64_t today = DayOf(now_ms);
  const double today_fraction = static_cast<double>(now_ms - today * kDayMs) / kDayMs;
  const double last_24h = day_usd(today) + day_usd(today - 1) * (1 - today_fraction);
  double week = 0;
  int days_with_data = 0;
  for (int64_t d = today - 8; d <= today - 2; ++d) {
    const double usd = day_usd(d);
    week += usd;
    if (usd > 0) ++days_with_data;
  }
  const double baseline = days_with_data > 0 ? week / days_with_data : 0;  // days that had data
  const double limit =
      std::max(options_.transfer_spike_factor * baseline, options_.transfer_spike_min_usd);
  out.push_back({.rule = "transfer-cost-spike",
                 .subject = cluster,
                 .active = days_with_data >= 3 && last_24h > limit,
                 .value = last_24h,
                 .threshold = limit,
                 .message = absl::StrFormat(
                     "data transfer cost $%.2f in the last 24 h against $%.2f/day the week before",
                     last_24h, baseline),
                 .for_ms = options_.pending_for_ms});

  for (const auto& fs : ledger_.Filesystems()) {
    if (fs.predicted_full_ms <= 0) continue;
    const int64_t left = fs.predicted_full_ms - now_ms;
    if (left > options_.disk_full_within_ms) continue;
    out.push_back(
        {.rule = "disk-filling",
         .subject = absl::StrCat(fs.node, ":", fs.mountpoint),
         .active = true,
         .value = static_cast<double>(std::max<int64_t>(left, 0)) / 3.6e6,
         .threshold = static_cast<double>(options_.disk_full_within_ms) / 3.6e6,
         .message = absl::StrFormat("%s on %s is %.0f%% used and predicted full in %.1f h",
                                    fs.mountpoint, fs.node, 100 * fs.used_fraction,
                                    static_cast<double>(std::max<int64_t>(left, 0)) / 3.6e6),
         .for_ms = options_.pending_for_ms});
  }
  return out;
}

void CostMonitor::CollectMetrics(MetricFamilies& f) const {
  std::optional<nodewatch::v1::CostReport> report;
  {
    std::lock_guard<std::mutex> lock(mu_);
    report = latest_;
  }
  if (report) {
    const char* hourly = "nodewatch_cost_hourly_dollars";
    const char* mtd = "nodewatch_cost_month_to_date_dollars";
    const char* forecast = "nodewatch_cost_month_forecast_dollars";
    const char* running = "nodewatch_cost_nodes_running";
    const char* unpriced = "nodewatch_cost_unpriced_nodes";
    for (const char* name : {hourly, mtd, forecast, running, unpriced}) {
      for (const auto& g : report->groups()) {
        MetricFamilies::Labels labels = {{"cluster", g.cluster()},
                                         {"environment", g.environment()},
                                         {"provider", g.provider()},
                                         {"region", g.region()},
                                         {"lifecycle", g.lifecycle()}};
        const std::string n = name;
        if (n == hourly) {
          f.Gauge(name, "What the running nodes cost per hour now, USD.", g.hourly_usd(), labels);
        } else if (n == mtd) {
          f.Gauge(name, "Instance cost of the current UTC month so far, USD.",
                  g.month_to_date_usd(), labels);
        } else if (n == forecast) {
          f.Gauge(name, "Instance cost forecast for the whole current month, USD.",
                  g.forecast_usd(), labels);
        } else if (n == running) {
          f.Gauge(name, "Nodes running now.", g.nodes_running(), labels);
        } else {
          f.Gauge(name, "Nodes whose instance type is missing from the price table.",
                  g.unpriced_nodes(), labels);
        }
      }
    }
    for (const auto& t : report->transfer()) {
      f.Gauge("nodewatch_transfer_month_to_date_bytes",
              "Egress bytes of the current month by transfer class.",
              static_cast<double>(t.bytes_month()), {{"class", t.transfer_class()}});
    }
    for (const auto& t : report->transfer()) {
      f.Gauge("nodewatch_transfer_cost_month_to_date_dollars",
              "Data-transfer cost of the current month by transfer class, USD.", t.usd_month(),
              {{"class", t.transfer_class()}});
    }
    f.Gauge("nodewatch_cost_total_month_to_date_dollars",
            "Instances and data transfer, current month so far, USD.", report->month_to_date_usd(),
            {{"cluster", options_.cluster}});
    f.Gauge("nodewatch_cost_total_month_forecast_dollars",
            "Instances and data transfer, forecast for the whole month, USD.",
            report->forecast_usd(), {{"cluster", options_.cluster}});
    if (options_.monthly_budget_usd > 0) {
      f.Gauge("nodewatch_cost_monthly_budget_dollars", "The configured monthly budget, USD.",
              options_.monthly_budget_usd, {{"cluster", options_.cluster}});
    }
    const auto& s = report->spot();
    f.Gauge("nodewatch_spot_savings_month_to_date_dollars",
            "Spot savings this month against on-demand prices, before (gross) and after "
            "(effective) the cost of on-demand fallback nodes, USD.",
            s.gross_savings_usd(), {{"kind", "gross"}});
    f.Gauge("nodewatch_spot_savings_month_to_date_dollars", "", s.effective_savings_usd(),
            {{"kind", "effective"}});
    f.Gauge("nodewatch_spot_on_demand_fallback_ratio",
            "On-demand fallback node-hours over spot plus fallback node-hours, this month.",
            s.on_demand_fallback_share());
    f.Gauge("nodewatch_spot_interruptions_month", "Spot reclaims this month.",
            s.interruptions_month());
  }
  const auto alerts = alerts_.List(true);
  std::map<std::pair<std::string, std::string>, int> by_state;
  for (const char* rule : {"budget-forecast", "budget-actual", "spot-interruption-spike",
                           "transfer-cost-spike", "disk-filling", "repeated-interruptions"}) {
    for (const char* state : {"pending", "firing", "resolved"}) by_state[{rule, state}] = 0;
  }
  for (const auto& a : alerts) ++by_state[{a.rule(), a.state()}];
  for (const auto& [key, count] : by_state) {
    f.Gauge("nodewatch_alerts", "Alerts by rule and state.", count,
            {{"rule", key.first}, {"state", key.second}});
  }
  for (const auto& a : alerts) {
    if (a.state() != "firing") continue;
    f.Gauge("nodewatch_alert_firing",
            "1 for each firing alert (bounded by the firing alerts), for Alertmanager routing.", 1,
            {{"rule", a.rule()}, {"subject", a.subject()}});
  }
  const auto& c = alerts_.counters();
  f.Counter("nodewatch_alert_notifications_total", "Alert notifications, by result.",
            static_cast<double>(c.notifications.load()), {{"result", "sent"}});
  f.Counter("nodewatch_alert_notifications_total", "", static_cast<double>(c.suppressed.load()),
            {{"result", "rate_limited"}});
  f.Counter("nodewatch_alert_persist_errors_total", "Alert states the store refused.",
            static_cast<double>(c.persist_errors.load()));
  const auto& l = ledger_.counters();
  f.Counter("nodewatch_transfer_flows_total", "Egress flows priced from network samples.",
            static_cast<double>(l.flows.load()));
  f.Counter("nodewatch_transfer_unclassifiable_flows_total",
            "Egress flows whose remote address was neither 4 nor 16 bytes.",
            static_cast<double>(l.unclassifiable_flows.load()));
  f.Counter("nodewatch_transfer_namespaces_folded_total",
            "Flows counted under namespace (other) because a day had too many namespaces.",
            static_cast<double>(l.namespaces_folded.load()));
  f.Counter("nodewatch_transfer_clamped_flows_total",
            "Flows whose byte count was absurd (over 2^48 in one sample) and was clamped.",
            static_cast<double>(l.clamped_flows.load()));
  f.Counter("nodewatch_cost_ledger_dropped_total",
            "Filesystem forecasts or notices the ledger did not keep (over its bounds).",
            static_cast<double>(l.dropped_entries.load()));
  f.Histogram("nodewatch_cost_evaluation_seconds", "Time of one cost and alert evaluation cycle.",
              cycle_seconds_);
}

}  // namespace nodewatch::aggregator
