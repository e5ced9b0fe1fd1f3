// Replays the traffic real kubectl 1.20 and 1.33 sent to a recording server
// (tests/data/kubectl-recordings, reference/kubernetes-api.md §3 and §12) against FakeKubeApi,
// seeded with the same cluster, and checks that the fake answers every request with the recorded
// status code and ends in the state kubectl meant to produce.
//
// Normalisations, each because the fake follows the real API server where the recorder did not:
//  - Time runs 10x faster (kTimeScale) and the kubelet simulator finishes a graceful delete in
//    150 ms, so the 1 s wait-for-delete polls still see 200 then 404. A poll
//    (GET /api/v1/namespaces/{ns}/pods/{p}) matches when the fake's answers are 200s then 404s and
//    the first 404 comes at the recorded poll or earlier: the real server deletes terminal pods
//    (job-done) and grace-0 deletes at once, where the recorder kept them for 2 s.
//  - Watch requests (?watch=true) are skipped: the fake does not serve watches.
//  - k133-drain-multipdb201 recorded a deliberately unfaithful server (201 with a Failure body,
//    §3.8); the faithful answer to that eviction is 500.
//  - The recorder's PDB was a rejection counter; here it is a real budget that the PDB
//    controller (the test) replenishes before the eviction the recorder let through.
#include <curl/curl.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <optional>
#include <regex>
#include <set>
#include <thread>

#include "tests/support/fake_kube_api.h"

namespace nodewatch::testing {
namespace {

using json = nlohmann::json;

constexpr double kTimeScale = 0.1;

struct RecordedRequest {
  double at_s = 0;  // since the first request
  std::string method;
  std::string target;  // path?query
  int status = 0;
  std::map<std::string, std::string> headers;
  std::string body;
};

std::string Unhex(const std::string& hex) {
  std::string bytes;
  for (size_t i = 0; i + 1 < hex.size(); i += 2) {
    bytes += static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16));
  }
  return bytes;
}

// Parses `[+ 0.27s] POST /path -> 201` entries with their indented header and body lines.
std::vector<RecordedRequest> ParseRecording(const std::string& path) {
  static const std::regex kEntry(R"(^\[\+\s*([0-9.]+)s\]\s+(\S+)\s+(\S+)\s+->\s+(\d+)\s*$)");
  static const std::regex kHeader(R"(^\s+([A-Za-z-]+): (.*)$)");
  std::vector<RecordedRequest> entries;
  std::ifstream in(path);
  std::smatch m;
  for (std::string line; std::getline(in, line);) {
    if (std::regex_match(line, m, kEntry)) {
      entries.push_back({std::stod(m[1]), m[2], m[3], std::stoi(m[4]), {}, ""});
      continue;
    }
    if (entries.empty()) continue;
    const std::string text = line.substr(std::min(line.find_first_not_of(' '), line.size()));
    if (text.rfind("hex:", 0) == 0) {
      entries.back().body = Unhex(text.substr(4, text.find(' ') - 4));
    } else if (!text.empty() && (text[0] == '{' || text[0] == '[')) {
      entries.back().body = text;
    } else if (std::regex_match(line, m, kHeader)) {
      entries.back().headers[m[1]] = m[2];
    }
  }
  return entries;
}

long Send(const std::string& base_url, const RecordedRequest& r) {
  CURL* curl = curl_easy_init();
  curl_slist* headers = curl_slist_append(nullptr, "Expect:");
  for (const char* name : {"Accept", "Content-Type"}) {
    if (auto h = r.headers.find(name); h != r.headers.end()) {
      headers = curl_slist_append(headers, (h->first + ": " + h->second).c_str());
    }
  }
  std::string ignored;
  curl_easy_setopt(curl, CURLOPT_URL, (base_url + r.target).c_str());
  curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, r.method.c_str());
  if (r.method != "GET") {
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, r.body.data());
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE, static_cast<long>(r.body.size()));
  }
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(
      curl, CURLOPT_WRITEFUNCTION, +[](char* data, size_t size, size_t n, void* out) {
        static_cast<std::string*>(out)->append(data, size * n);
        return size * n;
      });
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &ignored);
  curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, 10'000L);
  long status = 0;
  if (curl_easy_perform(curl) == CURLE_OK) curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
  curl_slist_free_all(headers);
  curl_easy_cleanup(curl);
  return status;
}

// How web-1's PodDisruptionBudget behaves (the recorder's PDB_MODE / PDB_REJECTIONS).
enum class Budget {
  kRejects,        // disruptionsAllowed 0 (429, no Retry-After) until the controller ticks
  kGenerationLag,  // observedGeneration behind (429, Retry-After: 10) until the controller ticks
  kTwoBudgets,     // two PDBs select web-1 (500)
};

// What the cluster must look like once kubectl is done.
enum class EndState { kAny, kCordoned, kUncordoned, kTaintsAsPatched };

struct Scenario {
  std::string name;
  bool cordoned_tainted = false;  // NODE_PRESET=cordoned-tainted (§3.11)
  Budget budget = Budget::kRejects;
  int rejections = 2;  // web-1 evictions refused before the controller replenishes the budget
  EndState end = EndState::kAny;
  std::optional<std::set<std::string>> pods_left;  // pods still on mynode after a drain
  std::map<std::string, int> faithful_status;      // "METHOD target" -> what the real server says
};

// Names the scenario in gtest output instead of dumping its bytes.
void PrintTo(const Scenario& s, std::ostream* os) { *os << s.name; }

const std::set<std::string> kDrained = {"ds-pod", "kube-proxy-mynode"};
const std::set<std::string> kWeb1Left = {"ds-pod", "kube-proxy-mynode", "web-1"};
const std::set<std::string> kAllPods = {"bare-pod",          "cache-pod", "ds-pod", "job-done",
                                        "kube-proxy-mynode", "web-1",     "web-2"};

std::vector<Scenario> Scenarios() {
  return {
      {.name = "k120-cordon", .end = EndState::kCordoned},
      {.name = "k133-cordon", .end = EndState::kCordoned},
      {.name = "k120-uncordon", .cordoned_tainted = true, .end = EndState::kUncordoned},
      {.name = "k133-uncordon", .cordoned_tainted = true, .end = EndState::kUncordoned},
      {.name = "k120-taint", .end = EndState::kTaintsAsPatched},
      {.name = "k133-taint", .end = EndState::kTaintsAsPatched},
      {.name = "k120-taint2", .cordoned_tainted = true, .end = EndState::kTaintsAsPatched},
      {.name = "k133-taint2", .cordoned_tainted = true, .end = EndState::kTaintsAsPatched},
      {.name = "k120-untaint", .cordoned_tainted = true, .end = EndState::kTaintsAsPatched},
      {.name = "k133-untaint", .cordoned_tainted = true, .end = EndState::kTaintsAsPatched},
      {.name = "k120-drain-noflags", .end = EndState::kCordoned, .pods_left = kAllPods},
      {.name = "k120-drain", .end = EndState::kCordoned, .pods_left = kDrained},
      {.name = "k133-drain", .end = EndState::kCordoned, .pods_left = kDrained},
      {.name = "k120-drain-noevict", .end = EndState::kCordoned, .pods_left = kDrained},
      {.name = "k133-drain-noevict", .end = EndState::kCordoned, .pods_left = kDrained},
      {.name = "k133-drain-retryafter",
       .budget = Budget::kGenerationLag,
       .end = EndState::kCordoned,
       .pods_left = kDrained},
      {.name = "k133-drain-timeout",
       .rejections = 100,
       .end = EndState::kCordoned,
       .pods_left = kWeb1Left},
      {.name = "k133-drain-multipdb500",
       .budget = Budget::kTwoBudgets,
       .end = EndState::kCordoned,
       .pods_left = kWeb1Left},
      {.name = "k133-drain-multipdb201",
       .budget = Budget::kTwoBudgets,
       .end = EndState::kCordoned,
       .pods_left = kWeb1Left,
       .faithful_status = {{"POST /api/v1/namespaces/default/pods/web-1/eviction", 500}}},
      {.name = "k133-get-missing"},
      {.name = "k133-replace-conflict"},
      {.name = "k120-watch"},
      {.name = "k133-watch"},
      {.name = "k133-watch-list"},
      {.name = "k133-watch-410"},
  };
}

std::string RecordingPath(const std::string& name) {
  return std::string(NODEWATCH_TEST_DATA_DIR) + "/kubectl-recordings/" + name + ".requests.txt";
}

json NoScheduleTaint(const std::string& key, const std::string& value) {
  json taint = {{"effect", "NoSchedule"}, {"key", key}};
  if (!value.empty()) taint["value"] = value;
  return taint;
}

json UnschedulableTaint() {
  json taint = NoScheduleTaint("node.kubernetes.io/unschedulable", "");
  taint["timeAdded"] = "2024-01-01T00:00:00Z";
  return taint;
}

// mynode and the seven pods of reference §3, with web-1's budget.
void SeedRecordedCluster(FakeKubeApi& api, const Scenario& s) {
  json node = FakeKubeApi::MakeNode("mynode");
  if (s.cordoned_tainted) {
    node["spec"]["unschedulable"] = true;
    node["spec"]["taints"] = {UnschedulableTaint(),
                              NoScheduleTaint("aws-node-termination-handler/spot-itn", "evt-123")};
  }
  api.AddNode(node);
  api.AddDaemonSet("kube-system", "ds1");
  struct SeedPod {
    std::string ns;
    std::string name;
    FakeKubeApi::PodSpec spec;
  };
  const std::vector<SeedPod> pods = {
      {"default",
       "web-1",
       {.owner_kind = "ReplicaSet", .labels = {{"app", "web"}, {"instance", "web-1"}}}},
      {"default",
       "web-2",
       {.owner_kind = "ReplicaSet", .labels = {{"app", "web"}, {"instance", "web-2"}}}},
      {"kube-system", "ds-pod", {.owner_kind = "DaemonSet", .owner_name = "ds1"}},
      {"kube-system", "kube-proxy-mynode", {.mirror = true}},
      {"default", "bare-pod", {}},
      {"default", "cache-pod", {.owner_kind = "ReplicaSet", .empty_dir = true}},
      {"default", "job-done", {.owner_kind = "Job", .phase = "Succeeded", .ready = false}}};
  for (const auto& [ns, name, spec] : pods) {
    api.AddPod(FakeKubeApi::MakePod(ns, name, "mynode", spec));
  }
  FakeKubeApi::Pdb pdb{.ns = "default",
                       .name = "web-pdb",
                       .selector = {{"instance", "web-1"}},
                       .disruptions_allowed = 0,
                       .current_healthy = 2,
                       .desired_healthy = 2};
  if (s.budget == Budget::kGenerationLag) {
    pdb.disruptions_allowed = 1;
    pdb.generation = 2;
  }
  api.AddPdb(pdb);
  if (s.budget == Budget::kTwoBudgets) {
    pdb.name = "web-pdb-copy";
    api.AddPdb(pdb);
  }
}

// The PDB controller catching up: the budget lets the next eviction through.
void ReplenishBudget(FakeKubeApi& api, const Scenario& s) {
  if (s.budget == Budget::kGenerationLag) {
    api.AddPdb({.ns = "default",
                .name = "web-pdb",
                .selector = {{"instance", "web-1"}},
                .disruptions_allowed = 1,
                .current_healthy = 2,
                .desired_healthy = 1,
                .generation = 2,
                .observed_generation = 2});
  } else {
    api.SetPdbDisruptionsAllowed("default", "web-pdb", 1);
  }
}

bool WaitUntil(const std::function<bool()>& done) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(3);
  while (!done() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return done();
}

json Taints(FakeKubeApi& api) {
  json node = *api.GetNode("mynode");
  return node["spec"].contains("taints") ? node["spec"]["taints"] : json::array();
}

void CheckEndState(FakeKubeApi& api, const Scenario& s, const std::vector<RecordedRequest>& log) {
  const json node = *api.GetNode("mynode");
  const bool unschedulable = node["spec"].value("unschedulable", false);
  switch (s.end) {
    case EndState::kAny:
      break;
    case EndState::kCordoned:
      EXPECT_TRUE(unschedulable);
      EXPECT_TRUE(WaitUntil([&] {
        const json taints = Taints(api);
        return taints.size() == 1 && taints[0]["key"] == "node.kubernetes.io/unschedulable" &&
               taints[0]["effect"] == "NoSchedule" && taints[0].contains("timeAdded");
      })) << "the node lifecycle controller taints a cordoned node: "
          << Taints(api).dump();
      break;
    case EndState::kUncordoned:
      EXPECT_FALSE(node["spec"].contains("unschedulable"));
      EXPECT_TRUE(WaitUntil([&] {
        return Taints(api) ==
               json::array({NoScheduleTaint("aws-node-termination-handler/spot-itn", "evt-123")});
      })) << Taints(api).dump();
      break;
    case EndState::kTaintsAsPatched: {
      // kubectl taint sends the complete new list; the node must hold exactly that list.
      auto patch = std::find_if(log.rbegin(), log.rend(),
                                [](const RecordedRequest& r) { return r.method == "PATCH"; });
      ASSERT_NE(patch, log.rend());
      EXPECT_EQ(Taints(api), json::parse(patch->body)["spec"]["taints"]);
      break;
    }
  }
  if (s.pods_left) {
    std::set<std::string> left;
    for (const json& pod : api.PodsOnNode("mynode")) left.insert(pod["metadata"]["name"]);
    EXPECT_EQ(left, *s.pods_left);
  }
}

// Checks one pod's wait-for-delete polls (see the normalisation note at the top).
void CheckPolls(const std::string& pod, const std::vector<int>& recorded,
                const std::vector<int>& got) {
  auto first_404 = [](const std::vector<int>& codes) {
    auto it = std::find(codes.begin(), codes.end(), 404);
    return it == codes.end() ? -1 : static_cast<int>(it - codes.begin());
  };
  const int got_gone = first_404(got);
  for (size_t i = 0; i < got.size(); ++i) {
    const bool gone = got_gone >= 0 && static_cast<int>(i) >= got_gone;
    EXPECT_EQ(got[i], gone ? 404 : 200) << pod << " poll " << i;
  }
  const int recorded_gone = first_404(recorded);
  if (recorded_gone < 0) {
    EXPECT_EQ(got_gone, -1) << pod << " disappeared but kubectl saw it stay";
  } else {
    EXPECT_GE(got_gone, 0) << pod << " never disappeared";
    EXPECT_LE(got_gone, recorded_gone) << pod << " disappeared later than recorded";
  }
}

class KubectlReplayTest : public ::testing::TestWithParam<Scenario> {};

TEST_P(KubectlReplayTest, FakeAnswersAsRecorded) {
  const Scenario& s = GetParam();
  const std::vector<RecordedRequest> log = ParseRecording(RecordingPath(s.name));
  ASSERT_FALSE(log.empty()) << RecordingPath(s.name);
  FakeKubeApi api({.max_termination_ms = 150, .node_lifecycle_delay_ms = 20});
  SeedRecordedCluster(api, s);
  ASSERT_TRUE(api.Start());

  static const std::regex kPodPoll("^/api/v1/namespaces/[^/]+/pods/[^/?]+$");
  std::map<std::string, std::pair<std::vector<int>, std::vector<int>>> polls;
  int web1_evictions = 0;
  for (size_t i = 0; i < log.size(); ++i) {
    const RecordedRequest& r = log[i];
    if (i > 0) {
      std::this_thread::sleep_for(
          std::chrono::duration<double>((r.at_s - log[i - 1].at_s) * kTimeScale));
    }
    if (r.target.find("watch=true") != std::string::npos) continue;
    if (r.method == "POST" && r.target == "/api/v1/namespaces/default/pods/web-1/eviction" &&
        web1_evictions++ == s.rejections) {
      ReplenishBudget(api, s);
    }
    const long status = Send(api.url(), r);
    const std::string request = r.method + " " + r.target;
    auto faithful = s.faithful_status.find(request);
    const int expected = faithful != s.faithful_status.end() ? faithful->second : r.status;
    if (r.method == "GET" && std::regex_match(r.target, kPodPoll)) {
      polls[r.target].first.push_back(expected);
      polls[r.target].second.push_back(static_cast<int>(status));
    } else {
      EXPECT_EQ(status, expected) << s.name << " request " << i << ": " << request;
    }
  }
  for (const auto& [pod, codes] : polls) CheckPolls(pod, codes.first, codes.second);
  CheckEndState(api, s, log);
}

INSTANTIATE_TEST_SUITE_P(Recordings, KubectlReplayTest, ::testing::ValuesIn(Scenarios()),
                         [](const ::testing::TestParamInfo<Scenario>& info) {
                           std::string name = info.param.name;
                           std::replace(name.begin(), name.end(), '-', '_');
                           return name;
                         });

TEST(KubectlRecordings, EveryRecordingIsReplayed) {
  std::set<std::string> covered;
  for (const Scenario& s : Scenarios()) covered.insert(s.name);
  const std::string suffix = ".requests.txt";
  int recordings = 0;
  for (const auto& entry : std::filesystem::directory_iterator(
           std::string(NODEWATCH_TEST_DATA_DIR) + "/kubectl-recordings")) {
    const std::string file = entry.path().filename().string();
    if (file.size() <= suffix.size() || file.substr(file.size() - suffix.size()) != suffix) {
      continue;
    }
    ++recordings;
    EXPECT_EQ(covered.count(file.substr(0, file.size() - suffix.size())), 1u) << file;
  }
  EXPECT_EQ(recordings, static_cast<int>(covered.size()));
}

}  // namespace
}  // namespace nodewatch::testing
