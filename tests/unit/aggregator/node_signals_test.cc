// Per-node network and disk series from stored samples: summed once per record (resends are not
// counted again), bounded per node, forgotten when a node goes silent.
#include "aggregator/signals/node_signals.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <rocksdb/env.h>

#include <future>

namespace nodewatch::aggregator {
namespace {

class NodeSignalsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    env_.reset(rocksdb::NewMemEnv(rocksdb::Env::Default()));
    auto store = OpenRocksDbStore({.path = "/mem/db", .env = env_.get()});
    ASSERT_TRUE(store.ok());
    store_ = std::move(*store);
    engine_ = std::make_unique<IngestEngine>(*store_, clock_);
    engine_->AddRecordTap(&signals_);
    ASSERT_TRUE(engine_->Start().ok());
    nodewatch::v1::Hello h;
    h.set_spool_id("s");
    Submit(&h, nullptr);
  }
  void TearDown() override { engine_.reset(); }
  void Submit(const nodewatch::v1::Hello* hello, const nodewatch::v1::RecordBatch* batch) {
    std::promise<absl::StatusOr<uint64_t>> done;
    auto cb = [&](absl::StatusOr<uint64_t> a) { done.set_value(a); };
    if (hello != nullptr) {
      engine_->SubmitHello("n1", *hello, cb);
    } else {
      engine_->SubmitBatch("n1", *batch, cb);
    }
    ASSERT_TRUE(done.get_future().get().ok());
  }
  nodewatch::v1::RecordBatch Samples(uint64_t seq, int devices) {
    nodewatch::v1::RecordBatch b;
    auto* r = b.add_records();
    r->set_seq(seq);
    r->set_time_unix_ms(clock_.NowUnixMs());
    auto* f = r->mutable_network()->add_flows();
    f->set_direction(nodewatch::v1::DIRECTION_EGRESS);
    f->set_bytes(1000);
    f->set_packets(10);
    r->mutable_network()->set_tcp_retransmits(3);
    auto* d = b.add_records();
    d->set_seq(seq + 1);
    d->set_time_unix_ms(clock_.NowUnixMs());
    for (int i = 0; i < devices; ++i) {
      auto* dev = d->mutable_disk()->add_devices();
      dev->set_device("vd" + std::string(1, static_cast<char>('a' + i)));
      dev->set_reads(5);
    }
    auto* fs = d->mutable_disk()->add_filesystems();
    fs->set_mountpoint("/");
    fs->set_device("vda1");
    fs->set_fstype("ext4");
    fs->set_size_bytes(1000);
    fs->set_available_bytes(seq);
    return b;
  }
  // name{labels} -> value, for the families collected now.
  std::map<std::string, double> Collect() {
    MetricFamilies f;
    signals_.CollectMetrics(f, clock_.NowUnixMs());
    std::map<std::string, double> out;
    for (const auto& family : f.Take()) {
      for (const auto& m : family.metric) {
        std::string key = family.name;
        for (const auto& l : m.label) key += "," + l.name + "=" + l.value;
        out[key] = family.type == prometheus::MetricType::Counter ? m.counter.value : m.gauge.value;
      }
    }
    return out;
  }

  FakeClock clock_;
  std::unique_ptr<rocksdb::Env> env_;
  std::unique_ptr<Store> store_;
  NodeSignals signals_{clock_, {.max_devices = 2}};
  std::unique_ptr<IngestEngine> engine_;
};

TEST_F(NodeSignalsTest, SumsEachStoredSampleOnceWithNodeExporterNames) {
  auto first = Samples(1, 2);
  Submit(nullptr, &first);
  Submit(nullptr, &first);  // a resend after a reconnect: not counted again
  auto second = Samples(3, 2);
  Submit(nullptr, &second);
  auto m = Collect();
  EXPECT_EQ(m["nodewatch_network_transmit_bytes_total,node=n1"], 2000);
  EXPECT_EQ(m["nodewatch_network_transmit_packets_total,node=n1"], 20);
  EXPECT_EQ(m["nodewatch_tcp_retransmits_total,node=n1"], 6);
  EXPECT_EQ(m["node_disk_reads_completed_total,device=vda,node=n1"], 10);
  EXPECT_EQ(m["node_filesystem_size_bytes,device=vda1,fstype=ext4,mountpoint=/,node=n1"], 1000);
  EXPECT_EQ(m["node_filesystem_avail_bytes,device=vda1,fstype=ext4,mountpoint=/,node=n1"], 3);
  EXPECT_EQ(m.count("nodewatch_filesystem_predicted_full_timestamp_seconds,device=vda1,fstype=ext4,"
                    "mountpoint=/,node=n1"),
            0u);  // not filling: no series
}

TEST_F(NodeSignalsTest, BoundsDevicesPerNodeAndForgetsSilentNodes) {
  auto many = Samples(1, 5);
  Submit(nullptr, &many);
  auto m = Collect();
  EXPECT_EQ(m.count("node_disk_reads_completed_total,device=vdb,node=n1"), 1u);
  EXPECT_EQ(m.count("node_disk_reads_completed_total,device=vdc,node=n1"), 0u);
  EXPECT_EQ(m["nodewatch_signals_skipped_total"], 3);
  clock_.Advance(2 * 3'600'000);
  m = Collect();
  EXPECT_EQ(m.count("nodewatch_network_transmit_bytes_total,node=n1"), 0u);
}

}  // namespace
}  // namespace nodewatch::aggregator
