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

std::map<DeviceNumber, DiskstatsLine> ParseDiskstats(const std::string& text) {
  std::map<DeviceNumber, DiskstatsLine> lines;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    uint32_t major = 0, minor = 0;
    DiskstatsLine parsed;
    if (!(fields >> major >> minor >> parsed.name)) continue;
    uint64_t merged = 0, sectors = 0, ms = 0;
    parsed.has_completions =
        static_cast<bool>(fields >> parsed.reads >> merged >> sectors >> ms >> parsed.writes);
    if (!parsed.has_completions) parsed.reads = parsed.writes = 0;
    lines[{major, minor}] = std::move(parsed);
  }
  return lines;
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
  return absl::StrCat(major, ":", minor);  // gone already, hidden, or diskstats unreadable
}

ReadsAndWrites BlockIoCollector::Uncounted(uint32_t major, uint32_t minor) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = checks_.find({major, minor});
  if (it == checks_.end()) return {};
  const CompletionCheck& c = it->second;
  return {c.settled.reads + c.current.reads, c.settled.writes + c.current.writes};
}

void BlockIoCollector::CheckCompletions(const std::map<DeviceNumber, DiskstatsLine>& before,
                                        const std::map<DeviceNumber, DiskstatsLine>& after,
                                        const std::map<DeviceNumber, ReadsAndWrites>& counted) {
  auto shortfall = [](uint64_t done, uint64_t done_base, uint64_t seen, uint64_t seen_base) {
    const uint64_t done_delta = done - done_base, seen_delta = seen - seen_base;
    return done_delta > seen_delta ? done_delta - seen_delta : 0;
  };
  // Devices gone from diskstats: what was found on them stays in the total.
  for (auto it = checks_.begin(); it != checks_.end();) {
    if (after.count(it->first) > 0) {
      ++it;
      continue;
    }
    const CompletionCheck& gone = it->second;
    uncounted_on_removed_ +=
        gone.settled.reads + gone.settled.writes + gone.current.reads + gone.current.writes;
    it = checks_.erase(it);
  }
  // Every device in diskstats is based when first listed (so that the program's first completions
  // on a new device are checked too), and compared once the program has counted on it.
  for (const auto& [device, line] : after) {
    if (!line.has_completions) continue;
    auto c = counted.find(device);
    const ReadsAndWrites seen = c == counted.end() ? ReadsAndWrites{} : c->second;
    auto b = before.find(device);
    const bool in_before = b != before.end() && b->second.has_completions;
    auto [it, first_seen] = checks_.try_emplace(device);
    CompletionCheck& check = it->second;
    // Either count going backwards starts the comparison again: diskstats when the device was
    // removed and another got its number, the maps if they were ever reloaded.
    const bool went_back =
        !first_seen && in_before &&
        (b->second.reads < check.last_done.reads || b->second.writes < check.last_done.writes ||
         line.reads < b->second.reads || line.writes < b->second.writes ||
         seen.reads < check.counted_at_base.reads || seen.writes < check.counted_at_base.writes);
    if (first_seen || went_back || !in_before) {
      // Base on the maps, then on diskstats read right after them: what diskstats counts from
      // here on, the program saw fire after its base, or never (but for a completion caught
      // between the tracepoint and the kernel's accounting for the whole of that read).
      check.settled.reads += check.current.reads;
      check.settled.writes += check.current.writes;
      check.current = {};
      check.counted_at_base = seen;
      check.done_at_base = {line.reads, line.writes};
    } else if (c != counted.end()) {
      // Diskstats read before the maps: each completion it counts since the base was either
      // counted by the program by the time the maps were read, or never will be.
      check.current.reads =
          std::max(check.current.reads, shortfall(b->second.reads, check.done_at_base.reads,
                                                  seen.reads, check.counted_at_base.reads));
      check.current.writes =
          std::max(check.current.writes, shortfall(b->second.writes, check.done_at_base.writes,
                                                   seen.writes, check.counted_at_base.writes));
    }
    check.last_done = {line.reads, line.writes};
  }
  uint64_t total = uncounted_on_removed_;
  for (const auto& [device, check] : checks_) {
    total +=
        check.settled.reads + check.settled.writes + check.current.reads + check.current.writes;
  }
  counters_.uncounted = total;
}

absl::StatusOr<nodewatch::v1::DiskSample> BlockIoCollector::CollectOnce() {
  std::lock_guard<std::mutex> lock(mu_);
  // diskstats before and after the maps (see CheckCompletions); unreadable: no check this time.
  auto diskstats_before = ReadFileToString(proc_root_ + "/diskstats");
  std::vector<std::pair<BlockIoKey, BlockIoTotals>> current;
  BlockIoDrops drops;
  if (auto s = source_->Read(current, drops); !s.ok()) {
    ++counters_.read_errors;
    return s;
  }
  auto diskstats_after = ReadFileToString(proc_root_ + "/diskstats");
  counters_.device_map_full = drops.device_map_full;
  if (diskstats_after.ok()) {
    const auto after = ParseDiskstats(*diskstats_after);
    names_.clear();
    for (const auto& [device, line] : after) names_[device] = line.name;
    if (diskstats_before.ok()) {
      std::map<DeviceNumber, ReadsAndWrites> counted;
      for (const auto& [key, totals] : current) {
        if (key.op == BlockOp::kRead) counted[{key.major, key.minor}].reads = totals.ios;
        if (key.op == BlockOp::kWrite) counted[{key.major, key.minor}].writes = totals.ios;
      }
      CheckCompletions(ParseDiskstats(*diskstats_before), after, counted);
    }
  }

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
