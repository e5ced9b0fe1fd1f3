// The operator CLI's rendering: readable tables by default, JSON for scripts. Kept apart from
// main.cc so the formatting is unit-tested.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "nodewatch/v1/query.pb.h"

namespace nodewatch::cli {

std::string FormatTime(int64_t unix_ms);
// "12s ago", "3m ago", "5h ago", "2d ago".
std::string FormatAge(int64_t unix_ms, int64_t now_ms);
std::string RecordKindName(const nodewatch::v1::Record& r);
// One line describing the record's payload.
std::string SummarizeRecord(const nodewatch::v1::Record& r);
absl::StatusOr<nodewatch::v1::RecordKind> ParseKind(const std::string& name);

std::string NodesTable(const std::vector<nodewatch::v1::NodeSummary>& nodes, int64_t now_ms);
// `nodewatch node NAME`: the node's row, its kernel and how its agent counts (each signal's
// path, and the kernel features it lacks with the kernel's reason).
std::string NodeDetails(const nodewatch::v1::NodeSummary& node, int64_t now_ms);
std::string HistoryTable(const std::vector<nodewatch::v1::Record>& records);
// Interruption timeline with each notice's drain outcome.
std::string InterruptionsTable(const nodewatch::v1::ListInterruptionsResponse& response);
// Today, month to date and forecast by group; data transfer by class; spot savings; nodes.
std::string CostSummary(const nodewatch::v1::CostReport& report);
std::string AlertsTable(const nodewatch::v1::ListAlertsResponse& response, int64_t now_ms);
// lowerCamelCase JSON with zero values printed, the style of the HTTP API.
std::string ToJson(const google::protobuf::Message& message);

}  // namespace nodewatch::cli
