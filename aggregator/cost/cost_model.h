// The cost arithmetic: from the node directory (each node's NodeInfo and lifetime), the price
// table, the transfer rollups and the interruptions, what the fleet costs now, today, this month
// and by month end. Pure functions of their inputs (time included), so every figure is checked
// against hand-computed cases.
//
// Rules:
// - A node is priced life by life (NodeSummary.lives: one instance, one boot), each at its own
//   instance type and lifecycle, from the life's first Hello until it was last heard from, or
//   until now while running (connected, or heard from within `running_grace_ms`). Periods are UTC
//   days and months.
// - Between two lives: a reboot (or a restart no notice announced) is billed as instance hours;
//   a stop (a stop or hibernate notice, or a maintenance that stops) is not, but the instance's
//   persistent disks are, at the table's storage price per GB-month (730 h); so is a node still
//   away after a stop notice. A replacement bills nothing for the old instance after it was last
//   heard from.
// - A spot life is priced at its spot price (on-demand when the table has none).
// - Forecast = month to date + (running nodes' hourly rate + the month's average transfer cost
//   per hour) x hours left in the month.
// - Spot savings: what spot node-hours would have cost on demand, minus what they cost. An
//   on-demand node of the same provider and region first seen within `fallback_window_ms` after a
//   spot reclaim is that reclaim's fallback (one each); its cost above the reclaimed node's spot
//   price is subtracted to give the effective savings.
#pragma once

#include <string>
#include <vector>

#include "aggregator/cost/cost_ledger.h"
#include "aggregator/cost/price_table.h"
#include "nodewatch/v1/query.pb.h"

namespace nodewatch::aggregator {

struct CostInputs {
  int64_t now_ms = 0;
  std::string cluster = "default";
  std::string environment = "default";
  double monthly_budget_usd = 0;
  int64_t running_grace_ms = 5 * 60'000;
  int64_t fallback_window_ms = 30 * 60'000;
  bool include_nodes = false;
  const PriceTable* prices = nullptr;
  std::vector<nodewatch::v1::NodeSummary> nodes;
  TransferTotals transfer_month;  // days of the month up to today
  TransferTotals transfer_today;
  std::vector<InterruptionEvent> interruptions;  // at least this month's
};

// Start of the UTC month containing `unix_ms`, and of the next one.
int64_t MonthStartMs(int64_t unix_ms);
int64_t NextMonthStartMs(int64_t unix_ms);

nodewatch::v1::CostReport ComputeCost(const CostInputs& in);

// USD of `bytes` by class at the provider's transfer prices.
double TransferUsd(const ClassBytes& bytes, const TransferPrice& price);

}  // namespace nodewatch::aggregator
