// LeaderElector: client-go's Lease algorithm (reference/kubernetes-api.md §6.2) so that of several
// aggregator replicas exactly one acts on the cluster. Expiry is judged on the local monotonic
// clock from the last time the observed record changed (tolerates clock skew); renewals that fail
// for RenewDeadline end leadership. IsLeader() is checked before every write to the cluster, which
// keeps the window where two replicas believe they lead as small as the library allows.
//
//   LeaderElector elector(api, clock, {.ns = "nodewatch", .identity = "agg-0_<uuid>"},
//                         [](bool leading) { ... });
//   elector.Start();
//   if (elector.IsLeader()) ...
//   elector.Stop();  // releases the Lease so another replica takes over at once
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

#include "aggregator/remediation/kube_api.h"
#include "common/clock.h"

namespace nodewatch::aggregator {

struct LeaderElectionOptions {
  std::string ns = "default";
  std::string name = "nodewatch-aggregator";
  std::string identity;  // <hostname>_<random>
  int64_t lease_duration_ms = 15'000;
  int64_t renew_deadline_ms = 10'000;
  int64_t retry_period_ms = 2'000;
};

class LeaderElector {
 public:
  using OnChange = std::function<void(bool leading)>;
  LeaderElector(KubeApi& api, const Clock& clock, LeaderElectionOptions options,
                OnChange on_change);
  ~LeaderElector();
  void Start();
  // Stops campaigning; if leading, releases the Lease (holder "", duration 1 s).
  void Stop();
  // Leading, and the last successful renewal is younger than RenewDeadline.
  bool IsLeader() const;
  const std::string& identity() const { return options_.identity; }
  uint64_t transitions() const { return transitions_.load(); }

 private:
  void Loop();
  bool TryAcquireOrRenew();  // JSON errors in answers count as a failed round
  bool TryAcquireOrRenewUnguarded();
  void Release();
  void ReleaseUnguarded();
  void SetLeading(bool leading);
  int64_t NowMs() const { return clock_.MonotonicNs() / 1'000'000; }

  KubeApi& api_;
  const Clock& clock_;
  const LeaderElectionOptions options_;
  OnChange on_change_;
  std::atomic<bool> leading_{false};
  std::atomic<int64_t> last_renew_ms_{0};
  std::atomic<uint64_t> transitions_{0};
  std::string observed_record_;  // spec as last seen, to detect changes
  int64_t observed_ms_ = 0;      // local time of the last change
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread thread_;
};

// "<hostname>_<16 hex random>", the client-go convention.
std::string MakeLeaderIdentity();

}  // namespace nodewatch::aggregator
