#include "agent/collectors/disk/filesystem_probe.h"

#include <sys/statvfs.h>

#include <cerrno>
#include <cstring>
#include <set>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/file_util.h"

namespace nodewatch::agent {
namespace {

// Filesystem types that hold no user data (node_exporter's default exclusions, plus tmpfs-like
// per-pod mounts handled by the mountpoint rules below).
const std::set<std::string>& IgnoredTypes() {
  static const auto* types = new std::set<std::string>{
      "autofs",     "binfmt_misc", "bpf",       "cgroup",   "cgroup2", "configfs",  "debugfs",
      "devpts",     "devtmpfs",    "efivarfs",  "erofs",    "fusectl", "hugetlbfs", "iso9660",
      "mqueue",     "nsfs",        "overlay",   "proc",     "procfs",  "pstore",    "ramfs",
      "rpc_pipefs", "securityfs",  "selinuxfs", "squashfs", "sysfs",   "tracefs"};
  return *types;
}

// Pod volumes, container layers and kernel interfaces: thousands on a busy node, none of them
// the node's disks.
bool IgnoredMountpoint(const std::string& m) {
  for (const char* prefix : {"/proc/", "/sys/", "/dev/", "/run/netns/", "/run/containerd/",
                             "/var/lib/kubelet/pods/", "/var/lib/containerd/", "/var/lib/docker/",
                             "/var/lib/containers/storage/", "/run/credentials/"}) {
    if (absl::StartsWith(m, prefix)) return true;
  }
  return m == "/proc" || m == "/sys" || m == "/dev";
}

// "\040" -> " " as the kernel escapes spaces, tabs, newlines and backslashes.
std::string Unescape(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 3 < s.size() && s[i + 1] >= '0' && s[i + 1] <= '7' && s[i + 2] >= '0' &&
        s[i + 2] <= '7' && s[i + 3] >= '0' && s[i + 3] <= '7') {
      out += static_cast<char>((s[i + 1] - '0') * 64 + (s[i + 2] - '0') * 8 + (s[i + 3] - '0'));
      i += 3;
    } else {
      out += s[i];
    }
  }
  return out;
}

}  // namespace

std::vector<MountEntry> ParseMounts(const std::string& text) {
  std::vector<MountEntry> out;
  std::set<std::string> seen;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string device, mountpoint, fstype;
    if (!(fields >> device >> mountpoint >> fstype)) continue;
    mountpoint = Unescape(mountpoint);
    if (IgnoredTypes().count(fstype) > 0 || IgnoredMountpoint(mountpoint)) continue;
    if (!seen.insert(mountpoint).second) continue;  // stacked mounts: the first is listed
    out.push_back({mountpoint, Unescape(device), fstype});
  }
  return out;
}

absl::StatusOr<std::vector<MountEntry>> FilesystemProbeImpl::Mounts() {
  auto text = ReadFileToString(proc_root_ + "/1/mounts");
  if (!text.ok()) return text.status();
  return ParseMounts(*text);
}

absl::StatusOr<FsStats> FilesystemProbeImpl::Statfs(const std::string& mountpoint) {
  const std::string path = proc_root_ == "/proc" ? mountpoint : proc_root_ + "/1/root" + mountpoint;
  struct statvfs st {};
  if (statvfs(path.c_str(), &st) != 0) {
    return absl::UnavailableError(absl::StrCat("statfs ", path, ": ", std::strerror(errno)));
  }
  const uint64_t unit = st.f_frsize != 0 ? st.f_frsize : st.f_bsize;
  return FsStats{.size_bytes = st.f_blocks * unit,
                 .available_bytes = st.f_bavail * unit,
                 .inodes = st.f_files,
                 .inodes_free = st.f_ffree};
}

}  // namespace nodewatch::agent
