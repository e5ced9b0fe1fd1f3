#include "agent/collectors/ebpf/kernel_features.h"

#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <linux/bpf.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "agent/collectors/ebpf/bpf_support.h"

namespace nodewatch::agent {

namespace {

FeatureProbe Yes() { return {.available = true, .why_not = ""}; }
FeatureProbe No(std::string why) { return {.available = false, .why_not = std::move(why)}; }

// libbpf_probe_*: 1 yes, 0 no, < 0 the probe itself failed.
FeatureProbe FromLibbpf(int answer, const std::string& what) {
  if (answer == 1) return Yes();
  if (answer == 0) return No(absl::StrCat("kernel refuses ", what));
  return No(absl::StrCat("cannot probe ", what, ": ", strerror(-answer)));
}

constexpr bpf_insn Return(int32_t value) {
  return {.code = BPF_ALU64 | BPF_MOV | BPF_K,
          .dst_reg = BPF_REG_0,
          .src_reg = 0,
          .off = 0,
          .imm = value};
}
constexpr bpf_insn Exit() {
  return {.code = BPF_JMP | BPF_EXIT, .dst_reg = 0, .src_reg = 0, .off = 0, .imm = 0};
}

// Loads `insns` as a program of `type` (with `opts`), frees it; the kernel's answer.
FeatureProbe LoadProbe(bpf_prog_type type, const bpf_insn* insns, size_t count,
                       const bpf_prog_load_opts* opts, const std::string& what) {
  const int fd = bpf_prog_load(type, nullptr, "Dual BSD/GPL", insns, count, opts);
  if (fd >= 0) {
    close(fd);
    return Yes();
  }
  return No(absl::StrCat("kernel refuses ", what, ": ", strerror(errno)));
}

// A two-instruction tracing program attached (at load) to `btf_id` as `attach`.
FeatureProbe TracingProbe(int btf_id, bpf_attach_type attach, const std::string& what) {
  const bpf_insn insns[] = {Return(0), Exit()};
  LIBBPF_OPTS(bpf_prog_load_opts, opts, .expected_attach_type = attach,
              .attach_btf_id = static_cast<__u32>(btf_id));
  return LoadProbe(BPF_PROG_TYPE_TRACING, insns, 2, &opts, what);
}

// BPF_ATOMIC | BPF_CMPXCHG on a stack slot (the instruction the folds use; 5.12+).
FeatureProbe AtomicsProbe() {
  const bpf_insn insns[] = {
      Return(0),
      // *(u64 *)(r10 - 8) = r0
      {.code = BPF_STX | BPF_DW | BPF_MEM,
       .dst_reg = BPF_REG_10,
       .src_reg = BPF_REG_0,
       .off = -8,
       .imm = 0},
      // r1 = 1
      {.code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = BPF_REG_1, .src_reg = 0, .off = 0, .imm = 1},
      // r0 = cmpxchg((u64 *)(r10 - 8), r0, r1)
      {.code = BPF_STX | BPF_DW | BPF_ATOMIC,
       .dst_reg = BPF_REG_10,
       .src_reg = BPF_REG_1,
       .off = -8,
       .imm = BPF_CMPXCHG},
      Return(0),
      Exit(),
  };
  return LoadProbe(BPF_PROG_TYPE_SOCKET_FILTER, insns, sizeof(insns) / sizeof(insns[0]), nullptr,
                   "BPF_ATOMIC compare-and-exchange (needs 5.12+)");
}

std::string YesNo(const FeatureProbe& p) {
  return p.available ? "yes" : absl::StrCat("no (", p.why_not, ")");
}

}  // namespace

std::vector<std::pair<std::string, const FeatureProbe*>> KernelFeatures::List() const {
  return {{"kernel_btf", &kernel_btf},
          {"cgroup_skb", &cgroup_skb},
          {"percpu_hash", &percpu_hash},
          {"percpu_array", &percpu_array},
          {"tp_btf", &tp_btf},
          {"socket_storage", &socket_storage},
          {"socket_storage_iterator", &socket_storage_iterator},
          {"sock_release", &sock_release},
          {"atomics", &atomics}};
}

std::string KernelFeatures::Describe() const {
  std::string out;
  for (const auto& [name, probe] : List()) {
    absl::StrAppend(&out, out.empty() ? "" : " ", name, "=", YesNo(*probe));
  }
  return out;
}

KernelFeatures ProbeKernelFeatures() {
  RouteLibbpfLogs();
  KernelFeatures f;
  struct stat st {};
  f.kernel_btf = stat("/sys/kernel/btf/vmlinux", &st) == 0
                     ? Yes()
                     : No("no /sys/kernel/btf/vmlinux (a kernel built without "
                          "CONFIG_DEBUG_INFO_BTF)");
  f.cgroup_skb = FromLibbpf(libbpf_probe_bpf_prog_type(BPF_PROG_TYPE_CGROUP_SKB, nullptr),
                            "cgroup_skb programs (needs CONFIG_CGROUP_BPF)");
  f.percpu_hash =
      FromLibbpf(libbpf_probe_bpf_map_type(BPF_MAP_TYPE_PERCPU_HASH, nullptr), "per-CPU hash maps");
  f.percpu_array = FromLibbpf(libbpf_probe_bpf_map_type(BPF_MAP_TYPE_PERCPU_ARRAY, nullptr),
                              "per-CPU array maps");
  f.socket_storage = FromLibbpf(libbpf_probe_bpf_map_type(BPF_MAP_TYPE_SK_STORAGE, nullptr),
                                "socket storage maps (needs 5.2+)");
  if (f.socket_storage.available) {
    f.socket_storage = FromLibbpf(
        libbpf_probe_bpf_helper(BPF_PROG_TYPE_CGROUP_SKB, BPF_FUNC_sk_storage_get, nullptr),
        "bpf_sk_storage_get in cgroup_skb programs (needs 5.2+)");
  }
  {
    const bpf_insn insns[] = {Return(1), Exit()};
    LIBBPF_OPTS(bpf_prog_load_opts, opts, .expected_attach_type = BPF_CGROUP_INET_SOCK_RELEASE);
    f.sock_release = LoadProbe(BPF_PROG_TYPE_CGROUP_SOCK, insns, 2, &opts,
                               "cgroup/sock_release programs (needs 5.9+)");
  }
  f.atomics = AtomicsProbe();
  if (!f.kernel_btf.available) {
    f.tp_btf = No(f.kernel_btf.why_not);
    f.socket_storage_iterator = No(f.kernel_btf.why_not);
    return f;
  }
  btf* vmlinux = btf__load_vmlinux_btf();
  if (vmlinux == nullptr) {
    const std::string why = absl::StrCat("cannot read the kernel BTF: ", strerror(errno));
    f.tp_btf = No(why);
    f.socket_storage_iterator = No(why);
    return f;
  }
  // tp_btf: the first tracepoint of ours this kernel has (the programs need their own tracepoints
  // too; the loaders check each one by name).
  f.tp_btf = No("kernel BTF has none of the tracepoints nodewatch uses");
  for (const char* tracepoint : {"inet_sock_set_state", "block_rq_complete"}) {
    const int id = btf__find_by_name_kind(vmlinux, absl::StrCat("btf_trace_", tracepoint).c_str(),
                                          BTF_KIND_TYPEDEF);
    if (id > 0) {
      f.tp_btf = TracingProbe(id, BPF_TRACE_RAW_TP,
                              absl::StrCat("tp_btf programs (tp_btf/", tracepoint, ")"));
      break;
    }
  }
  const int iterator =
      btf__find_by_name_kind(vmlinux, "bpf_iter_bpf_sk_storage_map", BTF_KIND_FUNC);
  f.socket_storage_iterator =
      iterator > 0
          ? TracingProbe(iterator, BPF_TRACE_ITER, "bpf_iter programs (iter/bpf_sk_storage_map)")
          : No("kernel has no socket storage iterator (needs 5.9+)");
  btf__free(vmlinux);
  return f;
}

std::string DescribePaths(const std::vector<SignalPath>& paths) {
  std::string out;
  for (const SignalPath& p : paths) {
    absl::StrAppend(&out, out.empty() ? "" : "; ", p.signal, "=", p.path,
                    p.why.empty() ? "" : absl::StrCat(" (", p.why, ")"));
  }
  return out;
}

std::string CountingPlan::Describe() const { return DescribePaths(List()); }

const std::vector<std::pair<std::string, std::vector<std::string>>>& KnownCountingPaths() {
  static const auto* paths = new std::vector<std::pair<std::string, std::vector<std::string>>>{
      {"tcp_bytes", {"socket", "packet", "off"}},
      {"udp_bytes", {"socket", "packet", "off"}},
      {"tcp_events", {"tp_btf", "off"}},
      {"block_io", {"tp_btf", "off"}},
  };
  return *paths;
}

CountingPlan PlanCounting(const KernelFeatures& f, const CountingOptions& options) {
  CountingPlan plan;
  // The first missing feature of `needed` names why, or "" when all are there.
  using Needed = std::vector<std::pair<const char*, const FeatureProbe*>>;
  const auto missing = [](const Needed& needed) -> std::string {
    for (const auto& [name, probe] : needed) {
      if (!probe->available) return absl::StrCat(name, ": ", probe->why_not);
    }
    return "";
  };

  // TCP events: the tp_btf programs.
  if (!options.network) {
    plan.tcp_events.why = "switched off (--bpf=false)";
  } else if (!options.tcp) {
    plan.tcp_events.why = "switched off (--bpf-tcp=false)";
  } else if (std::string why = missing({{"tp_btf", &f.tp_btf}, {"percpu_array", &f.percpu_array}});
             !why.empty()) {
    plan.tcp_events.why = why;
  } else {
    plan.tcp_events.path = "tp_btf";
  }

  // Bytes: per packet needs cgroup_skb and the per-CPU maps; from sockets also the storage, its
  // iterator and the compare-and-exchange of the folds, plus the close fold: TCP's runs on
  // inet_sock_set_state (the TCP events' program), UDP's on cgroup/sock_release.
  const std::string per_packet = missing({{"cgroup_skb", &f.cgroup_skb},
                                          {"percpu_hash", &f.percpu_hash},
                                          {"percpu_array", &f.percpu_array}});
  const std::string sockets =
      !options.sockets ? std::string("switched off (every packet counted per packet)")
                       : missing({{"socket_storage", &f.socket_storage},
                                  {"socket_storage_iterator", &f.socket_storage_iterator},
                                  {"atomics", &f.atomics}});
  for (SignalPath* bytes : {&plan.tcp_bytes, &plan.udp_bytes}) {
    if (!options.network) {
      bytes->why = "switched off (--bpf=false)";
      continue;
    }
    if (!per_packet.empty()) {
      bytes->why = per_packet;
      continue;
    }
    std::string why = sockets;
    if (why.empty() && bytes == &plan.tcp_bytes && plan.tcp_events.path == "off") {
      why = absl::StrCat("the close fold runs with the TCP events, which are off: ",
                         plan.tcp_events.why);
    }
    if (why.empty() && bytes == &plan.udp_bytes && !f.sock_release.available) {
      why = absl::StrCat("sock_release: ", f.sock_release.why_not);
    }
    bytes->path = why.empty() ? "socket" : "packet";
    bytes->why = why;
  }

  // Block I/O: tp_btf/block_rq_complete (reads struct request in place: lockdown-safe).
  if (!options.block_io) {
    plan.block_io.why = "switched off (--bpf-block-io=false)";
  } else if (std::string why = missing({{"tp_btf", &f.tp_btf},
                                        {"percpu_hash", &f.percpu_hash},
                                        {"percpu_array", &f.percpu_array}});
             !why.empty()) {
    plan.block_io.why = why;
  } else {
    plan.block_io.path = "tp_btf";
  }
  return plan;
}

}  // namespace nodewatch::agent
