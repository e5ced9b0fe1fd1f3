// Filesystem sampling: which mounts are watched, a hung mount that must not hold the agent,
// time-to-full from the usage trend, and the real probe on this machine.
#include "agent/collectors/disk/filesystem_collector.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <condition_variable>
#include <filesystem>

#include "tests/support/process.h"

namespace nodewatch::agent {
namespace {

using ::testing::ElementsAre;
using ::testing::Field;

// Mounts and stats the test sets; Statfs of `hang` blocks until Release().
class FakeFilesystemProbe final : public FilesystemProbe {
 public:
  absl::StatusOr<std::vector<MountEntry>> Mounts() override {
    std::lock_guard<std::mutex> lock(mu_);
    return mounts;
  }
  absl::StatusOr<FsStats> Statfs(const std::string& mountpoint) override {
    std::unique_lock<std::mutex> lock(mu_);
    ++calls[mountpoint];
    if (mountpoint == hang) cv_.wait(lock, [&] { return released_; });
    auto it = stats.find(mountpoint);
    if (it == stats.end()) return absl::NotFoundError("no such mount");
    return it->second;
  }
  void Release() {
    std::lock_guard<std::mutex> lock(mu_);
    released_ = true;
    cv_.notify_all();
  }
  void Set(const std::string& mountpoint, FsStats s) {
    std::lock_guard<std::mutex> lock(mu_);
    stats[mountpoint] = s;
  }
  int Calls(const std::string& mountpoint) {
    std::lock_guard<std::mutex> lock(mu_);
    return calls[mountpoint];
  }

  std::vector<MountEntry> mounts;
  std::map<std::string, FsStats> stats;
  std::map<std::string, int> calls;
  std::string hang;

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool released_ = false;
};

class FilesystemCollectorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = testing::MakeTempDir("fs-test");
    spool_ = std::move(*Spool::Open({.dir = dir_}));
    probe_ = std::make_shared<FakeFilesystemProbe>();
  }
  void TearDown() override {
    probe_->Release();
    std::filesystem::remove_all(dir_);
  }
  std::string dir_;
  std::unique_ptr<Spool> spool_;
  std::shared_ptr<FakeFilesystemProbe> probe_;
  FakeClock clock_;
};

TEST(ParseMounts, KeepsDisksAndDropsPseudoFilesystemsLayersAndPodVolumes) {
  auto mounts = ParseMounts(
      "/dev/nvme0n1p1 / ext4 rw,relatime 0 0\n"
      "proc /proc proc rw 0 0\n"
      "overlay /run/containerd/io.containerd.runtime.v2.task/k8s.io/abc/rootfs overlay rw 0 0\n"
      "tmpfs /run tmpfs rw 0 0\n"
      "tmpfs /var/lib/kubelet/pods/uid/volumes/kubernetes.io~projected/token tmpfs rw 0 0\n"
      "cgroup2 /sys/fs/cgroup cgroup2 rw 0 0\n"
      "/dev/nvme1n1 /var/lib/containerd xfs rw 0 0\n"
      "/dev/nvme1n1 /var/mnt/data\\040disk xfs rw 0 0\n"
      "10.0.0.5:/export /mnt/nfs nfs4 rw 0 0\n"
      "/dev/sdb / ext4 rw 0 0\n"
      "garbage\n");
  // The image store's own disk is watched (it fills up); the layers under it are not.
  EXPECT_THAT(mounts, ElementsAre(Field(&MountEntry::mountpoint, "/"),
                                  Field(&MountEntry::mountpoint, "/run"),
                                  Field(&MountEntry::mountpoint, "/var/lib/containerd"),
                                  Field(&MountEntry::mountpoint, "/var/mnt/data disk"),
                                  Field(&MountEntry::mountpoint, "/mnt/nfs")));
  EXPECT_EQ(mounts[0].device, "/dev/nvme0n1p1");
  EXPECT_EQ(mounts[4].fstype, "nfs4");
}

TEST_F(FilesystemCollectorTest, AHungMountIsReportedAndDoesNotHoldTheOthers) {
  probe_->mounts = {
      {"/", "/dev/vda1", "ext4"}, {"/mnt/nfs", "srv:/x", "nfs4"}, {"/gone", "/dev/vdc", "ext4"}};
  probe_->Set("/", {.size_bytes = 100, .available_bytes = 40, .inodes = 10, .inodes_free = 5});
  probe_->Set("/mnt/nfs", {.size_bytes = 7, .available_bytes = 7});
  probe_->hang = "/mnt/nfs";
  FilesystemCollector c(*spool_, probe_, clock_, {.statfs_timeout_ms = 50});
  for (int round = 0; round < 3; ++round) {
    auto sample = c.CollectOnce();
    ASSERT_TRUE(sample.ok()) << sample.status();
    ASSERT_EQ(sample->filesystems_size(), 2);  // "/gone" fails statfs: left out, counted
    EXPECT_EQ(sample->filesystems(0).available_bytes(), 40u);
    EXPECT_EQ(sample->filesystems(0).inodes_free(), 5u);
    EXPECT_TRUE(sample->filesystems(1).timed_out());
  }
  EXPECT_EQ(probe_->Calls("/mnt/nfs"), 1) << "a hung mount is not probed again while stuck";
  EXPECT_EQ(c.counters().statfs_timeouts.load(), 1u);
  EXPECT_EQ(c.counters().stuck.load(), 1u);
  EXPECT_EQ(c.counters().statfs_errors.load(), 3u);
  probe_->Release();  // the server comes back
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  auto sample = c.CollectOnce();
  ASSERT_TRUE(sample.ok());
  EXPECT_FALSE(sample->filesystems(1).timed_out());
  EXPECT_EQ(sample->filesystems(1).size_bytes(), 7u);
  EXPECT_EQ(c.counters().stuck.load(), 0u);
  std::vector<nodewatch::v1::Record> spooled;
  ASSERT_TRUE(spool_->Read(Lane::kTelemetry, 0, 100, 1 << 20, nullptr, &spooled).ok());
  EXPECT_EQ(spooled.size(), 4u);
  EXPECT_EQ(spooled[0].disk().filesystems(0).mountpoint(), "/");
}

TEST_F(FilesystemCollectorTest, PredictsTimeToFullFromTheUsageTrend) {
  constexpr uint64_t kGiB = 1ull << 30;
  probe_->mounts = {{"/var", "/dev/vdb", "xfs"}, {"/", "/dev/vda", "ext4"}};
  FilesystemCollector c(*spool_, probe_, clock_, {});
  int64_t predicted = 0;
  for (int minute = 0; minute <= 14; ++minute) {
    // /var fills at 1 GiB a minute; / stays flat.
    probe_->Set("/var", {.size_bytes = 100 * kGiB, .available_bytes = (50 - minute) * kGiB});
    probe_->Set("/", {.size_bytes = 100 * kGiB, .available_bytes = 70 * kGiB});
    auto sample = c.CollectOnce();
    ASSERT_TRUE(sample.ok());
    predicted = sample->filesystems(0).predicted_full_unix_ms();
    if (minute < 10) {
      EXPECT_EQ(predicted, 0) << "too little history at minute " << minute;
    }
    EXPECT_EQ(sample->filesystems(1).predicted_full_unix_ms(), 0) << "flat usage never fills";
    if (minute < 14) clock_.Advance(60'000);
  }
  // 36 GiB left at 1 GiB a minute.
  EXPECT_NEAR(static_cast<double>(predicted - clock_.NowUnixMs()), 36 * 60'000.0, 1'000.0);
}

TEST_F(FilesystemCollectorTest, TheRealProbeSeesThisMachinesRoot) {
  auto real = std::make_shared<FilesystemProbeImpl>("/proc");
  auto mounts = real->Mounts();
  ASSERT_TRUE(mounts.ok()) << mounts.status();
  bool root = false;
  for (const auto& m : *mounts) root |= m.mountpoint == "/";
  EXPECT_TRUE(root);
  auto stats = real->Statfs("/");
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_GT(stats->size_bytes, 0u);
  EXPECT_LE(stats->available_bytes, stats->size_bytes);
  EXPECT_FALSE(real->Statfs("/definitely/not/here").ok());
}

}  // namespace
}  // namespace nodewatch::agent
