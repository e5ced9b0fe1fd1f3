// What the running kernel can do for the eBPF collectors, and the counting path each signal takes
// because of it.
//
// Each feature is probed once at start with the cheapest probe that gives the kernel's real
// answer: a two-instruction program or a one-entry map of the exact kind the collectors use,
// loaded and freed at once (libbpf's generic TRACING probe is not used: it loads without an attach
// target, which every kernel refuses, so it says "no" where tp_btf programs run). A kernel that
// refuses a probe for a reason of its own (EPERM from a security policy, say) is recorded with
// that reason: the path that needs it is switched off before anything is loaded.
//
// PlanCounting() turns the features into one path per signal. It is a pure function, so that the
// choice is unit-tested for every kind of kernel without one.
#pragma once

#include <string>
#include <vector>

namespace nodewatch::agent {

// One probe's answer.
struct FeatureProbe {
  bool available = false;
  std::string why_not;  // the kernel's answer (errno text) or what is missing; "" when available
};

struct KernelFeatures {
  FeatureProbe kernel_btf;    // /sys/kernel/btf/vmlinux: CO-RE relocations, tp_btf, iterators
  FeatureProbe cgroup_skb;    // BPF_PROG_TYPE_CGROUP_SKB: every byte counter
  FeatureProbe percpu_hash;   // BPF_MAP_TYPE_PERCPU_HASH: the flows map
  FeatureProbe percpu_array;  // BPF_MAP_TYPE_PERCPU_ARRAY: counters and histograms
  FeatureProbe tp_btf;        // BTF-typed tracepoints (TRACING/BPF_TRACE_RAW_TP): TCP events, disk
  FeatureProbe socket_storage;  // BPF_MAP_TYPE_SK_STORAGE and bpf_sk_storage_get in cgroup_skb
  // bpf_iter over socket storage (TRACING/BPF_TRACE_ITER on bpf_sk_storage_map): folds the live
  // sockets' counts into the flows map before each read.
  FeatureProbe socket_storage_iterator;
  FeatureProbe sock_release;  // cgroup/sock_release (5.9+): a UDP socket's last counts at close
  FeatureProbe atomics;       // BPF_ATOMIC compare-and-exchange (5.12+): the folds

  // (name, probe) in a fixed order; the names are the `feature` label of
  // nodewatch_agent_kernel_feature and NodeInfo.kernel_features.
  std::vector<std::pair<std::string, const FeatureProbe*>> List() const;
  // "kernel_btf=yes cgroup_skb=yes ... socket_storage_iterator=no (Operation not permitted)".
  std::string Describe() const;
};

// Probes the running kernel (needs CAP_BPF or root, as loading the programs does). A few ms.
KernelFeatures ProbeKernelFeatures();

// The counting paths, one per signal. Values of `path`:
//   tcp_bytes, udp_bytes: "socket" (counted in the socket's storage entry, folded into the flows
//     map), "packet" (every packet through the flows map) or "off";
//   tcp_events, block_io: "tp_btf" or "off".
// Every path of a signal counts the same bytes (docs/ebpf.md, "What a counted byte is").
struct SignalPath {
  std::string signal;
  std::string path;
  std::string why;  // why this path and not the preferred one; "" on the preferred path
};

struct CountingOptions {
  bool network = true;   // --bpf (the network counters)
  bool tcp = true;       // --bpf-tcp: the TCP tracepoint programs
  bool sockets = true;   // count TCP and UDP in their sockets where the kernel can
  bool block_io = true;  // --bpf-block-io
};

struct CountingPlan {
  SignalPath tcp_bytes{"tcp_bytes", "off", ""};
  SignalPath udp_bytes{"udp_bytes", "off", ""};
  SignalPath tcp_events{"tcp_events", "off", ""};
  SignalPath block_io{"block_io", "off", ""};
  std::vector<SignalPath> List() const { return {tcp_bytes, udp_bytes, tcp_events, block_io}; }
  // "tcp_bytes=packet (kernel refuses ...) udp_bytes=packet (...) tcp_events=tp_btf ...".
  std::string Describe() const;
};

// "tcp_bytes=packet (why); udp_bytes=socket; ...": for log lines.
std::string DescribePaths(const std::vector<SignalPath>& paths);

// The paths each signal can take, for the 0/1 gauges: every (signal, path) pair is exported.
const std::vector<std::pair<std::string, std::vector<std::string>>>& KnownCountingPaths();

CountingPlan PlanCounting(const KernelFeatures& features, const CountingOptions& options);

}  // namespace nodewatch::agent
