#include "agent/collectors/ebpf/bpf_support.h"

#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <linux/bpf.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdarg>
#include <cstring>
#include <fstream>
#include <mutex>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/logging.h"

namespace nodewatch::agent {

namespace {

int LibbpfPrint(enum libbpf_print_level level, const char* format, va_list args) {
  char buffer[1024];
  int n = vsnprintf(buffer, sizeof(buffer), format, args);
  if (n <= 0) return n;
  std::string_view line(buffer, std::min<size_t>(static_cast<size_t>(n), sizeof(buffer) - 1));
  while (!line.empty() && line.back() == '\n') line.remove_suffix(1);
  auto log = GetLogger("agent.bpf");
  switch (level) {
    case LIBBPF_WARN:
      log->warn("libbpf: {}", line);
      break;
    case LIBBPF_INFO:
      log->debug("libbpf: {}", line);
      break;
    case LIBBPF_DEBUG:
      log->trace("libbpf: {}", line);
      break;
  }
  return n;
}

}  // namespace

void RouteLibbpfLogs() {
  static std::once_flag once;
  std::call_once(once, [] { libbpf_set_print(LibbpfPrint); });
}

KernelBtfFacts ReadKernelBtf(const std::vector<std::string>& tracepoints,
                             const std::vector<std::string>& structs) {
  KernelBtfFacts facts;
  for (const auto& name : tracepoints) facts.tracepoint_args[name] = -1;
  for (const auto& name : structs) facts.has_struct[name] = false;
  struct btf* vmlinux = btf__load_vmlinux_btf();
  if (vmlinux == nullptr) return facts;
  for (const auto& name : tracepoints) {
    const std::string typedef_name = "btf_trace_" + name;
    int id = btf__find_by_name_kind(vmlinux, typedef_name.c_str(), BTF_KIND_TYPEDEF);
    if (id <= 0) continue;
    // typedef -> pointer -> func_proto(void *ctx, args...)
    const struct btf_type* t = btf__type_by_id(vmlinux, id);
    t = t ? btf__type_by_id(vmlinux, t->type) : nullptr;
    t = (t && btf_is_ptr(t)) ? btf__type_by_id(vmlinux, t->type) : nullptr;
    if (t && btf_is_func_proto(t)) {
      facts.tracepoint_args[name] = static_cast<int>(btf_vlen(t)) - 1;
    }
  }
  for (const auto& name : structs) {
    facts.has_struct[name] = btf__find_by_name_kind(vmlinux, name.c_str(), BTF_KIND_STRUCT) > 0;
  }
  btf__free(vmlinux);
  return facts;
}

void ReadProgramStats(const bpf_program* program, ProgramStats& stats) {
  int fd = bpf_program__fd(program);
  if (fd < 0) return;
  struct bpf_prog_info info {};
  __u32 length = sizeof(info);
  if (bpf_obj_get_info_by_fd(fd, &info, &length) != 0) return;
  stats.run_count = info.run_cnt;
  stats.run_time_ns = info.run_time_ns;
  stats.missed_runs = info.recursion_misses;
}

absl::StatusOr<BpfStatsScope> BpfStatsScope::Enable() {
  int fd = bpf_enable_stats(BPF_STATS_RUN_TIME);
  if (fd < 0) {
    return absl::UnavailableError(
        absl::StrCat("BPF_ENABLE_STATS failed: ", strerror(errno), " (needs CAP_SYS_ADMIN)"));
  }
  return BpfStatsScope(fd);
}

BpfStatsScope& BpfStatsScope::operator=(BpfStatsScope&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) close(fd_);
    fd_ = other.fd_;
    other.fd_ = -1;
  }
  return *this;
}

BpfStatsScope::~BpfStatsScope() {
  if (fd_ >= 0) close(fd_);
}

int PossibleCpus() {
  static const int cpus = [] {
    int n = libbpf_num_possible_cpus();
    return n > 0 ? n : 1;
  }();
  return cpus;
}

absl::StatusOr<std::string> FindCgroup2Mount(const std::string& proc_root) {
  const std::string path = proc_root + "/self/mountinfo";
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  std::string line;
  std::string found;
  while (std::getline(in, line)) {
    // "36 35 0:30 / /sys/fs/cgroup rw,... shared:9 - cgroup2 cgroup2 rw"
    auto dash = line.find(" - ");
    if (dash == std::string::npos) continue;
    std::vector<std::string> after = absl::StrSplit(line.substr(dash + 3), ' ');
    if (after.empty() || after[0] != "cgroup2") continue;
    std::vector<std::string> before = absl::StrSplit(line.substr(0, dash), ' ');
    if (before.size() < 5) continue;
    // Prefer the shortest mount point (the host's root hierarchy over bind mounts of subtrees).
    if (found.empty() || before[4].size() < found.size()) found = before[4];
  }
  if (found.empty()) {
    return absl::NotFoundError(
        absl::StrCat("no cgroup2 filesystem in ", path, ": the network counters need cgroup v2"));
  }
  return found;
}

absl::StatusOr<uint64_t> CgroupId(const std::string& path) {
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) {
    return absl::NotFoundError(absl::StrCat("cgroup ", path, ": ", strerror(errno)));
  }
  return static_cast<uint64_t>(st.st_ino);
}

}  // namespace nodewatch::agent

namespace nodewatch::agent {

uint64_t FdMemlockBytes(int fd) {
  std::ifstream in("/proc/self/fdinfo/" + std::to_string(fd));
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("memlock:", 0) == 0) return std::strtoull(line.c_str() + 8, nullptr, 10);
  }
  return 0;
}

MapStats ReadMapStats(const bpf_map* map) {
  const int fd = bpf_map__fd(map);
  const size_t key_size = bpf_map__key_size(map);
  std::vector<char> key(key_size), next(key_size);
  uint64_t entries = 0;
  const void* previous = nullptr;
  while (bpf_map_get_next_key(fd, previous, next.data()) == 0) {
    ++entries;
    key.swap(next);
    previous = key.data();
  }
  return {.name = bpf_map__name(map),
          .entries = entries,
          .max_entries = bpf_map__max_entries(map),
          .memory_bytes = FdMemlockBytes(fd)};
}

uint64_t SumPerCpuArray(int map_fd, uint32_t index) {
  std::vector<uint64_t> values(PossibleCpus());
  if (bpf_map_lookup_elem(map_fd, &index, values.data()) != 0) return 0;
  uint64_t sum = 0;
  for (uint64_t v : values) sum += v;
  return sum;
}

}  // namespace nodewatch::agent
