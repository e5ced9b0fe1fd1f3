#include "aggregator/cli/cli.h"

#include <arpa/inet.h>
#include <google/protobuf/util/json_util.h>

#include <algorithm>
#include <ctime>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/options.h"

namespace nodewatch::cli {

using nodewatch::v1::Record;

namespace {

std::string Table(const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> widths;
  for (const auto& row : rows) {
    widths.resize(std::max(widths.size(), row.size()));
    for (size_t i = 0; i < row.size(); ++i) widths[i] = std::max(widths[i], row[i].size());
  }
  std::string out;
  for (const auto& row : rows) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size()) line += std::string(widths[i] - row[i].size() + 3, ' ');
    }
    out += line + "\n";
  }
  return out;
}

std::string Lifecycle(nodewatch::v1::Lifecycle l) {
  switch (l) {
    case nodewatch::v1::LIFECYCLE_SPOT:
      return "spot";
    case nodewatch::v1::LIFECYCLE_ON_DEMAND:
      return "on-demand";
    default:
      return "-";
  }
}

std::string OrDash(const std::string& s) { return s.empty() ? "-" : s; }

std::string Bytes(uint64_t b) {
  if (b >= (1ull << 30)) return absl::StrFormat("%.1fGiB", static_cast<double>(b) / (1ull << 30));
  if (b >= (1ull << 20)) return absl::StrFormat("%.1fMiB", static_cast<double>(b) / (1ull << 20));
  if (b >= (1ull << 10)) return absl::StrFormat("%.1fKiB", static_cast<double>(b) / (1ull << 10));
  return absl::StrCat(b, "B");
}

std::string KindName(nodewatch::v1::InterruptionKind k) {
  std::string name = nodewatch::v1::InterruptionKind_Name(k);
  const std::string prefix = "INTERRUPTION_KIND_";
  if (name.rfind(prefix, 0) == 0) name = name.substr(prefix.size());
  std::transform(name.begin(), name.end(), name.begin(),
                 [](char c) { return c == '_' ? '-' : static_cast<char>(std::tolower(c)); });
  return name;
}

std::string Address(const std::string& raw) {
  char buf[INET6_ADDRSTRLEN] = "?";
  if (raw.size() == 4) inet_ntop(AF_INET, raw.data(), buf, sizeof buf);
  if (raw.size() == 16) inet_ntop(AF_INET6, raw.data(), buf, sizeof buf);
  return buf;
}

std::string Micros(double us) {
  if (us >= 1e6) return absl::StrFormat("%.1fs", us / 1e6);
  if (us >= 1e3) return absl::StrFormat("%.1fms", us / 1e3);
  return absl::StrFormat("%.0fus", us);
}

// The upper bound of the log2 bucket (bucket i: [2^i, 2^(i+1)) us) holding quantile q; "" if empty.
std::string Log2Quantile(const google::protobuf::RepeatedField<uint64_t>& buckets, double q) {
  uint64_t total = 0;
  for (uint64_t b : buckets) total += b;
  if (total == 0) return "";
  uint64_t seen = 0;
  for (int i = 0; i < buckets.size(); ++i) {
    seen += buckets[i];
    if (static_cast<double>(seen) >= q * static_cast<double>(total)) {
      return "<" + Micros(static_cast<double>(uint64_t{1} << std::min(i + 1, 62)));
    }
  }
  return "";
}

std::string SummarizeNetwork(const nodewatch::v1::NetworkSample& n) {
  uint64_t tx = 0;
  uint64_t rx = 0;
  const nodewatch::v1::NetworkFlow* top = nullptr;
  const nodewatch::v1::NetworkFlow* troubled = nullptr;  // most TCP trouble events
  auto trouble = [](const nodewatch::v1::NetworkFlow& f) {
    return f.tcp_retransmits() + f.tcp_failed_connects() + f.tcp_resets() + f.tcp_slow_connects();
  };
  for (const auto& f : n.flows()) {
    const bool egress = f.direction() == nodewatch::v1::DIRECTION_EGRESS;
    (egress ? tx : rx) += f.bytes();
    if (egress && (top == nullptr || f.bytes() > top->bytes())) top = &f;
    if (trouble(f) > 0 && (troubled == nullptr || trouble(f) > trouble(*troubled))) troubled = &f;
  }
  auto who = [](const nodewatch::v1::NetworkFlow& f) {
    return f.pod_name().empty() ? std::string("host")
                                : absl::StrCat(f.pod_namespace(), "/", f.pod_name());
  };
  std::string out =
      absl::StrCat("tx ", Bytes(tx), " rx ", Bytes(rx), " in ", n.flows_size(), " flow(s); tcp ",
                   n.tcp_connects(), " connects (", n.tcp_failed_connects(), " failed");
  const std::string p50 = Log2Quantile(n.connect_latency_log2_us(), 0.5);
  if (!p50.empty()) absl::StrAppend(&out, ", p50 ", p50);
  absl::StrAppend(&out, "), ", n.tcp_retransmits(), " retransmits, ", n.tcp_resets(), " resets");
  if (n.dropped_flows() > 0) absl::StrAppend(&out, "; ", n.dropped_flows(), " flows NOT counted");
  if (top != nullptr) {
    absl::StrAppend(&out, "; top: ", who(*top), " -> ", Address(top->remote_address()), " ",
                    Bytes(top->bytes()));
  }
  if (troubled != nullptr) {
    absl::StrAppend(&out, "; most TCP trouble: ", who(*troubled), " -> ",
                    Address(troubled->remote_address()), " ", troubled->tcp_retransmits(),
                    " retransmits, ", troubled->tcp_failed_connects(), " failed / ",
                    troubled->tcp_slow_connects(), " slow connects, ", troubled->tcp_resets(),
                    " resets");
  }
  return out;
}

std::string SummarizeDisk(const nodewatch::v1::DiskSample& d, int64_t now_ms) {
  std::vector<std::string> parts;
  for (const auto& dev : d.devices()) {
    std::string part = absl::StrCat(dev.device(), " r ", dev.reads(), "/", Bytes(dev.read_bytes()),
                                    " w ", dev.writes(), "/", Bytes(dev.written_bytes()));
    const std::string p99 = Log2Quantile(dev.write_latency_log2_us(), 0.99);
    if (!p99.empty()) absl::StrAppend(&part, " write p99 ", p99);
    if (dev.io_errors() > 0) absl::StrAppend(&part, " ", dev.io_errors(), " ERRORS");
    parts.push_back(part);
  }
  for (const auto& fs : d.filesystems()) {
    if (fs.timed_out()) {
      parts.push_back(absl::StrCat(fs.mountpoint(), " statfs TIMED OUT"));
      continue;
    }
    std::string part = fs.mountpoint();
    if (fs.size_bytes() > 0 && fs.available_bytes() <= fs.size_bytes()) {
      absl::StrAppend(&part,
                      absl::StrFormat(" %.0f%% used of %s",
                                      100.0 - 100.0 * static_cast<double>(fs.available_bytes()) /
                                                  static_cast<double>(fs.size_bytes()),
                                      Bytes(fs.size_bytes())));
    }
    if (fs.predicted_full_unix_ms() > 0) {
      absl::StrAppend(
          &part,
          absl::StrFormat(", full in %.1fh",
                          static_cast<double>(fs.predicted_full_unix_ms() - now_ms) / 3.6e6));
    }
    parts.push_back(part);
  }
  return parts.empty() ? "no devices or filesystems" : absl::StrJoin(parts, "; ");
}

}  // namespace

std::string FormatTime(int64_t unix_ms) {
  if (unix_ms <= 0) return "-";
  time_t seconds = static_cast<time_t>(unix_ms / 1000);
  tm utc{};
  gmtime_r(&seconds, &utc);
  char buf[32];
  strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &utc);
  return absl::StrFormat("%s.%03dZ", buf, static_cast<int>(unix_ms % 1000));
}

std::string FormatAge(int64_t unix_ms, int64_t now_ms) {
  if (unix_ms <= 0) return "never";
  int64_t s = std::max<int64_t>(0, (now_ms - unix_ms) / 1000);
  if (s < 120) return absl::StrCat(s, "s ago");
  if (s < 7200) return absl::StrCat(s / 60, "m ago");
  if (s < 172800) return absl::StrCat(s / 3600, "h ago");
  return absl::StrCat(s / 86400, "d ago");
}

std::string RecordKindName(const Record& r) {
  switch (r.payload_case()) {
    case Record::kNodeInfo:
      return "node-info";
    case Record::kHeartbeat:
      return "heartbeat";
    case Record::kInterruption:
      return "interruption";
    case Record::kNetwork:
      return "network";
    case Record::kDisk:
      return "disk";
    case Record::kRemediation:
      return "remediation";
    default:
      return "unknown";
  }
}

absl::StatusOr<nodewatch::v1::RecordKind> ParseKind(const std::string& name) {
  if (name == "node-info" || name == "nodeinfo") return nodewatch::v1::RECORD_KIND_NODE_INFO;
  if (name == "heartbeat") return nodewatch::v1::RECORD_KIND_HEARTBEAT;
  if (name == "interruption") return nodewatch::v1::RECORD_KIND_INTERRUPTION;
  if (name == "network") return nodewatch::v1::RECORD_KIND_NETWORK;
  if (name == "disk") return nodewatch::v1::RECORD_KIND_DISK;
  if (name == "remediation") return nodewatch::v1::RECORD_KIND_REMEDIATION;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown kind '", name,
                   "' (want node-info, heartbeat, interruption, network, disk or remediation)"));
}

std::string SummarizeRecord(const Record& r) {
  switch (r.payload_case()) {
    case Record::kNodeInfo: {
      const auto& i = r.node_info();
      std::vector<std::string> addrs;
      for (const auto& a : i.addresses()) addrs.push_back(a.address());
      return absl::StrCat("provider=", OrDash(i.provider()), " region=", OrDash(i.region()),
                          " zone=", OrDash(i.zone()), " type=", OrDash(i.instance_type()),
                          " lifecycle=", Lifecycle(i.lifecycle()),
                          " kernel=", OrDash(i.kernel_release()),
                          " addresses=", addrs.empty() ? "-" : absl::StrJoin(addrs, ","));
    }
    case Record::kHeartbeat: {
      const auto& h = r.heartbeat();
      return absl::StrFormat("load1=%.2f mem_available=%s agent_rss=%s spool=%s dropped=%d",
                             h.load1(), Bytes(h.memory_available_bytes()),
                             Bytes(h.agent_rss_bytes()), Bytes(h.spool_bytes()),
                             h.spool_dropped_records());
    }
    case Record::kInterruption: {
      const auto& n = r.interruption();
      return absl::StrCat(OrDash(n.provider()), " ", KindName(n.kind()),
                          " event=", OrDash(n.event_id()),
                          " deadline=", FormatTime(n.deadline_unix_ms()),
                          " state=", nodewatch::v1::NoticeState_Name(n.state()).substr(13));
    }
    case Record::kNetwork:
      return SummarizeNetwork(r.network());
    case Record::kDisk:
      return SummarizeDisk(r.disk(), r.time_unix_ms());
    case Record::kRemediation: {
      const auto& m = r.remediation();
      std::string out = absl::StrCat(m.dry_run() ? "[dry-run] " : "", OrDash(m.action()), " ",
                                     OrDash(m.provider()), " ", KindName(m.kind()),
                                     " event=", OrDash(m.event_id()));
      if (m.pods_evicted() + m.pods_force_deleted() + m.pods_remaining() + m.pods_blocked_by_pdb() >
          0) {
        absl::StrAppend(
            &out, " evicted=", m.pods_evicted(), " force_deleted=", m.pods_force_deleted(),
            " pdb_blocked=", m.pods_blocked_by_pdb(), " remaining=", m.pods_remaining());
      }
      if (!m.message().empty()) absl::StrAppend(&out, ": ", m.message());
      return out;
    }
    default:
      return "";
  }
}

std::string NodesTable(const std::vector<nodewatch::v1::NodeSummary>& nodes, int64_t now_ms) {
  std::vector<std::vector<std::string>> rows = {{"NODE", "CONNECTED", "PROVIDER", "REGION", "ZONE",
                                                 "INSTANCE-TYPE", "LIFECYCLE", "LAST-SEEN",
                                                 "RECORDS", "LOST", "INTERRUPTIONS"}};
  for (const auto& n : nodes) {
    rows.push_back({n.name(), n.connected() ? "yes" : "no", OrDash(n.info().provider()),
                    OrDash(n.info().region()), OrDash(n.info().zone()),
                    OrDash(n.info().instance_type()), Lifecycle(n.info().lifecycle()),
                    FormatAge(n.last_seen_unix_ms(), now_ms), absl::StrCat(n.records()),
                    absl::StrCat(n.lost_records()), absl::StrCat(n.interruptions())});
  }
  return Table(rows);
}

namespace {

// One line per life: its instance, boot, type and lifecycle, when it began and was last heard
// from, how it ended and how long the node was away before the next life.
std::string LivesTable(const nodewatch::v1::NodeSummary& node) {
  std::vector<std::vector<std::string>> rows = {
      {"LIFE", "INSTANCE", "BOOT", "TYPE", "LIFECYCLE", "FROM", "TO", "ENDED", "AWAY"}};
  const auto& lives = node.lives();
  for (int i = 0; i < lives.size(); ++i) {
    const auto& l = lives[i];
    const bool current = i + 1 == lives.size();
    std::string ended = l.ended();
    if (current) {
      ended = node.connected() ? "running" : l.noticed_end().empty()
                                                 ? "away"
                                                 : absl::StrCat("away (", l.noticed_end(), ")");
    }
    rows.push_back({absl::StrCat(i + 1), OrDash(l.instance_id()), OrDash(l.boot_id().substr(0, 8)),
                    OrDash(l.instance_type()), Lifecycle(l.lifecycle()),
                    FormatTime(l.start_unix_ms()),
                    current && node.connected() ? "-" : FormatTime(l.last_seen_unix_ms()), ended,
                    current ? "-"
                            : FormatElapsed(lives[i + 1].start_unix_ms() - l.last_seen_unix_ms())});
  }
  return Table(rows);
}

}  // namespace

std::string NodeDetails(const nodewatch::v1::NodeSummary& node, int64_t now_ms) {
  const auto& info = node.info();
  std::string out = NodesTable({node}, now_ms);
  if (node.lives_size() > 0) absl::StrAppend(&out, "\nLives:\n", LivesTable(node));
  absl::StrAppend(&out, "\nKernel: ", OrDash(info.kernel_release()), " (",
                  OrDash(info.architecture()), "), OS: ", OrDash(info.os_image()), "\n");
  if (info.counting_paths().empty()) {
    absl::StrAppend(&out, "Counting paths: - (the agent did not report them)\n");
    return out;
  }
  std::vector<std::vector<std::string>> rows = {{"SIGNAL", "COUNTED", "WHY"}};
  for (const auto& p : info.counting_paths()) {
    rows.push_back({p.signal(), p.path(), OrDash(p.reason())});
  }
  absl::StrAppend(&out, "\n", Table(rows));
  std::vector<std::string> missing;
  for (const auto& f : info.kernel_features()) {
    if (!f.available()) missing.push_back(absl::StrCat("  ", f.name(), ": ", f.reason(), "\n"));
  }
  absl::StrAppend(&out, "\nKernel features: ", info.kernel_features_size() - missing.size(), " of ",
                  info.kernel_features_size(), " available",
                  missing.empty() ? "\n" : "; missing:\n", absl::StrJoin(missing, ""));
  return out;
}

std::string HistoryTable(const std::vector<Record>& records) {
  std::vector<std::vector<std::string>> rows = {{"TIME", "SEQ", "KIND", "DETAILS"}};
  for (const auto& r : records) {
    // Records the aggregator wrote (remediation steps) have seqs above 2^63: not the agent's.
    const bool local = r.seq() >= (1ull << 63);
    rows.push_back({FormatTime(r.time_unix_ms()), local ? "-" : absl::StrCat(r.seq()),
                    RecordKindName(r), SummarizeRecord(r)});
  }
  return Table(rows);
}

std::string InterruptionsTable(const nodewatch::v1::ListInterruptionsResponse& response) {
  std::vector<std::vector<std::string>> rows = {
      {"TIME", "NODE", "PROVIDER", "KIND", "EVENT", "DEADLINE", "STATE", "DRAIN", "OUTCOME"}};
  for (const auto& e : response.interruptions()) {
    const auto& n = e.notice();
    rows.push_back({FormatTime(e.time_unix_ms()), e.node(), OrDash(n.provider()),
                    KindName(n.kind()), OrDash(n.event_id()), FormatTime(n.deadline_unix_ms()),
                    nodewatch::v1::NoticeState_Name(n.state()).substr(13), OrDash(e.drain_phase()),
                    OrDash(e.drain_outcome())});
  }
  return Table(rows);
}

namespace {
std::string Usd(double v) { return absl::StrFormat("$%.2f", v); }
}  // namespace

std::string CostSummary(const nodewatch::v1::CostReport& r) {
  std::string out = absl::StrFormat(
      "Month %s (computed %s, prices: %s)\n"
      "  now %s/h   today %s   month to date %s   forecast %s",
      r.month(), FormatTime(r.computed_unix_ms()), r.price_table(), Usd(r.hourly_usd()),
      Usd(r.today_usd()), Usd(r.month_to_date_usd()), Usd(r.forecast_usd()));
  if (r.monthly_budget_usd() > 0) {
    absl::StrAppend(&out,
                    absl::StrFormat("   budget %s (forecast %.0f%%)", Usd(r.monthly_budget_usd()),
                                    100 * r.forecast_usd() / r.monthly_budget_usd()));
  }
  absl::StrAppend(&out, "\n\n");
  std::vector<std::vector<std::string>> groups = {{"CLUSTER", "ENVIRONMENT", "PROVIDER", "REGION",
                                                   "LIFECYCLE", "RUNNING", "PER-HOUR", "TODAY",
                                                   "MONTH", "FORECAST", "UNPRICED"}};
  for (const auto& g : r.groups()) {
    groups.push_back({g.cluster(), g.environment(), OrDash(g.provider()), OrDash(g.region()),
                      g.lifecycle(), absl::StrCat(g.nodes_running()), Usd(g.hourly_usd()),
                      Usd(g.today_usd()), Usd(g.month_to_date_usd()), Usd(g.forecast_usd()),
                      absl::StrCat(g.unpriced_nodes())});
  }
  absl::StrAppend(&out, Table(groups), "\n");
  std::vector<std::vector<std::string>> transfer = {
      {"TRANSFER", "TODAY", "MONTH", "COST-TODAY", "COST-MONTH", "FORECAST"}};
  for (const auto& t : r.transfer()) {
    transfer.push_back({t.transfer_class(), Bytes(t.bytes_today()), Bytes(t.bytes_month()),
                        Usd(t.usd_today()), Usd(t.usd_month()), Usd(t.usd_forecast())});
  }
  absl::StrAppend(&out, Table(transfer), "\n");
  const auto& s = r.spot();
  absl::StrAppend(
      &out, absl::StrFormat("Spot this month: spent %s instead of %s on demand: saved %s gross, %s "
                            "(%.1f%%) after %.1f fallback on-demand node-hours (%s extra); %d "
                            "reclaim(s), fallback share %.1f%%\n",
                            Usd(s.spot_usd_month()), Usd(s.on_demand_equivalent_usd()),
                            Usd(s.gross_savings_usd()), Usd(s.effective_savings_usd()),
                            s.effective_savings_pct(), s.fallback_node_hours(),
                            Usd(s.fallback_extra_usd()), s.interruptions_month(),
                            100 * s.on_demand_fallback_share()));
  if (r.namespaces_size() > 0) {
    std::vector<std::vector<std::string>> ns = {{"NAMESPACE", "BILLABLE-EGRESS", "COST-MONTH"}};
    for (const auto& n : r.namespaces()) {
      ns.push_back({n.namespace_(), Bytes(n.egress_bytes_month()), Usd(n.usd_month())});
    }
    absl::StrAppend(&out, "\n", Table(ns));
  }
  if (r.nodes_size() > 0) {
    std::vector<std::vector<std::string>> nodes = {
        {"NODE", "REGION", "INSTANCE-TYPE", "LIFECYCLE", "RUNNING", "PER-HOUR", "LIVES",
         "STOPPED-H", "MONTH", "TRANSFER-MONTH"}};
    for (const auto& n : r.nodes()) {
      nodes.push_back({n.node(), OrDash(n.region()), OrDash(n.instance_type()), n.lifecycle(),
                       n.running() ? "yes" : "no", n.priced() ? Usd(n.hourly_usd()) : "unpriced",
                       absl::StrCat(n.lives()), absl::StrFormat("%.1f", n.stopped_hours_month()),
                       Usd(n.month_to_date_usd()), Usd(n.transfer_usd_month())});
    }
    absl::StrAppend(&out, "\n", Table(nodes));
  }
  if (r.lives_size() > 0) {
    std::vector<std::vector<std::string>> lives = {
        {"NODE", "INSTANCE", "INSTANCE-TYPE", "LIFECYCLE", "FROM", "TO", "ENDED", "HOURS", "COST",
         "STOPPED-H", "DISKS-WHILE-STOPPED"}};
    for (const auto& l : r.lives()) {
      lives.push_back({l.node(), OrDash(l.instance_id()), OrDash(l.instance_type()), l.lifecycle(),
                       FormatTime(l.start_unix_ms()),
                       l.end_unix_ms() == 0 ? "running" : FormatTime(l.end_unix_ms()),
                       OrDash(l.ended()), absl::StrFormat("%.1f", l.hours_month()),
                       l.priced() ? Usd(l.usd_month()) : "unpriced",
                       absl::StrFormat("%.1f", l.stopped_hours_month()),
                       Usd(l.storage_usd_month())});
    }
    absl::StrAppend(&out, "\nLives this month:\n", Table(lives));
  }
  return out;
}

std::string AlertsTable(const nodewatch::v1::ListAlertsResponse& response, int64_t now_ms) {
  std::vector<std::vector<std::string>> rows = {
      {"RULE", "SUBJECT", "STATE", "SINCE", "VALUE", "THRESHOLD", "SENT", "MESSAGE"}};
  for (const auto& a : response.alerts()) {
    const int64_t since = a.state() == "firing"     ? a.fired_unix_ms()
                          : a.state() == "resolved" ? a.resolved_unix_ms()
                                                    : a.active_since_unix_ms();
    rows.push_back({a.rule(), a.subject(), a.state(), FormatAge(since, now_ms),
                    absl::StrFormat("%.4g", a.value()), absl::StrFormat("%.4g", a.threshold()),
                    absl::StrCat(a.notifications()), a.message()});
  }
  return Table(rows);
}

std::string ToJson(const google::protobuf::Message& message) {
  std::string out;
  google::protobuf::util::JsonPrintOptions options;
  // One JSON style across nodewatch (the HTTP API prints the same): lowerCamelCase names, as
  // kubectl, and zero values printed so a script sees every field.
  options.always_print_primitive_fields = true;
  (void)google::protobuf::util::MessageToJsonString(message, &out, options);
  return out;
}

}  // namespace nodewatch::cli
