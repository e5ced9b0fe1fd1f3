// FakeKubeApi over real HTTP (loopback, libcurl) against the wire behaviour of kube-apiserver
// pinned down in reference/kubernetes-api.md §2, §6, §9 and §11.
#include "tests/support/fake_kube_api.h"

#include <curl/curl.h>
#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <map>
#include <string>
#include <thread>

namespace nodewatch::testing {
namespace {

using json = nlohmann::json;

constexpr char kSmp[] = "application/strategic-merge-patch+json";
constexpr char kMerge[] = "application/merge-patch+json";
constexpr char kJsonPatch[] = "application/json-patch+json";

struct HttpResponse {
  long status = 0;  // 0: no answer at all
  std::string body;
  std::map<std::string, std::string> headers;  // names lower-cased
  json Json() const { return json::parse(body, nullptr, false); }
};

size_t AppendBody(char* data, size_t size, size_t n, void* out) {
  static_cast<std::string*>(out)->append(data, size * n);
  return size * n;
}

size_t AppendHeader(char* data, size_t size, size_t n, void* out) {
  const std::string line(data, size * n);
  const size_t colon = line.find(':');
  if (colon != std::string::npos) {
    std::string name = line.substr(0, colon);
    for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    std::string value = line.substr(colon + 1);
    value.erase(0, value.find_first_not_of(' '));
    value.erase(value.find_last_not_of("\r\n") + 1);
    (*static_cast<std::map<std::string, std::string>*>(out))[name] = value;
  }
  return size * n;
}

HttpResponse Http(const std::string& method, const std::string& url, const std::string& body = "",
                  const std::string& content_type = "application/json",
                  const std::string& token = "") {
  HttpResponse response;
  CURL* curl = curl_easy_init();
  curl_slist* headers = curl_slist_append(nullptr, ("Content-Type: " + content_type).c_str());
  headers = curl_slist_append(headers, "Expect:");
  if (!token.empty()) {
    headers = curl_slist_append(headers, ("Authorization: Bearer " + token).c_str());
  }
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method.c_str());
  if (method != "GET") {
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body.data());
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE, static_cast<long>(body.size()));
  }
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, AppendBody);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &response.body);
  curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, AppendHeader);
  curl_easy_setopt(curl, CURLOPT_HEADERDATA, &response.headers);
  curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, 10'000L);
  if (curl_easy_perform(curl) == CURLE_OK) {
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &response.status);
  }
  curl_slist_free_all(headers);
  curl_easy_cleanup(curl);
  return response;
}

bool WaitUntil(const std::function<bool()>& done, int64_t timeout_ms = 3'000) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (std::chrono::steady_clock::now() < deadline) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return done();
}

std::string EvictionBody(const std::string& ns, const std::string& name,
                         const std::string& api_version = "policy/v1") {
  return json{{"kind", "Eviction"},
              {"apiVersion", api_version},
              {"metadata", {{"name", name}, {"namespace", ns}, {"creationTimestamp", nullptr}}},
              {"deleteOptions", json::object()}}
      .dump();
}

json Taint(const std::string& key, const std::string& value) {
  return {{"key", key}, {"value", value}, {"effect", "NoSchedule"}};
}

class FakeKubeApiTest : public ::testing::Test {
 protected:
  FakeKubeApiTest() : api_({.max_termination_ms = 300, .node_lifecycle_delay_ms = 20}) {}

  void SetUp() override {
    ASSERT_TRUE(api_.Start());
    api_.AddNode(FakeKubeApi::MakeNode("node-a"));
  }

  HttpResponse Get(const std::string& path) { return Http("GET", api_.url() + path); }
  HttpResponse Send(const std::string& method, const std::string& path, const std::string& body,
                    const std::string& content_type = "application/json") {
    return Http(method, api_.url() + path, body, content_type);
  }
  HttpResponse Evict(const std::string& ns, const std::string& name) {
    return Send("POST", "/api/v1/namespaces/" + ns + "/pods/" + name + "/eviction",
                EvictionBody(ns, name));
  }
  void AddPod(const std::string& ns, const std::string& name, FakeKubeApi::PodSpec spec = {}) {
    api_.AddPod(FakeKubeApi::MakePod(ns, name, "node-a", spec));
  }
  std::string NodeRv() { return api_.GetNode("node-a")->at("metadata").at("resourceVersion"); }

  FakeKubeApi api_;
};

TEST_F(FakeKubeApiTest, DiscoveryAdvertisesEvictionUntilDisabled) {
  auto eviction_listed = [&] {
    const json list = Get("/api/v1").Json();
    for (const json& r : list["resources"]) {
      if (r["name"] == "pods/eviction") {
        return r["group"] == "policy" && r["version"] == "v1" && r["kind"] == "Eviction";
      }
    }
    return false;
  };
  EXPECT_TRUE(eviction_listed());
  api_.SetEvictionSupported(false);
  EXPECT_FALSE(eviction_listed());

  EXPECT_EQ(Get("/api").Json()["versions"], json::array({"v1"}));
  json groups = Get("/apis?timeout=32s").Json()["groups"];
  ASSERT_EQ(groups.size(), 4u);
  for (const char* gv : {"/apis/apps/v1", "/apis/policy/v1", "/apis/policy/v1beta1",
                         "/apis/coordination.k8s.io/v1", "/apis/events.k8s.io/v1"}) {
    EXPECT_EQ(Get(gv).status, 200) << gv;
  }
}

TEST_F(FakeKubeApiTest, ErrorsAreStatusBodies) {
  HttpResponse missing = Get("/api/v1/nodes/nosuch");
  EXPECT_EQ(missing.status, 404);
  EXPECT_EQ(missing.headers["content-type"], "application/json");
  EXPECT_EQ(missing.Json(), json::parse(R"({"kind":"Status","apiVersion":"v1","metadata":{},
      "status":"Failure","message":"nodes \"nosuch\" not found","reason":"NotFound",
      "details":{"name":"nosuch","kind":"nodes"},"code":404})"));
  EXPECT_EQ(Get("/apis/apps/v1/namespaces/kube-system/daemonsets/ds9").Json()["message"],
            "daemonsets.apps \"ds9\" not found");
  EXPECT_EQ(Get("/api/v1/widgets").Json(), json::parse(R"({"kind":"Status","apiVersion":"v1",
      "metadata":{},"status":"Failure","message":"the server could not find the requested resource",
      "reason":"NotFound","details":{},"code":404})"));
  api_.AddDaemonSet("kube-system", "ds1");
  EXPECT_EQ(Get("/apis/apps/v1/namespaces/kube-system/daemonsets/ds1").Json()["kind"], "DaemonSet");
}

TEST_F(FakeKubeApiTest, StrategicMergeReplacesTheWholeTaintList) {
  // The `kubectl taint ... k-` pitfall: spec.taints is atomic, so the list sent is the result.
  json node = FakeKubeApi::MakeNode("node-t");
  node["spec"]["taints"] = {Taint("aws-node-termination-handler/spot-itn", "evt-123"),
                            Taint("other", "x")};
  api_.AddNode(node);
  const std::string patch = json{{"spec", {{"taints", {Taint("other", "x")}}}}}.dump();
  HttpResponse r = Send("PATCH", "/api/v1/nodes/node-t?fieldManager=kubectl-taint", patch, kSmp);
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(api_.GetNode("node-t")->at("spec").at("taints"), json::array({Taint("other", "x")}));
  EXPECT_EQ(r.Json()["spec"]["taints"], json::array({Taint("other", "x")}));
}

TEST_F(FakeKubeApiTest, StrategicMergeMergesConditionsAndDeletesNulls) {
  json condition = {{"type", "SpotInterruption"}, {"status", "True"}};
  ASSERT_EQ(Send("PATCH", "/api/v1/nodes/node-a/status",
                 json{{"status", {{"conditions", {condition}}}}}.dump(), kSmp)
                .status,
            200);
  json conditions = api_.GetNode("node-a")->at("status").at("conditions");
  ASSERT_EQ(conditions.size(), 2u);  // merged by type with Ready
  EXPECT_EQ(conditions[0]["type"], "Ready");
  EXPECT_EQ(conditions[1], condition);

  // The main resource ignores status, as the node strategy does; null deletes a map key.
  ASSERT_EQ(
      Send("PATCH", "/api/v1/nodes/node-a",
           R"({"status":{"conditions":[]},"metadata":{"labels":{"kubernetes.io/os":null}}})", kSmp)
          .status,
      200);
  json stored = *api_.GetNode("node-a");
  EXPECT_EQ(stored["status"]["conditions"].size(), 2u);
  EXPECT_FALSE(stored["metadata"]["labels"].contains("kubernetes.io/os"));
}

TEST_F(FakeKubeApiTest, CordonGetsTheLifecycleTaintAndUncordonDropsIt) {
  auto has_taint = [&] {
    json node = *api_.GetNode("node-a");
    if (!node["spec"].contains("taints")) return false;
    for (const json& t : node["spec"]["taints"]) {
      if (t["key"] == "node.kubernetes.io/unschedulable" && t.contains("timeAdded")) return true;
    }
    return false;
  };
  ASSERT_EQ(
      Send("PATCH", "/api/v1/nodes/node-a", R"({"spec":{"unschedulable":true}})", kSmp).status,
      200);
  EXPECT_TRUE(WaitUntil(has_taint));
  ASSERT_EQ(
      Send("PATCH", "/api/v1/nodes/node-a", R"({"spec":{"unschedulable":null}})", kSmp).status,
      200);
  EXPECT_FALSE(api_.GetNode("node-a")->at("spec").contains("unschedulable"));
  EXPECT_TRUE(WaitUntil([&] { return !has_taint(); }));
}

TEST_F(FakeKubeApiTest, StaleResourceVersionInAPatchConflicts) {
  const std::string stale = NodeRv();
  ASSERT_EQ(
      Send("PATCH", "/api/v1/nodes/node-a", R"({"metadata":{"labels":{"x":"y"}}})", kMerge).status,
      200);
  const std::string fresh = NodeRv();
  EXPECT_NE(fresh, stale);
  HttpResponse conflict = Send(
      "PATCH", "/api/v1/nodes/node-a",
      json{{"metadata", {{"resourceVersion", stale}}}, {"spec", {{"taints", {Taint("k", "v")}}}}}
          .dump(),
      kMerge);
  EXPECT_EQ(conflict.status, 409);
  EXPECT_EQ(conflict.Json(), json::parse(R"({"kind":"Status","apiVersion":"v1","metadata":{},
      "status":"Failure","message":"Operation cannot be fulfilled on nodes \"node-a\": the object has been modified; please apply your changes to the latest version and try again",
      "reason":"Conflict","details":{"name":"node-a","kind":"nodes"},"code":409})"));
  HttpResponse ok = Send(
      "PATCH", "/api/v1/nodes/node-a",
      json{{"metadata", {{"resourceVersion", fresh}}}, {"spec", {{"taints", {Taint("k", "v")}}}}}
          .dump(),
      kMerge);
  EXPECT_EQ(ok.status, 200);
  EXPECT_NE(ok.Json()["metadata"]["resourceVersion"], fresh);
}

TEST_F(FakeKubeApiTest, JsonPatchTestOpGuardsTheWrite) {
  const std::string rv = NodeRv();
  const std::string add =
      json::array({{{"op", "test"}, {"path", "/metadata/resourceVersion"}, {"value", rv}},
                   {{"op", "add"}, {"path", "/spec/taints"}, {"value", json::array()}},
                   {{"op", "add"}, {"path", "/spec/taints/-"}, {"value", Taint("k", "v")}}})
          .dump();
  ASSERT_EQ(Send("PATCH", "/api/v1/nodes/node-a", add, kJsonPatch).status, 200);
  EXPECT_EQ(api_.GetNode("node-a")->at("spec").at("taints"), json::array({Taint("k", "v")}));

  HttpResponse failed = Send("PATCH", "/api/v1/nodes/node-a", add, kJsonPatch);  // rv is stale now
  EXPECT_EQ(failed.status, 422);
  EXPECT_EQ(failed.Json(), json::parse(R"({"kind":"Status","apiVersion":"v1","metadata":{},
      "status":"Failure","message":"the server rejected our request due to an error in our request",
      "reason":"Invalid","details":{},"code":422})"));
  const std::string remove_missing = R"([{"op":"remove","path":"/metadata/labels/nope"}])";
  EXPECT_EQ(Send("PATCH", "/api/v1/nodes/node-a", remove_missing, kJsonPatch).status, 422);
}

TEST_F(FakeKubeApiTest, UnknownPatchContentTypeIs415) {
  HttpResponse r = Send("PATCH", "/api/v1/nodes/node-a", R"({"spec":{}})", "application/json");
  EXPECT_EQ(r.status, 415);
  EXPECT_EQ(r.Json()["reason"], "UnsupportedMediaType");
}

TEST_F(FakeKubeApiTest, PutIsConditionalOnlyWithAResourceVersion) {
  json node = *api_.GetNode("node-a");
  node["metadata"]["resourceVersion"] = "5";
  node["spec"]["unschedulable"] = true;
  HttpResponse stale =
      Send("PUT", "/api/v1/nodes/node-a?fieldManager=kubectl-replace", node.dump());
  EXPECT_EQ(stale.status, 409);
  EXPECT_EQ(stale.Json()["message"],
            "Operation cannot be fulfilled on nodes \"node-a\": the object has been modified; "
            "please apply your changes to the latest version and try again");
  node["metadata"].erase("resourceVersion");
  EXPECT_EQ(Send("PUT", "/api/v1/nodes/node-a", node.dump()).status, 200);
  EXPECT_TRUE(api_.GetNode("node-a")->at("spec").at("unschedulable").get<bool>());
  EXPECT_EQ(Send("PUT", "/api/v1/nodes/nosuch", R"({"metadata":{"name":"nosuch"}})").status, 404);
}

TEST_F(FakeKubeApiTest, DryRunDoesNotPersist) {
  const std::string rv = NodeRv();
  HttpResponse r =
      Send("PATCH", "/api/v1/nodes/node-a?dryRun=All", R"({"spec":{"unschedulable":true}})", kSmp);
  EXPECT_EQ(r.status, 200);
  EXPECT_TRUE(r.Json()["spec"]["unschedulable"].get<bool>());
  EXPECT_FALSE(api_.GetNode("node-a")->at("spec").contains("unschedulable"));
  EXPECT_EQ(NodeRv(), rv);
}

TEST_F(FakeKubeApiTest, ConcurrentWriterBetweenGetAndPutCausesConflict) {
  api_.OnNextNodeWrite("node-a", [](json& node) { node["metadata"]["labels"]["raced"] = "yes"; });
  json node = Get("/api/v1/nodes/node-a").Json();
  node["spec"]["taints"] = {Taint("k", "v")};
  EXPECT_EQ(Send("PUT", "/api/v1/nodes/node-a", node.dump()).status, 409);
  json latest = Get("/api/v1/nodes/node-a").Json();
  EXPECT_EQ(latest["metadata"]["labels"]["raced"], "yes");
  latest["spec"]["taints"] = {Taint("k", "v")};
  EXPECT_EQ(Send("PUT", "/api/v1/nodes/node-a", latest.dump()).status, 200);
}

TEST_F(FakeKubeApiTest, EvictionWithoutBudgetDeletesGracefully) {
  AddPod("default", "web-1", {.owner_kind = "ReplicaSet", .labels = {{"app", "web"}}});
  HttpResponse r = Evict("default", "web-1");
  EXPECT_EQ(r.status, 201);
  EXPECT_EQ(r.body,
            R"({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Success","code":201})");
  json pod = Get("/api/v1/namespaces/default/pods/web-1").Json();
  EXPECT_TRUE(pod["metadata"].contains("deletionTimestamp"));
  EXPECT_EQ(pod["metadata"]["deletionGracePeriodSeconds"], 30);
  EXPECT_EQ(pod["status"]["conditions"].back()["type"], "DisruptionTarget");
  EXPECT_TRUE(
      WaitUntil([&] { return Get("/api/v1/namespaces/default/pods/web-1").status == 404; }));
  EXPECT_EQ(Evict("default", "web-1").Json()["message"], "pods \"web-1\" not found");
}

TEST_F(FakeKubeApiTest, EvictionBlockedByBudgetIs429WithoutRetryAfter) {
  AddPod("default", "web-1", {.labels = {{"app", "web"}}});
  api_.AddPdb({.ns = "default",
               .name = "web-pdb",
               .selector = {{"app", "web"}},
               .disruptions_allowed = 0,
               .current_healthy = 2,
               .desired_healthy = 2});
  HttpResponse r = Evict("default", "web-1");
  EXPECT_EQ(r.status, 429);
  EXPECT_EQ(r.headers.count("retry-after"), 0u);
  // Byte for byte, in the API server's field order (reference §2.9).
  EXPECT_EQ(r.body,
            nlohmann::ordered_json::parse(R"({"kind":"Status","apiVersion":"v1","metadata":{},
      "status":"Failure","message":"Cannot evict pod as it would violate the pod's disruption budget.",
      "reason":"TooManyRequests",
      "details":{"causes":[{"reason":"DisruptionBudget","message":"The disruption budget web-pdb needs 2 healthy pods and has 2 currently"}]},
      "code":429})")
                .dump());
  api_.SetPdbDisruptionsAllowed("default", "web-pdb", 1);
  EXPECT_EQ(Evict("default", "web-1").status, 201);
}

TEST_F(FakeKubeApiTest, EvictionDecrementsTheBudget) {
  AddPod("default", "web-1", {.labels = {{"app", "web"}}});
  AddPod("default", "web-2", {.labels = {{"app", "web"}}});
  api_.AddPdb(
      {.ns = "default", .name = "web-pdb", .selector = {{"app", "web"}}, .disruptions_allowed = 1});
  EXPECT_EQ(Evict("default", "web-1").status, 201);
  EXPECT_EQ(Evict("default", "web-2").status, 429);
}

TEST_F(FakeKubeApiTest, BudgetStillBeingProcessedIs429WithRetryAfter10) {
  AddPod("default", "web-1", {.labels = {{"app", "web"}}});
  api_.AddPdb({.ns = "default",
               .name = "web-pdb",
               .selector = {{"app", "web"}},
               .generation = 2,
               .observed_generation = 1});
  HttpResponse r = Evict("default", "web-1");
  EXPECT_EQ(r.status, 429);
  EXPECT_EQ(r.headers["retry-after"], "10");
  EXPECT_EQ(r.Json()["details"], json::parse(R"({"causes":[{"reason":"DisruptionBudget",
      "message":"The disruption budget web-pdb is still being processed by the server."}],
      "retryAfterSeconds":10})"));
}

TEST_F(FakeKubeApiTest, TwoBudgetsAreAnHttp500) {
  AddPod("default", "web-1", {.labels = {{"app", "web"}, {"tier", "front"}}});
  api_.AddPdb({.ns = "default", .name = "a", .selector = {{"app", "web"}}});
  api_.AddPdb({.ns = "default", .name = "b", .selector = {{"tier", "front"}}});
  api_.AddPdb({.ns = "default", .name = "everything", .selector = {}});  // selects nothing
  HttpResponse r = Evict("default", "web-1");
  EXPECT_EQ(r.status, 500);
  EXPECT_EQ(
      r.body,
      R"({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.","code":500})");
}

TEST_F(FakeKubeApiTest, ForbiddenEvictions) {
  AddPod("default", "web-1", {.labels = {{"app", "web"}}});
  api_.AddPdb({.ns = "default",
               .name = "web-pdb",
               .selector = {{"app", "web"}},
               .disruptions_allowed = -1});
  HttpResponse negative = Evict("default", "web-1");
  EXPECT_EQ(negative.status, 403);
  EXPECT_EQ(
      negative.Json()["message"],
      "poddisruptionbudget.policy \"web-pdb\" is forbidden: pdb disruptions allowed is negative");

  api_.SetNamespaceTerminating("default", true);
  HttpResponse terminating = Evict("default", "web-1");
  EXPECT_EQ(terminating.status, 403);
  EXPECT_EQ(terminating.Json(), json::parse(R"({"kind":"Status","apiVersion":"v1","metadata":{},
      "status":"Failure","message":"pods \"web-1\" is forbidden: unable to create new content in namespace default because it is being terminated",
      "reason":"Forbidden","details":{"name":"web-1","kind":"pods","causes":[{"reason":"NamespaceTerminating",
      "message":"namespace default is being terminated","field":"metadata.namespace"}]},"code":403})"));
}

TEST_F(FakeKubeApiTest, PodsThatDisruptNothingIgnoreTheBudget) {
  AddPod("default", "pending", {.labels = {{"app", "web"}}, .phase = "Pending", .ready = false});
  AddPod("default", "done", {.labels = {{"app", "web"}}, .phase = "Succeeded", .ready = false});
  AddPod("default", "unready", {.labels = {{"app", "web"}}, .ready = false});
  api_.AddPdb({.ns = "default",
               .name = "web-pdb",
               .selector = {{"app", "web"}},
               .disruptions_allowed = 0,
               .current_healthy = 2,
               .desired_healthy = 2});
  EXPECT_EQ(Evict("default", "pending").status, 201);
  EXPECT_EQ(Evict("default", "done").status, 201);
  EXPECT_FALSE(api_.GetPod("default", "done"));        // terminal: grace 0, gone at once
  EXPECT_EQ(Evict("default", "unready").status, 201);  // healthy budget, unready pod
}

TEST_F(FakeKubeApiTest, EvictionBodyIsChecked) {
  AddPod("default", "web-1");
  EXPECT_EQ(Send("POST", "/api/v1/namespaces/default/pods/web-1/eviction",
                 EvictionBody("default", "web-2"))
                .Json()["message"],
            "name in URL does not match name in Eviction object");
  EXPECT_EQ(Send("POST", "/api/v1/namespaces/default/pods/web-1/eviction",
                 EvictionBody("default", "web-1", "policy/v1beta1"))
                .status,
            201);
}

TEST_F(FakeKubeApiTest, GracefulDeleteThenKubeletRemovesThePod) {
  AddPod("default", "web-1");
  HttpResponse r = Send("DELETE", "/api/v1/namespaces/default/pods/web-1",
                        R"({"kind":"DeleteOptions","apiVersion":"v1","gracePeriodSeconds":20})");
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(r.Json()["metadata"]["deletionGracePeriodSeconds"], 20);
  EXPECT_EQ(Get("/api/v1/namespaces/default/pods/web-1").status, 200);
  EXPECT_TRUE(
      WaitUntil([&] { return Get("/api/v1/namespaces/default/pods/web-1").status == 404; }));

  AddPod("default", "web-2");
  EXPECT_EQ(
      Send("DELETE", "/api/v1/namespaces/default/pods/web-2", R"({"gracePeriodSeconds":0})").status,
      200);
  EXPECT_EQ(Get("/api/v1/namespaces/default/pods/web-2").status, 404);
}

TEST_F(FakeKubeApiTest, ShorterSecondDeleteShortensTermination) {
  AddPod("default", "slow");
  api_.SetPodBehaviour("default", "slow", {.termination_ms = 60'000});
  ASSERT_EQ(Send("DELETE", "/api/v1/namespaces/default/pods/slow", "").status, 200);
  // A longer grace changes nothing; a shorter one replaces it.
  EXPECT_EQ(Send("DELETE", "/api/v1/namespaces/default/pods/slow", R"({"gracePeriodSeconds":45})")
                .Json()["metadata"]["deletionGracePeriodSeconds"],
            30);
  EXPECT_EQ(Send("DELETE", "/api/v1/namespaces/default/pods/slow", R"({"gracePeriodSeconds":1})")
                .Json()["metadata"]["deletionGracePeriodSeconds"],
            1);
  EXPECT_TRUE(WaitUntil([&] { return !api_.GetPod("default", "slow"); }, 3'000));
}

TEST_F(FakeKubeApiTest, StuckPodStaysUntilForceDeleted) {
  AddPod("default", "stuck");
  api_.SetPodBehaviour("default", "stuck", {.stuck = true});
  ASSERT_EQ(Send("DELETE", "/api/v1/namespaces/default/pods/stuck", "").status, 200);
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  EXPECT_TRUE(api_.GetPod("default", "stuck"));
  EXPECT_EQ(
      Send("DELETE", "/api/v1/namespaces/default/pods/stuck", R"({"gracePeriodSeconds":0})").status,
      200);
  EXPECT_FALSE(api_.GetPod("default", "stuck"));
}

TEST_F(FakeKubeApiTest, RecreatedPodHasANewUid) {
  AddPod("default", "db-0", {.owner_kind = "StatefulSet"});
  api_.SetPodBehaviour("default", "db-0", {.recreate_same_name = true});
  const std::string uid = api_.GetPod("default", "db-0")->at("metadata").at("uid");
  ASSERT_EQ(Evict("default", "db-0").status, 201);
  EXPECT_TRUE(WaitUntil([&] {
    json pod = Get("/api/v1/namespaces/default/pods/db-0").Json();
    return pod["metadata"]["uid"] != uid && !pod["metadata"].contains("deletionTimestamp");
  }));
}

TEST_F(FakeKubeApiTest, ProtobufDeleteBodyIsDecoded) {
  // kubectl 1.33 `drain --disable-eviction --grace-period=0` (reference §3.10).
  const std::string hex = "6b3873000a130a027631120d44656c6574654f7074696f6e73120208001a002200";
  std::string body;
  for (size_t i = 0; i < hex.size(); i += 2) {
    body += static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16));
  }
  AddPod("default", "web-1");
  EXPECT_EQ(Send("DELETE", "/api/v1/namespaces/default/pods/web-1", body,
                 "application/vnd.kubernetes.protobuf")
                .status,
            200);
  EXPECT_EQ(Get("/api/v1/namespaces/default/pods/web-1").status, 404);  // grace 0 was decoded
  EXPECT_EQ(Send("DELETE", "/api/v1/namespaces/default/pods/web-2", "garbage",
                 "application/vnd.kubernetes.protobuf")
                .status,
            400);
}

TEST_F(FakeKubeApiTest, DeletePreconditionsConflict) {
  AddPod("default", "web-1");
  HttpResponse r = Send("DELETE", "/api/v1/namespaces/default/pods/web-1",
                        R"({"preconditions":{"uid":"not-the-uid"}})");
  EXPECT_EQ(r.status, 409);
  EXPECT_EQ(r.Json()["reason"], "Conflict");
  EXPECT_TRUE(api_.GetPod("default", "web-1"));
}

TEST_F(FakeKubeApiTest, LeasesNeedResourceVersionsToUpdate) {
  const std::string leases = "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases";
  EXPECT_EQ(Get(leases + "/agg").Json()["message"], "leases.coordination.k8s.io \"agg\" not found");
  json lease = {{"apiVersion", "coordination.k8s.io/v1"},
                {"kind", "Lease"},
                {"metadata", {{"name", "agg"}, {"namespace", "kube-system"}}},
                {"spec", {{"holderIdentity", "a"}, {"leaseDurationSeconds", 15}}}};
  HttpResponse created = Send("POST", leases, lease.dump());
  ASSERT_EQ(created.status, 201);
  HttpResponse again = Send("POST", leases, lease.dump());
  EXPECT_EQ(again.status, 409);
  EXPECT_EQ(again.Json()["reason"], "AlreadyExists");
  EXPECT_EQ(again.Json()["message"], "leases.coordination.k8s.io \"agg\" already exists");

  HttpResponse no_rv = Send("PUT", leases + "/agg", lease.dump());
  EXPECT_EQ(no_rv.status, 422);
  EXPECT_EQ(no_rv.Json()["message"],
            "leases.coordination.k8s.io \"agg\" is invalid: metadata.resourceVersion: Invalid "
            "value: 0x0: must be specified for an update");

  json renewed = created.Json();
  renewed["spec"]["holderIdentity"] = "b";
  HttpResponse ok = Send("PUT", leases + "/agg", renewed.dump());
  ASSERT_EQ(ok.status, 200);
  EXPECT_EQ(api_.GetLease("kube-system", "agg")->at("spec").at("holderIdentity"), "b");
  HttpResponse stale = Send("PUT", leases + "/agg", renewed.dump());
  EXPECT_EQ(stale.status, 409);
  EXPECT_EQ(stale.Json()["message"],
            "Operation cannot be fulfilled on leases.coordination.k8s.io \"agg\": the object has "
            "been modified; please apply your changes to the latest version and try again");

  lease["metadata"]["name"] = "fresh";
  EXPECT_EQ(Send("PUT", leases + "/fresh", lease.dump()).status, 201);  // create-on-update
  EXPECT_TRUE(api_.GetLease("kube-system", "fresh"));
}

TEST_F(FakeKubeApiTest, EventsAreValidatedStoredAndPatched) {
  json event = {{"kind", "Event"},
                {"apiVersion", "v1"},
                {"metadata", {{"name", "node-a.17d2a1b2c3d4e5f6"}, {"namespace", "default"}}},
                {"involvedObject", {{"kind", "Node"}, {"name", "node-a"}, {"apiVersion", "v1"}}},
                {"reason", "SpotInterruption"},
                {"message", "Spot interruption notice received"},
                {"type", "Warning"},
                {"count", 1},
                {"eventTime", nullptr}};
  ASSERT_EQ(Send("POST", "/api/v1/namespaces/default/events", event.dump()).status, 201);
  ASSERT_EQ(api_.Events().size(), 1u);

  json bad_type = event;
  bad_type["metadata"]["name"] = "other";
  bad_type["type"] = "Critical";
  EXPECT_EQ(Send("POST", "/api/v1/namespaces/default/events", bad_type.dump()).status, 422);
  json bad_namespace = event;
  bad_namespace["metadata"]["namespace"] = "kube-system";
  HttpResponse r = Send("POST", "/api/v1/namespaces/kube-system/events", bad_namespace.dump());
  EXPECT_EQ(r.status, 422);
  EXPECT_EQ(
      r.Json()["message"],
      "Event \"node-a.17d2a1b2c3d4e5f6\" is invalid: involvedObject.namespace: Invalid value: "
      "\"\": does not match event.namespace");

  const std::string patch = R"({"count":2,"lastTimestamp":"2026-11-22T10:40:00Z"})";
  EXPECT_EQ(Send("PATCH", "/api/v1/namespaces/default/events/missing", patch, kSmp).status, 404);
  EXPECT_EQ(Send("PATCH", "/api/v1/namespaces/default/events/node-a.17d2a1b2c3d4e5f6", patch, kSmp)
                .status,
            200);
  EXPECT_EQ(api_.Events()[0]["count"], 2);
}

TEST_F(FakeKubeApiTest, BearerTokensAreChecked) {
  api_.SetValidTokens({"t1"});
  HttpResponse none = Get("/api/v1/nodes/node-a");
  EXPECT_EQ(none.status, 401);
  EXPECT_EQ(
      none.body,
      R"({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"Unauthorized","reason":"Unauthorized","code":401})");
  EXPECT_EQ(Http("GET", api_.url() + "/api/v1/nodes/node-a", "", "", "t1").status, 200);
  api_.SetValidTokens({"t2"});  // rotation: the old token is revoked
  EXPECT_EQ(Http("GET", api_.url() + "/api/v1/nodes/node-a", "", "", "t1").status, 401);
}

TEST_F(FakeKubeApiTest, FaultsAnswerInsteadOfTheServer) {
  api_.InjectFault({.method = "GET",
                    .path_regex = "^/api/v1/nodes/node-a$",
                    .status = 503,
                    .retry_after_seconds = 2,
                    .count = 2});
  for (int i = 0; i < 2; ++i) {
    HttpResponse r = Get("/api/v1/nodes/node-a");
    EXPECT_EQ(r.status, 503);
    EXPECT_EQ(r.headers["retry-after"], "2");
    EXPECT_EQ(r.Json()["reason"], "ServiceUnavailable");
  }
  EXPECT_EQ(Get("/api/v1/nodes/node-a").status, 200);

  api_.InjectFault({.path_regex = "nodes", .reset_connection = true});
  EXPECT_EQ(Get("/api/v1/nodes/node-a").status, 0);
  api_.InjectFault({.path_regex = "nodes", .status = 0, .delay_ms = 300});
  const auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(Get("/api/v1/nodes/node-a").status, 200);
  EXPECT_GE(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(300));

  std::vector<FakeKubeApi::Request> journal = api_.Journal();
  ASSERT_EQ(journal.size(), 5u);
  EXPECT_EQ(journal[0].status, 503);
  EXPECT_EQ(journal[2].status, 200);
  EXPECT_EQ(journal[3].status, 0);
}

TEST_F(FakeKubeApiTest, PodListsPageWithLimitAndContinue) {
  for (int i = 0; i < 5; ++i) AddPod("default", "p" + std::to_string(i));
  api_.AddPod(FakeKubeApi::MakePod("default", "elsewhere", "node-b", {}));
  std::vector<size_t> pages;
  std::string next;
  do {
    json list = Get("/api/v1/pods?fieldSelector=spec.nodeName%3Dnode-a&limit=2" +
                    (next.empty() ? "" : "&continue=" + next))
                    .Json();
    ASSERT_EQ(list["kind"], "PodList");
    ASSERT_TRUE(list["metadata"].contains("resourceVersion"));
    for (const json& item : list["items"]) {
      EXPECT_FALSE(item.contains("kind"));
      EXPECT_EQ(item["spec"]["nodeName"], "node-a");
    }
    pages.push_back(list["items"].size());
    next = list["metadata"].value("continue", "");
  } while (!next.empty() && pages.size() < 10);
  EXPECT_EQ(pages, (std::vector<size_t>{2, 2, 1}));
  EXPECT_EQ(Get("/api/v1/namespaces/default/pods").Json()["items"].size(), 6u);

  HttpResponse bad = Get("/api/v1/pods?fieldSelector=spec.color%3Dblue");
  EXPECT_EQ(bad.status, 400);
  EXPECT_EQ(bad.Json()["message"], "field label not supported: spec.color");
}

TEST_F(FakeKubeApiTest, NodeListsFilterBySelectors) {
  api_.AddNode(FakeKubeApi::MakeNode("node-b"));
  api_.AddNode(FakeKubeApi::MakeNode("node-c"));
  auto names = [&](const std::string& query) {
    std::vector<std::string> out;
    const json list = Get("/api/v1/nodes?" + query).Json();
    for (const json& n : list["items"]) out.push_back(n["metadata"]["name"]);
    return out;
  };
  EXPECT_EQ(names("labelSelector=kubernetes.io%2Fhostname%20in%20(node-a%2Cnode-c)"),
            (std::vector<std::string>{"node-a", "node-c"}));
  EXPECT_EQ(names("fieldSelector=metadata.name%3Dnode-b"), (std::vector<std::string>{"node-b"}));
  EXPECT_EQ(names("limit=500").size(), 3u);
}

TEST_F(FakeKubeApiTest, JournalCountsAndWaits) {
  std::thread client([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    Send("PATCH", "/api/v1/nodes/node-a", R"({"spec":{"unschedulable":true}})", kSmp);
  });
  EXPECT_TRUE(api_.WaitForRequest("PATCH", "^/api/v1/nodes/node-a$", 5'000));
  client.join();
  EXPECT_EQ(api_.CountRequests("PATCH", "/api/v1/nodes/node-a"), 1);
  EXPECT_EQ(api_.CountRequests("", "nodes"), 1);
  EXPECT_FALSE(api_.WaitForRequest("DELETE", ".", 50));
  const FakeKubeApi::Request request = api_.Journal().at(0);
  EXPECT_EQ(request.content_type, kSmp);
  EXPECT_EQ(request.body, R"({"spec":{"unschedulable":true}})");
  api_.ClearJournal();
  EXPECT_EQ(api_.CountRequests("", "."), 0);
}

}  // namespace
}  // namespace nodewatch::testing
