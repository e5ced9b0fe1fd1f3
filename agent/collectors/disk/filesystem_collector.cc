#include "agent/collectors/disk/filesystem_collector.h"

#include "common/logging.h"

namespace nodewatch::agent {

struct FilesystemCollector::Pending {
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  absl::StatusOr<FsStats> result = absl::UnknownError("not run");
};

FilesystemCollector::FilesystemCollector(Spool& spool, std::shared_ptr<FilesystemProbe> probe,
                                         const Clock& clock, FilesystemCollectorOptions options)
    : spool_(spool),
      probe_(std::move(probe)),
      clock_(clock),
      options_(options),
      thread_(options.interval_ms, [this] {
        if (auto s = CollectOnce(); !s.ok()) {
          GetLogger("agent.disk")->warn("filesystem sample failed: {}", s.status());
        }
      }) {}

FilesystemCollector::~FilesystemCollector() { Stop(); }

absl::StatusOr<FsStats> FilesystemCollector::StatfsWithTimeout(const std::string& mountpoint) {
  auto& slot = in_flight_[mountpoint];
  if (slot) {
    std::lock_guard<std::mutex> lock(slot->mu);
    if (!slot->done) return absl::DeadlineExceededError("previous statfs still hanging");
    --counters_.stuck;  // it came back since
  }
  auto pending = std::make_shared<Pending>();
  slot = pending;
  // A thread stuck in the kernel cannot be cancelled: it keeps the probe alive and finishes
  // whenever the filesystem answers.
  std::thread([pending, mountpoint, probe = probe_] {
    auto result = probe->Statfs(mountpoint);
    std::lock_guard<std::mutex> lock(pending->mu);
    pending->result = std::move(result);
    pending->done = true;
    pending->cv.notify_all();
  }).detach();
  std::unique_lock<std::mutex> lock(pending->mu);
  if (!pending->cv.wait_for(lock, std::chrono::milliseconds(options_.statfs_timeout_ms),
                            [&] { return pending->done; })) {
    ++counters_.statfs_timeouts;
    ++counters_.stuck;
    return absl::DeadlineExceededError("statfs timed out");
  }
  auto result = pending->result;
  lock.unlock();
  slot.reset();
  return result;
}

int64_t FilesystemCollector::PredictFull(const std::string& mountpoint, int64_t now_ms,
                                         const FsStats& stats) {
  Trend& trend = trends_[mountpoint];
  // Reserved blocks make size - available the used space; a filesystem reporting more available
  // than its size (seen on some network filesystems) counts as empty, not as wrapped.
  const double used = stats.available_bytes < stats.size_bytes
                          ? static_cast<double>(stats.size_bytes - stats.available_bytes)
                          : 0.0;
  if (trend.points.empty() || now_ms - trend.points.back().first >= 60'000) {
    trend.points.emplace_back(now_ms, used);
  }
  while (!trend.points.empty() && trend.points.front().first < now_ms - options_.trend_ms) {
    trend.points.pop_front();
  }
  if (trend.points.size() < 3 ||
      trend.points.back().first - trend.points.front().first < options_.min_trend_ms) {
    return 0;
  }
  // Least squares over (t, used); times relative to the first point to keep doubles exact.
  const double t0 = static_cast<double>(trend.points.front().first);
  double st = 0, su = 0, stt = 0, stu = 0;
  for (const auto& [t, u] : trend.points) {
    const double x = static_cast<double>(t) - t0;
    st += x;
    su += u;
    stt += x * x;
    stu += x * u;
  }
  const double n = static_cast<double>(trend.points.size());
  const double denominator = n * stt - st * st;
  if (denominator <= 0) return 0;
  const double slope = (n * stu - st * su) / denominator;  // bytes per ms
  if (slope <= 0) return 0;
  const double ms_left = static_cast<double>(stats.available_bytes) / slope;
  if (ms_left > static_cast<double>(options_.horizon_ms)) return 0;
  return now_ms + static_cast<int64_t>(ms_left);
}

absl::StatusOr<nodewatch::v1::DiskSample> FilesystemCollector::CollectOnce() {
  auto mounts = probe_->Mounts();
  if (!mounts.ok()) return mounts.status();
  if (mounts->size() > options_.max_mounts) mounts->resize(options_.max_mounts);
  const int64_t now = clock_.NowUnixMs();
  nodewatch::v1::DiskSample sample;
  sample.set_interval_ms(static_cast<uint64_t>(options_.interval_ms));
  for (const auto& m : *mounts) {
    auto stats = StatfsWithTimeout(m.mountpoint);
    auto* fs = sample.add_filesystems();
    fs->set_mountpoint(m.mountpoint);
    fs->set_device(m.device);
    fs->set_fstype(m.fstype);
    if (!stats.ok()) {
      if (absl::IsDeadlineExceeded(stats.status())) {
        fs->set_timed_out(true);
      } else {
        ++counters_.statfs_errors;
        sample.mutable_filesystems()->RemoveLast();  // vanished or unreadable: not reported
      }
      continue;
    }
    fs->set_size_bytes(stats->size_bytes);
    fs->set_available_bytes(stats->available_bytes);
    fs->set_inodes(stats->inodes);
    fs->set_inodes_free(stats->inodes_free);
    fs->set_predicted_full_unix_ms(PredictFull(m.mountpoint, now, *stats));
  }
  // Forget mounts that are gone: their trends, and their statfs calls once they have returned
  // (a call still hanging stays counted as stuck).
  auto gone = [&](const std::string& mountpoint) {
    for (const auto& m : *mounts) {
      if (m.mountpoint == mountpoint) return false;
    }
    return true;
  };
  std::erase_if(trends_, [&](const auto& t) { return gone(t.first); });
  std::erase_if(in_flight_, [&](const auto& p) {
    if (!gone(p.first)) return false;
    if (!p.second) return true;
    std::lock_guard<std::mutex> lock(p.second->mu);
    if (p.second->done) --counters_.stuck;
    return p.second->done;
  });
  auto appended =
      spool_.AppendSample(now, [&](nodewatch::v1::Record& r) { *r.mutable_disk() = sample; });
  if (!appended.ok()) return appended.status();
  ++counters_.samples;
  return sample;
}

}  // namespace nodewatch::agent
