// nodewatch-fake-kube-api: the fake Kubernetes API server as a process, for `make demo` and
// manual runs with kubectl or the aggregator. It seeds Ready nodes with a realistic pod mix and
// logs every request as one line, `METHOD path?query -> status`.
//
//   nodewatch-fake-kube-api --port 18080 --node spot-a --node spot-b --pods-per-node 12
//   kubectl --server=http://127.0.0.1:18080 drain spot-a --ignore-daemonsets --force
//
// Per node: one DaemonSet pod (node-exporter), one mirror pod (kube-proxy-<node>), one StatefulSet
// pod with a 60 s grace period, and ReplicaSet pods of the apps web, api and worker. web and api
// have a PodDisruptionBudget that allows one disruption; every --pdb-recovery-ms the PDB
// controller is played: each budget allows one disruption again (the replacement became Ready).
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/fake_kube_api.h"

namespace {

using nodewatch::testing::FakeKubeApi;

volatile std::sig_atomic_t g_stop = 0;
void OnSignal(int) { g_stop = 1; }

constexpr const char* kUsage =
    "usage: nodewatch-fake-kube-api [--port N] [--node NAME]... [--pods-per-node N]\n"
    "                               [--max-termination-ms N] [--pdb-recovery-ms N]\n";

struct Flags {
  FakeKubeApi::Options options;
  std::vector<std::string> nodes;
  int pods_per_node = 12;
  int64_t pdb_recovery_ms = 5'000;  // 0: budgets never recover
};

bool ParseFlags(int argc, char** argv, Flags* flags) {
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (i + 1 >= argc) return false;
    const char* value = argv[++i];
    if (flag == "--port") {
      flags->options.port = std::atoi(value);
    } else if (flag == "--node") {
      flags->nodes.emplace_back(value);
    } else if (flag == "--pods-per-node") {
      flags->pods_per_node = std::atoi(value);
    } else if (flag == "--max-termination-ms") {
      flags->options.max_termination_ms = std::atoll(value);
    } else if (flag == "--pdb-recovery-ms") {
      flags->pdb_recovery_ms = std::atoll(value);
    } else {
      return false;
    }
  }
  return true;
}

// Seeds the nodes and their pods; returns how many pods each PDB app has, for the budgets.
std::map<std::string, int> Seed(FakeKubeApi& api, const Flags& flags) {
  std::map<std::string, int> app_pods;
  api.AddDaemonSet("kube-system", "node-exporter");
  for (const std::string& node : flags.nodes) {
    api.AddNode(FakeKubeApi::MakeNode(node));
    const std::vector<std::pair<std::string, FakeKubeApi::PodSpec>> fixed = {
        {"kube-system/node-exporter-" + node,
         {.owner_kind = "DaemonSet",
          .owner_name = "node-exporter",
          .labels = {{"app", "node-exporter"}}}},
        {"kube-system/kube-proxy-" + node, {.labels = {{"k8s-app", "kube-proxy"}}, .mirror = true}},
        {"default/db-" + node + "-0",
         {.owner_kind = "StatefulSet",
          .owner_name = "db",
          .labels = {{"app", "db"}},
          .grace_seconds = 60}}};
    int seeded = 0;
    for (const auto& [key, spec] : fixed) {
      if (seeded == flags.pods_per_node) break;
      ++seeded;
      const size_t slash = key.find('/');
      api.AddPod(FakeKubeApi::MakePod(key.substr(0, slash), key.substr(slash + 1), node, spec));
    }
    static const char* kApps[] = {"web", "api", "worker"};
    for (int i = 0; seeded < flags.pods_per_node; ++i, ++seeded) {
      const std::string app = kApps[i % 3];
      api.AddPod(FakeKubeApi::MakePod("default", app + "-" + node + "-" + std::to_string(i), node,
                                      {.owner_kind = "ReplicaSet",
                                       .owner_name = app + "-7d4b9c",
                                       .labels = {{"app", app}},
                                       .empty_dir = app == "worker"}));
      ++app_pods[app];
    }
  }
  return app_pods;
}

}  // namespace

int main(int argc, char** argv) {
  Flags flags;
  if (!ParseFlags(argc, argv, &flags)) {
    std::fputs(kUsage, stderr);
    return 2;
  }
  flags.options.on_request = [](const FakeKubeApi::Request& r) {
    const std::string status = r.status == 0 ? "reset" : std::to_string(r.status);
    std::printf("%s %s%s%s -> %s\n", r.method.c_str(), r.path.c_str(), r.query.empty() ? "" : "?",
                r.query.c_str(), status.c_str());
    std::fflush(stdout);
  };
  FakeKubeApi api(flags.options);
  const std::map<std::string, int> app_pods = Seed(api, flags);
  std::vector<std::string> budgets;
  for (const char* app : {"web", "api"}) {
    auto it = app_pods.find(app);
    if (it == app_pods.end()) continue;
    api.AddPdb({.ns = "default",
                .name = std::string(app) + "-pdb",
                .selector = {{"app", app}},
                .disruptions_allowed = 1,
                .current_healthy = it->second,
                .desired_healthy = it->second - 1});
    budgets.push_back(std::string(app) + "-pdb");
  }
  if (!api.Start()) {
    std::fprintf(stderr, "nodewatch-fake-kube-api: cannot listen on port %d\n", flags.options.port);
    return 1;
  }
  std::printf("fake-kube-api listening on %s\n", api.url().c_str());
  std::fflush(stdout);
  std::signal(SIGINT, OnSignal);
  std::signal(SIGTERM, OnSignal);
  auto next_recovery = std::chrono::steady_clock::now();
  while (g_stop == 0) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    if (flags.pdb_recovery_ms <= 0 || std::chrono::steady_clock::now() < next_recovery) continue;
    for (const std::string& pdb : budgets) api.SetPdbDisruptionsAllowed("default", pdb, 1);
    next_recovery += std::chrono::milliseconds(flags.pdb_recovery_ms);
  }
  api.Stop();
  return 0;
}
