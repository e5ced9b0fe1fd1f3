#include "aggregator/remediation/kube_api.h"

#include <chrono>
#include <random>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "common/status_macros.h"

namespace nodewatch::aggregator {
namespace {

using nlohmann::json;

constexpr char kSmp[] = "application/strategic-merge-patch+json";
constexpr char kMergePatch[] = "application/merge-patch+json";
constexpr int kConflictTries = 8;

std::string NodePath(const std::string& node) { return "/api/v1/nodes/" + node; }
std::string PodPath(const std::string& ns, const std::string& name) {
  return absl::StrCat("/api/v1/namespaces/", ns, "/pods/", name);
}

void ConflictBackoff(int attempt) {
  // Jittered 50–400 ms, growing: a conflict means another writer just wrote; re-read soon.
  thread_local std::mt19937 rng(std::random_device{}());
  std::uniform_int_distribution<int> jitter(0, 50 * (attempt + 1));
  std::this_thread::sleep_for(std::chrono::milliseconds(50 + jitter(rng)));
}

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

absl::Status KubeError(const std::string& what, const KubeResponse& r) {
  std::string msg = absl::StrCat(what, ": ", r.Describe());
  switch (r.status) {
    case 404:
      return absl::NotFoundError(msg);
    case 409:
      return absl::AbortedError(msg);
    case 401:
      return absl::UnauthenticatedError(msg);
    case 403:
      return absl::PermissionDeniedError(msg);
    case 422:
    case 400:
      return absl::InvalidArgumentError(msg);
    case 429:
    case 503:
    case 504:
      return absl::UnavailableError(msg);
    default:
      return absl::InternalError(msg);
  }
}

std::string KubeTime(int64_t unix_ms) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", absl::FromUnixMillis(unix_ms), absl::UTCTimeZone());
}

std::string KubeMicroTime(int64_t unix_ms) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E6SZ", absl::FromUnixMillis(unix_ms),
                          absl::UTCTimeZone());
}

int64_t ParseKubeTime(const std::string& text) {
  absl::Time t;
  std::string err;
  if (!absl::ParseTime(absl::RFC3339_full, text, &t, &err)) return 0;
  return absl::ToUnixMillis(t);
}

absl::StatusOr<json> KubeApi::GetNode(const std::string& name, KubeLane lane) {
  return GuardJson("get node " + name, [&]() -> absl::StatusOr<json> {
    ASSIGN_OR_RETURN(KubeResponse r, client_.Do({.path = NodePath(name), .lane = lane}));
    if (!r.ok()) return KubeError("get node " + name, r);
    json node = r.Json();
    if (!node.is_object()) return absl::InternalError("get node " + name + ": answer is not JSON");
    return node;
  });
}

absl::StatusOr<bool> KubeApi::SetUnschedulable(const std::string& node, bool unschedulable,
                                               json* observed) {
  return GuardJson("cordon " + node, [&]() -> absl::StatusOr<bool> {
    ASSIGN_OR_RETURN(json current, GetNode(node));
    if (observed != nullptr) *observed = current;
    bool is = current.contains("spec") && current["spec"].value("unschedulable", false);
    if (is == unschedulable) return false;
    json patch = {{"spec", {{"unschedulable", unschedulable ? json(true) : json(nullptr)}}}};
    ASSIGN_OR_RETURN(KubeResponse r, client_.Do({.method = "PATCH",
                                                 .path = NodePath(node),
                                                 .content_type = kSmp,
                                                 .body = patch.dump()}));
    if (!r.ok()) return KubeError(unschedulable ? "cordon " + node : "uncordon " + node, r);
    return true;
  });
}

absl::StatusOr<bool> KubeApi::UpdateTaints(const std::string& node,
                                           const std::function<bool(json& taints)>& edit) {
  return GuardJson("taints of " + node, [&]() -> absl::StatusOr<bool> {
    for (int attempt = 0;; ++attempt) {
      ASSIGN_OR_RETURN(json current, GetNode(node));
      json taints = current.contains("spec") && current["spec"].contains("taints") &&
                            current["spec"]["taints"].is_array()
                        ? current["spec"]["taints"]
                        : json::array();
      if (!edit(taints)) return false;
      std::string rv = current["metadata"].value("resourceVersion", "");
      json patch = {{"metadata", {{"resourceVersion", rv}}}, {"spec", {{"taints", taints}}}};
      ASSIGN_OR_RETURN(KubeResponse r, client_.Do({.method = "PATCH",
                                                   .path = NodePath(node),
                                                   .content_type = kMergePatch,
                                                   .body = patch.dump()}));
      if (r.ok()) return true;
      if (r.status != 409 || attempt + 1 >= kConflictTries) {
        return KubeError("update taints of " + node, r);
      }
      ConflictBackoff(attempt);
    }
  });
}

absl::StatusOr<bool> KubeApi::PutTaint(const std::string& node, const Taint& taint) {
  return UpdateTaints(node, [&](json& taints) {
    for (auto& t : taints) {
      if (t.value("key", "") == taint.key && t.value("effect", "") == taint.effect) {
        if (t.value("value", "") == taint.value) return false;
        t["value"] = taint.value;  // same key and effect: one taint, the newest value
        return true;
      }
    }
    json added = {{"key", taint.key}, {"effect", taint.effect}};
    if (!taint.value.empty()) added["value"] = taint.value;
    taints.push_back(std::move(added));  // existing taints (and their timeAdded) kept verbatim
    return true;
  });
}

absl::StatusOr<bool> KubeApi::RemoveTaint(const std::string& node, const std::string& key,
                                          const std::string& effect) {
  return UpdateTaints(node, [&](json& taints) {
    json kept = json::array();
    for (auto& t : taints) {
      const bool match =
          t.value("key", "") == key && (effect.empty() || t.value("effect", "") == effect);
      if (!match) kept.push_back(t);
    }
    if (kept.size() == taints.size()) return false;
    taints = std::move(kept);
    return true;
  });
}

absl::StatusOr<bool> KubeApi::SetLabel(const std::string& node, const std::string& key,
                                       const std::optional<std::string>& value) {
  return GuardJson("label " + node, [&]() -> absl::StatusOr<bool> {
    ASSIGN_OR_RETURN(json current, GetNode(node));
    const json* labels =
        current["metadata"].contains("labels") ? &current["metadata"]["labels"] : nullptr;
    bool has = labels != nullptr && labels->contains(key);
    if (value.has_value() ? (has && (*labels)[key] == *value) : !has) return false;
    json patch = {{"metadata", {{"labels", {{key, value ? json(*value) : json(nullptr)}}}}}};
    ASSIGN_OR_RETURN(KubeResponse r, client_.Do({.method = "PATCH",
                                                 .path = NodePath(node),
                                                 .content_type = kSmp,
                                                 .body = patch.dump()}));
    if (!r.ok()) return KubeError("label " + node, r);
    return true;
  });
}

absl::StatusOr<bool> KubeApi::SetNodeCondition(const std::string& node, const std::string& type,
                                               const std::string& status,
                                               const std::string& reason,
                                               const std::string& message, int64_t now_unix_ms) {
  return GuardJson("condition " + type + " on " + node, [&]() -> absl::StatusOr<bool> {
    ASSIGN_OR_RETURN(json current, GetNode(node));
    std::string transition = KubeTime(now_unix_ms);
    bool changed = true;
    if (current.contains("status") && current["status"].contains("conditions") &&
        current["status"]["conditions"].is_array()) {
      for (const json& c : current["status"]["conditions"]) {
        if (!c.is_object() || c.value("type", "") != type) continue;
        if (c.value("status", "") == status) {
          transition = c.value("lastTransitionTime", transition);
          changed = c.value("reason", "") != reason || c.value("message", "") != message;
        }
      }
    }
    json condition = {{"type", type},
                      {"status", status},
                      {"reason", reason},
                      {"message", message},
                      {"lastHeartbeatTime", KubeTime(now_unix_ms)},
                      {"lastTransitionTime", transition}};
    json patch = {{"status", {{"conditions", json::array({condition})}}}};
    ASSIGN_OR_RETURN(KubeResponse r, client_.Do({.method = "PATCH",
                                                 .path = NodePath(node) + "/status",
                                                 .content_type = kSmp,
                                                 .body = patch.dump()}));
    if (!r.ok()) return KubeError("condition " + type + " on " + node, r);
    return changed;
  });
}

absl::StatusOr<std::vector<json>> KubeApi::ListPodsOnNode(const std::string& node) {
  return GuardJson("list pods on " + node, [&]() -> absl::StatusOr<std::vector<json>> {
    std::vector<json> pods;
    std::string cont;
    do {
      std::string path =
          absl::StrCat("/api/v1/pods?fieldSelector=spec.nodeName%3D", node, "&limit=500");
      if (!cont.empty()) absl::StrAppend(&path, "&continue=", cont);
      ASSIGN_OR_RETURN(KubeResponse r, client_.Do({.path = path, .timeout_ms = 30'000}));
      if (!r.ok()) return KubeError("list pods on " + node, r);
      json list = r.Json();
      if (!list.is_object() || !list.contains("items") || !list["items"].is_array()) {
        return absl::InternalError("list pods on " + node + ": answer is not a PodList");
      }
      for (auto& item : list["items"]) pods.push_back(std::move(item));
      cont = list.contains("metadata") ? list["metadata"].value("continue", "") : "";
    } while (!cont.empty());
    return pods;
  });
}

absl::StatusOr<bool> KubeApi::DaemonSetExists(const std::string& ns, const std::string& name) {
  ASSIGN_OR_RETURN(
      KubeResponse r,
      client_.Do({.path = absl::StrCat("/apis/apps/v1/namespaces/", ns, "/daemonsets/", name)}));
  if (r.status == 404) return false;
  if (!r.ok()) return KubeError("get daemonset " + ns + "/" + name, r);
  return true;
}

absl::StatusOr<bool> KubeApi::EvictionSupported() {
  return GuardJson("discovery", [&]() -> absl::StatusOr<bool> {
    ASSIGN_OR_RETURN(KubeResponse r, client_.Do({.path = "/api/v1"}));
    if (!r.ok()) return KubeError("discovery /api/v1", r);
    json list = r.Json();
    if (!list.is_object() || !list.contains("resources")) return false;
    for (const auto& res : list["resources"]) {
      if (res.value("name", "") == "pods/eviction" && res.value("kind", "") == "Eviction" &&
          !res.value("group", "").empty() && !res.value("version", "").empty()) {
        return true;
      }
    }
    return false;
  });
}

absl::StatusOr<EvictResult> KubeApi::Evict(const std::string& ns, const std::string& name,
                                           int64_t grace_seconds) {
  return GuardJson("evict " + ns + "/" + name, [&]() -> absl::StatusOr<EvictResult> {
    json body = {{"apiVersion", "policy/v1"},
                 {"kind", "Eviction"},
                 {"metadata", {{"name", name}, {"namespace", ns}}},
                 {"deleteOptions", json::object()}};
    if (grace_seconds >= 0) body["deleteOptions"]["gracePeriodSeconds"] = grace_seconds;
    ASSIGN_OR_RETURN(KubeResponse r, client_.Do({.method = "POST",
                                                 .path = PodPath(ns, name) + "/eviction",
                                                 .content_type = "application/json",
                                                 .body = body.dump()}));
    EvictResult out;
    out.retry_after_seconds = r.retry_after_seconds;
    json status = r.Json();
    if (status.is_object()) out.message = status.value("message", "");
    if (r.ok()) {
      // A 2xx whose Status says Failure is still a refusal (reference §0.5, trap 2).
      out.outcome = status.is_object() && status.value("status", "Success") == "Failure"
                        ? EvictOutcome::kRejected
                        : EvictOutcome::kAccepted;
    } else if (r.status == 404) {
      out.outcome = EvictOutcome::kGone;
    } else if (r.status == 429 || (r.status >= 500 && r.retry_after_seconds > 0)) {
      out.outcome = EvictOutcome::kBlocked;
    } else if (r.status == 500 &&
               out.message.find("more than one PodDisruptionBudget") != std::string::npos) {
      out.outcome = EvictOutcome::kMultiplePdbs;
    } else if (r.status == 403 && r.body.find("NamespaceTerminating") != std::string::npos) {
      out.outcome = EvictOutcome::kNamespaceTerminating;
    } else {
      out.outcome = EvictOutcome::kRejected;
      out.message = r.Describe();
    }
    return out;
  });
}

absl::StatusOr<bool> KubeApi::DeletePod(const std::string& ns, const std::string& name,
                                        int64_t grace_seconds, const std::string& uid) {
  json body = {
      {"apiVersion", "v1"}, {"kind", "DeleteOptions"}, {"gracePeriodSeconds", grace_seconds}};
  if (!uid.empty()) body["preconditions"] = {{"uid", uid}};
  ASSIGN_OR_RETURN(KubeResponse r, client_.Do({.method = "DELETE",
                                               .path = PodPath(ns, name),
                                               .content_type = "application/json",
                                               .body = body.dump()}));
  if (r.status == 404 || r.status == 409) return false;
  if (!r.ok()) return KubeError("delete pod " + ns + "/" + name, r);
  return true;
}

absl::Status KubeApi::RecordNodeEvent(const std::string& node, const std::string& node_uid,
                                      const std::string& type, const std::string& reason,
                                      const std::string& message, const std::string& component) {
  const int64_t now = NowMs();
  // client-go's name: <object>.<unix nanos in hex>.
  const auto nanos = std::chrono::duration_cast<std::chrono::nanoseconds>(
                         std::chrono::system_clock::now().time_since_epoch())
                         .count();
  std::string name = absl::StrCat(node, ".", absl::Hex(static_cast<uint64_t>(nanos)));
  json involved = {{"kind", "Node"}, {"name", node}, {"apiVersion", "v1"}};
  if (!node_uid.empty()) involved["uid"] = node_uid;
  json event = {{"kind", "Event"},
                {"apiVersion", "v1"},
                {"metadata", {{"name", name}, {"namespace", "default"}}},
                {"involvedObject", involved},
                {"reason", reason},
                {"message", message.substr(0, 1024)},
                {"source", {{"component", component}}},
                {"firstTimestamp", KubeTime(now)},
                {"lastTimestamp", KubeTime(now)},
                {"count", 1},
                {"type", type},
                {"eventTime", nullptr},
                {"reportingComponent", component},
                {"reportingInstance", component}};
  ASSIGN_OR_RETURN(KubeResponse r,
                   client_.Do({.method = "POST",
                               .path = "/api/v1/namespaces/default/events",
                               .content_type = "application/json",
                               .body = event.dump(-1, ' ', false, json::error_handler_t::replace),
                               .lane = KubeLane::kBackground}));
  if (!r.ok()) return KubeError("record event " + reason + " on " + node, r);
  return absl::OkStatus();
}

absl::StatusOr<KubeResponse> KubeApi::GetLease(const std::string& ns, const std::string& name) {
  return client_.Do(
      {.path = absl::StrCat("/apis/coordination.k8s.io/v1/namespaces/", ns, "/leases/", name),
       .timeout_ms = 5'000});
}

absl::StatusOr<KubeResponse> KubeApi::CreateLease(const std::string& ns, const json& lease) {
  return client_.Do(
      {.method = "POST",
       .path = absl::StrCat("/apis/coordination.k8s.io/v1/namespaces/", ns, "/leases"),
       .content_type = "application/json",
       .body = lease.dump(),
       .timeout_ms = 5'000});
}

absl::StatusOr<KubeResponse> KubeApi::UpdateLease(const std::string& ns, const std::string& name,
                                                  const json& lease) {
  return client_.Do(
      {.method = "PUT",
       .path = absl::StrCat("/apis/coordination.k8s.io/v1/namespaces/", ns, "/leases/", name),
       .content_type = "application/json",
       .body = lease.dump(),
       .timeout_ms = 5'000});
}

}  // namespace nodewatch::aggregator
