// The block I/O BPF programs against /proc/diskstats (root; a missing privilege fails): direct
// I/O on a loop device of the test's own; the counted reads and writes, their bytes and the
// latency histogram totals must equal the device's diskstats deltas, less what the kernel reports
// it skipped (a completion in an interrupt landing on the program already running on that CPU is
// not run again: ProgramStats::missed_runs, usually 0), and less at most one completion per test:
// on this 6.18 VM the kernel now and then does not run the program for a block_rq_complete that
// fires (ftrace sees the event; the program's run count is one short; no missed run is reported),
// about once in 25,000 completions, each time for a completion processed in softirq on top of a
// thread of the VM's init process (stop 14's note has the measurements). One such completion is
// allowed so that the tests keep checking everything else exactly; two fail. Real I/O errors come
// from a loop device whose backing file lives on a tiny tmpfs: once the tmpfs is full, each write
// fails in the loop driver and completes with an error status, one failed pwrite() per request.
#include <fcntl.h>
#include <sys/mount.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>

#include "agent/collectors/disk/block_io_collector.h"
#include "agent/collectors/disk/block_io_program.h"
#include "agent/spool/spool.h"
#include "common/clock.h"
#include "gtest/gtest.h"
#include "tests/support/kernel_fixture.h"
#include "tests/support/process.h"

namespace nodewatch::agent {
namespace {

uint64_t Sum(const google::protobuf::RepeatedField<uint64_t>& slots) {
  uint64_t n = 0;
  for (uint64_t v : slots) n += v;
  return n;
}

// Both ways a device is counted: in a per-CPU slot, and in the hash that takes the devices whose
// slots are taken.
class EbpfDiskTest : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override {
    ASSERT_EQ(geteuid(), 0u) << "the eBPF tests must run as root (CI runs them as root)";
    ASSERT_EQ(nodewatch::testing::EnsureKernelMounts(), "");
  }
  // Loads the block program (slots or hash, per the parameter) under a collector spooling to
  // `dir`, and takes the first (baseline) sample.
  void StartCollector(const std::string& dir) {
    auto spool = Spool::Open({.dir = dir + "/spool"});
    ASSERT_TRUE(spool.ok()) << spool.status();
    spool_ = std::move(*spool);
    auto program = BpfBlockIoProgram::Load({.slots = GetParam()});
    ASSERT_TRUE(program.ok()) << program.status();
    collector_ =
        std::make_unique<BlockIoCollector>(*spool_, std::move(*program), "/proc", clock_, 10'000);
    ASSERT_TRUE(collector_->CollectOnce().ok());
  }

  // Completions the kernel did not run the block program for, since load.
  uint64_t MissedRuns() const {
    uint64_t missed = 0;
    for (const auto& p : collector_->source().Programs()) missed += p.missed_runs;
    return missed;
  }
  // `counted` is `truth` less at most `per_miss` for each missed run and for the one unexplained
  // uncounted completion allowed (see the top of this file).
  void ExpectCounted(const char* what, uint64_t counted, uint64_t truth, uint64_t per_miss) {
    const uint64_t missed = MissedRuns();
    std::printf("%s: counted %llu, expected %llu, missed runs %llu%s\n", what,
                static_cast<unsigned long long>(counted), static_cast<unsigned long long>(truth),
                static_cast<unsigned long long>(missed),
                counted < truth ? " (short: see the top of this file)" : "");
    EXPECT_LE(counted, truth) << what;
    EXPECT_LE(truth - std::min(counted, truth), (missed + 1) * per_miss) << what;
  }

  SystemClock clock_;
  std::unique_ptr<Spool> spool_;
  std::unique_ptr<BlockIoCollector> collector_;
};
INSTANTIATE_TEST_SUITE_P(SlotsAndHash, EbpfDiskTest, ::testing::Values(true, false),
                         [](const auto& info) { return info.param ? "Slots" : "Hash"; });

TEST_P(EbpfDiskTest, DirectIoOnALoopDeviceMatchesDiskstats) {
  const std::string dir = nodewatch::testing::MakeTempDir("ebpf-disk");
  nodewatch::testing::LoopDevice loop(dir + "/backing.img", 64ull << 20);
  ASSERT_TRUE(loop.ok()) << loop.error();
  StartCollector(dir);
  BlockIoCollector& collector = *collector_;

  const auto before = nodewatch::testing::DiskStats(loop.name());
  ASSERT_FALSE(before.empty()) << loop.name() << " not in /proc/diskstats";
  int fd = open(loop.device().c_str(), O_RDWR | O_DIRECT | O_CLOEXEC);
  ASSERT_GE(fd, 0) << strerror(errno);
  void* buffer = nullptr;
  ASSERT_EQ(posix_memalign(&buffer, 4096, 65536), 0);
  memset(buffer, 0xab, 65536);
  for (int i = 0; i < 200; ++i) {  // 4 KiB writes, spread so that none merge
    ASSERT_EQ(pwrite(fd, buffer, 4096, static_cast<off_t>(i) * 65536), 4096);
  }
  for (int i = 0; i < 300; ++i) {  // 64 KiB reads
    ASSERT_EQ(pread(fd, buffer, 65536, static_cast<off_t>(i % 900) * 65536), 65536);
  }
  close(fd);
  free(buffer);
  const auto after = nodewatch::testing::DiskStats(loop.name());

  auto sample = collector.CollectOnce();
  ASSERT_TRUE(sample.ok()) << sample.status();
  const nodewatch::v1::DiskDevice* device = nullptr;
  for (const auto& d : sample->devices()) {
    if (d.device() == loop.name()) device = &d;
  }
  ASSERT_NE(device, nullptr) << sample->DebugString();
  const uint64_t reads = after.at("reads") - before.at("reads");
  const uint64_t writes = after.at("writes") - before.at("writes");
  EXPECT_GE(reads, 300u);
  EXPECT_GE(writes, 200u);
  ExpectCounted("reads", device->reads(), reads, 1);
  ExpectCounted("writes", device->writes(), writes, 1);
  ExpectCounted("read bytes", device->read_bytes(),
                (after.at("read_sectors") - before.at("read_sectors")) * 512, 65536);
  ExpectCounted("written bytes", device->written_bytes(),
                (after.at("write_sectors") - before.at("write_sectors")) * 512, 4096);
  EXPECT_EQ(Sum(device->read_latency_log2_us()), device->reads());
  EXPECT_EQ(Sum(device->write_latency_log2_us()), device->writes());
  EXPECT_EQ(device->io_errors(), 0u);
  EXPECT_EQ(collector.counters().untimed.load(), 0u);
  EXPECT_EQ(collector.counters().device_map_full.load(), 0u);

  for (const auto& p : collector.source().Programs()) EXPECT_TRUE(p.loaded) << p.name;
}

// A tmpfs of `bytes` mounted on a fresh directory, unmounted on destruction.
class SmallTmpfs {
 public:
  SmallTmpfs(const std::string& dir, uint64_t bytes) : dir_(dir) {
    std::filesystem::create_directories(dir_);
    const std::string options = "size=" + std::to_string(bytes);
    mounted_ = mount("tmpfs", dir_.c_str(), "tmpfs", 0, options.c_str()) == 0;
    if (!mounted_) error_ = strerror(errno);
  }
  ~SmallTmpfs() {
    if (mounted_) umount2(dir_.c_str(), MNT_DETACH);
  }
  bool ok() const { return mounted_; }
  const std::string& error() const { return error_; }

 private:
  std::string dir_, error_;
  bool mounted_ = false;
};

TEST_P(EbpfDiskTest, FailedWritesAreCountedAsErrors) {
  const std::string dir = nodewatch::testing::MakeTempDir("ebpf-disk-errors");
  SmallTmpfs small(dir + "/small", 2ull << 20);
  ASSERT_TRUE(small.ok()) << "mount tmpfs: " << small.error();
  // 64 MiB of device on 2 MiB of storage.
  nodewatch::testing::LoopDevice loop(dir + "/small/backing.img", 64ull << 20);
  ASSERT_TRUE(loop.ok()) << loop.error();
  StartCollector(dir);

  int fd = open(loop.device().c_str(), O_RDWR | O_DIRECT | O_CLOEXEC);
  ASSERT_GE(fd, 0) << strerror(errno);
  void* buffer = nullptr;
  ASSERT_EQ(posix_memalign(&buffer, 4096, 4096), 0);
  memset(buffer, 0xcd, 4096);
  uint64_t failed = 0, written = 0;
  for (int i = 0; i < 1000; ++i) {  // 4 MiB in 4 KiB writes, 64 KiB apart: none merge
    if (pwrite(fd, buffer, 4096, static_cast<off_t>(i) * 65536) == 4096) {
      ++written;
    } else {
      ++failed;
    }
  }
  close(fd);
  free(buffer);
  std::printf("writes: %llu done, %llu failed\n", static_cast<unsigned long long>(written),
              static_cast<unsigned long long>(failed));
  ASSERT_GT(failed, 100u) << "the tmpfs should have filled up";
  ASSERT_GT(written, 100u);

  auto sample = collector_->CollectOnce();
  ASSERT_TRUE(sample.ok()) << sample.status();
  const nodewatch::v1::DiskDevice* device = nullptr;
  for (const auto& d : sample->devices()) {
    if (d.device() == loop.name()) device = &d;
  }
  ASSERT_NE(device, nullptr) << sample->DebugString();
  ExpectCounted("errors", device->io_errors(), failed, 1);
  ExpectCounted("writes", device->writes(), written + failed, 1);  // completed, as diskstats
}

}  // namespace
}  // namespace nodewatch::agent
