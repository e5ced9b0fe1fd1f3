// The eBPF collectors' user-space half against fake kernel counters: pod attribution from cgroup
// paths, cumulative-to-delta arithmetic, idle eviction without losing counts, bounded samples, and
// device naming. (The kernel half is tests/kernel/.)
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "agent/collectors/disk/block_io_collector.h"
#include "agent/collectors/net/network_collector.h"
#include "agent/collectors/net/pod_resolver.h"
#include "tests/support/process.h"

namespace nodewatch::agent {
namespace {

constexpr char kUid[] = "6f1c2a9e-3b7d-4c55-9a10-0d2e8f4b7c31";
constexpr char kUid2[] = "0a9b8c7d-1e2f-4a3b-8c4d-5e6f7a8b9c0d";
const std::string kCid(64, 'a');

TEST(PodCgroupPath, KubeletLayouts) {
  // cgroupfs driver (Talos): guaranteed pods directly under kubepods.
  auto p = ParsePodCgroupPath(std::string("kubepods/burstable/pod") + kUid + "/" + kCid);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->uid, kUid);
  EXPECT_EQ(p->container_id, kCid);
  p = ParsePodCgroupPath(std::string("kubepods/pod") + kUid + "/" + kCid);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->uid, kUid);
  // systemd driver: UID with underscores, containerd and CRI-O scopes.
  std::string uid_ = kUid;
  std::replace(uid_.begin(), uid_.end(), '-', '_');
  p = ParsePodCgroupPath("kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + uid_ +
                         ".slice/cri-containerd-" + kCid + ".scope");
  ASSERT_TRUE(p);
  EXPECT_EQ(p->uid, kUid);
  EXPECT_EQ(p->container_id, kCid);
  p = ParsePodCgroupPath("kubepods.slice/kubepods-pod" + uid_ + ".slice/crio-" + kCid + ".scope");
  ASSERT_TRUE(p);
  EXPECT_EQ(p->container_id, kCid);
  p = ParsePodCgroupPath("kubepods.slice/kubepods-pod" + uid_ + ".slice/crio-conmon-" + kCid +
                         ".scope");
  ASSERT_TRUE(p);
  EXPECT_EQ(p->uid, kUid);
  EXPECT_EQ(p->container_id, "");
  // The pod's own cgroup, and a nested layout (kind, Talos in a container).
  p = ParsePodCgroupPath(std::string("kubelet.slice/kubelet-kubepods.slice/kubepods-pod") + uid_ +
                         ".slice");
  ASSERT_TRUE(p);
  EXPECT_EQ(p->container_id, "");
  // CRI-O on the cgroupfs driver (no .scope), and a runtime whose naming we do not know: still
  // the pod's.
  p = ParsePodCgroupPath(std::string("kubepods/besteffort/pod") + kUid + "/crio-" + kCid);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->container_id, kCid);
  p = ParsePodCgroupPath(std::string("kubepods/pod") + kUid + "/kata_sandbox-1");
  ASSERT_TRUE(p);
  EXPECT_EQ(p->uid, kUid);
  EXPECT_EQ(p->container_id, "");
  // Processes nested inside a container are still that container's.
  p = ParsePodCgroupPath(std::string("kubepods/pod") + kUid + "/" + kCid + "/init.scope");
  ASSERT_TRUE(p);
  EXPECT_EQ(p->container_id, kCid);
}

TEST(PodCgroupPath, NotPods) {
  EXPECT_FALSE(ParsePodCgroupPath(""));
  EXPECT_FALSE(ParsePodCgroupPath("system.slice/containerd.service"));
  EXPECT_FALSE(ParsePodCgroupPath("podruntime/kubelet"));
  EXPECT_FALSE(ParsePodCgroupPath("kubepods/burstable"));
  EXPECT_FALSE(ParsePodCgroupPath("kubepods/burstable/podnot-a-uid/" + kCid));
  EXPECT_FALSE(ParsePodCgroupPath(std::string("init/pod") + kUid)) << "no kubepods ancestor";
  EXPECT_FALSE(ParsePodCgroupPath("kubepods.slice/kubepods-burstable.slice"));
}

TEST(PodLogDir, Names) {
  auto p = ParsePodLogDirName(std::string("kube-system_coredns-5d78c9869d-x7k2p_") + kUid);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->namespace_, "kube-system");
  EXPECT_EQ(p->name, "coredns-5d78c9869d-x7k2p");
  EXPECT_EQ(p->uid, kUid);
  EXPECT_FALSE(ParsePodLogDirName("lost+found"));
  EXPECT_FALSE(ParsePodLogDirName(std::string("a_b_c_") + kUid));
  EXPECT_FALSE(ParsePodLogDirName("ns_name_not-a-uid"));
}

uint64_t Inode(const std::string& path) {
  struct stat st {};
  stat(path.c_str(), &st);
  return st.st_ino;
}

TEST(CgroupPodResolver, WalksTheTreeAndRescansAtMostOncePerPeriod) {
  const std::string root = nodewatch::testing::MakeTempDir("cgroup-tree");
  const std::string logs = nodewatch::testing::MakeTempDir("pod-logs");
  const std::string container = root + "/kubepods/burstable/pod" + kUid + "/" + kCid;
  std::filesystem::create_directories(container);
  std::filesystem::create_directories(root + "/system/containerd");
  std::filesystem::create_directories(logs + "/shop_web-1_" + kUid + "/web");
  FakeClock clock;
  CgroupPodResolver resolver(root, logs, clock, 5'000);

  auto pod = resolver.Resolve(Inode(container));
  ASSERT_TRUE(pod);
  EXPECT_EQ(pod->uid, kUid);
  EXPECT_EQ(pod->namespace_, "shop");
  EXPECT_EQ(pod->name, "web-1");
  EXPECT_EQ(pod->container_id, kCid);
  EXPECT_EQ(resolver.Resolve(Inode(root + "/kubepods/burstable/pod" + kUid))->container_id, "");
  EXPECT_FALSE(resolver.Resolve(Inode(root + "/system/containerd"))) << "the node's own";

  // A pod started after the scan: unknown until the next rescan is due.
  const std::string later = root + "/kubepods/pod" + kUid2 + "/" + kCid;
  std::filesystem::create_directories(later);
  EXPECT_FALSE(resolver.Resolve(Inode(later)));
  clock.Advance(5'000);
  auto second = resolver.Resolve(Inode(later));
  ASSERT_TRUE(second);
  EXPECT_EQ(second->uid, kUid2);
  EXPECT_EQ(second->name, "") << "no log directory: UID only";

  // A deleted pod keeps its attribution for two minutes (its last interval's counts).
  const uint64_t deleted = Inode(later);
  std::filesystem::remove(later);
  resolver.Rescan();
  ASSERT_TRUE(resolver.Resolve(deleted));
  EXPECT_EQ(resolver.Resolve(deleted)->uid, kUid2);
  clock.Advance(121'000);
  resolver.Rescan();
  EXPECT_FALSE(resolver.Resolve(deleted));
}

// Kernel counters the test sets (cumulative, as the kernel keeps them).
class FakeNetSource final : public NetCounterSource {
 public:
  absl::Status ReadFlows(std::vector<std::pair<FlowKey, FlowTotals>>& out) override {
    if (fail) return absl::UnavailableError("map read failed");
    for (const auto& [k, v] : flows) out.emplace_back(k, v);
    return absl::OkStatus();
  }
  absl::Status TakeFlows(const std::vector<FlowKey>& keys,
                         std::vector<std::pair<FlowKey, FlowTotals>>& out) override {
    for (const auto& k : keys) {
      auto it = flows.find(k);
      if (it == flows.end()) continue;
      // A packet that arrived between the last read and the deletion is kept in the final totals.
      it->second.bytes += late_bytes;
      it->second.packets += late_bytes ? 1 : 0;
      out.emplace_back(k, it->second);
      flows.erase(it);
    }
    return absl::OkStatus();
  }
  absl::Status ReadTcp(TcpTotals& out) override {
    out = tcp;
    return absl::OkStatus();
  }
  uint64_t FlowCapacity() const override { return 16; }
  std::vector<ProgramStats> Programs() const override { return {}; }
  std::vector<MapStats> Maps() const override { return {}; }
  std::vector<SignalPath> Paths() const override { return paths; }

  std::map<FlowKey, FlowTotals> flows;
  std::vector<SignalPath> paths;
  TcpTotals tcp;
  uint64_t late_bytes = 0;
  bool fail = false;
};

// Cgroup ids 1 and 2 are containers of one pod; everything else is the node.
class FakePods final : public PodResolver {
 public:
  std::optional<PodRef> Resolve(uint64_t id) override {
    if (id == 1 || id == 2) return PodRef{.uid = kUid, .namespace_ = "shop", .name = "web-1"};
    return std::nullopt;
  }
};

const std::string kRemote("\x0a\x00\x02\x05", 4);
const std::string kOther("\x08\x08\x08\x08", 4);

class NetworkCollectorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto spool = Spool::Open({.dir = nodewatch::testing::MakeTempDir("net-spool")});
    ASSERT_TRUE(spool.ok());
    spool_ = std::move(*spool);
    auto source = std::make_unique<FakeNetSource>();
    source_ = source.get();
    collector_ =
        std::make_unique<NetworkCollector>(*spool_, std::move(source), std::make_unique<FakePods>(),
                                           clock_, NetworkCollectorOptions{.max_flows = 3});
  }
  nodewatch::v1::NetworkSample Collect() {
    clock_.Advance(10'000);
    auto s = collector_->CollectOnce();
    EXPECT_TRUE(s.ok()) << s.status();
    return s.ok() ? *s : nodewatch::v1::NetworkSample();
  }
  FakeClock clock_;
  std::unique_ptr<Spool> spool_;
  FakeNetSource* source_ = nullptr;
  std::unique_ptr<NetworkCollector> collector_;
};

TEST_F(NetworkCollectorTest, DeltasPerPodAndRemoteWithContainersMerged) {
  source_->flows[{1, kRemote, true}] = {1000, 10};
  source_->flows[{2, kRemote, true}] = {500, 5};
  source_->flows[{7, kRemote, false}] = {300, 3};
  auto s = Collect();
  ASSERT_EQ(s.flows_size(), 2);
  EXPECT_EQ(s.interval_ms(), 10'000u);
  std::map<std::string, const nodewatch::v1::NetworkFlow*> by_pod;
  for (const auto& f : s.flows()) by_pod[f.pod_uid()] = &f;
  EXPECT_EQ(by_pod[kUid]->bytes(), 1500u);
  EXPECT_EQ(by_pod[kUid]->packets(), 15u);
  EXPECT_EQ(by_pod[kUid]->pod_namespace(), "shop");
  EXPECT_EQ(by_pod[kUid]->direction(), nodewatch::v1::DIRECTION_EGRESS);
  EXPECT_EQ(by_pod[""]->bytes(), 300u);
  EXPECT_EQ(by_pod[""]->direction(), nodewatch::v1::DIRECTION_INGRESS);
  EXPECT_EQ(by_pod[""]->remote_address(), kRemote);

  source_->flows[{1, kRemote, true}] = {1600, 16};
  s = Collect();
  ASSERT_EQ(s.flows_size(), 1);
  EXPECT_EQ(s.flows(0).bytes(), 600u);
  EXPECT_EQ(s.flows(0).packets(), 6u);
  EXPECT_EQ(spool_->stats().records, 2u);

  // TCP trouble alone (a connect that failed, segments retransmitted) is a change worth a flow.
  source_->flows[{1, kRemote, true}] = {1600, 16, 3, 1, 2, 1};
  s = Collect();
  ASSERT_EQ(s.flows_size(), 1);
  EXPECT_EQ(s.flows(0).bytes(), 0u);
  EXPECT_EQ(s.flows(0).tcp_retransmits(), 3u);
  EXPECT_EQ(s.flows(0).tcp_failed_connects(), 1u);
  EXPECT_EQ(s.flows(0).tcp_resets(), 2u);
  EXPECT_EQ(s.flows(0).tcp_slow_connects(), 1u);
  EXPECT_EQ(s.flows(0).pod_name(), "web-1");

  // A failed connect to an address that never carried a byte: a flow of its own, but no entry of
  // the flows map (it lives in tcp_trouble).
  source_->flows[{1, kOther, true}] = {.tcp_failed_connects = 1};
  s = Collect();
  ASSERT_EQ(s.flows_size(), 1);
  EXPECT_EQ(s.flows(0).remote_address(), kOther);
  EXPECT_EQ(s.flows(0).tcp_failed_connects(), 1u);
  // As read: {1, kRemote}, {2, kRemote} and {7, kRemote}, not the trouble-only key.
  EXPECT_EQ(collector_->counters().flow_entries.load(), 3u);
}

TEST_F(NetworkCollectorTest, IdleEntriesAreTakenOutAndTheirLastCountsKept) {
  source_->flows[{1, kRemote, true}] = {1000, 10};
  Collect();
  Collect();                 // idle 1
  Collect();                 // idle 2
  source_->late_bytes = 40;  // arrives between the third idle read and the deletion
  auto s = Collect();        // idle 3: taken out
  EXPECT_TRUE(source_->flows.empty());
  EXPECT_EQ(collector_->counters().flows_evicted.load(), 1u);
  ASSERT_EQ(s.flows_size(), 1);
  EXPECT_EQ(s.flows(0).bytes(), 40u);
  // Counted again from zero by the kernel: all of it is new.
  source_->flows[{1, kRemote, true}] = {70, 1};
  s = Collect();
  ASSERT_EQ(s.flows_size(), 1);
  EXPECT_EQ(s.flows(0).bytes(), 70u);
}

TEST_F(NetworkCollectorTest, SamplesAreBoundedAndSmallFlowsFoldedPerPod) {
  for (uint64_t i = 0; i < 6; ++i) {
    std::string remote("\x0a\x00\x03\x00", 4);
    remote[3] = static_cast<char>(i);
    source_->flows[{1, remote, true}] = {(i + 1) * 100, 1};
  }
  auto s = Collect();
  // The 3 largest kept with their addresses; the other 3 folded into one flow without one.
  ASSERT_EQ(s.flows_size(), 4);
  EXPECT_EQ(s.flows(0).bytes(), 600u);
  EXPECT_EQ(s.flows(3).remote_address(), "");
  EXPECT_EQ(s.flows(3).bytes(), 100u + 200 + 300);
  EXPECT_EQ(s.flows(3).packets(), 3u);
  EXPECT_EQ(collector_->counters().flows_folded.load(), 3u);
}

TEST_F(NetworkCollectorTest, TcpDeltasHistogramAndDrops) {
  source_->tcp.retransmits = 5;
  source_->tcp.connects = 10;
  source_->tcp.connect_latency_log2_us[3] = 8;
  source_->tcp.connect_latency_log2_us[20] = 2;
  Collect();
  source_->tcp.retransmits = 12;
  source_->tcp.connects = 11;
  source_->tcp.failed_connects = 2;
  source_->tcp.resets_sent = 1;
  source_->tcp.resets_received = 2;
  source_->tcp.connect_latency_log2_us[4] = 1;
  source_->tcp.flow_map_full = 9;
  auto s = Collect();
  EXPECT_EQ(s.tcp_retransmits(), 7u);
  EXPECT_EQ(s.tcp_connects(), 1u);
  EXPECT_EQ(s.tcp_failed_connects(), 2u);
  EXPECT_EQ(s.tcp_resets(), 3u);
  EXPECT_THAT(s.connect_latency_log2_us(), ::testing::ElementsAre(0, 0, 0, 0, 1));
  EXPECT_EQ(s.dropped_flows(), 9u);
  EXPECT_EQ(collector_->counters().flow_map_full.load(), 9u);
}

TEST_F(NetworkCollectorTest, QuietIntervalsAppendNothingAndReadErrorsAreCounted) {
  Collect();
  EXPECT_EQ(spool_->stats().records, 0u);
  source_->fail = true;
  clock_.Advance(10'000);
  EXPECT_FALSE(collector_->CollectOnce().ok());
  EXPECT_EQ(collector_->counters().read_errors.load(), 1u);
}

class FakeBlockSource final : public BlockIoSource {
 public:
  absl::Status Read(std::vector<std::pair<BlockIoKey, BlockIoTotals>>& out,
                    BlockIoDrops& d) override {
    for (const auto& [k, v] : devices) out.emplace_back(k, v);
    d = drops;
    return absl::OkStatus();
  }
  std::vector<ProgramStats> Programs() const override { return {}; }
  std::vector<MapStats> Maps() const override { return {}; }
  std::map<BlockIoKey, BlockIoTotals> devices;
  BlockIoDrops drops;
};

TEST(BlockIoCollector, PerDeviceDeltasNamedFromDiskstats) {
  const std::string proc = nodewatch::testing::MakeTempDir("proc");
  std::ofstream(proc + "/diskstats") << " 259       0 nvme0n1 1 2 3 4 5 6 7 8 9 10 11\n"
                                     << "   7       3 loop3 0 0 0 0 0 0 0 0 0 0 0\n"
                                     << "garbage line\n";
  auto spool = Spool::Open({.dir = nodewatch::testing::MakeTempDir("blk-spool")});
  ASSERT_TRUE(spool.ok());
  auto source = std::make_unique<FakeBlockSource>();
  FakeBlockSource* fake = source.get();
  FakeClock clock;
  BlockIoCollector collector(**spool, std::move(source), proc, clock, 10'000);
  BlockIoTotals reads{.ios = 10, .bytes = 40960};
  reads.latency_log2_us[6] = 10;
  fake->devices[{259, 0, BlockOp::kRead}] = reads;
  fake->devices[{259, 0, BlockOp::kOther}] = {.errors = 1};
  fake->devices[{8, 16, BlockOp::kWrite}] = {.ios = 1, .bytes = 512};
  auto s = collector.CollectOnce();
  ASSERT_TRUE(s.ok());
  ASSERT_EQ(s->devices_size(), 2);
  const auto& unknown = s->devices(0);  // (8, 16) sorts first; not in diskstats any more
  EXPECT_EQ(unknown.device(), "8:16");
  EXPECT_EQ(unknown.writes(), 1u);
  const auto& nvme = s->devices(1);
  EXPECT_EQ(nvme.device(), "nvme0n1");
  EXPECT_EQ(nvme.reads(), 10u);
  EXPECT_EQ(nvme.read_bytes(), 40960u);
  EXPECT_EQ(nvme.io_errors(), 1u);
  EXPECT_EQ(nvme.read_latency_log2_us_size(), 7);

  // Next interval: only what changed.
  fake->devices[{259, 0, BlockOp::kRead}].ios = 13;
  fake->devices[{259, 0, BlockOp::kRead}].latency_log2_us[6] = 13;
  fake->drops.device_map_full = 4;
  fake->devices[{259, 0, BlockOp::kRead}].untimed = 2;
  s = collector.CollectOnce();
  ASSERT_TRUE(s.ok());
  ASSERT_EQ(s->devices_size(), 1);
  EXPECT_EQ(s->devices(0).reads(), 3u);
  EXPECT_EQ(s->devices(0).io_errors(), 0u);
  EXPECT_EQ(collector.counters().device_map_full.load(), 4u);
  EXPECT_EQ(collector.counters().untimed.load(), 2u);
  EXPECT_EQ(collector.counters().samples.load(), 2u);
}

TEST(BlockIoCollector, ParsesDiskstats) {
  auto lines = ParseDiskstats(
      "   8       0 sda 11 2 3 4 22 6 7 8 9 10 11 12 13 14 15 16 17\n"
      "   8       1 sda1 1\n"
      "   8       2 sda2 1 2 3 4 x 6\n"
      "x y z\n\n");
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ((lines[{8, 0}].name), "sda");
  EXPECT_TRUE((lines[{8, 0}].has_completions));
  EXPECT_EQ((lines[{8, 0}].reads), 11u);
  EXPECT_EQ((lines[{8, 0}].writes), 22u);
  EXPECT_EQ((lines[{8, 1}].name), "sda1");  // named, but no completions to check against
  EXPECT_FALSE((lines[{8, 1}].has_completions));
  EXPECT_FALSE((lines[{8, 2}].has_completions));
  EXPECT_EQ((lines[{8, 2}].reads), 0u);
}

// diskstats lines for the completion check: "major minor name reads 0 0 0 writes".
std::string DiskstatsText(const std::vector<std::tuple<int, int, std::string, int, int>>& lines) {
  std::string text;
  for (const auto& [major, minor, name, reads, writes] : lines) {
    text +=
        absl::StrCat(major, " ", minor, " ", name, " ", reads, " 0 0 0 ", writes, " 0 0 0 0 0 0\n");
  }
  return text;
}

// A source that rewrites diskstats while the maps are read, as completions do in between.
class RacingBlockSource final : public BlockIoSource {
 public:
  absl::Status Read(std::vector<std::pair<BlockIoKey, BlockIoTotals>>& out,
                    BlockIoDrops&) override {
    for (const auto& [k, v] : devices) out.emplace_back(k, v);
    if (!diskstats_after_read.empty()) std::ofstream(path) << diskstats_after_read;
    return absl::OkStatus();
  }
  std::vector<ProgramStats> Programs() const override { return {}; }
  std::vector<MapStats> Maps() const override { return {}; }
  std::string path, diskstats_after_read;
  std::map<BlockIoKey, BlockIoTotals> devices;
};

TEST(BlockIoCollector, CompletionsTheProgramWasNotRunForAreCounted) {
  const std::string proc = nodewatch::testing::MakeTempDir("proc");
  const std::string diskstats = proc + "/diskstats";
  auto spool = Spool::Open({.dir = nodewatch::testing::MakeTempDir("blk-spool")});
  ASSERT_TRUE(spool.ok());
  auto source = std::make_unique<RacingBlockSource>();
  RacingBlockSource* fake = source.get();
  fake->path = diskstats;
  FakeClock clock;
  BlockIoCollector collector(**spool, std::move(source), proc, clock, 10'000);
  auto set = [&](int loop_reads, int loop_writes, int dm_writes) {
    std::ofstream(diskstats) << DiskstatsText(
        {{7, 0, "loop0", loop_reads, loop_writes}, {253, 0, "dm-0", 0, dm_writes}});
  };
  auto counted = [&](int reads, int writes) {
    fake->devices[{7, 0, BlockOp::kRead}].ios = reads;
    fake->devices[{7, 0, BlockOp::kWrite}].ios = writes;
  };

  // Base: the program has counted 100 and 50 since load; diskstats says more (before the base).
  counted(100, 50);
  set(500, 70, 9);
  ASSERT_TRUE(collector.CollectOnce().ok());
  EXPECT_EQ(collector.Uncounted(7, 0).reads, 0u);

  // 30 reads and 20 writes complete; the program counts 29 and 20. The dm device (bio-based: no
  // request completions) is never checked.
  set(530, 90, 1'000);
  counted(129, 70);
  ASSERT_TRUE(collector.CollectOnce().ok());
  EXPECT_EQ(collector.Uncounted(7, 0).reads, 1u);
  EXPECT_EQ(collector.Uncounted(7, 0).writes, 0u);
  EXPECT_EQ(collector.Uncounted(253, 0).writes, 0u);
  EXPECT_EQ(collector.counters().uncounted.load(), 1u);

  // Completions between the diskstats read and the maps read are in the maps, not yet in
  // diskstats: no false alarm, and the one already found stays found.
  counted(140, 75);
  fake->diskstats_after_read = DiskstatsText({{7, 0, "loop0", 541, 95}, {253, 0, "dm-0", 0, 0}});
  ASSERT_TRUE(collector.CollectOnce().ok());
  EXPECT_EQ(collector.Uncounted(7, 0).reads, 1u);
  EXPECT_EQ(collector.Uncounted(7, 0).writes, 0u);

  // The device is removed and another gets its number: diskstats starts again from zero. The
  // check re-bases, keeps what it found, and goes on: 10 more writes, 8 counted.
  fake->diskstats_after_read.clear();
  set(0, 4, 0);
  counted(140, 78);
  ASSERT_TRUE(collector.CollectOnce().ok());
  set(0, 14, 0);
  counted(140, 86);
  ASSERT_TRUE(collector.CollectOnce().ok());
  EXPECT_EQ(collector.Uncounted(7, 0).reads, 1u);
  EXPECT_EQ(collector.Uncounted(7, 0).writes, 2u);
  EXPECT_EQ(collector.counters().uncounted.load(), 3u);

  // The maps start again from zero (as after a reload): the check re-bases, no false alarm.
  set(0, 20, 0);
  counted(0, 1);
  ASSERT_TRUE(collector.CollectOnce().ok());
  set(0, 25, 0);
  counted(0, 6);
  ASSERT_TRUE(collector.CollectOnce().ok());
  EXPECT_EQ(collector.Uncounted(7, 0).writes, 2u);
  EXPECT_EQ(collector.counters().uncounted.load(), 3u);

  // An unreadable diskstats skips the check; devices keep the names last read.
  std::filesystem::remove(diskstats);
  counted(150, 90);
  auto s = collector.CollectOnce();
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->devices(0).device(), "loop0");
  EXPECT_EQ(collector.counters().uncounted.load(), 3u);

  // The device is removed: its check goes, what was found on it stays in the total.
  std::ofstream(diskstats) << DiskstatsText({{253, 0, "dm-0", 0, 0}});
  ASSERT_TRUE(collector.CollectOnce().ok());
  EXPECT_EQ(collector.Uncounted(7, 0).writes, 0u);
  EXPECT_EQ(collector.counters().uncounted.load(), 3u);
}

}  // namespace
}  // namespace nodewatch::agent
