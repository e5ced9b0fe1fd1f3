// Drainer: empties one node before a deadline (reference/kubernetes-api.md §2, done better than
// kubectl drain for a node that is about to disappear):
//   - lists the node's pods; leaves DaemonSet pods (whose DaemonSet exists) and mirror pods;
//   - evicts every other pod in parallel through the Eviction API, with the pod's own grace, or
//     the time left when that grace no longer fits (`deadline - now - margin`, at least 1 s);
//   - retries PDB refusals (429) at Retry-After or `pdb_retry_ms`, but never past the moment the
//     pod's grace stops fitting: then it deletes the pod with grace max(deadline - now - margin,
//     1), so a PDB or a multi-PDB pod cannot burn the whole window (what NTH lets happen);
//   - waits for each pod to go (no longer listed on the node, or a new uid under the same name:
//     one LIST per round instead of a GET per pod), and shortens the grace of a terminating pod
//     whose deletion would end after the deadline;
//   - stops at the deadline and reports what is still running.
// Falls back to DELETE when the cluster has no Eviction API. All waiting is on the real clock;
// every write is preceded by the `may_act` check (leadership) and none happens in dry-run.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "aggregator/remediation/kube_api.h"
#include "common/clock.h"

namespace nodewatch::aggregator {

struct DrainOptions {
  int64_t deadline_unix_ms = 0;  // 0: no deadline; then never force, give up after max_drain_ms
  int64_t margin_ms = 5'000;     // pods should be gone this long before the deadline
  int64_t pdb_retry_ms = 5'000;  // retry delay after a 429 without Retry-After
  int64_t poll_ms = 500;         // how often the node's pods are listed while evictions end
  int64_t max_drain_ms = 600'000;
  int parallelism = 32;  // requests in flight for this node
  bool dry_run = false;
};

struct DrainReport {
  bool complete = false;     // every evictable pod is gone
  bool interrupted = false;  // canceled, or leadership lost
  int evicted = 0;           // gone after an eviction (or already gone)
  int force_deleted = 0;     // deleted with a clamped grace (PDB or grace past the deadline)
  int pdb_blocked = 0;       // pods whose eviction a PDB refused at least once
  int multiple_pdbs = 0;     // pods the Eviction API can never evict (HTTP 500)
  int skipped_daemonset = 0;
  int skipped_mirror = 0;
  int remaining = 0;                        // evictable pods still present at the end
  std::vector<std::string> remaining_pods;  // "ns/name"
  std::vector<std::string> planned_pods;    // dry-run: what would be evicted
  std::vector<std::string> errors;          // first API errors, for the Event and the history
  int api_errors = 0;                       // every API error answered (retried or not)
  int64_t started_unix_ms = 0;
  int64_t finished_unix_ms = 0;
};

class Drainer {
 public:
  Drainer(KubeApi& api, const Clock& clock) : api_(api), clock_(clock) {}
  // `cancel` ends the drain early (notice canceled, shutdown); `may_act` is asked before every
  // write (false: stop, another replica leads).
  absl::StatusOr<DrainReport> Drain(const std::string& node, const DrainOptions& options,
                                    const std::atomic<bool>& cancel,
                                    const std::function<bool()>& may_act);

 private:
  absl::StatusOr<DrainReport> DrainUnguarded(const std::string& node, const DrainOptions& options,
                                             const std::atomic<bool>& cancel,
                                             const std::function<bool()>& may_act);
  KubeApi& api_;
  const Clock& clock_;
};

}  // namespace nodewatch::aggregator
