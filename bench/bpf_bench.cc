// Cost of the eBPF signals, all measured in one run on this kernel (root):
//
//   bpf_bench [--seconds 2] [--rounds 15] [--load-seconds 30] [--costs-only 1]
//
// 1. Throughput: an iperf3 TCP stream of small writes (100 bytes, TCP_NODELAY) between two network
//    namespaces, client and server in a test cgroup, in rotating order with the network programs
//    detached, attached (bpf_stats off, as in production without --bpf-stats), and replaced by
//    cgroup_skb programs that return at once; the medians of the per-round changes give
//    throughput_loss_pct_small_packets and throughput_loss_pct_empty_programs (what the hook costs
//    before we count anything). Each round also sends a fixed 16 MiB detached and attached and
//    compares the machine's busy CPU time for it: cpu_overhead_pct_small_packets.
// 2. Per-hit cost from the kernel's bpf_stats (run_time_ns / run_cnt): small UDP packets and a
//    TCP stream for the cgroup_skb counters (bpf_net_ns_per_packet), connects, refused connects
//    and resets for the TCP tracepoints (bpf_tcp_ns_per_event), direct I/O on a loop device for
//    the block program (bpf_disk_ns_per_io: per completed request; bpf_empty_tracepoint_ns_per_io:
//    the same I/O with a block program that returns at once).
// 3. A real nodewatch-agent (all programs on the cgroup v2 root, --interval 10s) streaming to a
//    real aggregator while 10,000 connections/s and a 1 Gbit/s iperf3 stream run between the
//    namespaces: agent_cpu_pct_under_load and agent_rss_mib_under_load, plus the kernel memory of
//    its maps (agent_bpf_map_mib) and the load actually achieved.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <thread>

#include "absl/strings/str_cat.h"
#include "agent/collectors/disk/block_io_program.h"
#include "agent/collectors/ebpf/kernel_features.h"
#include "agent/collectors/net/net_program.h"
#include "bench/bench_support.h"
#include "bench/sim_agent.h"
#include "nlohmann/json.hpp"
#include "tests/support/kernel_fixture.h"
#include "tests/support/metrics_scrape.h"
#include "tests/support/process.h"

namespace na = nodewatch::agent;
namespace nb = nodewatch::bench;
namespace nt = nodewatch::testing;

namespace {

constexpr int kIperfPort = 5401;
constexpr int kConnectPort = 5402;
constexpr int kUdpEchoPort = 5403;

// Runs iperf3 as a client in `cgroup` and netns `ns`; returns its JSON report.
nlohmann::json Iperf(const std::string& cgroup, const std::string& ns, const std::string& args) {
  const std::string out = nt::MakeTempDir("iperf") + "/out.json";
  nt::RunChild(cgroup, ns, [&] {
    const std::string cmd = "iperf3 -J " + args + " > " + out + " 2>&1";
    execl("/bin/sh", "sh", "-c", cmd.c_str(), nullptr);
    return 127;
  });
  auto text = nodewatch::ReadFileToString(out);
  if (!text.ok()) return {};
  auto json = nlohmann::json::parse(*text, nullptr, false);
  return json.is_discarded() ? nlohmann::json() : json;
}

double ReceivedBitsPerSecond(const nlohmann::json& report) {
  try {
    return report.at("end").at("sum_received").at("bits_per_second").get<double>();
  } catch (...) {
    return 0;
  }
}

// An iperf3 server in `cgroup` and netns `ns`, killed at destruction.
class IperfServer {
 public:
  IperfServer(const std::string& cgroup, const std::string& ns) {
    const std::string port = std::to_string(kIperfPort);
    pid_ = nt::StartChild(cgroup, ns, [&] {
      int null = open("/dev/null", O_WRONLY);
      dup2(null, 1);
      dup2(null, 2);
      execlp("iperf3", "iperf3", "-s", "-p", port.c_str(), nullptr);
      return 127;
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
  }
  ~IperfServer() {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }

 private:
  pid_t pid_ = -1;
};

double Median(std::vector<double> v) { return nb::Percentile(std::move(v), 0.5); }

// Busy CPU time of the whole machine so far (every CPU's user, nice, system, irq, softirq and
// steal from /proc/stat), in clock ticks.
double MachineBusyTicks(bool with_steal = true) {
  std::ifstream in("/proc/stat");
  std::string cpu;
  double user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0;
  in >> cpu >> user >> nice >> system >> idle >> iowait >> irq >> softirq >> steal;
  return user + nice + system + irq + softirq + (with_steal ? steal : 0);
}

struct Cost {
  uint64_t runs = 0;
  uint64_t ns = 0;
  double PerRun() const { return runs ? static_cast<double>(ns) / static_cast<double>(runs) : 0; }
  Cost& operator+=(const Cost& o) {
    runs += o.runs;
    ns += o.ns;
    return *this;
  }
};

Cost Sum(const std::vector<na::ProgramStats>& programs, const std::vector<std::string>& names) {
  Cost c;
  for (const auto& p : programs) {
    if (std::find(names.begin(), names.end(), p.name) == names.end()) continue;
    std::printf("  %-22s %9llu runs %8.1f ns/run\n", p.name.c_str(),
                static_cast<unsigned long long>(p.run_count),
                p.run_count ? static_cast<double>(p.run_time_ns) / p.run_count : 0.0);
    c.runs += p.run_count;
    c.ns += p.run_time_ns;
  }
  return c;
}

// Opens and closes TCP connections to `address` at up to `per_second` for `seconds`; returns how
// many completed. Runs in the calling process (a child placed in the load netns).
int ConnectLoop(const std::vector<std::string>& addresses, int per_second, int seconds) {
  int done = 0;
  const auto start = std::chrono::steady_clock::now();
  const auto end = start + std::chrono::seconds(seconds);
  for (int i = 0; std::chrono::steady_clock::now() < end; ++i) {
    const auto due =
        start + std::chrono::microseconds(static_cast<int64_t>(i) * 1'000'000 / per_second);
    std::this_thread::sleep_until(due);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in sa{.sin_family = AF_INET, .sin_port = htons(kConnectPort)};
    inet_pton(AF_INET, addresses[i % addresses.size()].c_str(), &sa.sin_addr);
    linger l{.l_onoff = 1, .l_linger = 0};  // RST on close: no TIME_WAIT pile-up at 10k/s
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
    if (connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) == 0) ++done;
    close(fd);
  }
  return done;
}

}  // namespace

int main(int argc, char** argv) {
  int seconds = 2, rounds = 15, load_seconds = 30;
  bool costs_only = false;  // --costs-only 1: just the bpf_stats figures (quick)
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--costs-only")) costs_only = std::atoi(argv[i + 1]) != 0;
    if (!std::strcmp(argv[i], "--seconds")) seconds = std::atoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--rounds")) rounds = std::atoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--load-seconds")) load_seconds = std::atoi(argv[i + 1]);
  }
  if (geteuid() != 0) {
    std::fprintf(stderr, "bpf_bench loads BPF programs: run it as root\n");
    return 1;
  }
  if (auto why = nt::EnsureKernelMounts(); !why.empty()) {
    std::fprintf(stderr, "%s\n", why.c_str());
    return 1;
  }
  nt::NetnsPair net("nwb" + std::to_string(getpid() % 100000), 203);
  nt::TestCgroup cgroup("nodewatch-bench-" + std::to_string(getpid()));
  if (!net.ok() || !cgroup.ok()) {
    std::fprintf(stderr, "set-up failed: %s %s\n", net.error().c_str(), cgroup.error().c_str());
    return 1;
  }
  const std::string work = cgroup.Make(
      "kubepods/besteffort/pod6f1c2a9e-3b7d-4c55-9a10-0d2e8f4b7c31/" + std::string(64, 'b'));

  // 1. Throughput detached, with every network program attached, and with cgroup_skb programs
  // that return at once (the hook's own cost), in a rotating order.
  std::vector<double> detached, attached, empty;
  std::vector<double> cpu_detached, cpu_attached;  // machine CPU ticks per transfer
  if (!costs_only) {
    IperfServer server(work, net.b());
    // Client on CPU 0 and server on CPU 1 (-A 0,1), the first second (slow start, scheduler
    // settling) left out of the figure (-O 1): on two shared vCPUs, unpinned runs vary by ±30 %.
    const std::string client_args = "-c " + net.address_b() + " -p " + std::to_string(kIperfPort) +
                                    " -t " + std::to_string(seconds) + " -O 1 -A 0,1 -l 100 -N";
    const std::string fixed_args =
        "-c " + net.address_b() + " -p " + std::to_string(kIperfPort) + " -n 16M -A 0,1 -l 100 -N";
    for (int r = 0; r < rounds; ++r) {
      for (int i = 0; i < 3; ++i) {
        const int mode = (r + i) % 3;  // 0 detached, 1 attached, 2 empty programs
        std::unique_ptr<na::BpfNetProgram> program;
        if (mode != 0) {
          auto loaded = na::BpfNetProgram::Load(
              {.cgroup_path = cgroup.path(), .tcp = mode == 1, .calibrate_empty = mode == 2});
          if (!loaded.ok()) {
            std::fprintf(stderr, "load: %s\n", loaded.status().ToString().c_str());
            return 1;
          }
          program = std::move(*loaded);
        }
        const double bits = ReceivedBitsPerSecond(Iperf(work, net.a(), client_args));
        (mode == 0 ? detached : mode == 1 ? attached : empty).push_back(bits);
        if (mode != 2) {
          // The same 16 MiB in 100-byte writes, timed by the CPU it takes rather than by the
          // clock: less sensitive to how the two vCPUs are scheduled.
          const double ticks0 = MachineBusyTicks();
          Iperf(work, net.a(), fixed_args);
          (mode == 0 ? cpu_detached : cpu_attached).push_back(MachineBusyTicks() - ticks0);
        }
      }
      std::printf("round %d: detached %.1f, attached %.1f, empty programs %.1f Mbit/s\n", r + 1,
                  detached.back() / 1e6, attached.back() / 1e6, empty.back() / 1e6);
    }
  }
  const double base = Median(detached), with = Median(attached), floor = Median(empty);
  // Losses as medians of per-round pairs (the runs of one round are seconds apart, so slow drifts
  // of this shared machine cancel out), in percent.
  auto paired_loss = [](const std::vector<double>& reference, const std::vector<double>& other,
                        bool higher_is_worse) {
    std::vector<double> losses;
    for (size_t i = 0; i < std::min(reference.size(), other.size()); ++i) {
      if (reference[i] <= 0) continue;
      const double change = (other[i] - reference[i]) / reference[i];
      losses.push_back(100.0 * (higher_is_worse ? change : -change));
    }
    return Median(losses);
  };
  if (!costs_only && base <= 0) {
    std::fprintf(stderr, "iperf3 did not run (is it installed? scripts/install-deps.sh)\n");
    return 1;
  }

  // 2. Per-hit cost from bpf_stats (on for this part only: it taxes every BPF program).
  std::optional<na::BpfStatsScope> stats_scope;
  if (auto stats = na::BpfStatsScope::Enable(); stats.ok()) {
    stats_scope.emplace(std::move(*stats));
  } else {
    std::fprintf(stderr, "%s\n", stats.status().ToString().c_str());
    return 1;
  }
  // Which path the agent counts each signal on here. Figures named for the socket path are only
  // printed when this kernel runs it: a per-packet figure never goes out under a socket name.
  const na::KernelFeatures features = na::ProbeKernelFeatures();
  const na::CountingPlan plan =
      na::PlanCounting(features, {.network = true, .tcp = true, .sockets = true, .block_io = true});
  std::printf("kernel BPF features: %s\ncounting paths the agent runs here: %s\n",
              features.Describe().c_str(), plan.Describe().c_str());
  const bool tcp_from_sockets = plan.tcp_bytes.path == "socket";
  const bool udp_from_sockets = plan.udp_bytes.path == "socket";
  Cost empty_cost, tcp_cost, disk_cost;
  Cost net_tcp_cost, net_udp_cost, net_tcp_per_packet_cost, net_udp_per_packet_cost;
  double tcp_stream_cpu_ns = 0;  // CPU the machine used while the agent's TCP stream ran
  // Small packets: UDP (64-byte datagrams of iperf3's connected socket) and TCP (100-byte writes
  // with TCP_NODELAY), counted from the sockets as the agent runs it and, for comparison, every
  // packet through the flows hash; then the same traffic with programs that return at once (the
  // floor this machine charges for any cgroup_skb program, bpf_stats' own clock reads included).
  // Three interleaved rounds, so slow drifts of this shared machine fall on every variant alike.
  enum Variant { kUdp, kUdpPerPacket, kTcp, kTcpPerPacket, kEmptyUdp, kEmptyTcp };
  for (int round = 0; round < 3; ++round) {
    for (Variant variant : {kUdp, kUdpPerPacket, kTcp, kTcpPerPacket, kEmptyUdp, kEmptyTcp}) {
      if ((variant == kUdp && !udp_from_sockets) || (variant == kTcp && !tcp_from_sockets)) {
        continue;  // this kernel has no socket path to measure
      }
      const bool empty = variant == kEmptyUdp || variant == kEmptyTcp;
      const bool udp = variant == kUdp || variant == kUdpPerPacket || variant == kEmptyUdp;
      const bool per_packet = variant == kUdpPerPacket || variant == kTcpPerPacket;
      auto program = na::BpfNetProgram::Load({.cgroup_path = cgroup.path(),
                                              .sockets = !per_packet,
                                              .features = &features,
                                              .calibrate_empty = empty});
      if (!program.ok()) return 1;
      // The agent's TCP path: its stream is the one whose CPU the programs' share is taken of.
      const bool agents_tcp_stream =
          variant == (tcp_from_sockets ? kTcp : kTcpPerPacket);
      IperfServer server(work, net.b());
      const double ticks0 = MachineBusyTicks(false);
      Iperf(work, net.a(),
            "-c " + net.address_b() + " -p " + std::to_string(kIperfPort) +
                (udp ? " -u -b 0 -l 64 -t 2" : " -l 100 -N -t 2"));
      if (agents_tcp_stream) {
        tcp_stream_cpu_ns += (MachineBusyTicks(false) - ticks0) * 1e9 / sysconf(_SC_CLK_TCK);
      }
      std::vector<std::pair<na::FlowKey, na::FlowTotals>> flows;  // as the agent reads them
      (void)(*program)->ReadFlows(flows);
      static const char* const kNames[] = {"UDP from sockets",    "UDP per packet",
                                           "TCP from sockets",    "TCP per packet",
                                           "UDP, empty programs", "TCP, empty programs"};
      std::printf("%s:\n", kNames[variant]);
      const Cost cost = Sum((*program)->Programs(), {"nw_count_egress", "nw_count_ingress"});
      switch (variant) {
        case kUdp:
          net_udp_cost += cost;
          break;
        case kTcp:
          net_tcp_cost += cost;
          break;
        case kUdpPerPacket:
          net_udp_per_packet_cost += cost;
          break;
        case kTcpPerPacket:
          net_tcp_per_packet_cost += cost;
          break;
        case kEmptyUdp:
        case kEmptyTcp:
          empty_cost += cost;
          break;
      }
    }
  }
  // Short-lived UDP sockets (a DNS lookup's pattern: socket, connect, one datagram out, one back,
  // close): as the agent runs, each socket also passes the release program and looks for an
  // entry (and now and then gets one), so the figure is the programs' time per socket (out, in
  // and release), against the same exchanges through the flows hash only. Three interleaved
  // rounds of 5,000 sockets.
  Cost udp_socket_cost, udp_socket_per_packet_cost;
  {
    nt::UdpEcho echo(net.b(), kUdpEchoPort);
    for (int round = 0; round < 3; ++round) {
      for (bool sockets : {true, false}) {
        if (sockets && !udp_from_sockets) continue;
        auto program = na::BpfNetProgram::Load(
            {.cgroup_path = cgroup.path(), .sockets = sockets, .features = &features});
        if (!program.ok()) return 1;
        constexpr int kSockets = 5000;
        const int status = nt::RunChild(work, net.a(), [&] {
          sockaddr_in to{.sin_family = AF_INET, .sin_port = htons(kUdpEchoPort)};
          inet_pton(AF_INET, net.address_b().c_str(), &to.sin_addr);
          char query[64] = {'e'};  // 'e': UdpEcho answers it
          timeval second{.tv_sec = 1, .tv_usec = 0};
          for (int i = 0; i < kSockets; ++i) {
            int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &second, sizeof(second));
            const bool answered = connect(fd, reinterpret_cast<sockaddr*>(&to), sizeof(to)) == 0 &&
                                  send(fd, query, sizeof(query), 0) == sizeof(query) &&
                                  recv(fd, query, sizeof(query), 0) == sizeof(query);
            close(fd);
            if (!answered) return 1;
          }
          return 0;
        });
        if (status != 0) {
          std::fprintf(stderr, "the UDP exchanges failed\n");
          return 1;
        }
        std::printf("UDP, one exchange per socket, %s:\n", sockets ? "from sockets" : "per packet");
        Cost cost = Sum((*program)->Programs(),
                        {"nw_count_egress", "nw_count_ingress", "nw_fold_udp_release"});
        cost.runs = kSockets;  // per socket, not per program run
        (sockets ? udp_socket_cost : udp_socket_per_packet_cost) += cost;
      }
    }
  }
  {
    auto program = na::BpfNetProgram::Load({.cgroup_path = cgroup.path(), .features = &features});
    if (!program.ok()) return 1;
    // Connections: a listener in B that accepts and closes; 3,000 connects from A, and 1,000
    // refused ones (a reset each way).
    std::atomic<bool> stop{false};
    int listen_fd = -1;
    std::thread acceptor([&] {
      nt::RunInNetns(net.b(), [&] {
        listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        int one = 1;
        setsockopt(listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        sockaddr_in sa{.sin_family = AF_INET, .sin_port = htons(kConnectPort)};
        inet_pton(AF_INET, net.address_b().c_str(), &sa.sin_addr);
        bind(listen_fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa));
        listen(listen_fd, 4096);
        while (!stop) {
          int c = accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
          if (c < 0) break;
          close(c);
        }
      });
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    nt::RunChild(work, net.a(),
                 [&] { return ConnectLoop({net.address_b()}, 20'000, 1) > 0 ? 0 : 1; });
    nt::RunChild(work, net.a(), [&] {
      for (int i = 0; i < 1000; ++i) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_in sa{.sin_family = AF_INET, .sin_port = htons(5999)};
        inet_pton(AF_INET, net.address_b().c_str(), &sa.sin_addr);
        connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa));
        close(fd);
      }
      return 0;
    });
    stop = true;
    shutdown(listen_fd, SHUT_RDWR);
    acceptor.join();
    close(listen_fd);
    // The state program is nw_fold_tcp_state (with the close fold) as the agent runs it, or
    // nw_tcp_state where the kernel cannot fold: one of them is loaded. The release program runs
    // on every socket closed in the cgroup (it returns at once for TCP): its time is part of the
    // events' cost, its runs are not more events.
    tcp_cost =
        Sum((*program)->Programs(), {"nw_tcp_retransmit", "nw_tcp_state", "nw_fold_tcp_state",
                                     "nw_tcp_send_reset", "nw_tcp_receive_reset"});
    tcp_cost.ns += Sum((*program)->Programs(), {"nw_fold_udp_release"}).ns;
  }
  Cost disk_hash_cost, disk_empty_cost;
  {
    // 4 KiB direct reads and writes on a loop device, counted in per-CPU slots (as the agent
    // runs) and, for comparison, in the overflow hash and by a program that returns at once (the
    // tracepoint's and bpf_stats' own cost); three interleaved rounds.
    const std::string dir = nt::MakeTempDir("bpf-bench-disk");
    nt::LoopDevice loop(dir + "/backing.img", 256ull << 20);
    if (!loop.ok()) {
      std::fprintf(stderr, "disk set-up failed: %s\n", loop.error().c_str());
      return 1;
    }
    void* buffer = nullptr;
    if (posix_memalign(&buffer, 4096, 4096) != 0) return 1;
    std::memset(buffer, 0x5a, 4096);
    for (int round = 0; round < 3; ++round) {
      enum DiskVariant { kSlots, kHash, kEmpty };
      for (DiskVariant variant : {kSlots, kHash, kEmpty}) {
        auto program = na::BpfBlockIoProgram::Load(
            {.slots = variant != kHash, .calibrate_empty = variant == kEmpty});
        int fd = open(loop.device().c_str(), O_RDWR | O_DIRECT | O_CLOEXEC);
        if (!program.ok() || fd < 0) {
          std::fprintf(stderr, "disk set-up failed\n");
          return 1;
        }
        for (int i = 0; i < 10'000; ++i) {
          const off_t offset = static_cast<off_t>((i * 7919) % 65536) * 4096;
          if ((i % 2 ? pwrite(fd, buffer, 4096, offset) : pread(fd, buffer, 4096, offset)) != 4096)
            break;
        }
        close(fd);
        static const char* const kDiskNames[] = {"slots", "hash", "empty"};
        std::printf("disk, %s:\n", kDiskNames[variant]);
        Cost& cost = variant == kSlots  ? disk_cost
                     : variant == kHash ? disk_hash_cost
                                        : disk_empty_cost;
        cost += Sum((*program)->Programs(), {"nw_block_complete"});
      }
    }
    free(buffer);
  }

  stats_scope.reset();
  // Each figure with the path it was measured on; a socket-path figure this kernel cannot
  // measure is said so (with the probe's reason) instead of printed.
  auto figure = [](const char* name, double value, const char* unit, const std::string& path) {
    std::printf("%s: measured on the %s path\n", name, path.c_str());
    nb::PrintBench(name, value, unit);
  };
  auto socket_figure = [&](const char* name, const Cost& cost, const na::SignalPath& plan_path) {
    if (plan_path.path == "socket") {
      figure(name, cost.PerRun(), "ns", "socket");
    } else {
      std::printf("%s: not measured, this kernel counts %s per packet (%s)\n", name,
                  plan_path.signal.c_str(), plan_path.why.c_str());
    }
  };
  // As the agent runs here: UDP and TCP together, each on the agent's path.
  const std::string agents_paths =
      absl::StrCat("agent's (tcp ", plan.tcp_bytes.path, ", udp ", plan.udp_bytes.path, ")");
  Cost agents_net = tcp_from_sockets ? net_tcp_cost : net_tcp_per_packet_cost;
  agents_net += udp_from_sockets ? net_udp_cost : net_udp_per_packet_cost;
  auto print_costs = [&] {
    figure("bpf_net_ns_per_packet", agents_net.PerRun(), "ns",
           agents_paths);
    socket_figure("bpf_net_ns_per_packet_tcp", net_tcp_cost, plan.tcp_bytes);
    socket_figure("bpf_net_ns_per_packet_udp", net_udp_cost, plan.udp_bytes);
    figure("bpf_net_ns_per_packet_tcp_per_packet_path", net_tcp_per_packet_cost.PerRun(), "ns",
           "packet");
    figure("bpf_net_ns_per_packet_udp_per_packet_path", net_udp_per_packet_cost.PerRun(), "ns",
           "packet");
    socket_figure("bpf_net_ns_per_udp_socket_one_exchange", udp_socket_cost, plan.udp_bytes);
    figure("bpf_net_ns_per_udp_socket_one_exchange_per_packet_path",
           udp_socket_per_packet_cost.PerRun(), "ns", "packet");
    // The share of the small-packet stream's CPU spent in the counting programs: what a CPU-bound
    // stream loses to them, resolvable where the throughput comparison drowns in this machine's
    // noise. An upper bound: bpf_stats' own clock reads are in the programs' time.
    const Cost& agents_tcp = tcp_from_sockets ? net_tcp_cost : net_tcp_per_packet_cost;
    figure("bpf_cpu_share_pct_small_packets",
           tcp_stream_cpu_ns > 0 ? 100.0 * static_cast<double>(agents_tcp.ns) / tcp_stream_cpu_ns
                                 : 0,
           "percent", plan.tcp_bytes.path);
    figure("bpf_empty_prog_ns_per_packet", empty_cost.PerRun(), "ns", "empty cgroup_skb");
    figure("bpf_tcp_ns_per_event", tcp_cost.PerRun(), "ns", plan.tcp_events.path);
    figure("bpf_disk_ns_per_io", disk_cost.PerRun(), "ns", plan.block_io.path + " per-CPU slots");
    figure("bpf_disk_ns_per_io_hash_path", disk_hash_cost.PerRun(), "ns",
           plan.block_io.path + " hash");
    figure("bpf_empty_tracepoint_ns_per_io", disk_empty_cost.PerRun(), "ns", "empty tp_btf");
  };
  if (costs_only) {
    print_costs();
    return 0;
  }

  // 3. The agent under load.
  const std::string dir = nt::MakeTempDir("bpf-bench-agent");
  nt::TestPki pki(dir + "/pki");
  auto server_cert = pki.Issue(
      "aggregator", {.cn = "nodewatch-aggregator", .dns = {"localhost"}, .ips = {"127.0.0.1"}});
  auto node = pki.Issue("node", {.cn = "system:node:bench-node", .orgs = {"system:nodes"}});
  const std::string ingest = "127.0.0.1:" + std::to_string(nt::FreePort());
  nt::Subprocess aggregator(
      nt::BinaryPath("nodewatch-aggregator"),
      {"--listen", ingest, "--query-listen", "127.0.0.1:" + std::to_string(nt::FreePort()),
       "--metrics-listen", "", "--http-listen", "", "--data-dir", dir + "/agg", "--tls-ca",
       pki.ca_file(), "--tls-cert", server_cert.cert, "--tls-key", server_cert.key, "--remediation",
       "off"},
      dir + "/aggregator.log");
  aggregator.Start();
  const int metrics_port = nt::FreePort();
  nt::Subprocess agent(
      nt::BinaryPath("nodewatch-agent"),
      {"--node-name", "bench-node", "--aggregator", ingest, "--spool-dir", dir + "/spool",
       "--cloud", "none", "--tls-ca", pki.ca_file(), "--tls-cert", node.cert, "--tls-key", node.key,
       "--metrics-listen", "127.0.0.1:" + std::to_string(metrics_port)},
      dir + "/agent.log");
  agent.Start();
  std::this_thread::sleep_for(std::chrono::seconds(3));
  // 64 addresses in B, so the flows map holds many (cgroup, remote) pairs.
  std::vector<std::string> targets;
  for (int i = 1; i <= 64; ++i) {
    const std::string address = "10.204.0." + std::to_string(i);
    nt::Shell("ip netns exec " + net.b() + " ip addr add " + address + "/32 dev " + net.device_b());
    nt::Shell("ip netns exec " + net.a() + " ip route add " + address + "/32 dev " +
              net.device_a());
    targets.push_back(address);
  }
  std::atomic<bool> stop{false};
  std::vector<int> listeners;
  std::thread acceptor([&] {
    nt::RunInNetns(net.b(), [&] {
      int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      int one = 1;
      setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
      sockaddr_in sa{.sin_family = AF_INET, .sin_port = htons(kConnectPort)};  // any address
      bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa));
      listen(fd, 4096);
      listeners.push_back(fd);
      while (!stop) {
        int c = accept4(fd, nullptr, nullptr, SOCK_CLOEXEC);
        if (c < 0) break;
        close(c);
      }
    });
  });
  IperfServer iperf_server(work, net.b());
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  const double cpu0 = nb::CpuSeconds(agent.pid());
  const auto t0 = std::chrono::steady_clock::now();
  std::atomic<int> connections{0};
  std::thread connector([&] {
    // The child's exit status cannot carry the count; it reports through a pipe.
    int pipefd[2];
    if (pipe(pipefd) != 0) return;
    nt::RunChild(work, net.a(), [&] {
      int done = ConnectLoop(targets, 10'000, load_seconds);
      (void)!write(pipefd[1], &done, sizeof(done));
      return 0;
    });
    int done = 0;
    if (read(pipefd[0], &done, sizeof(done)) == sizeof(done)) connections = done;
    close(pipefd[0]);
    close(pipefd[1]);
  });
  nlohmann::json stream = Iperf(work, net.a(),
                                "-c " + net.address_b() + " -p " + std::to_string(kIperfPort) +
                                    " -b 1G -t " + std::to_string(load_seconds));
  connector.join();
  double peak_rss = nb::RssMiB(agent.pid());
  const double cpu = nb::CpuSeconds(agent.pid()) - cpu0;
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  // One more interval so the sample of the load's last seconds is read out.
  std::this_thread::sleep_for(std::chrono::seconds(2));
  peak_rss = std::max(peak_rss, nb::RssMiB(agent.pid()));
  double map_bytes = 0;
  for (const char* map : {"flows", "connect_start", "disk_io"}) {
    double v = nt::AgentMetric(
        metrics_port, std::string("nodewatch_agent_bpf_map_memory_bytes{map=\"") + map + "\"}");
    if (v > 0) map_bytes += v;
  }
  const bool alive = agent.running();
  stop = true;
  for (int fd : listeners) shutdown(fd, SHUT_RDWR);
  acceptor.join();
  agent.Stop(SIGTERM);
  aggregator.Stop(SIGTERM);
  if (!alive) {
    std::fprintf(stderr, "agent exited early:\n%s\n", agent.log().c_str());
    return 1;
  }

  std::printf(
      "throughput (iperf3, 100-byte writes, TCP_NODELAY): detached %.1f, attached %.1f, empty "
      "programs %.1f Mbit/s (medians of %d)\n",
      base / 1e6, with / 1e6, floor / 1e6, rounds);
  std::printf("bpf_stats: net %llu runs, tcp %llu runs, disk %llu runs (30,000 I/Os)\n",
              static_cast<unsigned long long>(agents_net.runs),
              static_cast<unsigned long long>(tcp_cost.runs),
              static_cast<unsigned long long>(disk_cost.runs));
  std::printf("load: %d connections in %.1f s, iperf3 %.1f Mbit/s\n", connections.load(), wall,
              ReceivedBitsPerSecond(stream) / 1e6);
  print_costs();
  figure("throughput_loss_pct_small_packets", paired_loss(detached, attached, false), "percent",
         agents_paths);
  figure("throughput_loss_pct_empty_programs", paired_loss(detached, empty, false), "percent",
         "empty cgroup_skb");
  figure("cpu_overhead_pct_small_packets", paired_loss(cpu_detached, cpu_attached, true),
         "percent", agents_paths);
  nb::PrintBench("load_connections_per_s", connections.load() / wall, "per_s");
  nb::PrintBench("load_stream_mbit_per_s", ReceivedBitsPerSecond(stream) / 1e6, "Mbit/s");
  nb::PrintBench("agent_cpu_pct_under_load", 100.0 * cpu / wall, "percent_of_one_core");
  nb::PrintBench("agent_rss_mib_under_load", peak_rss, "MiB");
  nb::PrintBench("agent_bpf_map_mib", map_bytes / (1 << 20), "MiB");
  std::filesystem::remove_all(dir);
  return 0;
}
