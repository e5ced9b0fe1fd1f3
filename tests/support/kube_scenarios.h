// Cluster scenarios seeded into FakeKubeApi, shared by unit tests, end-to-end tests, benchmarks
// and the demo's expectations.
#pragma once

#include <string>

#include "tests/support/fake_kube_api.h"

namespace nodewatch::testing {

// A busy node of 40 pods, the worst case: two DaemonSet pods (their DaemonSets exist), a
// mirror pod, 30 ReplicaSet pods with 1-3 s grace, 4 StatefulSet pods with 300 s grace (longer
// than any notice window) and 3 pods behind a PodDisruptionBudget that never allows a disruption.
// Evictable: 37.
inline void SeedInterruptibleNode(FakeKubeApi& api, const std::string& node) {
  api.AddNode(FakeKubeApi::MakeNode(node));
  api.AddDaemonSet("kube-system", "cilium");
  api.AddDaemonSet("kube-system", "node-exporter");
  api.AddPod(FakeKubeApi::MakePod("kube-system", "cilium-" + node, node,
                                  {.owner_kind = "DaemonSet", .owner_name = "cilium"}));
  api.AddPod(FakeKubeApi::MakePod("kube-system", "node-exporter-" + node, node,
                                  {.owner_kind = "DaemonSet", .owner_name = "node-exporter"}));
  api.AddPod(FakeKubeApi::MakePod("kube-system", "kube-proxy-" + node, node, {.mirror = true}));
  for (int i = 0; i < 30; ++i) {
    api.AddPod(FakeKubeApi::MakePod(
        "default", node + "-web-" + std::to_string(i), node,
        {.owner_kind = "ReplicaSet", .labels = {{"app", "web"}}, .grace_seconds = 1 + i % 3}));
  }
  for (int i = 0; i < 4; ++i) {
    api.AddPod(FakeKubeApi::MakePod("default", node + "-db-" + std::to_string(i), node,
                                    {.owner_kind = "StatefulSet", .grace_seconds = 300}));
  }
  for (int i = 0; i < 3; ++i) {
    api.AddPod(FakeKubeApi::MakePod(
        "payments", node + "-api-" + std::to_string(i), node,
        {.owner_kind = "ReplicaSet", .labels = {{"app", "api-" + node}}, .grace_seconds = 3}));
  }
  api.AddPdb({.ns = "payments",
              .name = "api-" + node,
              .selector = {{"app", "api-" + node}},
              .disruptions_allowed = 0,
              .current_healthy = 3,
              .desired_healthy = 3});
}

constexpr int kInterruptibleNodeEvictable = 37;
constexpr int kInterruptibleNodeStaying = 3;

}  // namespace nodewatch::testing
