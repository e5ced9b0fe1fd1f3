#include "agent/spool/spool.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <numeric>

#include "tests/support/process.h"

namespace nodewatch::agent {
namespace {

using nodewatch::v1::Record;
namespace fs = std::filesystem;

Record Heartbeat(int64_t t) {
  Record r;
  r.set_time_unix_ms(t);
  r.mutable_heartbeat()->set_load1(static_cast<double>(t));
  return r;
}

Record Notice(const std::string& id) {
  Record r;
  r.set_time_unix_ms(1);
  r.mutable_interruption()->set_event_id(id);
  r.mutable_interruption()->set_provider("aws");
  return r;
}

std::vector<Record> Many(int n, int64_t t0 = 1) {
  std::vector<Record> out;
  for (int i = 0; i < n; ++i) out.push_back(Heartbeat(t0 + i));
  return out;
}

std::vector<uint64_t> ReadSeqs(Spool& spool, Lane lane, uint64_t after = 0) {
  std::vector<Record> out;
  EXPECT_TRUE(spool.Read(lane, after, 1'000'000, 1ull << 40, nullptr, &out).ok());
  std::vector<uint64_t> seqs;
  for (auto& r : out) seqs.push_back(r.seq());
  return seqs;
}

// Every seq from 1..highest that is not acked, merged from both lanes: must be contiguous.
std::vector<uint64_t> AllSeqs(Spool& spool) {
  auto a = ReadSeqs(spool, Lane::kUrgent);
  auto b = ReadSeqs(spool, Lane::kTelemetry);
  a.insert(a.end(), b.begin(), b.end());
  std::sort(a.begin(), a.end());
  return a;
}

class SpoolTest : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = testing::MakeTempDir("spool-test"); }
  void TearDown() override { fs::remove_all(dir_); }
  std::unique_ptr<Spool> Open(uint64_t max_bytes = 1 << 20, uint64_t segment = 16 << 10) {
    auto spool = Spool::Open({.dir = dir_, .max_bytes = max_bytes, .segment_bytes = segment});
    EXPECT_TRUE(spool.ok()) << spool.status();
    return spool.ok() ? std::move(*spool) : nullptr;
  }
  std::vector<fs::path> Segments(const std::string& lane) {
    std::vector<fs::path> out;
    for (auto& e : fs::directory_iterator(dir_)) {
      if (e.path().filename().string().rfind(lane + "-", 0) == 0) out.push_back(e.path());
    }
    std::sort(out.begin(), out.end());
    return out;
  }
  std::string dir_;
};

TEST_F(SpoolTest, AssignsConsecutiveSeqsAndReadsThemInOrder) {
  auto spool = Open();
  ASSERT_EQ(*spool->AppendTelemetry(Many(10)), 10u);
  ASSERT_EQ(*spool->AppendTelemetry(Many(5)), 15u);
  std::vector<uint64_t> expected(15);
  std::iota(expected.begin(), expected.end(), 1);
  EXPECT_EQ(ReadSeqs(*spool, Lane::kTelemetry), expected);
  EXPECT_THAT(ReadSeqs(*spool, Lane::kTelemetry, 12), ::testing::ElementsAre(13, 14, 15));
}

TEST_F(SpoolTest, NoticesGoToTheUrgentLaneWithTheNextSeq) {
  auto spool = Open();
  ASSERT_TRUE(spool->AppendTelemetry(Many(5)).ok());
  ASSERT_EQ(*spool->AppendUrgent(Notice("i-1")), 6u);
  ASSERT_TRUE(spool->AppendTelemetry(Many(2)).ok());
  std::vector<Record> urgent;
  ASSERT_TRUE(spool->Read(Lane::kUrgent, 0, 100, 1 << 20, nullptr, &urgent).ok());
  ASSERT_EQ(urgent.size(), 1u);
  EXPECT_EQ(urgent[0].interruption().event_id(), "i-1");
  EXPECT_THAT(ReadSeqs(*spool, Lane::kTelemetry), ::testing::ElementsAre(1, 2, 3, 4, 5, 7, 8));
  // Until the notice is acked, the lowest seq held is the oldest telemetry.
  EXPECT_EQ(spool->lowest_seq_held(), 1u);
}

TEST_F(SpoolTest, ReopenKeepsRecordsAndContinuesTheSequence) {
  {
    auto spool = Open();
    ASSERT_TRUE(spool->AppendTelemetry(Many(100)).ok());
    ASSERT_TRUE(spool->AppendUrgent(Notice("n")).ok());
  }
  auto spool = Open();
  EXPECT_EQ(spool->highest_seq(), 101u);
  EXPECT_EQ(AllSeqs(*spool).size(), 101u);
  EXPECT_EQ(*spool->AppendTelemetry(Many(1)), 102u);
}

TEST_F(SpoolTest, SpoolIdSurvivesReopen) {
  std::string id;
  {
    auto spool = Open();
    id = spool->spool_id();
    EXPECT_EQ(id.size(), 32u);
  }
  EXPECT_EQ(Open()->spool_id(), id);
}

TEST_F(SpoolTest, TrimmedSeqsAreNeverReusedAfterRestart) {
  {
    auto spool = Open(1 << 20, 4096);
    ASSERT_TRUE(spool->AppendTelemetry(Many(500)).ok());  // several segments
    ASSERT_TRUE(spool->Trim(500).ok());
    EXPECT_EQ(Segments("telemetry").size(), 1u);  // only the active segment stays
  }
  auto spool = Open(1 << 20, 4096);
  EXPECT_TRUE(ReadSeqs(*spool, Lane::kTelemetry).empty());
  EXPECT_EQ(*spool->AppendTelemetry(Many(1)), 501u);
  EXPECT_EQ(spool->lowest_seq_held(), 501u);
}

TEST_F(SpoolTest, TrimIsPersistedSoAckedRecordsAreNotResent) {
  {
    auto spool = Open();
    ASSERT_TRUE(spool->AppendTelemetry(Many(20)).ok());
    ASSERT_TRUE(spool->Trim(12, /*force=*/true).ok());
  }
  auto spool = Open();
  EXPECT_THAT(ReadSeqs(*spool, Lane::kTelemetry),
              ::testing::ElementsAre(13, 14, 15, 16, 17, 18, 19, 20));
}

TEST_F(SpoolTest, TornTailIsTruncatedAndTheSequenceContinues) {
  {
    auto spool = Open();
    ASSERT_TRUE(spool->AppendTelemetry(Many(5)).ok());
  }
  auto segs = Segments("telemetry");
  ASSERT_EQ(segs.size(), 1u);
  {
    // A crash mid-append: a header that promises more bytes than were written.
    std::ofstream f(segs[0], std::ios::app | std::ios::binary);
    const char partial[] = {40, 0, 0, 0, 1, 2, 3, 4, 'x', 'y'};
    f.write(partial, sizeof partial);
  }
  auto size_before = fs::file_size(segs[0]);
  auto spool = Open();
  EXPECT_EQ(spool->stats().corrupt_frames, 1u);
  EXPECT_LT(fs::file_size(segs[0]), size_before);
  EXPECT_THAT(ReadSeqs(*spool, Lane::kTelemetry), ::testing::ElementsAre(1, 2, 3, 4, 5));
  EXPECT_EQ(*spool->AppendTelemetry(Many(1)), 6u);
  EXPECT_THAT(AllSeqs(*spool), ::testing::ElementsAre(1, 2, 3, 4, 5, 6));
}

TEST_F(SpoolTest, DamageInTheMiddleNeverReusesASeq) {
  {
    auto spool = Open();
    ASSERT_TRUE(spool->AppendTelemetry(Many(10)).ok());
  }
  auto segs = Segments("telemetry");
  {
    // Flip a byte inside the third frame's payload.
    std::fstream f(segs[0], std::ios::in | std::ios::out | std::ios::binary);
    std::string data((std::istreambuf_iterator<char>(f)), {});
    size_t offset = 0;
    for (int i = 0; i < 2; ++i) {
      uint32_t len;
      std::memcpy(&len, data.data() + offset, 4);
      offset += 8 + len;
    }
    f.seekp(static_cast<std::streamoff>(offset + 9));
    f.put(static_cast<char>(data[offset + 9] ^ 0x5a));
  }
  auto spool = Open();
  EXPECT_THAT(ReadSeqs(*spool, Lane::kTelemetry), ::testing::ElementsAre(1, 2));
  // Seqs 3..10 may have been sent before the damage: the next one must be above all of them.
  EXPECT_GT(*spool->AppendTelemetry(Many(1)), 10u);
}

TEST_F(SpoolTest, WhenFullTheOldestTelemetryIsDroppedAndCountedButNeverANotice) {
  auto spool = Open(/*max_bytes=*/64 << 10, /*segment=*/16 << 10);
  ASSERT_EQ(*spool->AppendUrgent(Notice("keep-me")), 1u);
  for (int i = 0; i < 400; ++i) ASSERT_TRUE(spool->AppendTelemetry(Many(20, i * 20)).ok());
  auto stats = spool->stats();
  EXPECT_GT(stats.dropped_records, 0u);
  EXPECT_LE(stats.bytes, (64u << 10) + (16u << 10));
  std::vector<Record> urgent;
  ASSERT_TRUE(spool->Read(Lane::kUrgent, 0, 10, 1 << 20, nullptr, &urgent).ok());
  ASSERT_EQ(urgent.size(), 1u);
  EXPECT_EQ(urgent[0].interruption().event_id(), "keep-me");
  // The notice is still the lowest seq held; after it is acked, the oldest surviving telemetry.
  EXPECT_EQ(spool->lowest_seq_held(), 1u);
  ASSERT_TRUE(spool->Trim(1).ok());
  auto telemetry = ReadSeqs(*spool, Lane::kTelemetry);
  ASSERT_FALSE(telemetry.empty());
  EXPECT_EQ(spool->lowest_seq_held(), telemetry.front());
  EXPECT_EQ(telemetry.front() - 2, stats.dropped_records);  // seqs 2.. were dropped
  EXPECT_EQ(telemetry.back(), 8001u);
}

TEST_F(SpoolTest, LowestSeqHeldSkipsOnlyWhatWasDropped) {
  auto spool = Open(/*max_bytes=*/64 << 10, /*segment=*/16 << 10);
  ASSERT_TRUE(spool->AppendTelemetry(Many(3)).ok());   // 1..3
  ASSERT_EQ(*spool->AppendUrgent(Notice("a")), 4u);
  ASSERT_TRUE(spool->AppendTelemetry(Many(3)).ok());   // 5..7
  ASSERT_TRUE(spool->Trim(2).ok());
  EXPECT_EQ(spool->lowest_seq_held(), 3u);
  ASSERT_TRUE(spool->Trim(3).ok());
  EXPECT_EQ(spool->lowest_seq_held(), 4u);  // the notice
  ASSERT_TRUE(spool->Trim(4).ok());
  EXPECT_EQ(spool->lowest_seq_held(), 5u);
  ASSERT_TRUE(spool->Trim(7).ok());
  EXPECT_EQ(spool->lowest_seq_held(), 8u);  // empty: the next seq
}

TEST_F(SpoolTest, RefusesARecordLargerThanTheLimit) {
  auto spool = Spool::Open({.dir = dir_, .max_record_bytes = 1024});
  ASSERT_TRUE(spool.ok());
  Record big = Heartbeat(1);
  big.mutable_interruption()->set_raw_payload(std::string(4096, 'x'));
  EXPECT_EQ((*spool)->AppendUrgent(big).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(*(*spool)->AppendTelemetry(Many(1)), 1u);  // the refused record took no seq
}

TEST_F(SpoolTest, CursorResumesWithoutSkippingOrRepeating) {
  auto spool = Open(1 << 20, 4096);
  ASSERT_TRUE(spool->AppendTelemetry(Many(300)).ok());
  SpoolCursor cursor;
  uint64_t after = 0;
  std::vector<uint64_t> seen;
  while (true) {
    std::vector<Record> page;
    ASSERT_TRUE(spool->Read(Lane::kTelemetry, after, 7, 1 << 20, &cursor, &page).ok());
    if (page.empty()) break;
    for (auto& r : page) seen.push_back(r.seq());
    after = page.back().seq();
  }
  ASSERT_EQ(seen.size(), 300u);
  for (size_t i = 0; i < seen.size(); ++i) EXPECT_EQ(seen[i], i + 1);
}

TEST_F(SpoolTest, RejectsABoundSmallerThanFourSegments) {
  auto spool = Spool::Open({.dir = dir_, .max_bytes = 8192, .segment_bytes = 4096});
  EXPECT_EQ(spool.status().code(), absl::StatusCode::kInvalidArgument);
}

// kill -9 at random points while records are being appended: every reopen finds a contiguous,
// strictly increasing history, and appends continue above it.
TEST_F(SpoolTest, SurvivesKillDashNineWithoutLossOrReordering) {
  uint64_t highest_seen = 0;
  for (int round = 0; round < 6; ++round) {
    pid_t child = fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
      auto spool = Spool::Open({.dir = dir_, .max_bytes = 64 << 20, .segment_bytes = 64 << 10});
      if (!spool.ok()) _exit(3);
      for (int i = 0;; ++i) {
        if (i % 50 == 0) (void)(*spool)->AppendUrgent(Notice(std::to_string(i)));
        (void)(*spool)->AppendTelemetry(Many(1 + i % 7));
      }
    }
    usleep(static_cast<useconds_t>(30'000 + round * 25'000));
    kill(child, SIGKILL);
    int status = 0;
    waitpid(child, &status, 0);
    ASSERT_TRUE(WIFSIGNALED(status));
    auto spool = Open(64 << 20, 64 << 10);
    auto seqs = AllSeqs(*spool);
    ASSERT_FALSE(seqs.empty());
    EXPECT_EQ(seqs.front(), 1u);
    for (size_t i = 0; i < seqs.size(); ++i) ASSERT_EQ(seqs[i], i + 1) << "round " << round;
    EXPECT_GE(seqs.back(), highest_seen);  // nothing that was durable disappeared
    highest_seen = seqs.back();
    EXPECT_EQ(spool->highest_seq(), highest_seen);
  }
  EXPECT_GT(highest_seen, 100u);
}

}  // namespace
}  // namespace nodewatch::agent
