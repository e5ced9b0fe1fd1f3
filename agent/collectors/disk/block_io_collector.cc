#include "agent/collectors/disk/block_io_collector.h"

#include <sstream>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/logging.h"

namespace nodewatch::agent {

namespace {

void SetHistogram(const std::array<uint64_t, kBlockLog2Slots>& slots,
                  google::protobuf::RepeatedField<uint64_t>* out) {
  int last = kBlockLog2Slots - 1;
  while (last >= 0 && slots[last] == 0) --last;
  for (int i = 0; i <= last; ++i) out->Add(slots[i]);
}

}  // namespace

std::map<std::pair<uint32_t, uint32_t>, std::string> ParseDiskstatsNames(const std::string& text) {
  std::map<std::pair<uint32_t, uint32_t>, std::string> names;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    uint32_t major = 0, minor = 0;
    std::string name;
    if (fields >> major >> minor >> name) names[{major, minor}] = name;
  }
  return names;
}

BlockIoCollector::BlockIoCollector(Spool& spool, std::unique_ptr<BlockIoSource> source,
                                   std::string proc_root, const Clock& clock, int64_t interval_ms)
    : spool_(spool),
      source_(std::move(source)),
      proc_root_(std::move(proc_root)),
      clock_(clock),
      last_ms_(clock.NowUnixMs()),
      thread_(interval_ms, [this] {
        if (auto s = CollectOnce(); !s.ok()) {
          GetLogger("agent.disk")->warn("block I/O sample failed: {}", s.status());
        }
      }) {}

BlockIoCollector::~BlockIoCollector() { Stop(); }

std::string BlockIoCollector::DeviceName(uint32_t major, uint32_t minor) {
  if (auto it = names_.find({major, minor}); it != names_.end()) return it->second;
  if (auto text = ReadFileToString(proc_root_ + "/diskstats"); text.ok()) {
    names_ = ParseDiskstatsNames(*text);
    if (auto it = names_.find({major, minor}); it != names_.end()) return it->second;
  }
  return absl::StrCat(major, ":", minor);  // gone already, or diskstats unreadable
}

absl::StatusOr<nodewatch::v1::DiskSample> BlockIoCollector::CollectOnce() {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<std::pair<BlockIoKey, BlockIoTotals>> current;
  BlockIoDrops drops;
  if (auto s = source_->Read(current, drops); !s.ok()) {
    ++counters_.read_errors;
    return s;
  }
  counters_.device_map_full = drops.device_map_full;

  std::map<std::pair<uint32_t, uint32_t>, nodewatch::v1::DiskDevice> devices;
  for (const auto& [key, totals] : current) {
    const BlockIoTotals& before = last_[key];
    BlockIoTotals d;
    d.ios = CounterDelta(totals.ios, before.ios);
    d.bytes = CounterDelta(totals.bytes, before.bytes);
    d.errors = CounterDelta(totals.errors, before.errors);
    counters_.untimed += CounterDelta(totals.untimed, before.untimed);
    for (int i = 0; i < kBlockLog2Slots; ++i) {
      d.latency_log2_us[i] = CounterDelta(totals.latency_log2_us[i], before.latency_log2_us[i]);
    }
    last_[key] = totals;
    if (d.ios == 0 && d.errors == 0) continue;
    auto& device = devices[{key.major, key.minor}];
    if (device.device().empty()) device.set_device(DeviceName(key.major, key.minor));
    device.set_io_errors(device.io_errors() + d.errors);
    if (key.op == BlockOp::kRead) {
      device.set_reads(d.ios);
      device.set_read_bytes(d.bytes);
      SetHistogram(d.latency_log2_us, device.mutable_read_latency_log2_us());
    } else if (key.op == BlockOp::kWrite) {
      device.set_writes(d.ios);
      device.set_written_bytes(d.bytes);
      SetHistogram(d.latency_log2_us, device.mutable_write_latency_log2_us());
    }
  }

  const int64_t now_ms = clock_.NowUnixMs();
  nodewatch::v1::DiskSample sample;
  sample.set_interval_ms(static_cast<uint64_t>(std::max<int64_t>(0, now_ms - last_ms_)));
  last_ms_ = now_ms;
  for (auto& [id, device] : devices) *sample.add_devices() = std::move(device);
  if (sample.devices_size() > 0) {
    auto appended =
        spool_.AppendSample(now_ms, [&](nodewatch::v1::Record& r) { *r.mutable_disk() = sample; });
    if (!appended.ok()) {
      ++counters_.spool_errors;
      return appended.status();
    }
    ++counters_.samples;
  }
  return sample;
}

}  // namespace nodewatch::agent
