// The network counters the kernel keeps (bpf/net.bpf.c), as the collector sees them, and the seam
// between the collector and the kernel: NetCounterSource (real: BpfNetProgram; tests: a fake).
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "agent/collectors/ebpf/bpf_support.h"
#include "agent/collectors/ebpf/kernel_features.h"

namespace nodewatch::agent {

inline constexpr int kLog2Slots = 32;

// Identity of one counted flow: the socket's cgroup, the remote address and the direction.
struct FlowKey {
  uint64_t cgroup_id = 0;
  std::string remote;  // 4 or 16 bytes, network order
  bool egress = false;
  auto operator<=>(const FlowKey&) const = default;
};

// Cumulative since the entry was created in the kernel (summed over CPUs). The TCP trouble
// counters are on egress entries of connections counted from their sockets.
struct FlowTotals {
  uint64_t bytes = 0;
  uint64_t packets = 0;
  uint64_t tcp_retransmits = 0;      // segments
  uint64_t tcp_failed_connects = 0;  // active opens that went SYN_SENT -> CLOSE
  uint64_t tcp_resets = 0;           // sent or received on the connection
  uint64_t tcp_slow_connects = 0;    // active opens that took >= 500 ms

  bool IsZero() const { return *this == FlowTotals{}; }
  bool operator==(const FlowTotals&) const = default;
  FlowTotals& operator+=(const FlowTotals& o) {
    bytes += o.bytes;
    packets += o.packets;
    tcp_retransmits += o.tcp_retransmits;
    tcp_failed_connects += o.tcp_failed_connects;
    tcp_resets += o.tcp_resets;
    tcp_slow_connects += o.tcp_slow_connects;
    return *this;
  }
  // What `now` counted since `before` (a counter that went back is taken as restarted).
  static FlowTotals Delta(const FlowTotals& now, const FlowTotals& before) {
    return {CounterDelta(now.bytes, before.bytes),
            CounterDelta(now.packets, before.packets),
            CounterDelta(now.tcp_retransmits, before.tcp_retransmits),
            CounterDelta(now.tcp_failed_connects, before.tcp_failed_connects),
            CounterDelta(now.tcp_resets, before.tcp_resets),
            CounterDelta(now.tcp_slow_connects, before.tcp_slow_connects)};
  }
};

// Cumulative since load (summed over CPUs).
struct TcpTotals {
  uint64_t retransmits = 0;
  uint64_t connects = 0;
  uint64_t failed_connects = 0;
  uint64_t resets_sent = 0;
  uint64_t resets_received = 0;
  uint64_t flow_map_full = 0;     // packets not counted: flows map full
  uint64_t connect_map_full = 0;  // connects not timed: pending-connect map full
  uint64_t trouble_map_full = 0;  // TCP trouble events not kept per flow: tcp_trouble full
  std::array<uint64_t, kLog2Slots> connect_latency_log2_us{};
};

class NetCounterSource {
 public:
  virtual ~NetCounterSource() = default;
  // Every flow entry now in the kernel with its cumulative totals.
  virtual absl::Status ReadFlows(std::vector<std::pair<FlowKey, FlowTotals>>& out) = 0;
  // Removes the given entries and returns their final totals (what they had at deletion), so that
  // nothing counted between the last read and the deletion is lost.
  virtual absl::Status TakeFlows(const std::vector<FlowKey>& keys,
                                 std::vector<std::pair<FlowKey, FlowTotals>>& out) = 0;
  virtual absl::Status ReadTcp(TcpTotals& out) = 0;
  virtual uint64_t FlowCapacity() const = 0;
  // Programs (loaded or switched off) and maps, for the agent's /metrics.
  virtual std::vector<ProgramStats> Programs() const = 0;
  virtual std::vector<MapStats> Maps() const = 0;
  // How TCP and UDP bytes and TCP events are counted now (tcp_bytes, udp_bytes, tcp_events), with
  // why where a path is not the preferred one: what the kernel accepted, which may be less than
  // the probe planned.
  virtual std::vector<SignalPath> Paths() const = 0;
};

}  // namespace nodewatch::agent
