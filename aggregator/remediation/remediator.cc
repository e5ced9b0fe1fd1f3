#include "aggregator/remediation/remediator.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/logging.h"

namespace nodewatch::aggregator {
namespace {

using nodewatch::internal::DrainJournalEntry;
using nodewatch::v1::InterruptionKind;
using nodewatch::v1::InterruptionNotice;

constexpr char kJournalPrefix[] = "drain/";
constexpr char kExcludeLbLabel[] = "node.kubernetes.io/exclude-from-external-load-balancers";
constexpr char kComponent[] = "nodewatch";

const std::vector<std::pair<InterruptionKind, std::string>>& Kinds() {
  static const auto* kinds = new std::vector<std::pair<InterruptionKind, std::string>>{
      {nodewatch::v1::INTERRUPTION_KIND_SPOT_TERMINATE, "spot-terminate"},
      {nodewatch::v1::INTERRUPTION_KIND_SPOT_STOP, "spot-stop"},
      {nodewatch::v1::INTERRUPTION_KIND_SPOT_HIBERNATE, "spot-hibernate"},
      {nodewatch::v1::INTERRUPTION_KIND_REBALANCE, "rebalance"},
      {nodewatch::v1::INTERRUPTION_KIND_SCHEDULED_MAINTENANCE, "scheduled-maintenance"},
      {nodewatch::v1::INTERRUPTION_KIND_TERMINATE, "terminate"},
      {nodewatch::v1::INTERRUPTION_KIND_REBOOT, "reboot"},
      {nodewatch::v1::INTERRUPTION_KIND_REDEPLOY, "redeploy"},
      {nodewatch::v1::INTERRUPTION_KIND_FREEZE, "freeze"},
  };
  return *kinds;
}

// Kinds announced ahead with a window: act at NotBefore - lead, drain against NotBefore.
bool IsScheduled(InterruptionKind k) {
  return k == nodewatch::v1::INTERRUPTION_KIND_SCHEDULED_MAINTENANCE ||
         k == nodewatch::v1::INTERRUPTION_KIND_REBOOT ||
         k == nodewatch::v1::INTERRUPTION_KIND_REDEPLOY;
}

int64_t DrainDeadline(const InterruptionNotice& n) {
  if (IsScheduled(n.kind()) && n.not_before_unix_ms() > 0) return n.not_before_unix_ms();
  return n.deadline_unix_ms();
}

std::string JournalKey(const std::string& node, const InterruptionNotice& n) {
  return absl::StrCat(kJournalPrefix, node, "/", n.provider(), "/", n.event_id());
}

std::string Seconds(int64_t ms) { return absl::StrCat(ms / 1000, ".", (ms % 1000) / 100, "s"); }

}  // namespace

std::string KindSlug(InterruptionKind kind) {
  for (const auto& [k, slug] : Kinds()) {
    if (k == kind) return slug;
  }
  return "unknown";
}

absl::StatusOr<std::map<InterruptionKind, std::string>> ParsePolicies(
    const std::vector<std::string>& overrides) {
  std::map<InterruptionKind, std::string> policies = {
      {nodewatch::v1::INTERRUPTION_KIND_SPOT_TERMINATE, "drain"},
      {nodewatch::v1::INTERRUPTION_KIND_SPOT_STOP, "drain"},
      {nodewatch::v1::INTERRUPTION_KIND_SPOT_HIBERNATE, "drain"},
      {nodewatch::v1::INTERRUPTION_KIND_REBALANCE, "taint"},
      {nodewatch::v1::INTERRUPTION_KIND_SCHEDULED_MAINTENANCE, "drain"},
      {nodewatch::v1::INTERRUPTION_KIND_TERMINATE, "drain"},
      {nodewatch::v1::INTERRUPTION_KIND_REBOOT, "drain"},
      {nodewatch::v1::INTERRUPTION_KIND_REDEPLOY, "drain"},
      {nodewatch::v1::INTERRUPTION_KIND_FREEZE, "none"},
  };
  for (const auto& entry : overrides) {
    std::pair<std::string, std::string> kv = absl::StrSplit(entry, absl::MaxSplits('=', 1));
    auto it = std::find_if(Kinds().begin(), Kinds().end(),
                           [&](const auto& k) { return k.second == kv.first; });
    if (it == Kinds().end()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "config key 'policy': unknown kind in '", entry,
          "' (want one of spot-terminate, "
          "spot-stop, spot-hibernate, rebalance, scheduled-maintenance, terminate, reboot, "
          "redeploy, freeze)"));
    }
    if (kv.second != "drain" && kv.second != "cordon" && kv.second != "taint" &&
        kv.second != "none") {
      return absl::InvalidArgumentError(absl::StrCat("config key 'policy': unknown action in '",
                                                     entry,
                                                     "' (want drain, cordon, taint or none)"));
    }
    policies[it->first] = kv.second;
  }
  return policies;
}

Remediator::Remediator(Deps deps, RemediationConfig config,
                       std::map<InterruptionKind, std::string> policies)
    : deps_(std::move(deps)),
      config_(std::move(config)),
      policies_(std::move(policies)),
      identity_(config_.identity.empty() ? MakeLeaderIdentity() : config_.identity),
      drainer_(*deps_.api, *deps_.clock) {}

Remediator::~Remediator() { Stop(); }

absl::Status Remediator::Start() {
  auto log = GetLogger("agg.remediation");
  // The journal, then any stored notice of the last day it does not know (a crash between the
  // notice's commit and its journal entry).
  absl::Status scanned =
      deps_.store->ScanState(kJournalPrefix, [&](const std::string& key, const std::string& value) {
        Entry entry;
        entry.key = key;
        if (!entry.journal.ParseFromString(value)) {
          log->error("drain journal entry '{}' does not parse; ignored", key);
          return true;
        }
        entries_[key] = std::move(entry);
        return true;
      });
  if (!scanned.ok()) return scanned;
  const int64_t now = deps_.clock->NowUnixMs();
  std::vector<std::pair<std::string, InterruptionNotice>> missed;
  absl::Status recovered = deps_.store->ScanInterruptions(
      now - 24 * 3600 * 1000LL, now + 24 * 3600 * 1000LL,
      [&](uint32_t node_id, int64_t, const nodewatch::v1::Record& r) {
        auto node = deps_.engine->NodeName(node_id);
        if (node && !entries_.count(JournalKey(*node, r.interruption()))) {
          missed.emplace_back(*node, r.interruption());
        }
        return true;
      });
  if (!recovered.ok()) return recovered;
  for (auto& [node, notice] : missed) inbox_.emplace_back(node, notice);
  size_t open = 0;
  for (const auto& [key, e] : entries_)
    open += e.journal.phase() == "pending" || e.journal.phase() == "acting";
  log->info("remediation: {} journal entries ({} unfinished), {} notices recovered; identity {}{}",
            entries_.size(), open, missed.size(), identity_, config_.dry_run ? "; DRY RUN" : "");

  WebhookOptions webhook{.url = config_.webhook_url,
                         .headers = config_.webhook_headers,
                         .timeout_ms = config_.webhook_timeout_ms,
                         .retries = static_cast<int>(config_.webhook_retries)};
  if (!config_.webhook_template.empty()) webhook.body_template = config_.webhook_template;
  webhook_ = std::make_unique<Webhook>(std::move(webhook));
  if (config_.leader_elect) {
    elector_ = std::make_unique<LeaderElector>(
        *deps_.api, *deps_.clock,
        LeaderElectionOptions{.ns = config_.lease_namespace,
                              .name = config_.lease_name,
                              .identity = identity_,
                              .lease_duration_ms = config_.lease_duration_ms,
                              .renew_deadline_ms = config_.lease_renew_deadline_ms,
                              .retry_period_ms = config_.lease_retry_period_ms},
        [this](bool) { cv_.notify_all(); });
    elector_->Start();
  }
  events_thread_ = std::thread([this] { EventLoop(); });
  scheduler_ = std::thread([this] { SchedulerLoop(); });
  return absl::OkStatus();
}

void Remediator::Stop() {
  if (stopping_.exchange(true)) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
    cv_.notify_all();
  }
  if (scheduler_.joinable()) scheduler_.join();
  std::map<std::string, std::thread> workers;
  {
    std::lock_guard<std::mutex> lock(mu_);
    workers.swap(workers_);
  }
  for (auto& [key, t] : workers) {
    if (t.joinable()) t.join();  // drains see MayAct() == false and return promptly
  }
  {
    std::lock_guard<std::mutex> lock(events_mu_);
    events_stop_ = true;
    events_cv_.notify_all();
  }
  if (events_thread_.joinable()) events_thread_.join();
  if (elector_) elector_->Stop();
  webhook_.reset();
}

bool Remediator::MayAct() const {
  return !stopping_.load() && (elector_ == nullptr || elector_->IsLeader());
}

bool Remediator::IsLeader() const { return elector_ == nullptr || elector_->IsLeader(); }

void Remediator::OnNotice(const std::string& node, const InterruptionNotice& notice) {
  ++counters_.notices;
  std::lock_guard<std::mutex> lock(mu_);
  inbox_.emplace_back(node, notice);
  cv_.notify_all();
}

void Remediator::Journal(Entry& entry) {
  entry.journal.set_updated_unix_ms(deps_.clock->NowUnixMs());
  if (auto s = deps_.store->PutState(entry.key, entry.journal.SerializeAsString()); !s.ok()) {
    GetLogger("agg.remediation")->error("drain journal write failed: {}", s);
  }
}

void Remediator::SchedulerLoop() {
  auto log = GetLogger("agg.remediation");
  std::unique_lock<std::mutex> lock(mu_);
  while (!stop_) {
    const int64_t now = deps_.clock->NowUnixMs();
    // New entries are journaled after their action is launched: the notice itself is already
    // durable (the start-up recovery re-creates a lost entry), and a synced write must not
    // delay the cordon.
    std::vector<std::string> unsaved;
    while (!inbox_.empty()) {
      auto [node, notice] = std::move(inbox_.front());
      inbox_.pop_front();
      const std::string key = JournalKey(node, notice);
      auto it = entries_.find(key);
      if (notice.state() == nodewatch::v1::NOTICE_STATE_CANCELED) {
        if (it == entries_.end()) continue;  // never acted on: nothing to undo
        it->second.journal.set_canceled(true);
        it->second.cancel->store(true);
        Journal(it->second);
        log->info("node {}: {} event {} canceled; undoing", node, notice.provider(),
                  notice.event_id());
        continue;
      }
      if (notice.state() == nodewatch::v1::NOTICE_STATE_COMPLETED) {
        if (it != entries_.end() && it->second.journal.phase() == "pending") {
          it->second.journal.set_phase("done");
          it->second.journal.set_outcome("the event completed before its action was due");
          Journal(it->second);
        }
        continue;
      }
      if (it != entries_.end()) {
        // The same event again (new NotBefore, longer deadline): refresh what is not acted on.
        auto& j = it->second.journal;
        if (j.phase() == "pending") {
          *j.mutable_notice() = notice;
          if (IsScheduled(notice.kind()) && notice.not_before_unix_ms() > 0) {
            j.set_act_at_unix_ms(notice.not_before_unix_ms() - config_.maintenance_lead_ms);
          }
          Journal(it->second);
        }
        continue;
      }
      Entry entry;
      entry.key = key;
      auto& j = entry.journal;
      j.set_node(node);
      *j.mutable_notice() = notice;
      j.set_received_unix_ms(now);
      j.set_act_at_unix_ms(IsScheduled(notice.kind()) && notice.not_before_unix_ms() > 0
                               ? notice.not_before_unix_ms() - config_.maintenance_lead_ms
                               : now);
      if (PolicyFor(notice.kind()) == "none") {
        j.set_phase("done");
        j.set_outcome("policy none: recorded only");
      } else {
        j.set_phase("pending");
      }
      entries_[key] = std::move(entry);
      unsaved.push_back(key);
    }
    PruneJournal(now);
    if (MayAct()) {
      for (auto& [key, entry] : entries_) {
        if (entry.running) continue;
        auto& j = entry.journal;
        const bool acted = j.cordoned() || j.tainted() || j.labelled();
        if (j.canceled() && j.phase() != "undone") {
          if (acted) {
            Launch(entry, /*undo=*/true);
          } else {
            j.set_phase("undone");
            j.set_outcome("canceled before any action");
            Journal(entry);
          }
        } else if (j.phase() == "pending" && now >= j.act_at_unix_ms()) {
          const int64_t deadline = DrainDeadline(j.notice());
          if (deadline > 0 && now >= deadline) {
            j.set_phase("expired");
            j.set_outcome("deadline passed before any replica could act");
            ++counters_.expired;
            Journal(entry);
            Step(j, "failed", j.outcome());
            continue;
          }
          Launch(entry, /*undo=*/false);
        } else if (j.phase() == "acting") {
          Launch(entry, /*undo=*/false);  // resumed: a restart or a new leader
        } else if (j.phase() == "done" && j.clear_at_unix_ms() > 0 && now >= j.clear_at_unix_ms()) {
          Launch(entry, /*undo=*/true);
        }
      }
    }
    for (const auto& key : unsaved) Journal(entries_[key]);
    cv_.wait_for(lock, std::chrono::milliseconds(100));
    for (auto it = workers_.begin(); it != workers_.end();) {
      if (!entries_[it->first].running) {
        it->second.join();  // it has released mu_ for good
        it = workers_.erase(it);
      } else {
        ++it;
      }
    }
  }
}

void Remediator::PruneJournal(int64_t now) {
  // Finished entries are kept two days (the start-up recovery looks back one), then forgotten.
  constexpr int64_t kKeepMs = 48 * 3600 * 1000LL;
  for (auto it = entries_.begin(); it != entries_.end();) {
    const auto& j = it->second.journal;
    const bool final = j.phase() == "undone" || j.phase() == "expired" ||
                       (j.phase() == "done" && j.clear_at_unix_ms() == 0);
    if (final && !it->second.running && !workers_.count(it->first) &&
        now - j.updated_unix_ms() > kKeepMs) {
      if (auto s = deps_.store->DeleteState(it->first); !s.ok()) {
        GetLogger("agg.remediation")->warn("drain journal: {}", s);
        ++it;
        continue;
      }
      it = entries_.erase(it);
    } else {
      ++it;
    }
  }
}

const std::string& Remediator::PolicyFor(InterruptionKind kind) const {
  static const std::string kNone = "none";
  auto it = policies_.find(kind);
  return it == policies_.end() ? kNone : it->second;
}

void Remediator::Launch(Entry& entry, bool undo) {
  entry.running = true;
  if (workers_.count(entry.key)) workers_[entry.key].join();  // finished, not yet reaped
  DrainJournalEntry journal = entry.journal;
  std::string key = entry.key;
  auto cancel = entry.cancel;
  workers_[key] = std::thread([this, key, journal, cancel, undo] {
    if (undo) {
      Undo(key, journal);  // a cancellation, or a rebalance whose TTL passed
    } else {
      Act(key, journal, cancel);
    }
    std::lock_guard<std::mutex> lock(mu_);
    entries_[key].running = false;
    cv_.notify_all();
  });
}

// Writes a worker's copy back, keeping a cancellation that arrived meanwhile.
void Remediator::Finish(const std::string& key, const DrainJournalEntry& journal) {
  std::lock_guard<std::mutex> lock(mu_);
  Entry& entry = entries_[key];
  const bool canceled = entry.journal.canceled();
  entry.journal = journal;
  if (canceled) entry.journal.set_canceled(true);
  Journal(entry);
}

Remediator::Series& Remediator::SeriesFor(const std::string& provider, const std::string& kind) {
  std::lock_guard<std::mutex> lock(series_mu_);
  auto& slot = series_[{provider, kind}];
  if (!slot) slot = std::make_unique<Series>();
  return *slot;
}

void Remediator::Act(const std::string& key, DrainJournalEntry j,
                     std::shared_ptr<std::atomic<bool>> cancel) {
  auto log = GetLogger("agg.remediation");
  const InterruptionNotice& n = j.notice();
  const std::string& node = j.node();
  const std::string kind = KindSlug(n.kind());
  const std::string policy = PolicyFor(n.kind());
  const int64_t deadline = DrainDeadline(n);
  if (!MayAct()) return;
  const bool resumed = j.phase() == "acting";
  // Persisted with the first result: a crash before it re-runs these idempotent steps.
  j.set_phase("acting");
  ++counters_.actions_started;
  const bool hard = policy == "drain" || policy == "cordon";
  const bool cordon = !config_.dry_run && (hard || config_.rebalance_cordon);
  const std::string left =
      deadline > 0 ? Seconds(deadline - deps_.clock->NowUnixMs()) + " before the deadline"
                   : "no deadline";
  const std::string plan = policy == "drain"          ? "cordon, taint and drain"
                           : policy == "cordon"       ? "cordon and taint"
                           : config_.rebalance_cordon ? "taint PreferNoSchedule and cordon"
                                                      : "taint PreferNoSchedule";
  if (!resumed) {
    Step(j, "planned", absl::StrCat(plan, " (", left, ")"));  // queued, not waited for
    Notify(j, "notice", absl::StrCat("will ", plan, " (", left, ")"));
  }
  // The cordon is the first request: no journal write or lookup waits in front of it.
  nlohmann::json node_obj;
  absl::StatusOr<bool> cordoned = false;
  if (cordon) {
    cordoned = deps_.api->SetUnschedulable(node, true, &node_obj);
  } else if (auto got = deps_.api->GetNode(node); got.ok()) {
    node_obj = std::move(*got);
  } else {
    cordoned = got.status();
  }
  if (!cordoned.ok()) {
    if (absl::IsNotFound(cordoned.status())) {
      ++counters_.unknown_nodes;
      log->warn("node {}: not in the cluster; nothing to cordon or drain", node);
      j.set_phase("done");
      j.set_outcome("node not found in the cluster");
      Step(j, "skipped", j.outcome());
      Finish(key, j);
    } else {
      ++counters_.api_errors;
      log->warn("node {}: {}; retrying", node, cordoned.status());
      Finish(key, j);
      std::this_thread::sleep_for(std::chrono::seconds(1));  // the scheduler relaunches it
    }
    return;
  }
  std::string uid;
  try {
    uid = node_obj.at("metadata").value("uid", "");
  } catch (const nlohmann::json::exception&) {
    // Events are then recorded without the uid; nothing else needs it.
  }
  if (!resumed) {
    Event(j, uid, "Warning", "InterruptionNotice",
          absl::StrCat(n.provider(), " ", kind, " notice ", n.event_id(), ": will ", plan, " (",
                       left, ")"));
  }
  if (cordon) {
    if (!j.cordoned() && !resumed) {
      const int64_t took = deps_.clock->NowUnixMs() - j.received_unix_ms();
      SeriesFor(n.provider(), kind).notice_to_cordon.Observe(static_cast<double>(took) / 1000);
      log->info("node {}: cordoned {} ms after the notice arrived", node, took);
    }
    j.set_cordoned(j.cordoned() || *cordoned);
    Step(j, "cordoned", *cordoned ? "" : "was already unschedulable");
  }
  if (config_.dry_run) {
    auto planned = drainer_.Drain(node, {.deadline_unix_ms = deadline, .dry_run = true}, *cancel,
                                  [] { return true; });
    std::string pods = planned.ok() ? absl::StrJoin(planned->planned_pods, ", ")
                                    : std::string(planned.status().message());
    log->info("DRY RUN node {}: would {} {}; pods: {}", node, plan, n.event_id(), pods);
    Step(j, "planned",
         absl::StrCat("dry run: would evict ", planned.ok() ? planned->planned_pods.size() : 0,
                      " pod(s): ", pods));
    j.set_phase("done");
    j.set_outcome("dry run");
    Finish(key, j);
    return;
  }
  auto fail = [&](const absl::Status& s) {
    ++counters_.api_errors;
    log->warn("node {}: {} (will retry)", node, s);
    Event(j, uid, "Warning", "RemediationError", std::string(s.message()));
    Finish(key, j);  // stays "acting"; the scheduler retries
    std::this_thread::sleep_for(std::chrono::seconds(1));
  };
  if (!MayAct()) return;
  const std::string effect = hard ? "NoSchedule" : "PreferNoSchedule";
  auto tainted = deps_.api->PutTaint(node, {config_.taint_key, kind, effect});
  if (!tainted.ok()) return fail(tainted.status());
  j.set_tainted(j.tainted() || *tainted);
  Step(j, "tainted", absl::StrCat(config_.taint_key, "=", kind, ":", effect));
  if (hard && config_.exclude_from_load_balancers) {
    auto labelled = deps_.api->SetLabel(node, kExcludeLbLabel, std::string(kComponent));
    if (!labelled.ok()) return fail(labelled.status());
    j.set_labelled(j.labelled() || *labelled);
  }
  Finish(key, j);
  Event(j, uid, "Normal", hard ? "Cordoned" : "Tainted",
        absl::StrCat(hard ? "cordoned and tainted " : "tainted ", config_.taint_key, "=", kind, ":",
                     effect));
  if (!hard) {
    j.set_clear_at_unix_ms(deps_.clock->NowUnixMs() + config_.rebalance_ttl_ms);
    j.set_phase("done");
    j.set_outcome("tainted until the TTL");
    Finish(key, j);
    return;
  }
  if (policy == "drain") {
    Step(j, "drain-started", left);
    const int64_t started = deps_.clock->NowUnixMs();
    auto report = drainer_.Drain(node,
                                 {.deadline_unix_ms = deadline,
                                  .margin_ms = config_.drain_margin_ms,
                                  .pdb_retry_ms = config_.pdb_retry_ms,
                                  .poll_ms = config_.drain_poll_ms,
                                  .max_drain_ms = config_.drain_without_deadline_ms},
                                 *cancel, [this] { return MayAct(); });
    if (!report.ok()) return fail(report.status());
    if (report->interrupted) return;  // canceled (the scheduler undoes) or no longer leader
    const int64_t now = deps_.clock->NowUnixMs();
    auto& h = SeriesFor(n.provider(), kind);
    h.pods_evicted += static_cast<uint64_t>(report->evicted);
    h.pods_force_deleted += static_cast<uint64_t>(report->force_deleted);
    h.pods_blocked_by_pdb += static_cast<uint64_t>(report->pdb_blocked);
    h.pods_remaining += static_cast<uint64_t>(report->remaining);
    ++(report->complete ? h.drains_complete : h.drains_incomplete);
    h.cordon_to_drained.Observe(static_cast<double>(now - started) / 1000);
    if (deadline > 0) h.deadline_slack.Observe(static_cast<double>(deadline - now) / 1000);
    std::string summary = absl::StrCat(
        report->complete ? "drained" : "drain incomplete", " in ", Seconds(now - started),
        deadline > 0 ? absl::StrCat(", ", Seconds(deadline - now), " before the deadline") : "",
        ": ", report->evicted, " evicted, ", report->force_deleted, " force-deleted, ",
        report->pdb_blocked, " blocked by a PDB, ", report->remaining, " still running");
    if (!report->remaining_pods.empty()) {
      absl::StrAppend(&summary, " (", absl::StrJoin(report->remaining_pods, ", "), ")");
    }
    if (!report->errors.empty()) absl::StrAppend(&summary, "; ", report->errors.front());
    log->info("node {}: {}", node, summary);
    Step(j, report->complete ? "drained" : "drain-incomplete", summary, &*report);
    Event(j, uid, report->complete ? "Normal" : "Warning",
          report->complete ? "Drained" : "DrainIncomplete", summary);
    Notify(j, report->complete ? "drained" : "drain-incomplete", summary);
    j.set_outcome(summary);
  }
  if (n.provider() == "azure" && !j.acknowledged() && deps_.send_command) {
    // Scheduled Events: approving the event lets Azure proceed now instead of at NotBefore.
    nodewatch::v1::Command command;
    command.set_id(absl::StrCat("ack-", n.event_id()));
    command.mutable_acknowledge_scheduled_event()->set_provider(n.provider());
    command.mutable_acknowledge_scheduled_event()->set_event_id(n.event_id());
    const int streams = deps_.send_command(node, command);
    j.set_acknowledged(streams > 0);
    if (streams > 0) ++counters_.acknowledgements;
    Step(j, "acknowledged",
         streams > 0 ? absl::StrCat("asked the agent to approve event ", n.event_id())
                     : "the agent is not connected; Azure proceeds at NotBefore");
  }
  j.set_phase("done");
  Finish(key, j);
}

void Remediator::Undo(const std::string& key, DrainJournalEntry j) {
  auto log = GetLogger("agg.remediation");
  const std::string& node = j.node();
  const std::string kind = KindSlug(j.notice().kind());
  std::vector<std::string> done;
  bool others_hold_cordon = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [other_key, e] : entries_) {
      if (other_key != key && e.journal.node() == node && e.journal.cordoned() &&
          !e.journal.canceled() && (e.journal.phase() == "acting" || e.journal.phase() == "done")) {
        others_hold_cordon = true;  // e.g. a spot notice after a canceled maintenance
      }
    }
  }
  if (!MayAct()) return;
  // A failed step leaves the entry as it is; the scheduler runs the undo again (NotFound: the
  // node is gone, nothing left to undo there).
  auto undone = [&](const absl::StatusOr<bool>& result) {
    if (result.ok() || absl::IsNotFound(result.status())) return true;
    ++counters_.api_errors;
    log->warn("node {}: undo: {}", node, result.status());
    std::this_thread::sleep_for(std::chrono::seconds(1));
    return false;
  };
  if (j.tainted()) {
    const std::string effect =
        PolicyFor(j.notice().kind()) == "taint" ? "PreferNoSchedule" : "NoSchedule";
    if (!undone(deps_.api->RemoveTaint(node, config_.taint_key, effect))) return;
    j.set_tainted(false);
    done.push_back("removed the taint");
  }
  if (j.labelled()) {
    if (!undone(deps_.api->SetLabel(node, kExcludeLbLabel, std::nullopt))) return;
    j.set_labelled(false);
    done.push_back("removed the load-balancer exclusion");
  }
  if (j.cordoned() && !others_hold_cordon) {
    if (!undone(deps_.api->SetUnschedulable(node, false))) return;
    j.set_cordoned(false);
    done.push_back("uncordoned");
  }
  const bool cleared = !j.canceled();
  j.set_phase(cleared ? "done" : "undone");
  j.set_clear_at_unix_ms(0);
  std::string message = absl::StrCat(cleared ? "rebalance TTL passed: " : "notice canceled: ",
                                     done.empty() ? "nothing to undo" : absl::StrJoin(done, ", "));
  j.set_outcome(message);
  if (!cleared) ++counters_.undone;
  Step(j, cleared ? "cleared" : "undone", message);
  Event(j, "", "Normal", cleared ? "InterruptionCleared" : "InterruptionCanceled", message);
  Notify(j, cleared ? "cleared" : "undone", message);
  log->info("node {}: {} {} {}", node, kind, j.notice().event_id(), message);
  Finish(key, j);
}

void Remediator::Step(const DrainJournalEntry& j, const std::string& action,
                      const std::string& message, const DrainReport* report) {
  nodewatch::v1::Record record;
  record.set_time_unix_ms(deps_.clock->NowUnixMs());
  auto* step = record.mutable_remediation();
  step->set_provider(j.notice().provider());
  step->set_kind(j.notice().kind());
  step->set_event_id(j.notice().event_id());
  step->set_action(action);
  step->set_message(message);
  step->set_deadline_unix_ms(DrainDeadline(j.notice()));
  step->set_dry_run(config_.dry_run);
  step->set_actor(identity_);
  if (report != nullptr) {
    step->set_pods_evicted(static_cast<uint32_t>(report->evicted));
    step->set_pods_force_deleted(static_cast<uint32_t>(report->force_deleted));
    step->set_pods_remaining(static_cast<uint32_t>(report->remaining));
    step->set_pods_blocked_by_pdb(static_cast<uint32_t>(report->pdb_blocked));
  }
  deps_.engine->SubmitLocalRecord(j.node(), std::move(record), [](absl::StatusOr<uint64_t>) {});
}

void Remediator::Event(const DrainJournalEntry& j, const std::string& node_uid,
                       const std::string& type, const std::string& reason,
                       const std::string& message) {
  if (config_.dry_run) return;  // a dry run changes nothing in the cluster, Events included
  // Posted from their own thread, in order: an Event must never delay a cordon or an eviction.
  std::lock_guard<std::mutex> lock(events_mu_);
  if (events_.size() >= 10'000) return;
  events_.push_back([this, node = j.node(), node_uid, type, reason, message] {
    auto s = deps_.api->RecordNodeEvent(node, node_uid, type, reason, message, kComponent);
    if (!s.ok()) GetLogger("agg.remediation")->warn("node {}: event {}: {}", node, reason, s);
  });
  events_cv_.notify_one();
}

void Remediator::EventLoop() {
  std::unique_lock<std::mutex> lock(events_mu_);
  while (true) {
    events_cv_.wait(lock, [&] { return events_stop_ || !events_.empty(); });
    if (events_.empty()) return;  // stopping, and everything queued was posted
    auto post = std::move(events_.front());
    events_.pop_front();
    lock.unlock();
    post();
    lock.lock();
  }
}

void Remediator::Notify(const DrainJournalEntry& j, const std::string& action,
                        const std::string& message) {
  if (!webhook_ || !webhook_->enabled()) return;
  const auto& n = j.notice();
  const std::string deadline = DrainDeadline(n) > 0 ? KubeTime(DrainDeadline(n)) : "unknown";
  webhook_->Send({{"node", j.node()},
                  {"provider", n.provider()},
                  {"kind", KindSlug(n.kind())},
                  {"event_id", n.event_id()},
                  {"deadline", deadline},
                  {"action", action},
                  {"message", message},
                  {"text", absl::StrCat(config_.dry_run ? "[dry run] " : "", ":warning: node ",
                                        j.node(), ": ", n.provider(), " ", KindSlug(n.kind()),
                                        " (deadline ", deadline, "): ", action, ": ", message)}});
}

void Remediator::CollectMetrics(MetricFamilies& f) const {
  auto d = [](uint64_t v) { return static_cast<double>(v); };
  const auto& c = counters_;
  f.Gauge("nodewatch_remediation_leader", "1 if this replica holds the Lease and may act.",
          IsLeader() ? 1 : 0);
  f.Counter("nodewatch_remediation_notices_total", "Interruption notices handed to remediation.",
            d(c.notices));
  f.Counter("nodewatch_remediation_undone_total", "Canceled notices whose actions were undone.",
            d(c.undone));
  f.Counter("nodewatch_remediation_unknown_nodes_total",
            "Notices for nodes the Kubernetes API does not know.", d(c.unknown_nodes));
  f.Counter("nodewatch_remediation_api_errors_total",
            "Kubernetes API errors during remediation (retried).", d(c.api_errors));
  f.Counter("nodewatch_remediation_expired_total",
            "Notices whose deadline passed before any replica could act.", d(c.expired));
  f.Counter("nodewatch_remediation_acknowledgements_total",
            "Azure scheduled events approved after the drain.", d(c.acknowledgements));
  if (webhook_) {
    const auto& w = webhook_->counters();
    f.Counter("nodewatch_webhook_deliveries_total", "Webhook messages, by result.", d(w.sent),
              {{"result", "sent"}});
    f.Counter("nodewatch_webhook_deliveries_total", "Webhook messages, by result.", d(w.failed),
              {{"result", "failed"}});
    f.Counter("nodewatch_webhook_deliveries_total", "Webhook messages, by result.", d(w.dropped),
              {{"result", "dropped"}});
  }
  std::lock_guard<std::mutex> lock(series_mu_);
  auto labels = [](const auto& key) {
    return MetricFamilies::Labels{{"provider", key.first}, {"kind", key.second}};
  };
  struct CounterSpec {
    const char* name;
    const char* help;
    std::atomic<uint64_t> Series::*value;
    const char* result;  // the `result` label, or nullptr
  };
  const CounterSpec counters[] = {
      {"nodewatch_remediation_drains_total", "Drains finished, by result.",
       &Series::drains_complete, "complete"},
      {"nodewatch_remediation_drains_total", "Drains finished, by result.",
       &Series::drains_incomplete, "incomplete"},
      {"nodewatch_remediation_pods_evicted_total", "Pods evicted and gone.", &Series::pods_evicted,
       nullptr},
      {"nodewatch_remediation_pods_force_deleted_total",
       "Pods deleted with a grace clamped to the deadline (PDB-blocked or grace too long).",
       &Series::pods_force_deleted, nullptr},
      {"nodewatch_remediation_pods_remaining_at_deadline_total",
       "Evictable pods still running when a drain reached its deadline.", &Series::pods_remaining,
       nullptr},
      {"nodewatch_remediation_evictions_blocked_by_pdb_total",
       "Pods whose eviction a PodDisruptionBudget refused at least once.",
       &Series::pods_blocked_by_pdb, nullptr},
  };
  for (const auto& spec : counters) {
    for (const auto& [key, series] : series_) {
      auto l = labels(key);
      if (spec.result != nullptr) l["result"] = spec.result;
      f.Counter(spec.name, spec.help, d(((*series).*(spec.value)).load()), l);
    }
  }
  const char* names[3][2] = {{"nodewatch_remediation_notice_to_cordon_seconds",
                              "From the notice reaching the aggregator to the node cordoned."},
                             {"nodewatch_remediation_cordon_to_drained_seconds", "Drain duration."},
                             {"nodewatch_remediation_deadline_slack_seconds",
                              "Time left before the deadline when the drain ended."}};
  for (int i = 0; i < 3; ++i) {
    for (const auto& [key, series] : series_) {
      const HistogramData& data = i == 0   ? series->notice_to_cordon
                                  : i == 1 ? series->cordon_to_drained
                                           : series->deadline_slack;
      f.Histogram(names[i][0], names[i][1], data, labels(key));
    }
  }
}

}  // namespace nodewatch::aggregator
