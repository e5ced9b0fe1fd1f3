// What the eBPF collectors share: libbpf's log routed to spdlog, kernel BTF facts, run-time
// statistics of loaded programs (bpf_stats), per-CPU value sizes, and the cgroup v2 mount.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

struct bpf_program;
struct bpf_map;

namespace nodewatch::agent {

// Routes libbpf's messages to the "agent.bpf" logger (warnings and above; verifier logs at debug).
// Idempotent.
void RouteLibbpfLogs();

// What the running kernel's BTF says about the names asked for: for each tracepoint (e.g.
// "tcp_retransmit_skb") how many arguments it passes (excluding its own context pointer), -1 if
// absent; for each struct whether it exists (an iterator's context struct exists exactly when the
// kernel has that iterator). One parse of the kernel BTF (a few MB) per call, freed before
// returning: ask for everything at once.
struct KernelBtfFacts {
  std::map<std::string, int> tracepoint_args;
  std::map<std::string, bool> has_struct;
};
KernelBtfFacts ReadKernelBtf(const std::vector<std::string>& tracepoints,
                             const std::vector<std::string>& structs = {});

// One loaded program's identity and, when bpf_stats is on, its cumulative cost.
struct ProgramStats {
  std::string name;
  std::string attach;      // "cgroup_skb/egress", "tp_btf/block_rq_issue", ...
  bool loaded = false;     // false: switched off (feature missing or attach failed)
  std::string why_off;     // set when !loaded
  uint64_t run_count = 0;  // since load, counted only while bpf_stats is enabled
  uint64_t run_time_ns = 0;
  // Runs the kernel skipped, always counted (5.12+): a tracing program (tp_btf) that fires while
  // it is already running on that CPU (an interrupt's block completion or TCP event landing on a
  // run in task context) is not run again. What those runs would have counted is missing.
  uint64_t missed_runs = 0;
};
// Fills run_count/run_time_ns/missed_runs of a loaded program from the kernel.
void ReadProgramStats(const bpf_program* program, ProgramStats& stats);

// How full a map is and how big it is in the kernel.
struct MapStats {
  std::string name;
  uint64_t entries = 0;
  uint64_t max_entries = 0;
  uint64_t memory_bytes = 0;  // approximate: (key + value × CPUs) × max_entries for hashes
};

// Turns on kernel-wide BPF run-time statistics (BPF_ENABLE_STATS) for as long as it lives.
// Costs the kernel two clock reads per program run (~20 ns), which is what the figures measure.
class BpfStatsScope {
 public:
  static absl::StatusOr<BpfStatsScope> Enable();
  BpfStatsScope(BpfStatsScope&& other) noexcept : fd_(other.fd_) { other.fd_ = -1; }
  BpfStatsScope& operator=(BpfStatsScope&& other) noexcept;
  BpfStatsScope(const BpfStatsScope&) = delete;
  BpfStatsScope& operator=(const BpfStatsScope&) = delete;
  ~BpfStatsScope();

 private:
  explicit BpfStatsScope(int fd) : fd_(fd) {}
  int fd_ = -1;
};

// Number of possible CPUs: how many values a per-CPU map returns per key.
int PossibleCpus();

// The cgroup v2 mount point seen through `proc_root` ("/proc", or "/host/proc" in a container):
// "/sys/fs/cgroup" on unified hosts, "/sys/fs/cgroup/unified" on hybrid ones. Read from
// <proc_root>/self/mountinfo.
absl::StatusOr<std::string> FindCgroup2Mount(const std::string& proc_root);

// The cgroup id the kernel uses for `path` (a cgroup v2 directory): its inode number on cgroupfs.
absl::StatusOr<uint64_t> CgroupId(const std::string& path);

}  // namespace nodewatch::agent

namespace nodewatch::agent {

// The kernel's memory charge of a map or program fd ("memlock" in /proc/self/fdinfo); 0 if unknown.
uint64_t FdMemlockBytes(int fd);

// A loaded map's fill and kernel memory now (walks its keys: O(entries)).
MapStats ReadMapStats(const bpf_map* map);

// The growth of a kernel counter read as a cumulative total. A smaller value means the counter
// started again from zero (its map entry was taken out and recreated), so all of it is new.
inline uint64_t CounterDelta(uint64_t now, uint64_t before) {
  return now >= before ? now - before : now;
}

// Sum over CPUs of slot `index` of a per-CPU array of u64; 0 if it cannot be read.
uint64_t SumPerCpuArray(int map_fd, uint32_t index);

}  // namespace nodewatch::agent
