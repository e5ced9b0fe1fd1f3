#include "agent/collectors/net/pod_resolver.h"

#include <dirent.h>
#include <sys/stat.h>

#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace nodewatch::agent {

namespace {

bool IsUid(absl::string_view s) {
  if (s.size() != 36) return false;
  for (size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    const bool dash = i == 8 || i == 13 || i == 18 || i == 23;
    if (dash ? c != '-' : !absl::ascii_isxdigit(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

bool IsContainerId(absl::string_view s) {
  if (s.size() < 12 || s.size() > 64) return false;
  for (char c : s) {
    if (!absl::ascii_isxdigit(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

// "pod<uid>" (cgroupfs) or "kubepods[-<qos>]-pod<uid_with_underscores>.slice" (systemd).
std::optional<std::string> PodUid(absl::string_view component) {
  absl::string_view rest;
  if (absl::StartsWith(component, "pod")) {
    rest = component.substr(3);
  } else if (absl::StartsWith(component, "kubepods") && absl::EndsWith(component, ".slice")) {
    auto at = component.rfind("-pod");
    if (at == absl::string_view::npos) return std::nullopt;
    rest = component.substr(at + 4);
    rest.remove_suffix(6);
  } else {
    return std::nullopt;
  }
  std::string uid = absl::StrReplaceAll(rest, {{"_", "-"}});
  if (!IsUid(uid)) return std::nullopt;
  return uid;
}

// The container id in a container cgroup's name ("" when the name is not one we know: the cgroup
// still belongs to the pod, whatever the runtime calls it).
std::string ContainerId(absl::string_view component) {
  if (IsContainerId(component)) return std::string(component.data(), component.size());
  absl::ConsumeSuffix(&component, ".scope");  // systemd driver; CRI-O on cgroupfs has none
  if (absl::StartsWith(component, "crio-conmon-")) return std::string();
  for (absl::string_view prefix : {"cri-containerd-", "crio-", "docker-", "containerd-"}) {
    if (absl::ConsumePrefix(&component, prefix) && IsContainerId(component)) {
      return std::string(component.data(), component.size());
    }
  }
  return std::string();
}

}  // namespace

std::optional<PodRef> ParsePodCgroupPath(const std::string& relative_path) {
  std::vector<absl::string_view> parts = absl::StrSplit(relative_path, '/', absl::SkipEmpty());
  bool under_kubepods = false;
  for (size_t i = 0; i < parts.size(); ++i) {
    if (absl::StartsWith(parts[i], "kubepods")) under_kubepods = true;
    if (!under_kubepods) continue;
    auto uid = PodUid(parts[i]);
    if (!uid) continue;
    PodRef pod{.uid = *uid};
    // Deeper cgroups (systemd in a pod, a runtime's own) still belong to this container.
    if (i + 1 < parts.size()) pod.container_id = ContainerId(parts[i + 1]);
    return pod;
  }
  return std::nullopt;
}

std::optional<PodRef> ParsePodLogDirName(const std::string& name) {
  std::vector<std::string> parts = absl::StrSplit(name, '_');
  if (parts.size() != 3 || parts[0].empty() || parts[1].empty() || !IsUid(parts[2])) {
    return std::nullopt;
  }
  return PodRef{.uid = parts[2], .namespace_ = parts[0], .name = parts[1]};
}

CgroupPodResolver::CgroupPodResolver(std::string cgroup_root, std::string pods_log_dir,
                                     const Clock& clock, int64_t min_rescan_ms)
    : cgroup_root_(std::move(cgroup_root)),
      pods_log_dir_(std::move(pods_log_dir)),
      clock_(clock),
      min_rescan_ms_(min_rescan_ms) {}

std::optional<PodRef> CgroupPodResolver::Resolve(uint64_t cgroup_id) {
  std::unique_lock<std::mutex> lock(mu_);
  if (auto it = pods_.find(cgroup_id); it != pods_.end()) return it->second;
  if (host_.count(cgroup_id) != 0) return std::nullopt;
  const int64_t now = clock_.MonotonicNs();
  if (scanned_ && now - last_scan_ns_ < min_rescan_ms_ * 1'000'000) return std::nullopt;
  lock.unlock();  // the walk takes its own lock to publish what it found
  Rescan();
  lock.lock();
  if (auto it = pods_.find(cgroup_id); it != pods_.end()) return it->second;
  return std::nullopt;
}

size_t CgroupPodResolver::Rescan() {
  std::map<uint64_t, PodRef> pods;
  std::map<uint64_t, bool> seen;
  Walk(cgroup_root_, "", 0, pods, seen);
  // Names from the kubelet's pod log directories.
  std::map<std::string, PodRef> names;
  if (DIR* dir = opendir(pods_log_dir_.c_str()); dir != nullptr) {
    while (dirent* entry = readdir(dir)) {
      if (auto pod = ParsePodLogDirName(entry->d_name)) names[pod->uid] = *pod;
    }
    closedir(dir);
  }
  for (auto& [id, pod] : pods) {
    if (auto it = names.find(pod.uid); it != names.end()) {
      pod.namespace_ = it->second.namespace_;
      pod.name = it->second.name;
    }
  }
  std::map<uint64_t, bool> host;
  for (const auto& [id, unused] : seen) {
    if (pods.count(id) == 0) host[id] = true;
  }
  std::lock_guard<std::mutex> lock(mu_);
  const size_t found = pods.size();
  const int64_t now = clock_.MonotonicNs();
  for (const auto& [id, unused] : pods) last_seen_ns_[id] = now;
  for (auto it = last_seen_ns_.begin(); it != last_seen_ns_.end();) {
    const bool gone = pods.count(it->first) == 0;
    if (gone && now - it->second < kGoneGraceNs && pods_.count(it->first) != 0) {
      pods[it->first] = pods_[it->first];  // deleted a moment ago: still that pod's
      host.erase(it->first);
    }
    it = gone && now - it->second >= kGoneGraceNs ? last_seen_ns_.erase(it) : std::next(it);
  }
  pods_ = std::move(pods);
  host_ = std::move(host);
  last_scan_ns_ = now;
  scanned_ = true;
  return found;
}

void CgroupPodResolver::Walk(const std::string& path, const std::string& relative, int depth,
                             std::map<uint64_t, PodRef>& out, std::map<uint64_t, bool>& seen) {
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) return;
  const uint64_t id = st.st_ino;
  seen[id] = true;
  if (auto pod = ParsePodCgroupPath(relative)) out[id] = *pod;
  if (depth >= 12) return;  // kubelet trees are 3-5 deep; this bounds a pathological tree
  DIR* dir = opendir(path.c_str());
  if (dir == nullptr) return;
  std::vector<std::string> children;
  while (dirent* entry = readdir(dir)) {
    if (entry->d_type != DT_DIR || entry->d_name[0] == '.') continue;
    children.emplace_back(entry->d_name);
  }
  closedir(dir);
  for (const auto& child : children) {
    Walk(path + "/" + child, relative.empty() ? child : relative + "/" + child, depth + 1, out,
         seen);
  }
}

}  // namespace nodewatch::agent
