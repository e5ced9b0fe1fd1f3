#include "aggregator/remediation/drain.h"

#include <algorithm>
#include <map>
#include <mutex>
#include <thread>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/status_macros.h"

namespace nodewatch::aggregator {
namespace {

using nlohmann::json;

enum class Phase { kEvict, kWait, kDone };

struct PodWork {
  std::string ns, name, uid;
  int64_t grace_s = 30;
  Phase phase = Phase::kEvict;
  int64_t next_ms = 0;       // when to act next
  bool blocked = false;      // a PDB refused it at least once
  bool refused = false;      // any eviction attempt was refused (a PDB, or another error)
  bool no_eviction = false;  // multi-PDB or no Eviction API: delete at the force point
  bool force_deleted = false;
  int64_t gone_by_ms = 0;  // deletionTimestamp of the current deletion
  std::string Id() const { return ns + "/" + name; }
};

// Runs fn(i) for i in [0, n) on up to `parallelism` threads.
void ParallelFor(size_t n, int parallelism, const std::function<void(size_t)>& fn) {
  if (n == 0) return;
  const size_t workers = std::min<size_t>(n, static_cast<size_t>(std::max(parallelism, 1)));
  std::atomic<size_t> next{0};
  auto run = [&] {
    for (size_t i; (i = next.fetch_add(1)) < n;) fn(i);
  };
  std::vector<std::thread> threads;
  threads.reserve(workers - 1);
  for (size_t w = 1; w < workers; ++w) threads.emplace_back(run);
  run();
  for (auto& t : threads) t.join();
}

bool IsMirror(const json& pod) {
  const json& meta = pod["metadata"];
  return meta.contains("annotations") && meta["annotations"].is_object() &&
         meta["annotations"].contains("kubernetes.io/config.mirror");
}

// The controller ownerRef if it is an apps DaemonSet: its name, else "".
std::string DaemonSetOwner(const json& pod) {
  const json& meta = pod["metadata"];
  if (!meta.contains("ownerReferences") || !meta["ownerReferences"].is_array()) return "";
  for (const auto& ref : meta["ownerReferences"]) {
    if (ref.value("controller", false) && ref.value("kind", "") == "DaemonSet" &&
        ref.value("apiVersion", "").rfind("apps/", 0) == 0) {
      return ref.value("name", "");
    }
  }
  return "";
}

}  // namespace

absl::StatusOr<DrainReport> Drainer::Drain(const std::string& node, const DrainOptions& options,
                                           const std::atomic<bool>& cancel,
                                           const std::function<bool()>& may_act) {
  return GuardJson("drain " + node, [&] { return DrainUnguarded(node, options, cancel, may_act); });
}

absl::StatusOr<DrainReport> Drainer::DrainUnguarded(const std::string& node, const DrainOptions& o,
                                                    const std::atomic<bool>& cancel,
                                                    const std::function<bool()>& may_act) {
  auto log = GetLogger("agg.drain");
  DrainReport report;
  report.started_unix_ms = clock_.NowUnixMs();
  const int64_t end_ms =
      o.deadline_unix_ms > 0 ? o.deadline_unix_ms : report.started_unix_ms + o.max_drain_ms;
  const int64_t target_ms = o.deadline_unix_ms > 0 ? o.deadline_unix_ms - o.margin_ms : 0;
  // Seconds a deletion may take from `now` and still end before the deadline's margin.
  auto fit_seconds = [&](int64_t now) { return std::max<int64_t>((target_ms - now) / 1000, 1); };
  // The last moment a pod's full grace still fits; from then on it is deleted, not evicted.
  auto force_at = [&](const PodWork& p) {
    return target_ms > 0 ? target_ms - p.grace_s * 1000 : INT64_MAX;
  };

  ASSIGN_OR_RETURN(std::vector<json> listed, api_.ListPodsOnNode(node));
  ASSIGN_OR_RETURN(bool eviction_api, api_.EvictionSupported());
  std::map<std::string, bool> daemonsets;  // "ns/name" -> exists
  std::vector<PodWork> pods;
  for (const json& pod : listed) {
    if (!pod.contains("metadata") || !pod["metadata"].is_object()) continue;
    PodWork w;
    w.ns = pod["metadata"].value("namespace", "default");
    w.name = pod["metadata"].value("name", "");
    w.uid = pod["metadata"].value("uid", "");
    if (w.name.empty()) continue;
    if (IsMirror(pod)) {
      ++report.skipped_mirror;  // the kubelet owns it; the API cannot delete it for good
      continue;
    }
    const std::string phase = pod.contains("status") ? pod["status"].value("phase", "") : "";
    if (std::string ds = DaemonSetOwner(pod);
        !ds.empty() && phase != "Succeeded" && phase != "Failed") {
      std::string key = w.ns + "/" + ds;
      if (!daemonsets.count(key)) {
        ASSIGN_OR_RETURN(daemonsets[key], api_.DaemonSetExists(w.ns, ds));
      }
      if (daemonsets[key]) {
        ++report.skipped_daemonset;  // it would be recreated on the cordoned node anyway
        continue;
      }
    }
    if (pod.contains("spec") && pod["spec"].contains("terminationGracePeriodSeconds") &&
        pod["spec"]["terminationGracePeriodSeconds"].is_number_integer()) {
      w.grace_s = std::max<int64_t>(pod["spec"]["terminationGracePeriodSeconds"].get<int64_t>(), 0);
    }
    w.no_eviction = !eviction_api;
    if (pod["metadata"].contains("deletionTimestamp")) {
      w.phase = Phase::kWait;  // already terminating: wait, shorten if it would end too late
      w.gone_by_ms = ParseKubeTime(pod["metadata"].value("deletionTimestamp", ""));
    }
    pods.push_back(std::move(w));
  }
  if (o.dry_run) {
    for (const auto& p : pods) report.planned_pods.push_back(p.Id());
    report.remaining = static_cast<int>(pods.size());
    report.finished_unix_ms = clock_.NowUnixMs();
    return report;
  }
  log->info("node {}: draining {} pod(s) ({} DaemonSet and {} mirror pod(s) stay){}", node,
            pods.size(), report.skipped_daemonset, report.skipped_mirror,
            eviction_api ? "" : "; no Eviction API, deleting instead");

  std::mutex mu;  // guards report.errors and report.api_errors
  auto note_error = [&](const PodWork& p, const std::string& what) {
    std::lock_guard<std::mutex> lock(mu);
    ++report.api_errors;
    if (report.errors.size() < 10) report.errors.push_back(p.Id() + ": " + what);
  };
  // Deletes with a grace that ends before the deadline's margin.
  auto force_delete = [&](PodWork& p, int64_t now) {
    const int64_t grace = target_ms > 0 ? std::min(p.grace_s, fit_seconds(now)) : p.grace_s;
    auto deleted = api_.DeletePod(p.ns, p.name, grace, p.uid);
    if (!deleted.ok()) {
      note_error(p, std::string(deleted.status().message()));
      p.next_ms = now + 1000;
      return;
    }
    p.force_deleted = *deleted;
    p.phase = *deleted ? Phase::kWait : Phase::kDone;
    p.gone_by_ms = now + grace * 1000;
    p.next_ms = now;
  };
  auto evict = [&](PodWork& p, int64_t now) {
    // Refused before and out of time: delete (a refusal must not turn into a retry storm at the
    // force point).
    if (p.no_eviction || (p.refused && now >= force_at(p))) return force_delete(p, now);
    const int64_t grace = target_ms > 0 && p.grace_s > fit_seconds(now) ? fit_seconds(now) : -1;
    auto result = api_.Evict(p.ns, p.name, grace);
    if (!result.ok()) {
      note_error(p, std::string(result.status().message()));
      p.next_ms = now + 1000;
      return;
    }
    switch (result->outcome) {
      case EvictOutcome::kAccepted:
        p.phase = Phase::kWait;
        p.next_ms = now;
        return;
      case EvictOutcome::kGone:
        p.phase = Phase::kDone;
        return;
      case EvictOutcome::kBlocked: {
        if (!p.blocked)
          log->info("node {}: eviction of {} refused: {}", node, p.Id(), result->message);
        p.blocked = true;
        p.refused = true;
        if (now >= force_at(p)) return force_delete(p, now);
        const int64_t retry =
            result->retry_after_seconds > 0 ? result->retry_after_seconds * 1000LL : o.pdb_retry_ms;
        p.next_ms = std::min(now + retry, force_at(p));
        return;
      }
      case EvictOutcome::kMultiplePdbs:
        note_error(p, result->message);
        p.no_eviction = true;  // the Eviction API will never take it; delete at the force point
        p.next_ms = force_at(p) == INT64_MAX ? end_ms : force_at(p);
        return;
      case EvictOutcome::kNamespaceTerminating:
      case EvictOutcome::kRejected:
        note_error(p, result->message);
        p.refused = true;
        p.next_ms = std::min(now + o.pdb_retry_ms, force_at(p));
        return;
    }
  };
  // `pod`: the pod as the latest list shows it, nullptr when it is not bound to the node any more.
  auto observe = [&](PodWork& p, const json* pod, int64_t now) {
    if (pod == nullptr || (*pod)["metadata"].value("uid", "") != p.uid) {
      p.phase = Phase::kDone;  // gone, or a namesake with a new uid: this pod is gone
      return;
    }
    const json& meta = (*pod)["metadata"];
    if (meta.contains("deletionTimestamp")) {
      p.gone_by_ms = ParseKubeTime(meta.value("deletionTimestamp", ""));
      // Its deletion would end after the deadline (long grace): shorten it.
      if (target_ms > 0 && p.gone_by_ms > target_ms && now < target_ms) force_delete(p, now);
    } else if (now >= force_at(p)) {
      force_delete(p, now);  // accepted but not terminating yet, and time is up
    }
    if (p.phase == Phase::kWait) p.next_ms = now + o.poll_ms;
  };

  while (true) {
    const int64_t now = clock_.NowUnixMs();
    if (cancel.load() || !may_act()) {
      report.interrupted = true;
      break;
    }
    std::vector<PodWork*> due;
    int64_t next = end_ms;
    bool pending = false;
    for (auto& p : pods) {
      if (p.phase == Phase::kDone) continue;
      pending = true;
      if (p.next_ms <= now) {
        due.push_back(&p);
      } else {
        next = std::min(next, p.next_ms);
      }
    }
    if (!pending) {
      report.complete = true;
      break;
    }
    if (now >= end_ms) break;
    // Waiting pods are checked with one LIST of the node's pods (what kubectl does with a GET
    // per pod every second would be 110 requests for a full node).
    std::vector<PodWork*> evictions;
    bool waiting = false;
    for (PodWork* p : due) {
      if (p->phase == Phase::kEvict) {
        evictions.push_back(p);
      } else {
        waiting = true;
      }
    }
    if (waiting) {
      auto current = api_.ListPodsOnNode(node);
      std::map<std::string, const json*> by_id;
      if (current.ok()) {
        for (const json& pod : *current) {
          by_id[pod["metadata"].value("namespace", "") + "/" + pod["metadata"].value("name", "")] =
              &pod;
        }
      }
      for (PodWork* p : due) {
        if (p->phase != Phase::kWait) continue;
        if (!current.ok()) {
          note_error(*p, std::string(current.status().message()));
          p->next_ms = now + o.poll_ms;
          continue;
        }
        auto it = by_id.find(p->Id());
        observe(*p, it == by_id.end() ? nullptr : it->second, clock_.NowUnixMs());
      }
    }
    ParallelFor(evictions.size(), o.parallelism,
                [&](size_t i) { evict(*evictions[i], clock_.NowUnixMs()); });
    if (!due.empty()) continue;  // re-evaluate at once: some may be due again (next_ms = now)
    // At most 200 ms, so a cancellation or a lost Lease stops the drain promptly.
    std::this_thread::sleep_for(std::chrono::milliseconds(std::clamp<int64_t>(next - now, 1, 200)));
  }
  for (const auto& p : pods) {
    if (p.blocked) ++report.pdb_blocked;
    if (p.no_eviction && eviction_api) ++report.multiple_pdbs;
    if (p.phase == Phase::kDone) {
      ++(p.force_deleted ? report.force_deleted : report.evicted);
    } else {
      ++report.remaining;
      report.remaining_pods.push_back(p.Id());
    }
  }
  report.finished_unix_ms = clock_.NowUnixMs();
  return report;
}

}  // namespace nodewatch::aggregator
