#include "aggregator/ingest/ingest_engine.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <rocksdb/env.h>

#include <future>
#include <mutex>

namespace nodewatch::aggregator {
namespace {

using nodewatch::v1::Record;
using nodewatch::v1::RecordBatch;

class IngestEngineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    env_.reset(rocksdb::NewMemEnv(rocksdb::Env::Default()));
    Reopen();
  }
  void TearDown() override {
    engine_.reset();
    store_.reset();
  }
  void Reopen() {
    engine_.reset();
    store_.reset();
    auto store = OpenRocksDbStore({.path = "/mem/db", .env = env_.get()});
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
    engine_ = std::make_unique<IngestEngine>(*store_, clock_);
    ASSERT_TRUE(engine_->Start().ok());
  }
  absl::StatusOr<uint64_t> Hello(const std::string& node, const std::string& spool = "s1",
                                 uint64_t lowest = 0) {
    nodewatch::v1::Hello h;
    h.set_node_name(node);
    h.set_spool_id(spool);
    h.set_lowest_seq(lowest);
    std::promise<absl::StatusOr<uint64_t>> done;
    engine_->SubmitHello(node, h, [&](absl::StatusOr<uint64_t> a) { done.set_value(a); });
    return done.get_future().get();
  }
  absl::StatusOr<uint64_t> Send(const std::string& node, std::vector<uint64_t> seqs,
                                uint64_t lowest_held = 0, int64_t time = 0) {
    RecordBatch b;
    for (uint64_t s : seqs) {
      Record* r = b.add_records();
      r->set_seq(s);
      r->set_time_unix_ms(time != 0 ? time : clock_.NowUnixMs() - 1000 + static_cast<int64_t>(s));
      r->mutable_heartbeat()->set_uptime_seconds(s);
    }
    b.set_lowest_seq_held(lowest_held);
    std::promise<absl::StatusOr<uint64_t>> done;
    engine_->SubmitBatch(node, b, [&](absl::StatusOr<uint64_t> a) { done.set_value(a); });
    return done.get_future().get();
  }
  std::vector<uint64_t> Stored(const std::string& node) {
    std::vector<uint64_t> seqs;
    auto id = engine_->NodeId(node);
    if (!id) return seqs;
    EXPECT_TRUE(store_
                    ->ScanRecords(*id, INT64_MIN, 0, INT64_MAX,
                                  [&](int64_t, const Record& r) {
                                    seqs.push_back(r.seq());
                                    return true;
                                  })
                    .ok());
    std::sort(seqs.begin(), seqs.end());
    return seqs;
  }

  FakeClock clock_;
  std::unique_ptr<rocksdb::Env> env_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<IngestEngine> engine_;
};

TEST_F(IngestEngineTest, HelloOfANewNodeAcksZero) {
  EXPECT_EQ(*Hello("a"), 0u);
  ASSERT_TRUE(engine_->GetNode("a").has_value());
}

TEST_F(IngestEngineTest, AHelloFromANewBootIsToldOnceWithBothLives) {
  engine_.reset();
  engine_ = std::make_unique<IngestEngine>(*store_, clock_);
  std::vector<IngestEngine::NodeBoot> boots;
  std::mutex mu;
  engine_->SetBootListener([&](const IngestEngine::NodeBoot& b) {
    std::lock_guard<std::mutex> lock(mu);
    boots.push_back(b);
  });
  ASSERT_TRUE(engine_->Start().ok());
  auto hello = [&](const std::string& boot, const std::string& instance) {
    nodewatch::v1::Hello h;
    h.set_spool_id("s1");
    h.set_boot_id(boot);
    h.mutable_node_info()->set_instance_id(instance);
    std::promise<absl::StatusOr<uint64_t>> done;
    engine_->SubmitHello("a", h, [&](absl::StatusOr<uint64_t> r) { done.set_value(r); });
    ASSERT_TRUE(done.get_future().get().ok());
  };
  hello("boot-1", "i-1");  // first sight of the node: not a return
  const int64_t last_seen = clock_.NowUnixMs();
  hello("boot-1", "i-1");  // a reconnect of the same boot: not a return
  clock_.Advance(90'000);
  hello("boot-2", "i-2");
  std::lock_guard<std::mutex> lock(mu);
  ASSERT_EQ(boots.size(), 1u);
  EXPECT_EQ(boots[0].node, "a");
  EXPECT_EQ(boots[0].boot_id, "boot-2");
  EXPECT_EQ(boots[0].previous_boot_id, "boot-1");
  EXPECT_EQ(boots[0].instance_id, "i-2");
  EXPECT_EQ(boots[0].previous_instance_id, "i-1");
  EXPECT_EQ(boots[0].unix_ms - boots[0].previous_last_seen_unix_ms, 90'000);
  EXPECT_EQ(boots[0].previous_last_seen_unix_ms, last_seen);
}

// The node directory keeps each life (one instance, one boot) with what its notices said, in the
// same commits as the Hellos and notices, across aggregator restarts.
TEST_F(IngestEngineTest, LivesSplitOnBootAndInstanceAndSurviveARestart) {
  auto hello = [&](const std::string& boot, const std::string& instance, const std::string& type) {
    nodewatch::v1::Hello h;
    h.set_spool_id("s1");
    h.set_boot_id(boot);
    h.mutable_node_info()->set_instance_id(instance);
    h.mutable_node_info()->set_instance_type(type);
    std::promise<absl::StatusOr<uint64_t>> done;
    engine_->SubmitHello("a", h, [&](absl::StatusOr<uint64_t> r) { done.set_value(r); });
    ASSERT_TRUE(done.get_future().get().ok());
  };
  const int64_t t0 = clock_.NowUnixMs();
  hello("boot-1", "i-1", "m5.large");
  RecordBatch b;
  Record* r = b.add_records();
  r->set_seq(1);
  r->set_time_unix_ms(clock_.NowUnixMs());
  r->mutable_interruption()->set_provider("aws");
  r->mutable_interruption()->set_kind(nodewatch::v1::INTERRUPTION_KIND_SPOT_STOP);
  r->mutable_interruption()->set_state(nodewatch::v1::NOTICE_STATE_ACTIVE);
  r->mutable_interruption()->set_event_id("stop-1");
  clock_.Advance(60'000);
  std::promise<absl::StatusOr<uint64_t>> sent;
  engine_->SubmitBatch("a", b, [&](absl::StatusOr<uint64_t> a) { sent.set_value(a); });
  ASSERT_TRUE(sent.get_future().get().ok());
  const int64_t stopped_at = clock_.NowUnixMs();
  clock_.Advance(3'600'000);
  hello("boot-2", "i-1", "m5.xlarge");
  clock_.Advance(60'000);
  hello("boot-3", "i-2", "m5.large");
  Reopen();
  auto node = engine_->GetNode("a");
  ASSERT_TRUE(node.has_value());
  ASSERT_EQ(node->lives_size(), 3);
  EXPECT_EQ(node->lives(0).start_unix_ms(), t0);
  EXPECT_EQ(node->lives(0).last_seen_unix_ms(), stopped_at);
  EXPECT_EQ(node->lives(0).ended(), "stopped");
  EXPECT_EQ(node->lives(1).start_unix_ms(), stopped_at + 3'600'000);
  EXPECT_EQ(node->lives(1).instance_type(), "m5.xlarge");
  EXPECT_EQ(node->lives(1).ended(), "replaced");
  EXPECT_EQ(node->lives(2).instance_id(), "i-2");
  EXPECT_EQ(node->lives(2).ended(), "");
}

TEST_F(IngestEngineTest, BatchBeforeHelloIsRefused) {
  EXPECT_EQ(Send("ghost", {1}).status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(IngestEngineTest, ResentRecordsAreStoredOnce) {
  ASSERT_TRUE(Hello("a").ok());
  EXPECT_EQ(*Send("a", {1, 2, 3}), 3u);
  EXPECT_EQ(*Send("a", {2, 3, 4, 5}), 5u);
  EXPECT_EQ(*Send("a", {1, 2, 3, 4, 5}), 5u);
  EXPECT_THAT(Stored("a"), ::testing::ElementsAre(1, 2, 3, 4, 5));
  EXPECT_EQ(engine_->counters().duplicates.load(), 7u);
  EXPECT_EQ(engine_->GetNode("a")->records(), 5u);
}

TEST_F(IngestEngineTest, ANoticeThatOvertakesTelemetryIsHeldAboveTheWatermark) {
  ASSERT_TRUE(Hello("a").ok());
  EXPECT_EQ(*Send("a", {1, 2}), 2u);
  EXPECT_EQ(*Send("a", {6}, /*lowest_held=*/3), 2u);  // 3..5 still to come
  EXPECT_EQ(*Send("a", {6}, 3), 2u);                  // a resend of the notice: a duplicate
  EXPECT_EQ(*Send("a", {3, 4, 5}, 3), 6u);
  EXPECT_THAT(Stored("a"), ::testing::ElementsAre(1, 2, 3, 4, 5, 6));
}

TEST_F(IngestEngineTest, SeqsTheAgentDroppedAreSkippedAndCounted) {
  ASSERT_TRUE(Hello("a").ok());
  EXPECT_EQ(*Send("a", {1, 2}), 2u);
  // lowest_held 6: 3..5 are gone for good; the notice 7 waits above the watermark for 6.
  EXPECT_EQ(*Send("a", {7}, /*lowest_held=*/6), 5u);
  EXPECT_EQ(engine_->GetNode("a")->lost_records(), 3u);
  EXPECT_EQ(*Send("a", {6}, 6), 7u);
  EXPECT_THAT(Stored("a"), ::testing::ElementsAre(1, 2, 6, 7));
}

TEST_F(IngestEngineTest, WatermarkAndPendingSurviveARestart) {
  ASSERT_TRUE(Hello("a").ok());
  ASSERT_TRUE(Send("a", {1, 2, 3}).ok());
  ASSERT_TRUE(Send("a", {9}, 4).ok());
  Reopen();
  EXPECT_EQ(*Hello("a"), 3u);
  EXPECT_EQ(*Send("a", {1, 2, 3, 9}, 4), 3u);  // all duplicates
  EXPECT_EQ(*Send("a", {4, 5, 6, 7, 8}, 4), 9u);
  EXPECT_THAT(Stored("a"), ::testing::ElementsAre(1, 2, 3, 4, 5, 6, 7, 8, 9));
}

TEST_F(IngestEngineTest, ANewSpoolStartsANewSequenceSpace) {
  ASSERT_TRUE(Hello("a", "s1").ok());
  ASSERT_TRUE(Send("a", {1, 2, 3}).ok());
  EXPECT_EQ(*Hello("a", "s2"), 0u);
  EXPECT_EQ(*Send("a", {1}), 1u);
  EXPECT_EQ(engine_->counters().spool_resets.load(), 1u);
}

TEST_F(IngestEngineTest, InvalidBatchesAreRefusedWhole) {
  ASSERT_TRUE(Hello("a").ok());
  RecordBatch b;
  b.add_records()->set_seq(1);  // no payload
  std::promise<absl::StatusOr<uint64_t>> done;
  engine_->SubmitBatch("a", b, [&](absl::StatusOr<uint64_t> a) { done.set_value(a); });
  EXPECT_EQ(done.get_future().get().status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Send("a", {0}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Send("a", {1ull << 63}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Send("a", {1}, /*lowest_held=*/UINT64_MAX).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(Stored("a").empty());
  EXPECT_EQ(*Send("a", {1}), 1u);  // the stream's node keeps working
}

TEST_F(IngestEngineTest, AbsurdTimestampsAreFiledUnderTheReceiveTime) {
  ASSERT_TRUE(Hello("a").ok());
  ASSERT_TRUE(Send("a", {1}, 0, /*time=*/clock_.NowUnixMs() + 365LL * 86400'000).ok());
  ASSERT_TRUE(Send("a", {2}, 0, /*time=*/-5).ok());
  EXPECT_EQ(engine_->counters().clamped_times.load(), 2u);
  auto id = engine_->NodeId("a");
  std::vector<int64_t> times;
  ASSERT_TRUE(store_
                  ->ScanRecords(*id, INT64_MIN, 0, INT64_MAX,
                                [&](int64_t t, const Record&) {
                                  times.push_back(t);
                                  return true;
                                })
                  .ok());
  EXPECT_THAT(times, ::testing::Each(clock_.NowUnixMs()));
}

TEST_F(IngestEngineTest, TheSameCloudEventSpooledTwiceIsStoredOnce) {
  ASSERT_TRUE(Hello("a").ok());
  auto notice_batch = [&](std::vector<uint64_t> seqs, nodewatch::v1::NoticeState state) {
    RecordBatch b;
    for (uint64_t s : seqs) {
      Record* r = b.add_records();
      r->set_seq(s);
      r->set_time_unix_ms(clock_.NowUnixMs());
      r->mutable_interruption()->set_provider("aws");
      r->mutable_interruption()->set_event_id("spot-terminate-2026-11-22T12:00:00Z");
      r->mutable_interruption()->set_state(state);
    }
    std::promise<absl::StatusOr<uint64_t>> done;
    engine_->SubmitBatch("a", b, [&](absl::StatusOr<uint64_t> a) { done.set_value(a); });
    return done.get_future().get();
  };
  // An agent killed right after detection spools the notice again under a new seq.
  EXPECT_EQ(*notice_batch({1}, nodewatch::v1::NOTICE_STATE_ACTIVE), 1u);
  EXPECT_EQ(*notice_batch({2}, nodewatch::v1::NOTICE_STATE_ACTIVE), 2u);  // seq still counts
  EXPECT_EQ(*notice_batch({3}, nodewatch::v1::NOTICE_STATE_CANCELED), 3u);  // a new state is news
  EXPECT_THAT(Stored("a"), ::testing::ElementsAre(1, 3));
  EXPECT_EQ(engine_->GetNode("a")->interruptions(), 2u);
  EXPECT_EQ(engine_->counters().duplicate_notices.load(), 1u);
  Reopen();  // remembered across aggregator restarts
  ASSERT_TRUE(Hello("a").ok());
  EXPECT_EQ(*notice_batch({4}, nodewatch::v1::NOTICE_STATE_ACTIVE), 4u);
  EXPECT_THAT(Stored("a"), ::testing::ElementsAre(1, 3));
}

TEST_F(IngestEngineTest, ManyNodesConcurrentlyAreEachStoredExactlyOnce) {
  constexpr int kNodes = 20;
  constexpr uint64_t kBatches = 30;
  for (int n = 0; n < kNodes; ++n) ASSERT_TRUE(Hello("n" + std::to_string(n)).ok());
  std::vector<std::thread> threads;
  for (int n = 0; n < kNodes; ++n) {
    threads.emplace_back([&, n] {
      std::string node = "n" + std::to_string(n);
      for (uint64_t b = 0; b < kBatches; ++b) {
        std::vector<uint64_t> seqs;
        for (uint64_t s = b * 10 + 1; s <= b * 10 + 10; ++s) seqs.push_back(s);
        if (b % 3 == 0 && b > 0) seqs.insert(seqs.begin(), b * 10 - 1);  // a resend
        ASSERT_EQ(*Send(node, seqs), b * 10 + 10);
      }
    });
  }
  for (auto& t : threads) t.join();
  for (int n = 0; n < kNodes; ++n) {
    EXPECT_EQ(Stored("n" + std::to_string(n)).size(), kBatches * 10);
  }
  EXPECT_LT(engine_->counters().commits.load(), static_cast<uint64_t>(kNodes * kBatches) + kNodes);
}

}  // namespace
}  // namespace nodewatch::aggregator
