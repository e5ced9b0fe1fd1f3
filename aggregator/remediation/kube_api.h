// KubeApi: the typed Kubernetes calls remediation needs, with the exact wire shapes of
// reference/kubernetes-api.md §13 (what kubectl drain and client-go send), on top of KubeClient.
// Every call returns the server's meaning, not its bytes: NotFound for 404, Aborted for a conflict
// that retries could not resolve, Unavailable for transport errors, Internal with the Status
// message otherwise.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "aggregator/remediation/kube_client.h"
#include "nlohmann/json.hpp"

namespace nodewatch::aggregator {

struct Taint {
  std::string key;
  std::string value;
  std::string effect;  // NoSchedule | PreferNoSchedule | NoExecute
};

enum class EvictOutcome {
  kAccepted,              // 201/200: the pod is being deleted; wait for it
  kGone,                  // 404: already gone, nothing to wait for
  kBlocked,               // 429: a PodDisruptionBudget (or the server) asks to retry later
  kMultiplePdbs,          // 500: more than one PDB selects the pod; eviction can never work
  kNamespaceTerminating,  // 403 NamespaceTerminating
  kRejected,              // any other answer
};

struct EvictResult {
  EvictOutcome outcome = EvictOutcome::kRejected;
  int retry_after_seconds = -1;  // from the Retry-After header, -1 when absent
  std::string message;           // the Status message, for logs and Events
};

class KubeApi {
 public:
  explicit KubeApi(KubeClient& client) : client_(client) {}

  absl::StatusOr<nlohmann::json> GetNode(const std::string& name,
                                         KubeLane lane = KubeLane::kInterruption);
  // Cordon/uncordon exactly like kubectl: GET, and a strategic-merge PATCH of
  // spec.unschedulable only when it differs. Returns whether a PATCH was sent; `observed`, if
  // given, receives the node as read.
  absl::StatusOr<bool> SetUnschedulable(const std::string& node, bool unschedulable,
                                        nlohmann::json* observed = nullptr);
  // Adds `taint` (replacing a taint with the same key and effect) or removes the taints with
  // `key` and `effect` ("" : any effect). spec.taints is atomic, so the whole list is written with
  // a merge patch carrying the resourceVersion that was read: a concurrent writer gives 409, and
  // the list is re-read and recomputed (up to 8 tries). Nobody else's taint is ever lost. Returns
  // whether it changed.
  absl::StatusOr<bool> PutTaint(const std::string& node, const Taint& taint);
  absl::StatusOr<bool> RemoveTaint(const std::string& node, const std::string& key,
                                   const std::string& effect = "");
  // Sets (value) or removes (nullopt) a node label. Returns whether it changed.
  absl::StatusOr<bool> SetLabel(const std::string& node, const std::string& key,
                                const std::optional<std::string>& value);

  // Sets a node condition of `type` (the node-problem-detector convention: other writers'
  // conditions are kept, since status.conditions merges by type in a strategic-merge PATCH of
  // nodes/{name}/status). lastTransitionTime moves only when the status changes. Returns whether
  // it changed anything but the heartbeat time.
  absl::StatusOr<bool> SetNodeCondition(const std::string& node, const std::string& type,
                                        const std::string& status, const std::string& reason,
                                        const std::string& message, int64_t now_unix_ms);

  // Every pod bound to the node (fieldSelector spec.nodeName, pages of 500).
  absl::StatusOr<std::vector<nlohmann::json>> ListPodsOnNode(const std::string& node);
  absl::StatusOr<bool> DaemonSetExists(const std::string& ns, const std::string& name);
  // Whether /api/v1 advertises pods/eviction (policy/v1); if not, drains fall back to DELETE.
  absl::StatusOr<bool> EvictionSupported();
  // POST .../pods/{name}/eviction; `grace_seconds` < 0 leaves the pod's own grace.
  absl::StatusOr<EvictResult> Evict(const std::string& ns, const std::string& name,
                                    int64_t grace_seconds);
  // DELETE with gracePeriodSeconds and a uid precondition (never deletes a recreated namesake).
  // false: the pod was already gone (404) or is another pod now (409 on the uid).
  absl::StatusOr<bool> DeletePod(const std::string& ns, const std::string& name,
                                 int64_t grace_seconds, const std::string& uid);

  // core/v1 Event about a Node (namespace "default"), on the background lane.
  absl::Status RecordNodeEvent(const std::string& node, const std::string& node_uid,
                               const std::string& type, const std::string& reason,
                               const std::string& message, const std::string& component);

  // Lease verbs (coordination.k8s.io/v1), raw answers for the elector's state machine.
  absl::StatusOr<KubeResponse> GetLease(const std::string& ns, const std::string& name);
  absl::StatusOr<KubeResponse> CreateLease(const std::string& ns, const nlohmann::json& lease);
  absl::StatusOr<KubeResponse> UpdateLease(const std::string& ns, const std::string& name,
                                           const nlohmann::json& lease);

  KubeClient& client() { return client_; }

 private:
  absl::StatusOr<bool> UpdateTaints(const std::string& node,
                                    const std::function<bool(nlohmann::json& taints)>& edit);
  KubeClient& client_;
};

// Runs `body`, turning a JSON type error (an answer of an unexpected shape: a string where an
// object belongs) into an Internal error instead of an exception. Every reader of API answers goes
// through it: no answer, however malformed, may crash the aggregator.
template <typename Body>
auto GuardJson(const std::string& what, Body&& body) -> decltype(body()) {
  try {
    return body();
  } catch (const nlohmann::json::exception& e) {
    return absl::InternalError(what + ": malformed answer from the API server: " + e.what());
  }
}

// Kubernetes-style error from a non-2xx answer.
absl::Status KubeError(const std::string& what, const KubeResponse& response);
// RFC 3339 with second precision in UTC ("2026-11-22T10:39:52Z"), as metav1.Time.
std::string KubeTime(int64_t unix_ms);
// RFC 3339 with 6 fractional digits, as metav1.MicroTime.
std::string KubeMicroTime(int64_t unix_ms);
// 0 when it does not parse.
int64_t ParseKubeTime(const std::string& text);

}  // namespace nodewatch::aggregator
