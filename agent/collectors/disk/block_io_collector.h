// BlockIoCollector: every interval, per-device deltas of the kernel's block I/O counters
// (completed reads and writes, bytes, errors, log2 latency histograms) as one DiskSample record
// with `devices` (filesystems come in the FilesystemCollector's own records). Devices are named
// from <proc_root>/diskstats ("major minor name").
//
// Every interval it also checks the program's counts against diskstats' completed reads and
// writes, so that completions the kernel never ran the program for are counted, not silent (it
// happens: see docs/ebpf.md). The check gives a lower bound: diskstats is read before the maps,
// and the kernel counts a request in diskstats after the tracepoint fires, so every counted
// completion in the diskstats delta is already in the maps' delta. (It over-counts only a
// completion caught between the two for the whole of the map read that starts a device's
// comparison.) Only devices the program has counted on are compared (bio-based devices such as
// dm and md never fire block_rq_complete).
#pragma once

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "agent/collectors/disk/block_io_counters.h"
#include "agent/spool/spool.h"
#include "common/clock.h"
#include "common/periodic_thread.h"
#include "nodewatch/v1/records.pb.h"

namespace nodewatch::agent {

struct BlockIoCounters {
  std::atomic<uint64_t> samples{0};
  std::atomic<uint64_t> read_errors{0};
  std::atomic<uint64_t> spool_errors{0};  // samples the spool refused: that interval is lost
  std::atomic<uint64_t> device_map_full{0};
  std::atomic<uint64_t> untimed{0};  // I/Os without a start stamp (not in the histograms)
  // Completed reads and writes in /proc/diskstats that the program did not count (all devices).
  std::atomic<uint64_t> uncounted{0};
};

// Completed reads and writes of one device.
struct ReadsAndWrites {
  uint64_t reads = 0;
  uint64_t writes = 0;
};

// The completion fields of one /proc/diskstats line.
struct DiskstatsLine {
  std::string name;
  uint64_t reads = 0;            // reads completed
  uint64_t writes = 0;           // writes completed
  bool has_completions = false;  // false: the line ended early or a field was not a number
};
using DeviceNumber = std::pair<uint32_t, uint32_t>;  // (major, minor)

class BlockIoCollector {
 public:
  BlockIoCollector(Spool& spool, std::unique_ptr<BlockIoSource> source, std::string proc_root,
                   const Clock& clock, int64_t interval_ms);
  ~BlockIoCollector();
  absl::StatusOr<nodewatch::v1::DiskSample> CollectOnce();
  void Start() { thread_.Start(); }
  void Stop() { thread_.Stop(); }
  const BlockIoCounters& counters() const { return counters_; }
  BlockIoSource& source() { return *source_; }
  // Completed reads and writes diskstats counted on the device and the program did not, since
  // the collector's first sample; zero for a device the program has not seen.
  ReadsAndWrites Uncounted(uint32_t major, uint32_t minor) const;

 private:
  // One device's diskstats-versus-program check: both totals at its base (when first seen, or
  // when either went backwards).
  struct CompletionCheck {
    ReadsAndWrites counted_at_base, done_at_base;
    ReadsAndWrites last_done;  // to notice diskstats going backwards
    ReadsAndWrites settled;    // uncounted before the last re-base
    ReadsAndWrites current;    // uncounted since the last re-base (high-water: never decreases)
  };
  std::string DeviceName(uint32_t major, uint32_t minor);
  // `before`/`after`: diskstats read before and after `counted` was read from the maps.
  void CheckCompletions(const std::map<DeviceNumber, DiskstatsLine>& before,
                        const std::map<DeviceNumber, DiskstatsLine>& after,
                        const std::map<DeviceNumber, ReadsAndWrites>& counted);

  Spool& spool_;
  std::unique_ptr<BlockIoSource> source_;
  const std::string proc_root_;
  const Clock& clock_;
  BlockIoCounters counters_;
  mutable std::mutex mu_;
  std::map<BlockIoKey, BlockIoTotals> last_;
  std::map<DeviceNumber, std::string> names_;
  std::map<DeviceNumber, CompletionCheck> checks_;  // devices listed in diskstats
  uint64_t uncounted_on_removed_ = 0;
  int64_t last_ms_ = 0;
  PeriodicThread thread_;
};

// "major minor name reads_completed _ _ _ writes_completed ..." lines of /proc/diskstats. A line
// without a name is skipped; one without readable completion fields keeps its name only.
std::map<DeviceNumber, DiskstatsLine> ParseDiskstats(const std::string& text);

}  // namespace nodewatch::agent
