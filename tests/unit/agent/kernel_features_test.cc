// PlanCounting: the counting path of each signal for every kind of kernel, from the features a
// probe found (no kernel needed).
#include "agent/collectors/ebpf/kernel_features.h"

#include "gtest/gtest.h"

namespace nodewatch::agent {
namespace {

// Every feature there.
KernelFeatures Everything() {
  const FeatureProbe yes{.available = true, .why_not = ""};
  KernelFeatures f;
  for (FeatureProbe* probe :
       {&f.kernel_btf, &f.cgroup_skb, &f.percpu_hash, &f.percpu_array, &f.tp_btf, &f.socket_storage,
        &f.socket_storage_iterator, &f.sock_release, &f.atomics}) {
    *probe = yes;
  }
  return f;
}

FeatureProbe Refused(const std::string& why) { return {.available = false, .why_not = why}; }

TEST(PlanCountingTest, AKernelWithEverythingCountsFromSockets) {
  const CountingPlan plan = PlanCounting(Everything(), {});
  EXPECT_EQ(plan.tcp_bytes.path, "socket");
  EXPECT_EQ(plan.udp_bytes.path, "socket");
  EXPECT_EQ(plan.tcp_events.path, "tp_btf");
  EXPECT_EQ(plan.block_io.path, "tp_btf");
  for (const SignalPath& p : plan.List()) EXPECT_EQ(p.why, "") << p.signal;
  EXPECT_EQ(plan.Describe(),
            "tcp_bytes=socket; udp_bytes=socket; tcp_events=tp_btf; block_io=tp_btf");
}

// The Firecracker guest kernel of issue 17: tp_btf runs, the socket-storage iterator is refused
// with EPERM. Bytes per packet (with the probe's reason), TCP events and block I/O on.
TEST(PlanCountingTest, NoIteratorCountsPerPacketAndSaysWhy) {
  KernelFeatures f = Everything();
  f.socket_storage_iterator = Refused("kernel refuses bpf_iter programs: Operation not permitted");
  const CountingPlan plan = PlanCounting(f, {});
  EXPECT_EQ(plan.tcp_bytes.path, "packet");
  EXPECT_EQ(plan.udp_bytes.path, "packet");
  EXPECT_EQ(plan.tcp_bytes.why,
            "socket_storage_iterator: kernel refuses bpf_iter programs: Operation not permitted");
  EXPECT_EQ(plan.tcp_events.path, "tp_btf");
  EXPECT_EQ(plan.block_io.path, "tp_btf");
}

TEST(PlanCountingTest, NoTracingProgramsLeavesTheByteCountersOnly) {
  KernelFeatures f = Everything();
  f.tp_btf = Refused("kernel refuses tp_btf programs: Invalid argument");
  f.socket_storage_iterator = Refused("kernel refuses bpf_iter programs: Invalid argument");
  const CountingPlan plan = PlanCounting(f, {});
  EXPECT_EQ(plan.tcp_bytes.path, "packet");
  EXPECT_EQ(plan.udp_bytes.path, "packet");
  EXPECT_EQ(plan.tcp_events.path, "off");
  EXPECT_EQ(plan.tcp_events.why, "tp_btf: kernel refuses tp_btf programs: Invalid argument");
  EXPECT_EQ(plan.block_io.path, "off");
  EXPECT_NE(plan.block_io.why.find("tp_btf"), std::string::npos);
}

// TCP's close fold runs with the TCP events: with those off, TCP is counted per packet while UDP
// (folded at sock_release) stays on its socket.
TEST(PlanCountingTest, TcpEventsOffMovesTcpBytesToThePacketPathOnly) {
  const CountingPlan plan = PlanCounting(Everything(), {.tcp = false});
  EXPECT_EQ(plan.tcp_events.path, "off");
  EXPECT_EQ(plan.tcp_events.why, "switched off (--bpf-tcp=false)");
  EXPECT_EQ(plan.tcp_bytes.path, "packet");
  EXPECT_NE(plan.tcp_bytes.why.find("--bpf-tcp=false"), std::string::npos) << plan.tcp_bytes.why;
  EXPECT_EQ(plan.udp_bytes.path, "socket");
}

TEST(PlanCountingTest, NoSockReleaseMovesUdpBytesToThePacketPathOnly) {
  KernelFeatures f = Everything();
  f.sock_release =
      Refused("kernel refuses cgroup/sock_release programs (needs 5.9+): Invalid argument");
  const CountingPlan plan = PlanCounting(f, {});
  EXPECT_EQ(plan.tcp_bytes.path, "socket");
  EXPECT_EQ(plan.udp_bytes.path, "packet");
  EXPECT_NE(plan.udp_bytes.why.find("sock_release"), std::string::npos);
}

TEST(PlanCountingTest, OldKernelsWithoutTheFoldAtomicsCountPerPacket) {
  KernelFeatures f = Everything();
  f.atomics =
      Refused("kernel refuses BPF_ATOMIC compare-and-exchange (needs 5.12+): Invalid argument");
  const CountingPlan plan = PlanCounting(f, {});
  EXPECT_EQ(plan.tcp_bytes.path, "packet");
  EXPECT_EQ(plan.udp_bytes.path, "packet");
  EXPECT_NE(plan.udp_bytes.why.find("atomics"), std::string::npos);
}

TEST(PlanCountingTest, NoCgroupSkbMeansNoByteCounters) {
  KernelFeatures f = Everything();
  f.cgroup_skb = Refused("kernel refuses cgroup_skb programs (needs CONFIG_CGROUP_BPF)");
  const CountingPlan plan = PlanCounting(f, {});
  EXPECT_EQ(plan.tcp_bytes.path, "off");
  EXPECT_EQ(plan.udp_bytes.path, "off");
  EXPECT_NE(plan.tcp_bytes.why.find("cgroup_skb"), std::string::npos);
  EXPECT_EQ(plan.block_io.path, "tp_btf");  // disk signals do not need it
}

TEST(PlanCountingTest, OptionsSwitchPathsOffWithTheFlagInTheReason) {
  const CountingPlan packets = PlanCounting(Everything(), {.sockets = false});
  EXPECT_EQ(packets.tcp_bytes.path, "packet");
  EXPECT_EQ(packets.udp_bytes.path, "packet");
  const CountingPlan none = PlanCounting(Everything(), {.network = false, .block_io = false});
  EXPECT_EQ(none.tcp_bytes.path, "off");
  EXPECT_EQ(none.tcp_bytes.why, "switched off (--bpf=false)");
  EXPECT_EQ(none.block_io.why, "switched off (--bpf-block-io=false)");
}

// Every planned path is one the gauges know, so none is exported without its series.
TEST(PlanCountingTest, EveryPathIsAKnownPath) {
  for (const CountingPlan& plan :
       {PlanCounting(Everything(), {}), PlanCounting(KernelFeatures{}, {}),
        PlanCounting(Everything(), {.sockets = false})}) {
    for (const SignalPath& p : plan.List()) {
      bool known = false;
      for (const auto& [signal, paths] : KnownCountingPaths()) {
        if (signal != p.signal) continue;
        for (const auto& path : paths) known = known || path == p.path;
      }
      EXPECT_TRUE(known) << p.signal << "=" << p.path;
    }
  }
}

TEST(KernelFeaturesTest, DescribeNamesEveryFeatureAndTheKernelsReason) {
  KernelFeatures f = Everything();
  f.socket_storage_iterator = Refused("Operation not permitted");
  const std::string text = f.Describe();
  for (const auto& [name, probe] : f.List()) {
    EXPECT_NE(text.find(name + "="), std::string::npos) << name;
  }
  EXPECT_NE(text.find("socket_storage_iterator=no (Operation not permitted)"), std::string::npos)
      << text;
  EXPECT_NE(text.find("tp_btf=yes"), std::string::npos);
}

}  // namespace
}  // namespace nodewatch::agent
