#include "aggregator/remediation/remediator.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/logging.h"
#include "common/options.h"

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

constexpr char kConditionType[] = "InterruptionNotice";

// The condition's reason while a notice is active: the kind, CamelCase; scheduled kinds say so.
std::string ConditionReason(InterruptionKind kind) {
  switch (kind) {
    case nodewatch::v1::INTERRUPTION_KIND_SPOT_TERMINATE: return "SpotTerminate";
    case nodewatch::v1::INTERRUPTION_KIND_SPOT_STOP: return "SpotStop";
    case nodewatch::v1::INTERRUPTION_KIND_SPOT_HIBERNATE: return "SpotHibernate";
    case nodewatch::v1::INTERRUPTION_KIND_REBALANCE: return "RebalanceRecommendation";
    case nodewatch::v1::INTERRUPTION_KIND_SCHEDULED_MAINTENANCE: return "ScheduledMaintenance";
    case nodewatch::v1::INTERRUPTION_KIND_TERMINATE: return "Terminate";
    case nodewatch::v1::INTERRUPTION_KIND_REBOOT: return "ScheduledReboot";
    case nodewatch::v1::INTERRUPTION_KIND_REDEPLOY: return "ScheduledRedeploy";
    case nodewatch::v1::INTERRUPTION_KIND_FREEZE: return "ScheduledFreeze";
    default: return "Interruption";
  }
}

bool Final(const DrainJournalEntry& j) {
  return j.phase() == "undone" || j.phase() == "expired" || j.phase() == "returned";
}

// Whether the entry put any of its marks on the Node.
bool Marked(const DrainJournalEntry& j) {
  return j.cordoned() || j.tainted() || j.labelled() || j.condition_set();
}

// Whether the entry still holds anything on the Node (or may be about to).
bool Holds(const DrainJournalEntry& j) { return Marked(j) || j.phase() == "acting"; }

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

void Remediator::OnBoot(const IngestEngine::NodeBoot& boot) {
  std::lock_guard<std::mutex> lock(mu_);
  boots_.push_back(boot);
  cv_.notify_all();
}

void Remediator::ReturnEntries(const IngestEngine::NodeBoot& boot) {
  auto log = GetLogger("agg.remediation");
  for (auto& [key, entry] : entries_) {
    auto& j = entry.journal;
    if (j.node() != boot.node || !j.return_reason().empty() || Final(j)) continue;
    if (!j.notice().boot_id().empty() && j.notice().boot_id() == boot.boot_id) continue;
    const std::string& was = !j.notice().instance_id().empty() ? j.notice().instance_id()
                                                                : boot.previous_instance_id;
    const bool replaced = !boot.instance_id.empty() && !was.empty() && boot.instance_id != was;
    if (j.phase() == "pending") {
      // A scheduled event outlives a reboot of its instance, not the instance.
      if (!replaced) continue;
      j.set_phase("done");
      j.set_outcome(absl::StrCat("replaced by instance ", boot.instance_id,
                                 " before its action was due"));
      Journal(entry);
      continue;
    }
    if (!Holds(j)) continue;  // recorded only, node unknown, dry run: nothing to give back
    j.set_return_reason(replaced ? "replaced" : "returned");
    j.set_returned_unix_ms(boot.unix_ms);
    j.set_returned_boot_id(boot.boot_id);
    j.set_returned_instance_id(boot.instance_id);
    if (boot.previous_last_seen_unix_ms > 0) {
      j.set_downtime_ms(std::max<int64_t>(0, boot.unix_ms - boot.previous_last_seen_unix_ms));
    }
    entry.cancel->store(true);  // a drain of the old life still running stops
    Journal(entry);
    log->info("node {}: back with boot {}{} after {}; giving back what {} {} took", boot.node,
              boot.boot_id, replaced ? absl::StrCat(" on a new instance ", boot.instance_id) : "",
              FormatElapsed(j.downtime_ms()), j.notice().provider(), j.notice().event_id());
  }
}

Remediator::HeldByOthers Remediator::OthersHold(const std::string& key, const std::string& node,
                                                bool hard) {
  HeldByOthers held;
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& [other_key, e] : entries_) {
    const auto& o = e.journal;
    if (other_key == key || o.node() != node || o.canceled() || !o.return_reason().empty() ||
        (o.phase() != "acting" && o.phase() != "done")) {
      continue;
    }
    held.cordon = held.cordon || o.cordoned();
    held.taint = held.taint || (o.tainted() && (PolicyFor(o.notice().kind()) != "taint") == hard);
    held.label = held.label || o.labelled();
    held.condition = held.condition || o.condition_set();
  }
  return held;
}

absl::Status Remediator::SetCondition(const DrainJournalEntry& j, bool active,
                                      const std::string& reason, const std::string& message) {
  if (config_.dry_run) return absl::FailedPreconditionError("dry run");
  auto set = deps_.api->SetNodeCondition(j.node(), kConditionType, active ? "True" : "False",
                                         reason, message, deps_.clock->NowUnixMs());
  if (!set.ok() && !absl::IsNotFound(set.status())) {
    ++counters_.api_errors;
    GetLogger("agg.remediation")
        ->warn("node {}: condition {}={}: {}", j.node(), kConditionType, active, set.status());
  }
  return set.status();
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
        if (it == entries_.end()) continue;
        auto& j = it->second.journal;
        if (j.phase() == "pending") {
          j.set_phase("done");
          j.set_outcome("the event completed before its action was due");
          Journal(it->second);
        } else if (j.return_reason().empty() && !Final(j) && Holds(j)) {
          // The event is over and the node is still (or again) there: give it back.
          j.set_return_reason("completed");
          j.set_returned_unix_ms(now);
          j.set_returned_instance_id(j.notice().instance_id());
          it->second.cancel->store(true);
          Journal(it->second);
          log->info("node {}: {} event {} completed; giving back what it took", node,
                    notice.provider(), notice.event_id());
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
      const auto current = deps_.engine->GetNode(node);
      if (PolicyFor(notice.kind()) == "none") {
        j.set_phase("done");
        j.set_outcome("policy none: recorded only");
      } else if (current && !notice.boot_id().empty() && !current->boot_id().empty() &&
                 current->boot_id() != notice.boot_id()) {
        // Delivered late (the agent was cut off): the node it warned about has come back.
        j.set_phase("done");
        j.set_outcome(absl::StrCat("the notice came from an earlier boot (", notice.boot_id(),
                                   "); the node is already back with boot ",
                                   current->boot_id()));
      } else {
        j.set_phase("pending");
      }
      entries_[key] = std::move(entry);
      unsaved.push_back(key);
    }
    while (!boots_.empty()) {
      ReturnEntries(boots_.front());
      boots_.pop_front();
    }
    PruneJournal(now);
    const bool may_act = MayAct();
    if (may_act != acting_term_) {
      // A new term (the Lease won, or lost): what is acting now is resumed by whoever acts next.
      for (auto& [key, entry] : entries_) entry.launched_this_term = false;
      acting_term_ = may_act;
    }
    if (may_act) {
      for (auto& [key, entry] : entries_) {
        if (entry.running) continue;
        auto& j = entry.journal;
        if (!j.return_reason().empty()) {
          if (j.phase() != "returned") Launch(entry, /*undo=*/true);  // the node is back
        } else if (j.canceled() && j.phase() != "undone") {
          if (Marked(j)) {
            Launch(entry, /*undo=*/true);
          } else {
            j.set_phase("undone");
            j.set_outcome("canceled before any action");
            Journal(entry);
          }
        } else if (j.phase() == "pending" && now >= j.act_at_unix_ms()) {
          // Also past its deadline (a hibernation starts at once; every replica was down): the
          // node is still marked so nothing new lands on it, and Act skips the drain.
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
    const bool final = Final(j) || (j.phase() == "done" && j.clear_at_unix_ms() == 0);
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
  const bool resumption = !undo && journal.phase() == "acting" && !entry.launched_this_term;
  if (!undo) entry.launched_this_term = true;
  workers_[key] = std::thread([this, key, journal, cancel, undo, resumption] {
    if (undo) {
      Undo(key, journal);  // a cancellation, or a rebalance whose TTL passed
    } else {
      Act(key, journal, cancel, resumption);
    }
    std::lock_guard<std::mutex> lock(mu_);
    entries_[key].running = false;
    cv_.notify_all();
  });
}

// Writes a worker's copy back, keeping a cancellation or a return that arrived meanwhile.
void Remediator::Finish(const std::string& key, const DrainJournalEntry& journal) {
  std::lock_guard<std::mutex> lock(mu_);
  Entry& entry = entries_[key];
  const DrainJournalEntry decided = std::move(entry.journal);
  entry.journal = journal;
  if (decided.canceled()) entry.journal.set_canceled(true);
  if (!decided.return_reason().empty() && journal.return_reason().empty()) {
    entry.journal.set_return_reason(decided.return_reason());
    entry.journal.set_returned_unix_ms(decided.returned_unix_ms());
    entry.journal.set_returned_boot_id(decided.returned_boot_id());
    entry.journal.set_returned_instance_id(decided.returned_instance_id());
    entry.journal.set_downtime_ms(decided.downtime_ms());
  }
  Journal(entry);
}

Remediator::Series& Remediator::SeriesFor(const std::string& provider, const std::string& kind) {
  std::lock_guard<std::mutex> lock(series_mu_);
  auto& slot = series_[{provider, kind}];
  if (!slot) slot = std::make_unique<Series>();
  return *slot;
}

namespace {

bool Recorded(const DrainJournalEntry& j, const std::string& what) {
  return std::find(j.recorded().begin(), j.recorded().end(), what) != j.recorded().end();
}

// True the first time `what` is asked for this entry (and remembers it in the journal).
bool FirstTime(DrainJournalEntry& j, const std::string& what) {
  if (Recorded(j, what)) return false;
  j.add_recorded(what);
  return true;
}

// What an earlier leader (or this replica before its restart) already did, for the "resumed" step.
std::string AlreadyDone(const DrainJournalEntry& j) {
  std::vector<std::string> done;
  if (j.cordoned()) {
    done.push_back("cordoned");
  } else if (Recorded(j, "cordoned")) {
    done.push_back("found unschedulable");
  }
  if (j.tainted()) done.push_back("tainted");
  if (j.labelled()) done.push_back("excluded from load balancers");
  if (j.condition_set()) done.push_back("InterruptionNotice=True");
  if (Recorded(j, "drain-started")) done.push_back("drain started");
  return done.empty() ? "nothing was done yet"
                      : absl::StrCat("already ", absl::StrJoin(done, ", "));
}

}  // namespace

void Remediator::Act(const std::string& key, DrainJournalEntry j,
                     std::shared_ptr<std::atomic<bool>> cancel, bool resumption) {
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
  // Past the deadline (a hibernation has no warning): mark the node, do not drain it; its pods
  // resume where they are if it comes back.
  const bool late = deadline > 0 && deps_.clock->NowUnixMs() >= deadline;
  const std::string plan = policy == "drain" && late ? "cordon and taint (too late to drain)"
                           : policy == "drain"       ? "cordon, taint and drain"
                           : policy == "cordon"      ? "cordon and taint"
                           : config_.rebalance_cordon ? "taint PreferNoSchedule and cordon"
                                                      : "taint PreferNoSchedule";
  if (!resumed) {
    Step(j, "planned", absl::StrCat(plan, " (", left, ")"));  // queued, not waited for
    Notify(j, "notice", absl::StrCat("will ", plan, " (", left, ")"));
  } else if (resumption) {
    Step(j, "resumed", absl::StrCat(identity_, " resumes (", left, "): ", AlreadyDone(j)));
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
    if (FirstTime(j, "cordoned")) Step(j, "cordoned", *cordoned ? "" : "was already unschedulable");
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
  if (FirstTime(j, "tainted")) {
    Step(j, "tainted", absl::StrCat(config_.taint_key, "=", kind, ":", effect));
  }
  if (hard && config_.exclude_from_load_balancers) {
    auto labelled = deps_.api->SetLabel(node, kExcludeLbLabel, std::string(kComponent));
    if (!labelled.ok()) return fail(labelled.status());
    j.set_labelled(j.labelled() || *labelled);
  }
  const bool first_mark = FirstTime(j, "event:marked");
  Finish(key, j);
  if (first_mark) {
    Event(j, uid, "Normal", hard ? "Cordoned" : "Tainted",
          absl::StrCat(hard ? "cordoned and tainted " : "tainted ", config_.taint_key, "=", kind,
                       ":", effect));
  }
  // Best effort: a refused condition (an older chart without nodes/status) must not hold up the
  // drain; the log and nodewatch_remediation_api_errors_total say so.
  if (!j.condition_set() &&
      SetCondition(j, true, ConditionReason(n.kind()),
                   absl::StrCat(n.provider(), " ", kind, " notice ", n.event_id(),
                                deadline > 0 ? absl::StrCat(": the node goes at ", KubeTime(deadline))
                                             : ": no deadline given"))
          .ok()) {
    j.set_condition_set(true);
    Finish(key, j);
  }
  if (!hard) {
    j.set_clear_at_unix_ms(deps_.clock->NowUnixMs() + config_.rebalance_ttl_ms);
    j.set_phase("done");
    j.set_outcome("tainted until the TTL");
    Finish(key, j);
    return;
  }
  if (policy == "drain" && late) {
    if (!resumed) ++counters_.expired;
    j.set_outcome("the deadline had passed when remediation acted: cordoned and tainted, not drained");
    Step(j, "drain-skipped", j.outcome());
  } else if (policy == "drain") {
    if (FirstTime(j, "drain-started")) {
      Finish(key, j);  // journaled before it is told: a resumption never tells it twice
      Step(j, "drain-started", left);
    }
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
    if (report->complete && report->api_errors > 0) {
      // Overcome on the way: counted, not quoted as if something were wrong.
      absl::StrAppend(&summary, " (", report->api_errors, " API error(s) retried)");
    } else if (!report->errors.empty()) {
      absl::StrAppend(&summary, "; ", report->errors.front());
    }
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
  const std::string& returned = j.return_reason();  // "returned", "replaced", "completed" or ""
  const bool cleared = returned.empty() && !j.canceled();  // a rebalance taint's TTL passed
  const bool hard = PolicyFor(j.notice().kind()) != "taint";
  // What other active entries of this node hold stays (a spot notice after a canceled
  // maintenance, a new notice of the node's new life).
  const HeldByOthers others = OthersHold(key, node, hard);
  if (!MayAct()) return;
  std::vector<std::string> done;
  bool node_deleted = false;
  // A failed step leaves the entry as it is; the scheduler runs the undo again. NotFound: the
  // Node is gone, nothing is left to give back.
  auto undone = [&](const absl::StatusOr<bool>& result) {
    if (result.ok()) return true;
    if (absl::IsNotFound(result.status())) {
      node_deleted = true;
      return true;
    }
    ++counters_.api_errors;
    log->warn("node {}: undo: {}", node, result.status());
    std::this_thread::sleep_for(std::chrono::seconds(1));
    return false;
  };
  if (j.tainted() && !others.taint) {
    if (!undone(deps_.api->RemoveTaint(node, config_.taint_key,
                                       hard ? "NoSchedule" : "PreferNoSchedule"))) {
      return;
    }
    j.set_tainted(false);
    if (!node_deleted) done.push_back("removed the taint");
  }
  if (j.labelled() && !others.label && !node_deleted) {
    if (!undone(deps_.api->SetLabel(node, kExcludeLbLabel, std::nullopt))) return;
    j.set_labelled(false);
    if (!node_deleted) done.push_back("removed the load-balancer exclusion");
  }
  if (j.cordoned() && !others.cordon && !node_deleted) {
    if (!undone(deps_.api->SetUnschedulable(node, false))) return;
    j.set_cordoned(false);
    if (!node_deleted) done.push_back("uncordoned");
  } else if (!j.cordoned() && hard && !node_deleted && j.phase() != "pending") {
    done.push_back("left the cordon as it was (nodewatch did not set it)");
  } else if (j.cordoned() && others.cordon) {
    done.push_back("kept the cordon (another notice holds it)");
  }
  if (j.condition_set() && !others.condition && !node_deleted) {
    const std::string reason = !returned.empty() ? "Returned" : cleared ? "Cleared" : "Canceled";
    const std::string why = !returned.empty() ? absl::StrCat("the node is back (", returned, ")")
                            : cleared         ? "the rebalance recommendation's TTL passed"
                                              : "the notice was canceled";
    const absl::Status set = SetCondition(
        j, false, reason,
        absl::StrCat(j.notice().provider(), " ", kind, " notice ", j.notice().event_id(), ": ",
                     why));
    if (set.ok()) {
      j.set_condition_set(false);
      done.push_back(absl::StrCat(kConditionType, "=False (", reason, ")"));
    } else if (absl::IsNotFound(set)) {
      node_deleted = true;
    } else if (absl::IsUnavailable(set)) {
      std::this_thread::sleep_for(std::chrono::seconds(1));
      return;  // the API server is unreachable: the scheduler runs the undo again
    } else {
      // Refused (RBAC, a webhook): the rest is given back all the same; the step says what is left.
      done.push_back(absl::StrCat(kConditionType, " could not be set False: ", set.message()));
    }
  }
  j.set_clear_at_unix_ms(0);
  std::string action, message, event_reason;
  if (!returned.empty()) {
    const std::string& was = j.notice().instance_id();
    const std::string& now_instance = j.returned_instance_id();
    std::string life =
        returned == "replaced"
            ? absl::StrCat("a new instance ", now_instance, " under the name (was ", was, ")")
        : returned == "completed"
            ? absl::StrCat(j.notice().provider(), " reports the event completed")
            : absl::StrCat("the same instance", was.empty() ? "" : " " + was, ", new boot");
    if (returned != "completed" && j.downtime_ms() > 0) {
      absl::StrAppend(&life, ", after ", FormatElapsed(j.downtime_ms()), " away");
    }
    j.set_phase("returned");
    if (node_deleted) {
      action = "node-deleted";
      message = absl::StrCat("back (", life,
                             ") but the Node object is gone (deleted while the node was away): "
                             "nothing to give back");
      ++counters_.nodes_deleted;
    } else {
      action = returned == "replaced" ? "replaced" : "returned";
      event_reason = returned == "replaced" ? "NodeReplaced" : "NodeReturned";
      message = absl::StrCat("back: ", life, "; ",
                             done.empty() ? "nothing to give back" : absl::StrJoin(done, ", "));
      ++(returned == "replaced" ? counters_.replaced : counters_.returned);
    }
  } else {
    j.set_phase(cleared ? "done" : "undone");
    action = cleared ? "cleared" : "undone";
    event_reason = cleared ? "InterruptionCleared" : "InterruptionCanceled";
    message = absl::StrCat(cleared ? "rebalance TTL passed: " : "notice canceled: ",
                           done.empty() ? "nothing to undo" : absl::StrJoin(done, ", "));
    if (!cleared) ++counters_.undone;
  }
  j.set_outcome(message);
  Step(j, action, message);
  if (!event_reason.empty()) Event(j, "", "Normal", event_reason, message);
  Notify(j, action, message);
  log->info("node {}: {} {} {}: {}", node, kind, j.notice().event_id(), action, message);
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
  if (action == "returned" || action == "replaced" || action == "node-deleted") {
    step->set_downtime_ms(j.downtime_ms());
    step->set_instance_id(j.notice().instance_id());
    step->set_new_instance_id(j.returned_instance_id());
  }
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
            "Notices whose deadline had passed when remediation acted (hibernation, or every "
            "replica down): the node is marked, not drained.",
            d(c.expired));
  const char* returns_help =
      "Notices whose node came back and was given back what nodewatch took, by how: returned "
      "(the same instance), replaced (a new instance under the name), node-deleted (the Node "
      "object was gone).";
  f.Counter("nodewatch_remediation_returns_total", returns_help, d(c.returned),
            {{"how", "returned"}});
  f.Counter("nodewatch_remediation_returns_total", returns_help, d(c.replaced),
            {{"how", "replaced"}});
  f.Counter("nodewatch_remediation_returns_total", returns_help, d(c.nodes_deleted),
            {{"how", "node-deleted"}});
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
