// Fuzz target: every reader of Kubernetes API answers. The input is a script of answers the "API
// server" gives, in order (parts separated by "\n--\n"; a part's first byte picks the status
// code, the rest is the body); the typed client calls and a drain consume them. Whatever the
// answers, the calls must return a status, never crash or throw.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "aggregator/remediation/drain.h"
#include "aggregator/remediation/kube_api.h"
#include "common/clock.h"
#include "common/logging.h"

namespace {

using nodewatch::aggregator::KubeClient;
using nodewatch::aggregator::KubeClientCounters;
using nodewatch::aggregator::KubeRequest;
using nodewatch::aggregator::KubeResponse;

class ScriptedKubeClient final : public KubeClient {
 public:
  explicit ScriptedKubeClient(const std::string& script) {
    size_t start = 0;
    while (start <= script.size()) {
      size_t end = script.find("\n--\n", start);
      if (end == std::string::npos) end = script.size();
      parts_.push_back(script.substr(start, end - start));
      start = end + 4;
    }
  }
  absl::StatusOr<KubeResponse> Do(const KubeRequest&) override {
    static constexpr int kCodes[] = {200, 201, 404, 429, 500, 403, 422, 409};
    if (next_ >= parts_.size() * 3 || parts_.empty()) return absl::UnavailableError("script over");
    const std::string& part = parts_[next_++ % parts_.size()];
    KubeResponse r;
    if (part.empty()) return absl::UnavailableError("connection reset");
    r.status = kCodes[static_cast<uint8_t>(part[0]) % 8];
    if (r.status == 409 && conflicts_++ > 0) r.status = 200;  // one conflict: retries sleep
    r.retry_after_seconds = static_cast<uint8_t>(part[0]) & 0x10 ? 1 : -1;
    r.body = part.substr(1);
    return r;
  }
  const KubeClientCounters& counters() const override { return counters_; }

 private:
  std::vector<std::string> parts_;
  size_t next_ = 0;
  int conflicts_ = 0;
  KubeClientCounters counters_;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static bool quiet = [] { return nodewatch::SetLogLevel("off").ok(); }();
  (void)quiet;
  const std::string script(reinterpret_cast<const char*>(data), size);
  ScriptedKubeClient client(script);
  nodewatch::aggregator::KubeApi api(client);
  (void)api.GetNode("n1");
  (void)api.SetUnschedulable("n1", true);
  (void)api.PutTaint("n1", {"nodewatch.io/interruption", "spot-terminate", "NoSchedule"});
  (void)api.RemoveTaint("n1", "nodewatch.io/interruption", "NoSchedule");
  (void)api.SetLabel("n1", "node.kubernetes.io/exclude-from-external-load-balancers", "x");
  (void)api.ListPodsOnNode("n1");
  (void)api.EvictionSupported();
  (void)api.Evict("default", "p", 5);
  (void)api.DaemonSetExists("kube-system", "ds");
  (void)api.DeletePod("default", "p", 1, "uid");
  (void)api.RecordNodeEvent("n1", "uid", "Normal", "Test", script.substr(0, 64), "nodewatch");
  nodewatch::aggregator::Drainer drainer(api, nodewatch::SystemClock::Get());
  std::atomic<bool> cancel{false};
  const int64_t now = nodewatch::SystemClock::Get().NowUnixMs();
  (void)drainer.Drain("n1", {.deadline_unix_ms = now + 60'000, .dry_run = true}, cancel,
                      [] { return true; });
  // A real drain with a deadline that ends it within a few rounds.
  (void)drainer.Drain("n1", {.deadline_unix_ms = now + 5, .margin_ms = 0, .poll_ms = 10}, cancel,
                      [] { return true; });
  return 0;
}
