// BpfBlockIoProgram: bpf/disk.bpf.c loaded into the kernel (RAII: destroying it detaches and
// unloads). Needs BTF-typed tracepoints (tp_btf); without them Load fails with the reason and the
// agent runs without block latency (filesystems are sampled regardless).
#pragma once

#include <cstdint>
#include <memory>

#include "agent/collectors/disk/block_io_counters.h"
#include "agent/collectors/ebpf/kernel_features.h"

struct nw_disk_bpf;
struct bpf_link;

namespace nodewatch::agent {

struct BlockIoProgramOptions {
  // false: every device goes to the overflow hash, as when its slots are taken (tests of that
  // path: a node rarely has enough devices to reach it).
  bool slots = true;
  // Tests only: every skip_every-th read or write completion of device (skip_major, skip_minor)
  // on a CPU is left uncounted (BlockIoDrops::test_skipped says how many). 0: none.
  uint32_t skip_every = 0;
  uint32_t skip_major = 0;
  uint32_t skip_minor = 0;
  // Benchmarks only: a program that counts nothing (what the hook and bpf_stats cost alone).
  bool calibrate_empty = false;
  // The kernel's features (ProbeKernelFeatures()); null: probed by Load.
  const KernelFeatures* features = nullptr;
};

class BpfBlockIoProgram final : public BlockIoSource {
 public:
  static absl::StatusOr<std::unique_ptr<BpfBlockIoProgram>> Load(
      const BlockIoProgramOptions& options = {});
  ~BpfBlockIoProgram() override;
  absl::Status Read(std::vector<std::pair<BlockIoKey, BlockIoTotals>>& out,
                    BlockIoDrops& drops) override;
  std::vector<ProgramStats> Programs() const override;
  std::vector<MapStats> Maps() const override;

 private:
  BpfBlockIoProgram() = default;
  nw_disk_bpf* skel_ = nullptr;
  std::vector<bpf_link*> links_;
  std::vector<ProgramStats> programs_;
  uint64_t slots_in_use_ = 0;  // CPU copies of disk_slots holding a device, as of the last Read
};

}  // namespace nodewatch::agent
