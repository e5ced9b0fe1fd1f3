#include "aggregator/remediation/leader.h"

#include <unistd.h>

#include <random>

#include "absl/strings/str_cat.h"
#include "common/logging.h"

namespace nodewatch::aggregator {

using nlohmann::json;

std::string MakeLeaderIdentity() {
  char host[256] = {0};
  gethostname(host, sizeof host - 1);
  std::random_device rd;
  uint64_t r = (static_cast<uint64_t>(rd()) << 32) | rd();
  return absl::StrCat(host, "_", absl::Hex(r, absl::kZeroPad16));
}

LeaderElector::LeaderElector(KubeApi& api, const Clock& clock, LeaderElectionOptions options,
                             OnChange on_change)
    : api_(api), clock_(clock), options_(std::move(options)), on_change_(std::move(on_change)) {}

LeaderElector::~LeaderElector() { Stop(); }

void LeaderElector::Start() {
  thread_ = std::thread([this] { Loop(); });
}

void LeaderElector::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stop_) return;
    stop_ = true;
    cv_.notify_all();
  }
  if (thread_.joinable()) thread_.join();
  if (leading_) {
    Release();
    SetLeading(false);
  }
}

bool LeaderElector::IsLeader() const {
  return leading_.load() && NowMs() - last_renew_ms_.load() < options_.renew_deadline_ms;
}

void LeaderElector::SetLeading(bool leading) {
  if (leading_.exchange(leading) == leading) return;
  ++transitions_;
  GetLogger("agg.leader")
      ->info("{} {} the Lease {}/{}", options_.identity, leading ? "acquired" : "lost", options_.ns,
             options_.name);
  if (on_change_) on_change_(leading);
}

void LeaderElector::Loop() {
  std::mt19937 rng(std::random_device{}());
  std::unique_lock<std::mutex> lock(mu_);
  while (!stop_) {
    lock.unlock();
    bool ok = TryAcquireOrRenew();
    if (ok) {
      last_renew_ms_ = NowMs();
      SetLeading(true);
    } else if (leading_ && NowMs() - last_renew_ms_.load() >= options_.renew_deadline_ms) {
      SetLeading(false);  // could not renew within RenewDeadline
    }
    lock.lock();
    // Leaders renew every RetryPeriod; candidates add client-go's jitter (factor 1.2).
    int64_t wait = options_.retry_period_ms;
    if (!leading_) {
      wait += std::uniform_int_distribution<int64_t>(0, options_.retry_period_ms * 6 / 5)(rng);
    }
    cv_.wait_for(lock, std::chrono::milliseconds(wait), [&] { return stop_; });
  }
}

bool LeaderElector::TryAcquireOrRenew() {
  try {
    return TryAcquireOrRenewUnguarded();
  } catch (const nlohmann::json::exception& e) {
    GetLogger("agg.leader")
        ->warn("lease {}/{}: malformed answer: {}", options_.ns, options_.name, e.what());
    return false;
  }
}

bool LeaderElector::TryAcquireOrRenewUnguarded() {
  auto log = GetLogger("agg.leader");
  const int64_t now_wall = clock_.NowUnixMs();
  const int duration_s = static_cast<int>((options_.lease_duration_ms + 999) / 1000);
  auto got = api_.GetLease(options_.ns, options_.name);
  if (!got.ok()) {
    log->warn("lease {}/{}: {}", options_.ns, options_.name, got.status());
    return false;
  }
  if (got->status == 404) {
    json lease = {{"apiVersion", "coordination.k8s.io/v1"},
                  {"kind", "Lease"},
                  {"metadata", {{"name", options_.name}, {"namespace", options_.ns}}},
                  {"spec",
                   {{"holderIdentity", options_.identity},
                    {"leaseDurationSeconds", duration_s},
                    {"acquireTime", KubeMicroTime(now_wall)},
                    {"renewTime", KubeMicroTime(now_wall)},
                    {"leaseTransitions", 0}}}};
    auto created = api_.CreateLease(options_.ns, lease);
    return created.ok() && created->ok();
  }
  if (!got->ok()) {
    log->warn("lease {}/{}: {}", options_.ns, options_.name, got->Describe());
    return false;
  }
  json lease = got->Json();
  if (!lease.is_object()) return false;
  json spec = lease.value("spec", json::object());
  const std::string record = spec.dump();
  if (record != observed_record_) {
    observed_record_ = record;
    observed_ms_ = NowMs();
  }
  const std::string holder = spec.value("holderIdentity", "");
  const int64_t held_ms = spec.value("leaseDurationSeconds", 15) * 1000LL;
  const bool mine = holder == options_.identity;
  if (!holder.empty() && !mine && observed_ms_ + held_ms > NowMs()) return false;
  json next = spec;
  next["holderIdentity"] = options_.identity;
  next["leaseDurationSeconds"] = duration_s;
  next["renewTime"] = KubeMicroTime(now_wall);
  if (!(mine && leading_)) {  // a new term: client-go stamps acquireTime and counts it
    next["acquireTime"] = KubeMicroTime(now_wall);
    next["leaseTransitions"] = spec.value("leaseTransitions", 0) + 1;
  }
  lease["spec"] = next;  // keeps metadata.resourceVersion: a concurrent writer makes this 409
  auto put = api_.UpdateLease(options_.ns, options_.name, lease);
  if (!put.ok()) return false;
  if (put->ok()) {
    observed_record_ = next.dump();
    observed_ms_ = NowMs();
    return true;
  }
  if (put->status != 409)
    log->warn("renew lease {}/{}: {}", options_.ns, options_.name, put->Describe());
  return false;
}

void LeaderElector::Release() {
  try {
    ReleaseUnguarded();
  } catch (const nlohmann::json::exception& e) {
    GetLogger("agg.leader")->warn("release lease: malformed answer: {}", e.what());
  }
}

void LeaderElector::ReleaseUnguarded() {
  auto got = api_.GetLease(options_.ns, options_.name);
  if (!got.ok() || !got->ok()) return;
  json lease = got->Json();
  if (!lease.is_object() || lease["spec"].value("holderIdentity", "") != options_.identity) return;
  const int64_t now = clock_.NowUnixMs();
  lease["spec"]["holderIdentity"] = "";
  lease["spec"]["leaseDurationSeconds"] = 1;
  lease["spec"]["acquireTime"] = KubeMicroTime(now);
  lease["spec"]["renewTime"] = KubeMicroTime(now);
  auto put = api_.UpdateLease(options_.ns, options_.name, lease);
  if (put.ok() && put->ok()) {
    GetLogger("agg.leader")
        ->info("{} released the Lease {}/{}", options_.identity, options_.ns, options_.name);
  }
}

}  // namespace nodewatch::aggregator
