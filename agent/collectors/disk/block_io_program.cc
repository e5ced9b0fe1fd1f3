#include "agent/collectors/disk/block_io_program.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include <cerrno>
#include <cstring>
#include <map>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "disk.skel.h"
#include "nodewatch_bpf.h"

namespace nodewatch::agent {

absl::StatusOr<std::unique_ptr<BpfBlockIoProgram>> BpfBlockIoProgram::Load(
    const BlockIoProgramOptions& options) {
  RouteLibbpfLogs();
  const KernelFeatures probed =
      options.features != nullptr ? KernelFeatures{} : ProbeKernelFeatures();
  const CountingPlan plan =
      PlanCounting(options.features != nullptr ? *options.features : probed,
                   {.network = false, .tcp = false, .sockets = false, .block_io = true});
  if (plan.block_io.path == "off") {
    return absl::UnavailableError(absl::StrCat("this kernel cannot run the block I/O program (",
                                               plan.block_io.why, "): no block I/O latency"));
  }
  if (ReadKernelBtf({"block_rq_complete"}).tracepoint_args.at("block_rq_complete") < 0) {
    return absl::UnavailableError("this kernel has no tracepoint block_rq_complete: no block I/O");
  }
  std::unique_ptr<BpfBlockIoProgram> self(new BpfBlockIoProgram());
  self->skel_ = nw_disk_bpf__open();
  if (self->skel_ == nullptr) {
    return absl::InternalError(absl::StrCat("cannot open the disk BPF object: ", strerror(errno)));
  }
  self->skel_->rodata->use_slots = options.slots;
  self->skel_->rodata->test_skip_every = options.skip_every;
  self->skel_->rodata->test_skip_major = options.skip_major;
  self->skel_->rodata->test_skip_minor = options.skip_minor;
  self->skel_->rodata->calibrate_empty = options.calibrate_empty;
  if (int err = nw_disk_bpf__load(self->skel_); err != 0) {
    return absl::UnavailableError(absl::StrCat(
        "the kernel refused the disk BPF programs: ", strerror(-err),
        " (run with CAP_BPF and CAP_PERFMON; --log-level debug shows the verifier log)"));
  }
  for (bpf_program* program : {self->skel_->progs.nw_block_complete}) {
    ProgramStats stats{.name = bpf_program__name(program),
                       .attach = bpf_program__section_name(program)};
    bpf_link* link = bpf_program__attach(program);
    if (link == nullptr) {
      return absl::UnavailableError(
          absl::StrCat("cannot attach ", stats.attach, ": ", strerror(errno)));
    }
    self->links_.push_back(link);
    stats.loaded = true;
    self->programs_.push_back(stats);
  }
  GetLogger("agent.bpf")->info("block I/O latency on (block_rq_complete)");
  return self;
}

BpfBlockIoProgram::~BpfBlockIoProgram() {
  for (bpf_link* link : links_) bpf_link__destroy(link);
  if (skel_ != nullptr) nw_disk_bpf__destroy(skel_);
}

namespace {

void Add(const nw_disk_value& v, BlockIoTotals& t) {
  t.ios += v.ios;
  t.bytes += v.bytes;
  t.errors += v.errors;
  t.untimed += v.untimed;
  for (int i = 0; i < kBlockLog2Slots; ++i) t.latency_log2_us[i] += v.slots[i];
}

BlockIoKey Key(uint32_t major, uint32_t minor, uint32_t op) {
  return {.major = major, .minor = minor, .op = static_cast<BlockOp>(std::min<uint32_t>(op, 2))};
}

}  // namespace

absl::Status BpfBlockIoProgram::Read(std::vector<std::pair<BlockIoKey, BlockIoTotals>>& out,
                                     BlockIoDrops& drops) {
  std::map<BlockIoKey, BlockIoTotals> totals;
  // The slots: each CPU's copy says whose counts it holds.
  const int slots_fd = bpf_map__fd(skel_->maps.disk_slots);
  std::vector<nw_disk_slot> slots(PossibleCpus());
  uint64_t in_use = 0;
  for (uint32_t index = 0; index < NW_DISK_SLOTS; ++index) {
    if (bpf_map_lookup_elem(slots_fd, &index, slots.data()) != 0) {
      return absl::InternalError(absl::StrCat("reading disk_slots: ", strerror(errno)));
    }
    for (const nw_disk_slot& slot : slots) {
      if (slot.key == 0) continue;
      ++in_use;
      uint32_t major = 0, minor = 0, op = 0;
      nw_disk_unpack(slot.key, &major, &minor, &op);
      Add(slot.value, totals[Key(major, minor, op)]);
    }
  }
  slots_in_use_ = in_use;
  // The overflow hash.
  const int fd = bpf_map__fd(skel_->maps.disk_io);
  std::vector<nw_disk_value> values(PossibleCpus());
  nw_disk_key key{}, next{};
  const nw_disk_key* previous = nullptr;
  while (bpf_map_get_next_key(fd, previous, &next) == 0) {
    key = next;
    previous = &key;
    if (bpf_map_lookup_elem(fd, &key, values.data()) != 0) continue;
    BlockIoTotals& t = totals[Key(key.major, key.minor, key.op)];
    for (const auto& v : values) Add(v, t);
  }
  for (auto& [k, t] : totals) out.emplace_back(k, t);
  const int counters = bpf_map__fd(skel_->maps.disk_counters);
  drops.device_map_full = SumPerCpuArray(counters, NW_DISK_MAP_FULL);
  drops.test_skipped = SumPerCpuArray(counters, NW_DISK_TEST_SKIPPED);
  return absl::OkStatus();
}

std::vector<ProgramStats> BpfBlockIoProgram::Programs() const {
  std::vector<ProgramStats> out = programs_;
  for (auto& stats : out) {
    ReadProgramStats(bpf_object__find_program_by_name(skel_->obj, stats.name.c_str()), stats);
  }
  return out;
}

std::vector<MapStats> BpfBlockIoProgram::Maps() const {
  MapStats slots = ReadMapStats(skel_->maps.disk_slots);
  // An array has every index; what matters is how many CPU copies of a slot hold a device.
  slots.entries = slots_in_use_;
  slots.max_entries = static_cast<uint64_t>(NW_DISK_SLOTS) * PossibleCpus();
  return {slots, ReadMapStats(skel_->maps.disk_io)};
}

}  // namespace nodewatch::agent
