// BlockIoCollector: every interval, per-device deltas of the kernel's block I/O counters
// (completed reads and writes, bytes, errors, log2 latency histograms) as one DiskSample record
// with `devices` (filesystems come in the FilesystemCollector's own records). Devices are named
// from <proc_root>/diskstats ("major minor name").
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
};

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

 private:
  std::string DeviceName(uint32_t major, uint32_t minor);

  Spool& spool_;
  std::unique_ptr<BlockIoSource> source_;
  const std::string proc_root_;
  const Clock& clock_;
  BlockIoCounters counters_;
  std::mutex mu_;
  std::map<BlockIoKey, BlockIoTotals> last_;
  std::map<std::pair<uint32_t, uint32_t>, std::string> names_;
  int64_t last_ms_ = 0;
  PeriodicThread thread_;
};

// "major minor name ..." lines of /proc/diskstats -> names. Malformed lines are skipped.
std::map<std::pair<uint32_t, uint32_t>, std::string> ParseDiskstatsNames(const std::string& text);

}  // namespace nodewatch::agent
