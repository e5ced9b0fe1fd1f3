// Pod attribution without the API server: cgroup id -> container -> pod UID, namespace and name,
// from the cgroup v2 tree the kubelet builds and the kubelet's pod log directories.
//
// Layouts understood (path components under the cgroup v2 mount, kubelet's own naming):
//   cgroupfs driver: kubepods/[besteffort|burstable/]pod<uid>/<container>
//   systemd driver:  kubepods.slice/kubepods-<qos>.slice/kubepods-<qos>-pod<uid_>.slice/<container>
// with <container> one of "<64 hex>", "cri-containerd-<id>.scope", "crio-<id>[.scope]",
// "docker-<id>.scope"; any other name below a pod (crio-conmon, another runtime's) still belongs
// to the pod, with no container id. A "kubepods"
// component may sit below other components (Talos, kind, nested runtimes). Cgroups outside any
// pod are the node's own processes.
// Names come from <pods_log_dir>/<namespace>_<name>_<uid>/ (namespace and name cannot contain
// '_'); without one, only the UID is known. A pod's cgroups stay attributed to it for two minutes
// after they are gone, so its last interval is not counted as the node's.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>

#include "common/clock.h"

namespace nodewatch::agent {

struct PodRef {
  std::string uid;
  std::string namespace_;
  std::string name;
  std::string container_id;  // empty for the pod-level cgroup
};

// Parses a cgroup path relative to the cgroup v2 mount ("kubepods/burstable/pod<uid>/<cid>").
// nullopt: not a pod's cgroup.
std::optional<PodRef> ParsePodCgroupPath(const std::string& relative_path);

// Parses "<namespace>_<name>_<uid>" (a /var/log/pods directory). nullopt if malformed.
std::optional<PodRef> ParsePodLogDirName(const std::string& name);

class PodResolver {
 public:
  virtual ~PodResolver() = default;
  // The pod a cgroup belongs to, or nullopt for the node's own processes (and cgroups gone before
  // they could be seen).
  virtual std::optional<PodRef> Resolve(uint64_t cgroup_id) = 0;
};

class CgroupPodResolver final : public PodResolver {
 public:
  // Rescans the tree when an unknown cgroup id shows up, at most once per `min_rescan_ms`.
  CgroupPodResolver(std::string cgroup_root, std::string pods_log_dir, const Clock& clock,
                    int64_t min_rescan_ms = 5'000);
  std::optional<PodRef> Resolve(uint64_t cgroup_id) override;
  // Walks the tree now. Returns the number of pod cgroups found.
  size_t Rescan();

 private:
  void Walk(const std::string& path, const std::string& relative, int depth,
            std::map<uint64_t, PodRef>& out, std::map<uint64_t, bool>& seen);

  const std::string cgroup_root_;
  const std::string pods_log_dir_;
  const Clock& clock_;
  const int64_t min_rescan_ms_;
  std::mutex mu_;
  std::map<uint64_t, PodRef> pods_;  // cgroup id -> pod
  std::map<uint64_t, bool> host_;    // cgroup ids known to be the node's own
  // Pods whose cgroups are gone keep their attribution this long (late counts of a deleted pod:
  // the last interval's traffic, lingering sockets), keyed by cgroup id -> when last seen.
  static constexpr int64_t kGoneGraceNs = 120'000'000'000;
  std::map<uint64_t, int64_t> last_seen_ns_;
  int64_t last_scan_ns_ = 0;
  bool scanned_ = false;
};

}  // namespace nodewatch::agent
