// Block I/O counters the kernel keeps (bpf/disk.bpf.c) and the seam between the collector and
// the kernel: BlockIoSource (real: BpfBlockIoProgram; tests: a fake).
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "agent/collectors/ebpf/bpf_support.h"

namespace nodewatch::agent {

inline constexpr int kBlockLog2Slots = 32;

enum class BlockOp { kRead = 0, kWrite = 1, kOther = 2 };

struct BlockIoKey {
  uint32_t major = 0;
  uint32_t minor = 0;
  BlockOp op = BlockOp::kRead;
  auto operator<=>(const BlockIoKey&) const = default;
};

// Cumulative since load (summed over CPUs). ios/bytes count reads and writes only (as
// /proc/diskstats does); errors count any op.
struct BlockIoTotals {
  uint64_t ios = 0;
  uint64_t bytes = 0;
  uint64_t errors = 0;
  uint64_t untimed = 0;  // no start stamp (iostats off on the queue): not in the histogram
  std::array<uint64_t, kBlockLog2Slots> latency_log2_us{};
};

struct BlockIoDrops {
  uint64_t device_map_full = 0;  // completions not counted
  uint64_t test_skipped = 0;     // tests only: completions left uncounted on purpose
};

class BlockIoSource {
 public:
  virtual ~BlockIoSource() = default;
  virtual absl::Status Read(std::vector<std::pair<BlockIoKey, BlockIoTotals>>& out,
                            BlockIoDrops& drops) = 0;
  virtual std::vector<ProgramStats> Programs() const = 0;
  virtual std::vector<MapStats> Maps() const = 0;
};

}  // namespace nodewatch::agent
