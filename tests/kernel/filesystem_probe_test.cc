// The filesystem probe as the agent runs it on Talos: in its own mount namespace, reading the
// host's mounts and statfs()ing them through the host's /proc (`<proc_root>/1/root`). Here the
// "host" is a child in a new mount namespace with a tmpfs of known size that this test's own
// namespace does not see; `<proc_root>/1` points at the child's /proc entry. Root only (mount
// namespaces and mounts); CI runs it as root.
#include "agent/collectors/disk/filesystem_probe.h"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <string>

#include "gtest/gtest.h"
#include "tests/support/process.h"

namespace nodewatch::agent {
namespace {

// A child in its own mount namespace with a tmpfs (`size` bytes, `inodes` inodes) on
// `mountpoint`; killed at destruction.
class MountNamespaceChild {
 public:
  MountNamespaceChild(const std::string& mountpoint, uint64_t size, uint64_t inodes) {
    // Built before fork(): the child only makes system calls.
    const std::string options =
        "size=" + std::to_string(size) + ",nr_inodes=" + std::to_string(inodes);
    int ready[2];
    if (pipe2(ready, O_CLOEXEC) != 0) return;
    pid_ = fork();
    if (pid_ == 0) {
      close(ready[0]);
      char result = 'x';
      if (unshare(CLONE_NEWNS) == 0 &&
          mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) == 0 &&
          mount("nwtest", mountpoint.c_str(), "tmpfs", 0, options.c_str()) == 0) {
        result = 'k';
      }
      (void)!write(ready[1], &result, 1);
      pause();
      _exit(0);
    }
    close(ready[1]);
    char result = 0;
    ok_ = pid_ > 0 && read(ready[0], &result, 1) == 1 && result == 'k';
    close(ready[0]);
  }
  ~MountNamespaceChild() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }
  bool ok() const { return ok_; }
  pid_t pid() const { return pid_; }

 private:
  pid_t pid_ = -1;
  bool ok_ = false;
};

TEST(FilesystemProbeKernelTest, ReadsTheHostsMountsThroughItsProcRoot) {
  ASSERT_EQ(geteuid(), 0u) << "this test mounts in a new mount namespace: run it as root";
  const std::string dir = nodewatch::testing::MakeTempDir("fs-probe");
  const std::string mountpoint = dir + "/host-volume";
  std::filesystem::create_directories(mountpoint);
  MountNamespaceChild host(mountpoint, 8ull << 20, 1000);
  ASSERT_TRUE(host.ok()) << "could not mount a tmpfs in a new mount namespace";
  // <proc_root>/1 is the "host's" PID 1: here, the child.
  const std::string proc_root = dir + "/host-proc";
  std::filesystem::create_directories(proc_root);
  std::filesystem::create_directory_symlink("/proc/" + std::to_string(host.pid()),
                                            proc_root + "/1");

  FilesystemProbeImpl probe(proc_root);
  auto mounts = probe.Mounts();
  ASSERT_TRUE(mounts.ok()) << mounts.status();
  auto it = std::find_if(mounts->begin(), mounts->end(),
                         [&](const MountEntry& m) { return m.mountpoint == mountpoint; });
  ASSERT_NE(it, mounts->end()) << "the host's tmpfs is not among its mounts";
  EXPECT_EQ(it->fstype, "tmpfs");
  EXPECT_EQ(it->device, "nwtest");

  auto stats = probe.Statfs(mountpoint);
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(stats->size_bytes, 8ull << 20);
  EXPECT_EQ(stats->inodes, 1000u);
  EXPECT_LE(stats->available_bytes, stats->size_bytes);
  // The same path in this test's own namespace is the directory on /tmp's filesystem: the probe
  // really went through the host's root.
  struct statvfs own {};
  ASSERT_EQ(statvfs(mountpoint.c_str(), &own), 0) << std::strerror(errno);
  EXPECT_NE(static_cast<uint64_t>(own.f_blocks) * own.f_frsize, 8ull << 20);

  // A mountpoint the host does not have: a clear error, not a hang or a crash.
  auto missing = probe.Statfs(dir + "/no-such-volume");
  EXPECT_FALSE(missing.ok());
}

}  // namespace
}  // namespace nodewatch::agent
