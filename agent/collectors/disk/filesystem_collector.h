// FilesystemCollector: every interval, one DiskSample record with every watched filesystem's
// capacity, inodes and predicted time to full. Records go to the spool's telemetry lane.
//
// A statfs that does not answer within `statfs_timeout_ms` (a dead NFS server) is reported as
// `timed_out` and never holds up the others: each call runs on its own thread, and a mount whose
// previous call is still stuck is not probed again until it returns, so hung threads cannot pile
// up.
//
// Time to full: a least-squares line through the mount's used bytes over the last `trend_ms`
// (one point a minute); when it rises and at least `min_trend_ms` of points exist,
// predicted_full = now + available / slope, if that is within `horizon_ms`.
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <thread>

#include "agent/collectors/disk/filesystem_probe.h"
#include "agent/spool/spool.h"
#include "common/clock.h"
#include "common/periodic_thread.h"

namespace nodewatch::agent {

struct FilesystemCollectorOptions {
  int64_t interval_ms = 10'000;
  int64_t statfs_timeout_ms = 2'000;
  size_t max_mounts = 64;
  int64_t trend_ms = 6 * 3'600'000;
  int64_t min_trend_ms = 10 * 60'000;
  int64_t horizon_ms = 30LL * 86'400'000;
};

struct FilesystemCounters {
  std::atomic<uint64_t> samples{0};
  std::atomic<uint64_t> statfs_errors{0};
  std::atomic<uint64_t> statfs_timeouts{0};
  std::atomic<uint64_t> stuck{0};  // statfs calls still hanging now
};

class FilesystemCollector {
 public:
  // The probe is shared with statfs threads that may outlive the collector (a hung mount).
  FilesystemCollector(Spool& spool, std::shared_ptr<FilesystemProbe> probe, const Clock& clock,
                      FilesystemCollectorOptions options);
  ~FilesystemCollector();

  // One sample: probes every mount and appends the record. Public so tests drive it.
  absl::StatusOr<nodewatch::v1::DiskSample> CollectOnce();
  void Start() { thread_.Start(); }
  void Stop() { thread_.Stop(); }
  const FilesystemCounters& counters() const { return counters_; }

 private:
  struct Pending;  // one statfs call, shared with its thread
  struct Trend {
    std::deque<std::pair<int64_t, double>> points;  // (time ms, used bytes)
  };
  absl::StatusOr<FsStats> StatfsWithTimeout(const std::string& mountpoint);
  int64_t PredictFull(const std::string& mountpoint, int64_t now_ms, const FsStats& stats);

  Spool& spool_;
  std::shared_ptr<FilesystemProbe> probe_;
  const Clock& clock_;
  const FilesystemCollectorOptions options_;
  FilesystemCounters counters_;
  std::map<std::string, std::shared_ptr<Pending>> in_flight_;  // collector thread only
  std::map<std::string, Trend> trends_;
  PeriodicThread thread_;  // last: stopped before the members it uses go
};

}  // namespace nodewatch::agent
