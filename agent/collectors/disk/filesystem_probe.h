// FilesystemProbe: the node's mounts and their capacity, the seam between the filesystem
// collector and the kernel (STYLE.md G2); tests use a fake that can also hang like a dead NFS
// server.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace nodewatch::agent {

struct MountEntry {
  std::string mountpoint;
  std::string device;
  std::string fstype;
};

struct FsStats {
  uint64_t size_bytes = 0;
  uint64_t available_bytes = 0;  // to non-root users, as df shows
  uint64_t inodes = 0;
  uint64_t inodes_free = 0;
};

class FilesystemProbe {
 public:
  virtual ~FilesystemProbe() = default;
  // The host's mounts worth watching (pseudo filesystems, container layers and pod volumes left
  // out), at most one per mountpoint.
  virtual absl::StatusOr<std::vector<MountEntry>> Mounts() = 0;
  // statfs of a mountpoint. May block for as long as the filesystem does (a dead NFS server):
  // callers bound it with a timeout.
  virtual absl::StatusOr<FsStats> Statfs(const std::string& mountpoint) = 0;
};

// Reads `<proc_root>/1/mounts` (the host's mount table, also from inside a container given the
// host's /proc) and statfs()es through `<proc_root>/1/root` when proc_root is not /proc.
class FilesystemProbeImpl final : public FilesystemProbe {
 public:
  explicit FilesystemProbeImpl(std::string proc_root = "/proc")
      : proc_root_(std::move(proc_root)) {}
  absl::StatusOr<std::vector<MountEntry>> Mounts() override;
  absl::StatusOr<FsStats> Statfs(const std::string& mountpoint) override;

 private:
  std::string proc_root_;
};

// Parses a mounts table (fstab format, octal escapes such as \040 decoded) and keeps the
// filesystems worth watching. Exposed for tests.
std::vector<MountEntry> ParseMounts(const std::string& text);

}  // namespace nodewatch::agent
