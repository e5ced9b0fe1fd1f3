#include <gtest/gtest.h>
#include <rocksdb/env.h>

#include <chrono>

#include "aggregator/store/store.h"

namespace nodewatch::aggregator {
namespace {

using nodewatch::v1::Record;

class StoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    env_.reset(rocksdb::NewMemEnv(rocksdb::Env::Default()));
    auto store = OpenRocksDbStore({.path = "/mem/db", .env = env_.get()});
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
  }
  void Put(uint32_t node, int64_t time, uint64_t seq, bool notice = false) {
    records_.push_back(std::make_unique<Record>());
    Record& r = *records_.back();
    r.set_seq(seq);
    r.set_time_unix_ms(time);
    if (notice) {
      r.mutable_interruption()->set_event_id("e" + std::to_string(seq));
    } else {
      r.mutable_heartbeat()->set_uptime_seconds(seq);
    }
    WriteSet w;
    w.records.push_back({node, time, &r});
    ASSERT_TRUE(store_->Write(w).ok());
  }
  std::vector<uint64_t> Scan(uint32_t node, int64_t since, int64_t until, uint64_t since_seq = 0) {
    std::vector<uint64_t> seqs;
    EXPECT_TRUE(store_
                    ->ScanRecords(node, since, since_seq, until,
                                  [&](int64_t, const Record& r) {
                                    seqs.push_back(r.seq());
                                    return true;
                                  })
                    .ok());
    return seqs;
  }
  std::unique_ptr<rocksdb::Env> env_;
  std::unique_ptr<Store> store_;
  std::vector<std::unique_ptr<Record>> records_;
};

TEST_F(StoreTest, RangeScanReturnsOneNodesRecordsInTimeOrder) {
  Put(1, 300, 3);
  Put(1, 100, 1);
  Put(2, 150, 1);
  Put(1, 200, 2);
  Put(1, 200, 5);
  EXPECT_EQ(Scan(1, 0, 1000), (std::vector<uint64_t>{1, 2, 5, 3}));
  EXPECT_EQ(Scan(1, 200, 300), (std::vector<uint64_t>{2, 5}));  // until is exclusive
  EXPECT_EQ(Scan(1, 200, 1000, 3), (std::vector<uint64_t>{5, 3}));  // resume after (200, 2)
  EXPECT_EQ(Scan(2, 0, 1000), (std::vector<uint64_t>{1}));
  EXPECT_TRUE(Scan(3, 0, 1000).empty());
}

TEST_F(StoreTest, RewritingTheSameRecordKeepsOneCopy) {
  Put(1, 100, 1);
  Put(1, 100, 1);
  EXPECT_EQ(Scan(1, 0, 1000).size(), 1u);
}

TEST_F(StoreTest, InterruptionsAreIndexedByTime) {
  Put(2, 500, 7, /*notice=*/true);
  Put(1, 400, 3, /*notice=*/true);
  Put(1, 450, 4);
  std::vector<std::pair<uint32_t, uint64_t>> seen;
  ASSERT_TRUE(store_
                  ->ScanInterruptions(0, 1000,
                                      [&](uint32_t id, int64_t, const Record& r) {
                                        seen.emplace_back(id, r.seq());
                                        return true;
                                      })
                  .ok());
  EXPECT_EQ(seen, (std::vector<std::pair<uint32_t, uint64_t>>{{1, 3}, {2, 7}}));
}

TEST_F(StoreTest, RetentionDropsOnlyRecordsOlderThanItOnCompaction) {
  const int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::system_clock::now().time_since_epoch())
                          .count();
  const int64_t day = 86'400'000;
  Put(1, now - 20 * day, 1, /*notice=*/true);  // older than the default 14 days
  Put(1, now - 13 * day, 2, /*notice=*/true);
  Put(1, now - 1000, 3);
  ASSERT_TRUE(store_->CompactAll().ok());
  EXPECT_EQ(Scan(1, INT64_MIN, INT64_MAX), (std::vector<uint64_t>{2, 3}));
  int interruptions = 0;
  ASSERT_TRUE(store_
                  ->ScanInterruptions(INT64_MIN, INT64_MAX,
                                      [&](uint32_t, int64_t, const Record&) {
                                        ++interruptions;
                                        return true;
                                      })
                  .ok());
  EXPECT_EQ(interruptions, 1);
}

TEST_F(StoreTest, NodesRoundTrip) {
  nodewatch::internal::StoredNode n;
  n.set_name("node-a");
  n.set_id(3);
  n.set_acked_seq(99);
  n.add_pending_seqs(120);
  WriteSet w;
  w.nodes.push_back(&n);
  ASSERT_TRUE(store_->Write(w).ok());
  auto nodes = store_->LoadNodes();
  ASSERT_TRUE(nodes.ok());
  ASSERT_EQ(nodes->size(), 1u);
  EXPECT_EQ((*nodes)[0].acked_seq(), 99u);
  EXPECT_EQ((*nodes)[0].pending_seqs(0), 120u);
}

}  // namespace
}  // namespace nodewatch::aggregator
