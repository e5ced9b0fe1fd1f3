#include "aggregator/store/keys.h"

#include <gtest/gtest.h>

namespace nodewatch::aggregator {
namespace {

TEST(Keys, RecordKeyOrderIsNodeThenTimeThenSeq) {
  EXPECT_LT(RecordKey(1, 500, 9), RecordKey(2, 0, 0));
  EXPECT_LT(RecordKey(1, 100, 9), RecordKey(1, 200, 1));
  EXPECT_LT(RecordKey(1, 100, 1), RecordKey(1, 100, 2));
  EXPECT_LT(RecordKey(1, -5, 1), RecordKey(1, 0, 1));  // sign flip: negative times first
  EXPECT_LT(RecordKey(1, 255, 1), RecordKey(1, 256, 1));  // big-endian, not byte-wise little
  EXPECT_LT(RecordKey(0xFFFF, 1, 1), RecordKey(0x10000, 0, 0));
}

TEST(Keys, RecordKeyRoundTrips) {
  DecodedRecordKey d{};
  ASSERT_TRUE(DecodeRecordKey(RecordKey(77, 1'760'000'000'123, 42), &d));
  EXPECT_EQ(d.node_id, 77u);
  EXPECT_EQ(d.time_ms, 1'760'000'000'123);
  EXPECT_EQ(d.seq, 42u);
  ASSERT_TRUE(DecodeRecordKey(RecordKey(1, -1, UINT64_MAX), &d));
  EXPECT_EQ(d.time_ms, -1);
  EXPECT_EQ(d.seq, UINT64_MAX);
  EXPECT_FALSE(DecodeRecordKey("short", &d));
}

TEST(Keys, InterruptionKeyOrderIsTimeFirst) {
  EXPECT_LT(InterruptionKey(100, 9, 9), InterruptionKey(101, 1, 1));
  DecodedRecordKey d{};
  ASSERT_TRUE(DecodeInterruptionKey(InterruptionKey(5, 6, 7), &d));
  EXPECT_EQ(d.time_ms, 5);
  EXPECT_EQ(d.node_id, 6u);
  EXPECT_EQ(d.seq, 7u);
}

}  // namespace
}  // namespace nodewatch::aggregator
