// Spool: the agent's durable outbox. Every record gets a per-node sequence number and stays on
// disk until every aggregator acknowledged it, across agent crashes (kill -9) and reboots.
//
// Two lanes share one sequence space:
//   - urgent (interruption notices): each append is fsynced before it returns, readers send it
//     before any telemetry, and it is never dropped;
//   - telemetry: a batch of records is written with one fdatasync (group commit); when the spool
//     is over its byte bound, the oldest telemetry segment is dropped and its records counted.
// Each lane is a series of append-only segment files `<lane>-<first seq>.seg` holding frames
// [u32 length][u32 crc32c][Record protobuf]. Opening the spool scans every segment and truncates
// a torn tail, so a crash mid-write loses at most the record being written, never an earlier one.
//
//   auto spool = Spool::Open({.dir = "/var/lib/nodewatch/spool"});
//   (*spool)->AppendUrgent(notice_record);           // durable when it returns
//   (*spool)->AppendTelemetry({hb1, hb2});           // one fdatasync for both
//   SpoolCursor cursor;
//   (*spool)->Read(Lane::kTelemetry, acked, 512, 1 << 20, &cursor, &out);
//   (*spool)->Trim(acked_by_every_aggregator);
//
// Thread-safety: every method may be called from any thread.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "nodewatch/v1/records.pb.h"

namespace nodewatch::agent {

struct SpoolOptions {
  std::string dir;
  uint64_t max_bytes = 256ull << 20;     // bound on all segments of both lanes
  uint64_t segment_bytes = 4ull << 20;   // a segment is closed once it reaches this size
  uint32_t max_record_bytes = 4u << 20;  // larger records are refused
};

enum class Lane { kUrgent = 0, kTelemetry = 1 };

struct SpoolStats {
  uint64_t bytes = 0;    // on disk, both lanes
  uint64_t records = 0;  // in segments that still hold unacknowledged records (an upper bound)
  uint64_t dropped_records = 0;  // telemetry dropped because the spool was full (since open)
  uint64_t corrupt_frames = 0;   // torn or corrupt frames truncated at open
  uint64_t highest_seq = 0;
  uint64_t acked_seq = 0;
  uint64_t segments = 0;
};

// Where a reader stopped, so the next Read continues without rescanning a segment. Opaque; one
// per reader (for example per aggregator stream). A stale cursor is detected and ignored.
struct SpoolCursor {
  uint64_t segment_first_seq = 0;
  uint64_t offset = 0;
  uint64_t last_seq = 0;
  int lane = -1;
};

class Spool {
 public:
  static absl::StatusOr<std::unique_ptr<Spool>> Open(const SpoolOptions& options);
  ~Spool();
  Spool(const Spool&) = delete;
  Spool& operator=(const Spool&) = delete;

  // Assigns the next seq to `record`, appends it to the urgent lane and fsyncs. Returns the seq.
  absl::StatusOr<uint64_t> AppendUrgent(nodewatch::v1::Record record);
  // Assigns consecutive seqs, appends all records to the telemetry lane with one fdatasync.
  // Returns the last seq. May drop the oldest telemetry segment to stay within max_bytes.
  absl::StatusOr<uint64_t> AppendTelemetry(std::vector<nodewatch::v1::Record> records);
  // One telemetry record taken at `time_unix_ms` with `fill` setting its payload: the collectors'
  // one sample per interval.
  template <typename Fill>
  absl::StatusOr<uint64_t> AppendSample(int64_t time_unix_ms, Fill fill) {
    std::vector<nodewatch::v1::Record> records(1);
    records[0].set_time_unix_ms(time_unix_ms);
    fill(records[0]);
    return AppendTelemetry(std::move(records));
  }

  // Appends to `out` up to max_records records (and about max_bytes) of `lane` with seq > after,
  // in seq order. Records at or below the acked watermark are never returned.
  absl::Status Read(Lane lane, uint64_t after, size_t max_records, size_t max_bytes,
                    SpoolCursor* cursor, std::vector<nodewatch::v1::Record>* out);

  // Every record with seq <= acked_seq is delivered everywhere: forget it. Deletes whole segments
  // and persists the watermark (at most once a second unless `force`).
  absl::Status Trim(uint64_t acked_seq, bool force = false);

  // Waits until the highest seq exceeds `seen` or `timeout_ms` passes; returns the highest seq.
  uint64_t WaitForNewRecords(uint64_t seen, int64_t timeout_ms);

  uint64_t highest_seq() const;
  // Lowest seq still held (acked + 1 if nothing was dropped), or highest + 1 when empty.
  uint64_t lowest_seq_held() const;
  const std::string& spool_id() const { return spool_id_; }
  SpoolStats stats() const;

 private:
  struct Segment;
  struct LaneState {
    std::map<uint64_t, std::shared_ptr<Segment>> segments;  // by first seq
  };

  explicit Spool(SpoolOptions options);
  absl::Status Recover();
  absl::Status RecoverSegment(Lane lane, uint64_t first_seq, const std::string& path);
  absl::StatusOr<std::shared_ptr<Segment>> NewSegment(Lane lane, uint64_t first_seq);
  absl::Status WriteFrames(Lane lane, std::vector<nodewatch::v1::Record>& records,
                           uint64_t* last_seq);
  void EnforceBoundLocked();
  absl::Status PersistMetaLocked();
  std::string SegmentPath(Lane lane, uint64_t first_seq) const;

  const SpoolOptions options_;
  std::string spool_id_;
  mutable std::mutex mu_;
  std::condition_variable new_records_cv_;
  LaneState lanes_[2];
  uint64_t next_seq_ = 1;
  uint64_t acked_seq_ = 0;
  std::set<uint64_t> urgent_unacked_;  // urgent seqs above the watermark (few: notices)
  uint64_t seq_reserved_ = 0;  // no seq at or above it was ever assigned (persisted in meta)
  bool damaged_ = false;
  uint64_t dropped_records_ = 0;
  uint64_t corrupt_frames_ = 0;
  int64_t last_meta_write_ns_ = 0;
};

}  // namespace nodewatch::agent
