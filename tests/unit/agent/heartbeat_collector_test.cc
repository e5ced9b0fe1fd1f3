#include "agent/collectors/host/heartbeat_collector.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "agent/collectors/host/host_probe.h"
#include "tests/support/fake_host_probe.h"
#include "tests/support/process.h"

namespace nodewatch::agent {
namespace {

using nodewatch::v1::Record;

class HeartbeatCollectorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = testing::MakeTempDir("hb-test");
    spool_ = std::move(*Spool::Open({.dir = dir_}));
    probe_.info.set_provider("none");
    probe_.info.set_hostname("node-1");
    probe_.stats.load1 = 0.5;
    probe_.stats.self_rss_bytes = 12 << 20;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::vector<Record> Spooled() {
    std::vector<Record> out;
    EXPECT_TRUE(spool_->Read(Lane::kTelemetry, 0, 1000, 1 << 20, nullptr, &out).ok());
    return out;
  }
  std::string dir_;
  std::unique_ptr<Spool> spool_;
  testing::FakeHostProbe probe_;
  FakeClock clock_;
};

TEST_F(HeartbeatCollectorTest, FirstIntervalSendsNodeInfoThenHeartbeat) {
  HeartbeatCollector collector(*spool_, probe_, clock_, 10'000);
  ASSERT_TRUE(collector.CollectOnce().ok());
  auto records = Spooled();
  ASSERT_EQ(records.size(), 2u);
  EXPECT_EQ(records[0].node_info().hostname(), "node-1");
  EXPECT_EQ(records[1].heartbeat().load1(), 0.5);
  EXPECT_EQ(records[1].heartbeat().agent_rss_bytes(), 12u << 20);
  EXPECT_EQ(records[1].time_unix_ms(), clock_.NowUnixMs());
}

TEST_F(HeartbeatCollectorTest, NodeInfoIsSentAgainOnlyWhenItChanges) {
  HeartbeatCollector collector(*spool_, probe_, clock_, 10'000);
  ASSERT_TRUE(collector.CollectOnce().ok());
  clock_.Advance(10'000);
  ASSERT_TRUE(collector.CollectOnce().ok());
  EXPECT_EQ(Spooled().size(), 3u);
  auto info = probe_.info;
  info.set_zone("us-east-1a");
  probe_.SetInfo(info);
  clock_.Advance(10'000);
  ASSERT_TRUE(collector.CollectOnce().ok());
  auto records = Spooled();
  ASSERT_EQ(records.size(), 5u);
  EXPECT_EQ(records[3].node_info().zone(), "us-east-1a");
  EXPECT_EQ(records[4].heartbeat().agent_uptime_seconds(), 20u);
  EXPECT_EQ(collector.node_info().zone(), "us-east-1a");
}

// The disks a stopped instance keeps paying for: whole disks, not stacked devices, not the
// instance's own ephemeral storage.
TEST(PersistentDiskBytes, CountsDisksThatOutliveAStop) {
  const std::string dir = testing::MakeTempDir("sys-block");
  auto device = [&](const std::string& name, uint64_t sectors, const std::string& model) {
    std::filesystem::create_directories(dir + "/" + name + "/device");
    std::ofstream(dir + "/" + name + "/size") << sectors << "\n";
    if (!model.empty()) std::ofstream(dir + "/" + name + "/device/model") << model << "  \n";
  };
  device("nvme0n1", 209'715'200, "Amazon Elastic Block Store");  // 100 GiB EBS root
  device("nvme1n1", 20'971'520, "Amazon Elastic Block Store");   // 10 GiB EBS data
  device("nvme2n1", 1'831'634'048, "Amazon EC2 NVMe Instance Storage");
  device("vda", 1'000, "");
  device("loop0", 5'000, "");
  device("dm-0", 5'000, "");
  device("zram0", 5'000, "");
  EXPECT_EQ(PersistentDiskBytes(dir), (209'715'200ull + 20'971'520 + 1'000) * 512);
  EXPECT_EQ(PersistentDiskBytes(dir + "/missing"), 0u);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace nodewatch::agent
