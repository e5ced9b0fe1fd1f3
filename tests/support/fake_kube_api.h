// FakeKubeApi: an in-process Kubernetes API server (HTTP on 127.0.0.1, civetweb) that answers the
// remediation traffic exactly as kube-apiserver does (reference/kubernetes-api.md §2, §9, §11):
// discovery, nodes (GET/LIST/PATCH strategic-merge with atomic taints, merge and JSON patch,
// PUT with resourceVersion conflicts), pods (list by spec.nodeName with paging, GET, DELETE with
// grace and a kubelet simulator), eviction with a PDB engine (201/429/500/404/403 as recorded),
// DaemonSets, Leases, core/v1 Events, fault injection, optional bearer-token auth and a request
// journal. Used in-process by tests and benchmarks and, through nodewatch-fake-kube-api, by
// `make demo`.
//
//   FakeKubeApi api({});
//   api.Start();                                          // http://127.0.0.1:<port>
//   api.AddNode(FakeKubeApi::MakeNode("node-a"));
//   api.AddPod(FakeKubeApi::MakePod("default", "web-1", "node-a", {.owner_kind = "ReplicaSet"}));
//   api.AddPdb({.ns = "default", .name = "web", .selector = {{"app", "web"}}, .disruptions_allowed
//   = 0});
//   ... run the client ...
//   EXPECT_EQ(api.CountRequests("PATCH", "/api/v1/nodes/node-a"), 1);
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "nlohmann/json.hpp"

struct mg_connection;
struct mg_context;

namespace nodewatch::testing {

class FakeKubeApi {
 public:
  struct Request;

  struct Options {
    int port = 0;  // 0: a free port
    // Non-empty: every request must carry `Authorization: Bearer <one of these>`, else 401.
    std::set<std::string> valid_tokens;
    // Kubelet simulator: a gracefully deleted pod disappears after
    // min(grace seconds * 1000, max_termination_ms) of real time.
    int64_t max_termination_ms = 2'000;
    // Node lifecycle simulator: shortly after spec.unschedulable becomes true, add the taint
    // node.kubernetes.io/unschedulable:NoSchedule (with timeAdded); remove it on uncordon.
    bool node_lifecycle_controller = true;
    int64_t node_lifecycle_delay_ms = 50;
    // Called after every request was answered (also faulted ones), on a server thread, without
    // the fake's lock held: used by nodewatch-fake-kube-api to log the API traffic.
    std::function<void(const Request&)> on_request;
  };

  struct PodSpec {
    std::string owner_kind;  // "", "ReplicaSet", "DaemonSet", "StatefulSet", "Job"...
    std::string owner_name;  // defaults to the pod name + "-owner"
    std::map<std::string, std::string> labels;
    int64_t grace_seconds = 30;     // spec.terminationGracePeriodSeconds
    std::string phase = "Running";  // Running|Pending|Succeeded|Failed
    bool ready = true;
    bool mirror = false;     // annotation kubernetes.io/config.mirror
    bool empty_dir = false;  // a spec.volumes[].emptyDir volume
  };

  // Kubelet behaviour for one pod after a graceful delete.
  struct PodBehaviour {
    bool stuck = false;               // never goes away
    bool recreate_same_name = false;  // reappears at once with a new uid
    int64_t termination_ms = -1;      // -1: the Options rule
  };

  struct Pdb {
    std::string ns;
    std::string name;
    std::map<std::string, std::string> selector;  // matchLabels; empty selects nothing
    int disruptions_allowed = 1;
    int current_healthy = 1;
    int desired_healthy = 1;
    int64_t generation = 1;
    int64_t observed_generation = 1;
    bool always_allow_unhealthy = false;  // unhealthyPodEvictionPolicy: AlwaysAllow
  };

  // Path regexes (faults, CountRequests, WaitForRequest) match anywhere in the path, like
  // std::regex_search: anchor them with ^...$ to match a whole path.
  struct Fault {
    std::string method;      // "" matches any
    std::string path_regex;  // ECMAScript regex over the path (no query)
    int status = 500;
    std::string body;               // "" : a Status body built from status
    int retry_after_seconds = 0;    // >0: Retry-After header
    int count = 1;                  // how many matching requests get it
    int64_t delay_ms = 0;           // answer after this delay (status 0: delay only)
    bool reset_connection = false;  // close without answering
  };

  struct Request {
    std::string method;
    std::string path;  // without query
    std::string query;
    std::string content_type;
    std::string accept;
    std::string authorization;
    std::string body;
    int status = 0;       // 0: the connection was reset without an answer
    int64_t time_ms = 0;  // Unix ms when the request arrived
  };

  explicit FakeKubeApi(Options options);
  ~FakeKubeApi();
  bool Start();
  void Stop();
  int port() const { return port_; }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }

  // Seeding. Fill in uid, resourceVersion, creationTimestamp when missing.
  static nlohmann::json MakeNode(const std::string& name);
  static nlohmann::json MakePod(const std::string& ns, const std::string& name,
                                const std::string& node, const PodSpec& spec);
  void AddNode(nlohmann::json node);
  // The cloud controller deleting the Node object (its instance is gone): later calls get 404.
  void RemoveNode(const std::string& name);
  void AddPod(nlohmann::json pod);
  void AddDaemonSet(const std::string& ns, const std::string& name);
  void AddPdb(const Pdb& pdb);  // replaces a PDB with the same namespace and name
  // PDB controller tick: set disruptionsAllowed (e.g. after a replacement became Ready).
  void SetPdbDisruptionsAllowed(const std::string& ns, const std::string& name, int allowed);
  void SetPodBehaviour(const std::string& ns, const std::string& name, PodBehaviour behaviour);
  void SetNamespaceTerminating(const std::string& ns, bool terminating);
  void SetValidTokens(std::set<std::string> tokens);
  // Runs once, inside the next write to node `name` after its GET was served, before the write
  // is applied: lets a test play a concurrent writer (the write then sees a newer RV → 409).
  // `mutate` runs with the fake's lock held: it must not call the fake.
  void OnNextNodeWrite(const std::string& name, std::function<void(nlohmann::json& node)> mutate);
  // Removes /api/v1 `pods/eviction` from discovery (clients must fall back to DELETE).
  void SetEvictionSupported(bool supported);

  // State, as the server holds it now.
  std::optional<nlohmann::json> GetNode(const std::string& name);
  std::optional<nlohmann::json> GetPod(const std::string& ns, const std::string& name);
  std::vector<nlohmann::json> PodsOnNode(const std::string& node);  // not yet gone
  std::vector<nlohmann::json> Events();                             // core/v1 Events stored
  std::optional<nlohmann::json> GetLease(const std::string& ns, const std::string& name);

  void InjectFault(Fault fault);
  void ClearFaults();

  std::vector<Request> Journal();  // every request since the last ClearJournal()
  void ClearJournal();
  int CountRequests(const std::string& method, const std::string& path_regex);
  // Blocks until a request matching method + path regex arrives (true) or timeout_ms passes.
  // Requests already in the journal count; method "" matches any.
  bool WaitForRequest(const std::string& method, const std::string& path_regex, int64_t timeout_ms);

 private:
  // All server state and the kubelet/node-lifecycle simulator thread (fake_kube_api.cc).
  struct State;
  static int Dispatch(mg_connection* conn, void* self);
  int Handle(mg_connection* conn);

  Options options_;
  int port_ = 0;
  mg_context* ctx_ = nullptr;
  std::unique_ptr<State> state_;
};

}  // namespace nodewatch::testing
