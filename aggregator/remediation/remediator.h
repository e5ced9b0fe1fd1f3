// Remediator: acts on interruption notices through the Kubernetes API before the node goes.
//
// Every replica journals every notice it stores (the drain journal, in the store's state column
// family); only the Lease holder acts. Per notice kind a policy says what to do:
//   drain  : cordon, taint nodewatch.io/interruption=<kind>:NoSchedule, label
//            node.kubernetes.io/exclude-from-external-load-balancers, then a deadline-aware drain
//            (Drainer). Scheduled maintenance starts at NotBefore - lead.
//   taint  : PreferNoSchedule taint (and a cordon if configured), cleared after a TTL (rebalance).
//   cordon : cordon and NoSchedule taint, no drain.
//   none   : only record the notice.
// While an entry holds the node, the Node carries the condition InterruptionNotice=True (reason
// the kind, message the deadline), as node-problem-detector conditions are read by autoscalers
// and dashboards.
// A node that comes back is given back what nodewatch took: a Hello from another boot than the
// notice's (a stopped or rebooted instance started again, or a new instance under the same
// name: "replaced"), or the cloud event completing, ends every entry of the old life with a
// "returned" (or "replaced") step: taint and load-balancer label removed, the cordon lifted if
// nodewatch set it and no other active notice holds it, the condition False (Returned). A node
// an operator cordoned stays cordoned. A Node deleted meanwhile ends the entry as node-deleted.
// A canceled notice undoes exactly what its entry did. Each step is written to the node's
// history (RemediationStep records), raised as a Kubernetes Event on the Node, and the start and
// end go to the webhook. On Azure, the end of the drain sends the agent the command to approve
// the event (StartRequests), so the platform may proceed early.
//
// A new leader (failover, restart) resumes every entry that is not finished; all steps are
// idempotent, so re-running a half-done one is safe.
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "aggregator/ingest/ingest_engine.h"
#include "aggregator/remediation/drain.h"
#include "aggregator/remediation/kube_api.h"
#include "aggregator/remediation/leader.h"
#include "aggregator/notify/webhook.h"
#include "aggregator/store/store.h"
#include "common/metrics_endpoint.h"
#include "nodewatch/internal/store.pb.h"
#include "nodewatch/v1/agent.pb.h"

namespace nodewatch::aggregator {

struct RemediationConfig {
  std::string mode = "auto";    // auto | on | off
  std::string kubeconfig;       // empty: in-cluster, $KUBECONFIG, ~/.kube/config
  std::string kube_api_server;  // direct URL (overrides the kubeconfig's server)
  std::string kube_token_file;
  bool dry_run = false;
  bool leader_elect = true;
  std::string lease_namespace;  // empty: the connection's namespace
  std::string lease_name = "nodewatch-aggregator";
  int64_t lease_duration_ms = 15'000;
  int64_t lease_renew_deadline_ms = 10'000;
  int64_t lease_retry_period_ms = 2'000;
  std::string identity;               // empty: <hostname>_<random>
  std::vector<std::string> policies;  // "kind=action" overrides
  std::string taint_key = "nodewatch.io/interruption";
  bool exclude_from_load_balancers = true;
  int64_t drain_margin_ms = 5'000;
  int64_t pdb_retry_ms = 5'000;
  int64_t drain_poll_ms = 500;
  int64_t drain_without_deadline_ms = 600'000;
  int64_t maintenance_lead_ms = 600'000;
  int64_t rebalance_ttl_ms = 3'600'000;
  bool rebalance_cordon = false;
  std::string webhook_url;
  std::string webhook_template;
  std::vector<std::string> webhook_headers;
  int64_t webhook_timeout_ms = 5'000;
  int64_t webhook_retries = 3;
};

// "kind=action" → map, with defaults for every kind; errors name the bad entry.
absl::StatusOr<std::map<nodewatch::v1::InterruptionKind, std::string>> ParsePolicies(
    const std::vector<std::string>& overrides);
std::string KindSlug(nodewatch::v1::InterruptionKind kind);

struct RemediationCounters {
  std::atomic<uint64_t> notices{0};
  std::atomic<uint64_t> actions_started{0};
  std::atomic<uint64_t> undone{0};
  std::atomic<uint64_t> unknown_nodes{0};
  std::atomic<uint64_t> api_errors{0};
  std::atomic<uint64_t> expired{0};  // deadline passed when acting: marked, not drained
  std::atomic<uint64_t> acknowledgements{0};
  std::atomic<uint64_t> returned{0};      // given back after the node came back
  std::atomic<uint64_t> replaced{0};      // given back on a new instance under the same name
  std::atomic<uint64_t> nodes_deleted{0};  // the Node was gone when the node came back
};

class Remediator {
 public:
  struct Deps {
    KubeApi* api = nullptr;
    Store* store = nullptr;
    IngestEngine* engine = nullptr;
    const Clock* clock = nullptr;
    // Sends a command to the node's agent(s); returns how many streams took it.
    std::function<int(const std::string& node, const nodewatch::v1::Command&)> send_command;
  };

  Remediator(Deps deps, RemediationConfig config,
             std::map<nodewatch::v1::InterruptionKind, std::string> policies);
  ~Remediator();
  // Loads the journal (and journals stored notices it is missing), starts the elector and the
  // scheduler.
  absl::Status Start();
  // Stops acting (running drains are interrupted and resume on the next leader), releases the
  // Lease.
  void Stop();
  // IngestEngine's notice listener: queues the notice; never blocks.
  void OnNotice(const std::string& node, const nodewatch::v1::InterruptionNotice& notice);
  // IngestEngine's boot listener: the node is back (or replaced); queues it; never blocks.
  void OnBoot(const IngestEngine::NodeBoot& boot);

  bool IsLeader() const;
  const RemediationCounters& counters() const { return counters_; }
  // Appends the remediation metric families (low cardinality: provider and kind only).
  void CollectMetrics(MetricFamilies& families) const;
  const std::string& identity() const { return identity_; }

 private:
  struct Entry {
    nodewatch::internal::DrainJournalEntry journal;
    std::string key;
    bool running = false;
    // Launched to act during this replica's current leadership: a relaunch after an API error
    // retries quietly; the first launch of an "acting" entry in a term is a resumption.
    bool launched_this_term = false;
    std::shared_ptr<std::atomic<bool>> cancel = std::make_shared<std::atomic<bool>>(false);
  };
  // Metrics per (provider, kind): at most 5 x 9 series.
  struct Series {
    std::atomic<uint64_t> drains_complete{0};
    std::atomic<uint64_t> drains_incomplete{0};
    std::atomic<uint64_t> pods_evicted{0};
    std::atomic<uint64_t> pods_force_deleted{0};
    std::atomic<uint64_t> pods_remaining{0};
    std::atomic<uint64_t> pods_blocked_by_pdb{0};
    HistogramData notice_to_cordon{{0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30}};
    HistogramData cordon_to_drained{{1, 5, 10, 20, 30, 60, 90, 120, 300, 600}};
    HistogramData deadline_slack{{0, 5, 10, 20, 30, 60, 90, 120, 300}};
  };

  void SchedulerLoop();
  void Journal(Entry& entry);            // persists entry.journal (mu_ held or entry private)
  void Launch(Entry& entry, bool undo);  // mu_ held
  void PruneJournal(int64_t now);        // mu_ held
  const std::string& PolicyFor(nodewatch::v1::InterruptionKind kind) const;
  // `resumption`: the entry was acting under an earlier leader or before a restart; one
  // "resumed" step says what was already done, and nothing done is recorded again.
  void Act(const std::string& key, nodewatch::internal::DrainJournalEntry journal,
           std::shared_ptr<std::atomic<bool>> cancel, bool resumption);
  // Removes what the entry did: after a cancellation, when a rebalance taint's TTL passed, or
  // when the node came back (journal.return_reason()).
  void Undo(const std::string& key, nodewatch::internal::DrainJournalEntry journal);
  // Marks the entries of `boot.node`'s earlier life as returning (mu_ held).
  void ReturnEntries(const IngestEngine::NodeBoot& boot);
  // What the node's active entries other than `key` (not canceled, not returning) hold, and so
  // must stay: a spot notice after a canceled maintenance, a notice of the node's new life. A
  // taint counts when it is of the same strength (`hard`: NoSchedule). Takes mu_.
  struct HeldByOthers {
    bool cordon = false;
    bool taint = false;
    bool label = false;
    bool condition = false;
  };
  HeldByOthers OthersHold(const std::string& key, const std::string& node, bool hard);
  // Sets the InterruptionNotice Node condition; failures are logged and counted.
  absl::Status SetCondition(const nodewatch::internal::DrainJournalEntry& journal, bool active,
                    const std::string& reason, const std::string& message);
  void Finish(const std::string& key, const nodewatch::internal::DrainJournalEntry& journal);
  void Step(const nodewatch::internal::DrainJournalEntry& journal, const std::string& action,
            const std::string& message, const DrainReport* report = nullptr);
  void Event(const nodewatch::internal::DrainJournalEntry& journal, const std::string& node_uid,
             const std::string& type, const std::string& reason, const std::string& message);
  void EventLoop();
  void Notify(const nodewatch::internal::DrainJournalEntry& journal, const std::string& action,
              const std::string& message);
  bool MayAct() const;
  Series& SeriesFor(const std::string& provider, const std::string& kind);

  Deps deps_;
  const RemediationConfig config_;
  const std::map<nodewatch::v1::InterruptionKind, std::string> policies_;
  std::string identity_;
  RemediationCounters counters_;
  std::unique_ptr<LeaderElector> elector_;
  std::unique_ptr<Webhook> webhook_;
  Drainer drainer_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::pair<std::string, nodewatch::v1::InterruptionNotice>> inbox_;
  std::deque<IngestEngine::NodeBoot> boots_;
  std::map<std::string, Entry> entries_;  // by journal key
  std::map<std::string, std::thread> workers_;
  std::vector<std::thread> finished_workers_;
  bool stop_ = false;
  bool acting_term_ = false;  // scheduler thread: MayAct() at the last pass
  std::atomic<bool> stopping_{false};
  std::thread scheduler_;

  std::mutex events_mu_;
  std::condition_variable events_cv_;
  std::deque<std::function<void()>> events_;
  bool events_stop_ = false;
  std::thread events_thread_;

  mutable std::mutex series_mu_;
  std::map<std::pair<std::string, std::string>, std::unique_ptr<Series>> series_;
};

}  // namespace nodewatch::aggregator
