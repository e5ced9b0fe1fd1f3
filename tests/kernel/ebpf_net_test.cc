// The network BPF programs against the kernel's own counters (root; a missing privilege fails).
//
// Ground truth: two network namespaces joined by a veth pair with IPv6 off and static neighbours,
// so that every IP packet of namespace A is the test client's. What was counted for the client's
// cgroup must equal, exactly, the bytes A's IP packets carry on a wire (docs/ebpf.md, "What a
// counted byte is"): /proc/net/netstat IpExt OutOctets / InOctets (the IP datagram lengths the
// socket layer passes down / receives), plus, for a TCP GSO packet (counted there once, with one
// header, and passed whole over a veth), the IP and TCP headers of each further segment:
// (Tcp OutSegs - Ip OutRequests) x headers. Retransmissions are on the wire as often as they are
// sent, and counted so. TCP retransmits must match the RetransSegs deltas of every namespace
// involved. The kernel here has no sch_netem, so loss and delay come from nftables rules in
// namespace B (random drops; the first SYN of a connect dropped).
//
// Every test runs once per counting path (Paths/EbpfNetTest.<name>/Sockets and .../Packets): TCP
// and busy UDP sockets counted in their socket storage, and every packet through the flows map
// (forced with NetProgramOptions::sockets = false). Both must give the same exact figures. A kernel
// that cannot run the socket path (no socket-storage iterator, no tracing programs: the probe
// says why) skips it with the probe's reason, only where the packet path runs on it; the output
// says which path each test ran.
#include <arpa/inet.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "agent/collectors/ebpf/kernel_features.h"
#include "agent/collectors/net/net_program.h"
#include "agent/collectors/net/network_collector.h"
#include "agent/collectors/net/pod_resolver.h"
#include "agent/spool/spool.h"
#include "common/clock.h"
#include "gtest/gtest.h"
#include "tests/support/kernel_fixture.h"
#include "tests/support/process.h"

namespace nodewatch::agent {
namespace {

using nodewatch::testing::NetCounters;
using nodewatch::testing::NetnsPair;
using nodewatch::testing::RunChild;
using nodewatch::testing::RunInNetns;
using nodewatch::testing::Shell;
using nodewatch::testing::SocketAddress;
using nodewatch::testing::TestCgroup;
using nodewatch::testing::UdpEcho;

constexpr char kPodUid[] = "6f1c2a9e-3b7d-4c55-9a10-0d2e8f4b7c31";
constexpr char kContainer[] =
    "cri-containerd-4b0e1f2a3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7.scope";

// An address as flows key it: 4 bytes for IPv4, 16 for IPv6 (an address with a ':').
std::string Remote(const std::string& address) {
  in6_addr a{};
  const bool v6 = address.find(':') != std::string::npos;
  inet_pton(v6 ? AF_INET6 : AF_INET, address.c_str(), &a);
  return std::string(reinterpret_cast<const char*>(&a), v6 ? 16 : 4);
}

// A TCP sink in namespace B: accepts connections and reads them to EOF until stopped.
class TcpSink {
 public:
  TcpSink(const std::string& netns, const std::string& address, int port) {
    std::atomic<bool> ready{false};
    thread_ = std::thread([=, this, &ready] {
      RunInNetns(netns, [&] {
        const SocketAddress sa(address, port);
        int fd = socket(sa.family(), SOCK_STREAM | SOCK_CLOEXEC, 0);
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (bind(fd, sa.get(), sa.length) != 0 || listen(fd, 64) != 0) {
          ready = true;
          return;
        }
        listen_fd_ = fd;
        ready = true;
        while (true) {
          int c = accept4(fd, nullptr, nullptr, SOCK_CLOEXEC);
          if (c < 0) break;
          char buffer[65536];
          ssize_t n;
          while ((n = read(c, buffer, sizeof(buffer))) > 0) received_ += static_cast<uint64_t>(n);
          close(c);
        }
      });
    });
    while (!ready) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  ~TcpSink() {
    if (listen_fd_ >= 0) shutdown(listen_fd_, SHUT_RDWR);
    thread_.join();
    if (listen_fd_ >= 0) close(listen_fd_);
  }
  uint64_t received() const { return received_; }

 private:
  std::thread thread_;
  std::atomic<int> listen_fd_{-1};
  std::atomic<uint64_t> received_{0};
};

// Connects to address:port and sends `bytes`; 0 on success, errno otherwise.
int SendTcp(const std::string& address, int port, uint64_t bytes) {
  const SocketAddress sa(address, port);
  int fd = socket(sa.family(), SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (connect(fd, sa.get(), sa.length) != 0) {
    int err = errno;
    close(fd);
    return err;
  }
  std::vector<char> chunk(16384, 'x');
  uint64_t sent = 0;
  while (sent < bytes) {
    ssize_t n = write(fd, chunk.data(), std::min<uint64_t>(chunk.size(), bytes - sent));
    if (n <= 0) {
      close(fd);
      return 200;
    }
    sent += static_cast<uint64_t>(n);
  }
  shutdown(fd, SHUT_WR);
  char c;
  while (read(fd, &c, 1) > 0) {
  }  // until the sink closes: every byte acknowledged
  close(fd);
  return 0;
}

// A connected UDP socket that sends `exchanges` datagrams of `size` bytes and waits for each echo
// (UdpEcho), then closes: 0, or 2 (connect), 3 (send), 4 (no echo within a second).
int ExchangeUdp(const std::string& address, int port, int exchanges, size_t size) {
  const SocketAddress to(address, port);
  int fd = socket(to.family(), SOCK_DGRAM | SOCK_CLOEXEC, 0);
  timeval second{.tv_sec = 1, .tv_usec = 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &second, sizeof(second));
  int status = connect(fd, to.get(), to.length) != 0 ? 2 : 0;
  std::vector<char> payload(size, 'e');
  for (int i = 0; i < exchanges && status == 0; ++i) {
    if (send(fd, payload.data(), payload.size(), 0) != static_cast<ssize_t>(size)) status = 3;
    else if (recv(fd, payload.data(), payload.size(), 0) != static_cast<ssize_t>(size)) status = 4;
  }
  close(fd);
  return status;
}

int SendUdp(const std::string& address, int port, int datagrams, size_t size) {
  const SocketAddress sa(address, port);
  int fd = socket(sa.family(), SOCK_DGRAM | SOCK_CLOEXEC, 0);
  std::vector<char> payload(size, 'u');
  for (int i = 0; i < datagrams; ++i) {
    if (sendto(fd, payload.data(), payload.size(), 0, sa.get(), sa.length) < 0) {
      close(fd);
      return errno;
    }
  }
  close(fd);
  return 0;
}

// A TCP connection held open by a child process in `cgroup_dir` / `netns`, which sends `bytes` more
// on each Send() and returns once the peer has acknowledged all of them (send queue empty).
class HeldConnection {
 public:
  HeldConnection(const std::string& cgroup_dir, const std::string& netns,
                 const std::string& address, int port) {
    if (pipe(to_child_) != 0 || pipe(from_child_) != 0) return;
    pid_ = nodewatch::testing::StartChild(cgroup_dir, netns, [&]() -> int {
      int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      sockaddr_in sa{.sin_family = AF_INET, .sin_port = htons(port)};
      inet_pton(AF_INET, address.c_str(), &sa.sin_addr);
      if (connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) != 0) return 1;
      std::vector<char> chunk(16384, 'h');
      uint64_t bytes = 0;
      while (read(to_child_[0], &bytes, sizeof(bytes)) == sizeof(bytes) && bytes > 0) {
        for (uint64_t sent = 0; sent < bytes;) {
          ssize_t n = write(fd, chunk.data(), std::min<uint64_t>(chunk.size(), bytes - sent));
          if (n <= 0) return 2;
          sent += static_cast<uint64_t>(n);
        }
        int unacknowledged = 1;
        while (ioctl(fd, SIOCOUTQ, &unacknowledged) == 0 && unacknowledged > 0) usleep(1000);
        if (write(from_child_[1], &bytes, sizeof(bytes)) != sizeof(bytes)) return 3;
      }
      close(fd);
      return 0;
    });
  }
  ~HeldConnection() { Close(); }
  bool Send(uint64_t bytes) {
    if (pid_ <= 0 || write(to_child_[1], &bytes, sizeof(bytes)) != sizeof(bytes)) return false;
    uint64_t done = 0;
    return read(from_child_[0], &done, sizeof(done)) == sizeof(done) && done == bytes;
  }
  // Closes the connection; true when the child exited cleanly.
  bool Close() {
    if (pid_ <= 0) return false;
    uint64_t zero = 0;
    (void)!write(to_child_[1], &zero, sizeof(zero));
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = -1;
    for (int fd : {to_child_[0], to_child_[1], from_child_[0], from_child_[1]}) close(fd);
    return WIFEXITED(status) && WEXITSTATUS(status) == 0;
  }

 private:
  int to_child_[2] = {-1, -1}, from_child_[2] = {-1, -1};
  pid_t pid_ = -1;
};

// Pins the calling thread to the first CPU it may run on (not necessarily CPU 0: a cpuset may
// leave that one out). False if it cannot.
bool PinToOneCpu() {
  cpu_set_t allowed, one_cpu;
  if (sched_getaffinity(0, sizeof(allowed), &allowed) != 0) return false;
  for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
    if (!CPU_ISSET(cpu, &allowed)) continue;
    CPU_ZERO(&one_cpu);
    CPU_SET(cpu, &one_cpu);
    return sched_setaffinity(0, sizeof(one_cpu), &one_cpu) == 0;
  }
  return false;
}

// A child process in `cgroup_dir` / `netns` that runs `steps` one at a time: Step() runs the next
// one in the child and returns its result (0 = success). What the steps keep (sockets) lives in
// the child from one step to the next; the child exits after the last step.
class SteppedChild {
 public:
  SteppedChild(const std::string& cgroup_dir, const std::string& netns,
               std::vector<std::function<int()>> steps) {
    if (pipe(to_child_) != 0 || pipe(from_child_) != 0) return;
    pid_ = nodewatch::testing::StartChild(cgroup_dir, netns, [&]() -> int {
      for (const auto& step : steps) {
        char go = 0;
        if (read(to_child_[0], &go, 1) != 1) return 1;
        const int result = step();
        if (write(from_child_[1], &result, sizeof(result)) != sizeof(result)) return 2;
      }
      return 0;
    });
    // The child's ends: closed here, so that a child that dies early ends Step() with EOF.
    close(to_child_[0]);
    close(from_child_[1]);
    to_child_[0] = from_child_[1] = -1;
  }
  ~SteppedChild() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    for (int fd : {to_child_[1], from_child_[0]}) close(fd);
  }
  int Step() {
    int result = -1;
    if (pid_ <= 0 || write(to_child_[1], "s", 1) != 1 ||
        read(from_child_[0], &result, sizeof(result)) != sizeof(result))
      return -1;
    return result;
  }
  // After the last step: true when the child exited cleanly.
  bool Exited() {
    int status = 0;
    if (pid_ <= 0 || waitpid(pid_, &status, 0) != pid_) return false;
    pid_ = -1;
    return WIFEXITED(status) && WEXITSTATUS(status) == 0;
  }

 private:
  int to_child_[2] = {-1, -1}, from_child_[2] = {-1, -1};
  pid_t pid_ = -1;
};

// The segments A's TCP sent between two NetCounters snapshots of namespace A: Tcp OutSegs leaves
// retransmitted segments out (RFC 2012), RetransSegs counts them.
uint64_t SegmentsOut(std::map<std::string, uint64_t>& before,
                     std::map<std::string, uint64_t>& after) {
  return after["Tcp.OutSegs"] - before["Tcp.OutSegs"] + after["Tcp.RetransSegs"] -
         before["Tcp.RetransSegs"];
}

// The bytes A's TCP segments carry on a wire between two NetCounters snapshots of namespace A,
// which every path must count exactly: IpExt OutOctets counts a GSO packet once with one header;
// each further segment carries its own IPv4 (20) and TCP header with the timestamp option Linux
// negotiates by default (32). Retransmitted segments are on the wire, so in both.
uint64_t WireOctetsOut(std::map<std::string, uint64_t>& before,
                       std::map<std::string, uint64_t>& after) {
  return after["IpExt.OutOctets"] - before["IpExt.OutOctets"] +
         (SegmentsOut(before, after) - (after["Ip.OutRequests"] - before["Ip.OutRequests"])) * 52;
}

// The same for what A receives: A's peers send it ACKs only (no GRO on a veth), each an IP packet
// of its own.
uint64_t WireOctetsIn(std::map<std::string, uint64_t>& before,
                      std::map<std::string, uint64_t>& after) {
  return after["IpExt.InOctets"] - before["IpExt.InOctets"];
}

// Loads an nftables ruleset into netns `ns`; "" on success, nft's complaint otherwise.
std::string Nft(const std::string& ns, const std::string& ruleset) {
  const std::string file = nodewatch::testing::MakeTempDir("nft") + "/rules.nft";
  FILE* f = fopen(file.c_str(), "w");
  if (f == nullptr) return "cannot write " + file;
  fprintf(f, "%s\n", ruleset.c_str());
  fclose(f);
  std::string out;
  return Shell("ip netns exec " + ns + " nft -f " + file, &out) == 0 ? "" : out;
}

// The counting path a test runs (see the top of this file). kSocketsFoldedAtClose: the socket
// path without its iterator (NetProgramOptions::fold_live_sockets), for the tests of closed
// sockets, so that a kernel that refuses only the iterator still checks the rest of that path.
enum class CountingMode { kSockets, kPackets, kSocketsFoldedAtClose };

std::string ModeName(const ::testing::TestParamInfo<CountingMode>& info) {
  switch (info.param) {
    case CountingMode::kSockets:
      return "Sockets";
    case CountingMode::kPackets:
      return "Packets";
    case CountingMode::kSocketsFoldedAtClose:
      return "SocketsFoldedAtClose";
  }
  return "Unknown";
}

// The kernel's features, probed once per test process.
const KernelFeatures& Features() {
  static const KernelFeatures* features = new KernelFeatures(ProbeKernelFeatures());
  return *features;
}

// Features() with the iterator taken as there: what kSocketsFoldedAtClose plans with (it does not
// load the iterator).
const KernelFeatures& FeaturesWithoutTheIterator() {
  static const KernelFeatures* features = [] {
    auto* f = new KernelFeatures(Features());
    f->socket_storage_iterator = {.available = true, .why_not = ""};
    return f;
  }();
  return *features;
}

class EbpfNetTest : public ::testing::TestWithParam<CountingMode> {
 protected:
  void SetUp() override {
    ASSERT_EQ(geteuid(), 0u) << "the eBPF tests must run as root (CI runs them as root)";
    ASSERT_EQ(nodewatch::testing::EnsureKernelMounts(), "");
    const CountingPlan packets = PlanCounting(Features(), {.sockets = false});
    ASSERT_EQ(packets.tcp_bytes.path, "packet")
        << "this kernel runs neither counting path: " << packets.Describe() << "; "
        << Features().Describe();
    if (sockets()) {
      const CountingPlan plan = PlanCounting(features(), {});
      if (plan.tcp_bytes.path != "socket" || plan.udp_bytes.path != "socket") {
        // The twin (.../Packets) runs on this kernel: the probe just said so.
        GTEST_SKIP() << "the socket path cannot run on this kernel (" << plan.Describe()
                     << "); the same test ran on the packet path";
      }
    }
    std::printf("counting path: %s\n",
                GetParam() == CountingMode::kSockets ? "socket (TCP and busy UDP sockets in their "
                                                       "storage)"
                : sockets() ? "socket, folded at close only (no iterator)"
                            : "packet (every packet through the flows map)");
    ASSERT_TRUE(net_.ok()) << net_.error();
    ASSERT_TRUE(cgroup_.ok()) << cgroup_.error();
    pod_cgroup_ = cgroup_.Make(std::string("kubepods/burstable/pod") + kPodUid + "/" + kContainer);
    host_cgroup_ = cgroup_.Make("system/host-daemon");
    pods_log_ = nodewatch::testing::MakeTempDir("pods-log");
    std::filesystem::create_directories(pods_log_ + "/shop_web-1_" + kPodUid + "/web");
    spool_dir_ = nodewatch::testing::MakeTempDir("ebpf-spool");
    auto spool = Spool::Open({.dir = spool_dir_});
    ASSERT_TRUE(spool.ok()) << spool.status();
    spool_ = std::move(*spool);
  }

  bool sockets() const { return GetParam() != CountingMode::kPackets; }
  const KernelFeatures& features() const {
    return GetParam() == CountingMode::kSocketsFoldedAtClose ? FeaturesWithoutTheIterator()
                                                             : Features();
  }

  // The options of this test's path on the test's cgroup.
  NetProgramOptions Options(uint32_t flow_entries = 4096) const {
    return {.cgroup_path = cgroup_.path(),
            .flow_entries = flow_entries,
            .sockets = sockets(),
            .features = &features(),
            .fold_live_sockets = GetParam() != CountingMode::kSocketsFoldedAtClose};
  }

  // Loads the programs with Options(); fails the test unless they count on this test's path.
  absl::StatusOr<std::unique_ptr<BpfNetProgram>> Load(NetProgramOptions options) const {
    auto program = BpfNetProgram::Load(options);
    if (program.ok()) {
      const std::string want = sockets() ? "socket" : "packet";
      for (const SignalPath& path : (*program)->Paths()) {
        if ((path.signal == "tcp_bytes" && options.tcp) || path.signal == "udp_bytes") {
          EXPECT_EQ(path.path, want) << path.signal << ": " << path.why;
        }
      }
    }
    return program;
  }

  // Loads the programs on the test's cgroup and wraps them in a collector.
  std::unique_ptr<NetworkCollector> Collector(uint32_t flow_entries = 4096) {
    auto program = Load(Options(flow_entries));
    EXPECT_TRUE(program.ok()) << program.status();
    if (!program.ok()) return nullptr;
    return std::make_unique<NetworkCollector>(
        *spool_, std::move(*program),
        std::make_unique<CgroupPodResolver>(cgroup_.path(), pods_log_, clock_, 0), clock_,
        NetworkCollectorOptions{});
  }

  // Sum of one sample's flows to `remote` in one direction, split by pod UID ("" = node).
  static std::map<std::string, std::pair<uint64_t, uint64_t>> Flows(
      const nodewatch::v1::NetworkSample& sample, const std::string& remote, bool egress) {
    std::map<std::string, std::pair<uint64_t, uint64_t>> out;
    for (const auto& f : sample.flows()) {
      if (f.remote_address() != remote) continue;
      if ((f.direction() == nodewatch::v1::DIRECTION_EGRESS) != egress) continue;
      out[f.pod_uid()].first += f.bytes();
      out[f.pod_uid()].second += f.packets();
    }
    return out;
  }

  // Per pod UID ("" = node), the TCP trouble on the sample's egress flows to `remote`.
  struct Trouble {
    uint64_t retransmits = 0, failed_connects = 0, resets = 0, slow_connects = 0;
  };
  static std::map<std::string, Trouble> TcpTrouble(const nodewatch::v1::NetworkSample& sample,
                                                   const std::string& remote) {
    std::map<std::string, Trouble> out;
    for (const auto& f : sample.flows()) {
      if (f.remote_address() != remote || f.direction() != nodewatch::v1::DIRECTION_EGRESS)
        continue;
      Trouble& t = out[f.pod_uid()];
      t.retransmits += f.tcp_retransmits();
      t.failed_connects += f.tcp_failed_connects();
      t.resets += f.tcp_resets();
      t.slow_connects += f.tcp_slow_connects();
    }
    return out;
  }

  NetnsPair net_{"nwt" + std::to_string(getpid() % 100000), 201};
  TestCgroup cgroup_{"nodewatch-test-" + std::to_string(getpid())};
  std::string pod_cgroup_, host_cgroup_, pods_log_, spool_dir_;
  std::unique_ptr<Spool> spool_;
  SystemClock clock_;
};

TEST_P(EbpfNetTest, TcpAndUdpBytesMatchTheKernelCountersAndLandOnThePod) {
  auto collector = Collector();
  ASSERT_NE(collector, nullptr);
  TcpSink sink(net_.b(), net_.address_b(), 5201);
  ASSERT_TRUE(collector->CollectOnce().ok());

  // TCP: 8 MiB from the pod.
  auto before = NetCounters(net_.a());
  ASSERT_EQ(
      RunChild(pod_cgroup_, net_.a(), [&] { return SendTcp(net_.address_b(), 5201, 8 << 20); }), 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  auto after = NetCounters(net_.a());
  auto sample = collector->CollectOnce();
  ASSERT_TRUE(sample.ok()) << sample.status();
  const uint64_t out_octets = after["IpExt.OutOctets"] - before["IpExt.OutOctets"];
  const uint64_t wire_octets = WireOctetsOut(before, after);
  auto egress = Flows(*sample, Remote(net_.address_b()), true);
  auto ingress = Flows(*sample, Remote(net_.address_b()), false);
  ASSERT_EQ(egress.count(kPodUid), 1u) << sample->DebugString();
  EXPECT_GE(out_octets, 8u << 20);
  std::printf(
      "tcp: egress counted %llu vs %llu on the wire (OutOctets %llu, %llu segments "
      "retransmitted), ingress counted %llu vs %llu\n",
      static_cast<unsigned long long>(egress[kPodUid].first),
      static_cast<unsigned long long>(wire_octets), static_cast<unsigned long long>(out_octets),
      static_cast<unsigned long long>(after["Tcp.RetransSegs"] - before["Tcp.RetransSegs"]),
      static_cast<unsigned long long>(ingress[kPodUid].first),
      static_cast<unsigned long long>(WireOctetsIn(before, after)));
  EXPECT_EQ(egress[kPodUid].first, wire_octets);
  EXPECT_EQ(egress[kPodUid].second, SegmentsOut(before, after));
  EXPECT_EQ(ingress[kPodUid].first, WireOctetsIn(before, after));
  EXPECT_EQ(ingress[kPodUid].second, after["Tcp.InSegs"] - before["Tcp.InSegs"]);
  EXPECT_EQ(egress.count(""), 0u) << "nothing of the node's own in this cgroup yet";
  // Attributed with the names from the kubelet's pod log directory.
  bool named = false;
  for (const auto& f : sample->flows()) {
    if (f.pod_uid() == kPodUid) {
      EXPECT_EQ(f.pod_namespace(), "shop");
      EXPECT_EQ(f.pod_name(), "web-1");
      named = true;
    }
  }
  EXPECT_TRUE(named);

  // UDP: 2,000 datagrams of 1,000 bytes from a host process (attributed to the node).
  before = NetCounters(net_.a());
  ASSERT_EQ(
      RunChild(host_cgroup_, net_.a(), [&] { return SendUdp(net_.address_b(), 5300, 2000, 1000); }),
      0);
  after = NetCounters(net_.a());
  sample = collector->CollectOnce();
  ASSERT_TRUE(sample.ok());
  const uint64_t udp_octets = after["IpExt.OutOctets"] - before["IpExt.OutOctets"];
  egress = Flows(*sample, Remote(net_.address_b()), true);
  EXPECT_EQ(udp_octets, 2000u * (1000 + 28));
  EXPECT_EQ(egress[""].first, udp_octets);
  EXPECT_EQ(egress[""].second, 2000u);
  EXPECT_EQ(egress.count(kPodUid), 0u) << "the pod sent nothing this interval";
}

// UDP counted in the sockets' own entries: a busy connected socket gets one (after at most 256
// datagrams on its CPU through the flows map), and from then on its sends and the echoes it
// receives are counted there, while it stays open (the iterator's fold) and when it is closed (the
// release fold); its datagrams to another address, and a quiet receiving socket's, take the
// per-packet path. Every count is exact, against the datagrams sent and namespace A's IP counters.
TEST_P(EbpfNetTest, UdpSocketsAreCountedInTheirOwnEntriesExactly) {
  auto program = Load(Options());
  ASSERT_TRUE(program.ok()) << program.status();
  // A second address of namespace B, reached through the same static neighbour.
  const std::string b = net_.address_b(), b2 = "10.201.0.3";
  ASSERT_EQ(
      Shell("ip netns exec " + net_.b() + " ip addr add " + b2 + "/24 dev " + net_.device_b()), 0);
  ASSERT_EQ(Shell("ip netns exec " + net_.a() + " ip neigh replace " + b2 +
                  " lladdr 02:00:00:00:1:02 dev " + net_.device_a() + " nud permanent"),
            0);
  UdpEcho echo(net_.b(), 5310);
  constexpr size_t kSize = 200, kServerSize = 100;  // payloads: + 28 bytes of IP and UDP headers
  int client = -1, server = -1;
  auto send_n = [&](const char* to, int count, char first) {
    std::vector<char> payload(kSize, 'u');
    payload[0] = first;
    sockaddr_in sa{.sin_family = AF_INET, .sin_port = htons(5310)};
    if (to != nullptr) inet_pton(AF_INET, to, &sa.sin_addr);
    for (int i = 0; i < count; ++i) {
      ssize_t n = to == nullptr ? send(client, payload.data(), kSize, 0)
                                : sendto(client, payload.data(), kSize, 0,
                                         reinterpret_cast<sockaddr*>(&sa), sizeof(sa));
      if (n != static_cast<ssize_t>(kSize)) return 10;
      if (first == 'e' && recv(client, payload.data(), kSize, 0) != static_cast<ssize_t>(kSize))
        return 11;
    }
    return 0;
  };
  SteppedChild pod(
      pod_cgroup_, net_.a(),
      {// 1: a client connected to B and a server on A:5311 (both sockets stay open).
       [&] {
         // On one CPU: its datagrams then take their flow's count on that CPU past 256 for sure.
         if (!PinToOneCpu()) return 3;
         client = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
         server = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
         timeval second{.tv_sec = 1, .tv_usec = 0};
         setsockopt(client, SOL_SOCKET, SO_RCVTIMEO, &second, sizeof(second));
         setsockopt(server, SOL_SOCKET, SO_RCVTIMEO, &second, sizeof(second));
         sockaddr_in to{.sin_family = AF_INET, .sin_port = htons(5310)};
         inet_pton(AF_INET, net_.address_b().c_str(), &to.sin_addr);
         sockaddr_in local{.sin_family = AF_INET, .sin_port = htons(5311)};
         if (connect(client, reinterpret_cast<sockaddr*>(&to), sizeof(to)) != 0) return 1;
         if (bind(server, reinterpret_cast<sockaddr*>(&local), sizeof(local)) != 0) return 2;
         // 1,000 datagrams to B, each echoed back: enough for an entry (see NW_UDP_PROMOTE_SHIFT).
         return send_n(nullptr, 1000, 'e');
       },
       // 2: 100 more echoed datagrams (the client has its entry by now).
       [&] { return send_n(nullptr, 100, 'e'); },
       // 3: the server takes 100 datagrams (40 from B's second address first, then 60 from B:
       // too few for an entry, so counted per packet).
       [&] {
         char buffer[kServerSize];
         for (int i = 0; i < 100; ++i) {
           if (recv(server, buffer, sizeof(buffer), 0) != static_cast<ssize_t>(kServerSize))
             return 20;
         }
         return 0;
       },
       // 4: 100 datagrams to B's second address through the connected socket, 200 more to B
       // (not echoed), and both sockets closed.
       [&] {
         if (int err = send_n(b2.c_str(), 100, 'n'); err != 0) return err;
         if (int err = send_n(nullptr, 200, 'n'); err != 0) return err;
         close(client);
         close(server);
         return 0;
       }});
  auto flows_now_raw = [&] {
    std::vector<std::pair<FlowKey, FlowTotals>> flows;
    EXPECT_TRUE((*program)->ReadFlows(flows).ok());
    return flows;
  };
  auto flows_now = [&] {
    std::map<std::pair<std::string, bool>, std::pair<uint64_t, uint64_t>> out;
    for (const auto& [key, totals] : flows_now_raw()) {
      auto& sum = out[{key.remote, key.egress}];
      sum.first += totals.bytes;
      sum.second += totals.packets;
    }
    return out;
  };
  using Count = std::pair<uint64_t, uint64_t>;  // bytes, packets
  auto of = [](auto& flows, const std::string& address, bool egress) {
    return flows[{Remote(address), egress}];
  };
  auto datagrams = [](uint64_t n, size_t payload) { return Count{n * (payload + 28), n}; };

  auto flows_map_entries = [&] {
    for (const auto& m : (*program)->Maps()) {
      if (m.name == "flows") return m.entries;
    }
    return uint64_t{999};
  };

  auto before = NetCounters(net_.a());
  ASSERT_EQ(pod.Step(), 0);
  auto after = NetCounters(net_.a());
  auto counted = flows_now();
  EXPECT_EQ(of(counted, b, true), datagrams(1000, kSize));
  EXPECT_EQ(of(counted, b, false), datagrams(1000, kSize));
  EXPECT_EQ(static_cast<double>(of(counted, b, true).first),
            static_cast<double>(after["IpExt.OutOctets"] - before["IpExt.OutOctets"]));
  EXPECT_EQ(static_cast<double>(of(counted, b, false).first),
            static_cast<double>(after["IpExt.InOctets"] - before["IpExt.InOctets"]));
  // Empty the flows map (as the agent does with idle flows); the counts below start from here.
  std::vector<FlowKey> keys;
  std::vector<std::pair<FlowKey, FlowTotals>> taken;
  for (const auto& [key, totals] : flows_now_raw()) keys.push_back(key);
  ASSERT_TRUE((*program)->TakeFlows(keys, taken).ok());
  ASSERT_EQ(flows_map_entries(), 0u);

  before = NetCounters(net_.a());
  ASSERT_EQ(pod.Step(), 0);
  after = NetCounters(net_.a());
  // On the socket path all of it is in the client socket's entry, none in the flows map, until the
  // iterator folds it there (both directions: two keys); on the packet path it is there already.
  EXPECT_EQ(flows_map_entries(), sockets() ? 0u : 2u);
  counted = flows_now();
  EXPECT_EQ(flows_map_entries(), 2u);
  EXPECT_EQ(of(counted, b, true), datagrams(100, kSize));
  EXPECT_EQ(of(counted, b, false), datagrams(100, kSize));
  EXPECT_EQ(static_cast<double>(of(counted, b, true).first),
            static_cast<double>(after["IpExt.OutOctets"] - before["IpExt.OutOctets"]));

  // B sends to the pod's server: 40 datagrams from its second address, then 60 from its first.
  RunInNetns(net_.b(), [&] {
    for (const auto& [from, count] : {std::pair{b2, 40}, std::pair{b, 60}}) {
      int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
      sockaddr_in local{.sin_family = AF_INET};
      inet_pton(AF_INET, from.c_str(), &local.sin_addr);
      sockaddr_in to{.sin_family = AF_INET, .sin_port = htons(5311)};
      inet_pton(AF_INET, net_.address_a().c_str(), &to.sin_addr);
      bind(fd, reinterpret_cast<sockaddr*>(&local), sizeof(local));
      std::vector<char> payload(kServerSize, 's');
      for (int i = 0; i < count; ++i) {
        sendto(fd, payload.data(), payload.size(), 0, reinterpret_cast<sockaddr*>(&to), sizeof(to));
      }
      close(fd);
    }
  });
  ASSERT_EQ(pod.Step(), 0);
  counted = flows_now();
  EXPECT_EQ(of(counted, b2, false), datagrams(40, kServerSize));
  const Count echoes = datagrams(100, kSize), from_b = datagrams(60, kServerSize);
  EXPECT_EQ(of(counted, b, false), Count(echoes.first + from_b.first, 160));
  keys.clear();
  for (const auto& [key, totals] : flows_now_raw()) keys.push_back(key);
  ASSERT_TRUE((*program)->TakeFlows(keys, taken).ok());
  ASSERT_EQ(flows_map_entries(), 0u);

  before = NetCounters(net_.a());
  ASSERT_EQ(pod.Step(), 0);
  ASSERT_TRUE(pod.Exited());
  after = NetCounters(net_.a());
  // Closed: the client's last 200 datagrams to B are in the flows map already, put there by the
  // release fold (the iterator only runs in ReadFlows); those to the second address per packet.
  EXPECT_EQ(flows_map_entries(), 2u);
  counted = flows_now();
  EXPECT_EQ(of(counted, b, true), datagrams(200, kSize));
  EXPECT_EQ(of(counted, b2, true), datagrams(100, kSize));
  EXPECT_EQ(of(counted, b, false), Count(0, 0));
  EXPECT_EQ(static_cast<double>(datagrams(300, kSize).first),
            static_cast<double>(after["IpExt.OutOctets"] - before["IpExt.OutOctets"]));
  std::printf("udp: out to B %llu B / %llu datagrams, to B's second address %llu B\n",
              static_cast<unsigned long long>(of(counted, b, true).first),
              static_cast<unsigned long long>(of(counted, b, true).second),
              static_cast<unsigned long long>(of(counted, b2, true).first));
}

// A busy UDP server socket (unbound to any peer) gets an entry for the peer whose datagrams take
// its count past the promotion mark; that peer's datagrams then go to the entry, other peers'
// through the map, and the release fold empties the entry at close. Exact against IpExt.
TEST_P(EbpfNetTest, UdpServerSocketCountsItsBusiestPeerInItsEntry) {
  auto program = Load(Options());
  ASSERT_TRUE(program.ok()) << program.status();
  const std::string a = net_.address_a(), b = net_.address_b(), b2 = "10.201.0.3";
  ASSERT_EQ(
      Shell("ip netns exec " + net_.b() + " ip addr add " + b2 + "/24 dev " + net_.device_b()), 0);
  constexpr uint16_t kPort = 5312;
  constexpr size_t kSize = 120;  // payload: + 28 bytes of IP and UDP headers
  int server = -1;
  // Echoes `echoes` datagrams to their senders, then takes `silent` more without answering.
  auto serve = [&](int echoes, int silent) {
    char buffer[kSize];
    for (int i = 0; i < echoes + silent; ++i) {
      sockaddr_in from{};
      socklen_t from_size = sizeof(from);
      if (recvfrom(server, buffer, sizeof(buffer), 0, reinterpret_cast<sockaddr*>(&from),
                   &from_size) != static_cast<ssize_t>(kSize))
        return 20;
      if (i < echoes && sendto(server, buffer, kSize, 0, reinterpret_cast<sockaddr*>(&from),
                               from_size) != static_cast<ssize_t>(kSize))
        return 21;
    }
    return 0;
  };
  SteppedChild pod(pod_cgroup_, net_.a(),
                   {// 1: the server binds A:5312, on one CPU (its replies' count on that CPU
                    // passes the promotion mark for sure).
                    [&] {
                      if (!PinToOneCpu()) return 3;
                      server = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
                      timeval timeout{.tv_sec = 2, .tv_usec = 0};
                      setsockopt(server, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
                      sockaddr_in local{.sin_family = AF_INET, .sin_port = htons(kPort)};
                      return bind(server, reinterpret_cast<sockaddr*>(&local), sizeof(local));
                    },
                    // 2: 1,000 echoes to B: enough for an entry (NW_UDP_PROMOTE_SHIFT).
                    [&] { return serve(1000, 0); },
                    // 3: 100 more echoes to B, then 50 datagrams from B's second address.
                    [&] { return serve(100, 50); },
                    // 4: 100 more echoes to B, and the socket closed.
                    [&] {
                      const int err = serve(100, 0);
                      close(server);
                      return err;
                    }});
  // B's side of a step: `echoed` request/reply exchanges from B, then `from_b2` one-way
  // datagrams from B's second address, while the pod's server runs the step.
  auto exchange = [&](int echoed, int from_b2) {
    int result = -1;
    std::thread server_step([&] { result = pod.Step(); });
    RunInNetns(net_.b(), [&] {
      for (const auto& [from, count] : {std::pair{b, echoed}, std::pair{b2, from_b2}}) {
        if (count == 0) continue;
        int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        timeval timeout{.tv_sec = 2, .tv_usec = 0};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
        sockaddr_in local{.sin_family = AF_INET};
        inet_pton(AF_INET, from.c_str(), &local.sin_addr);
        sockaddr_in to{.sin_family = AF_INET, .sin_port = htons(kPort)};
        inet_pton(AF_INET, a.c_str(), &to.sin_addr);
        bind(fd, reinterpret_cast<sockaddr*>(&local), sizeof(local));
        connect(fd, reinterpret_cast<sockaddr*>(&to), sizeof(to));
        std::vector<char> payload(kSize, 'q');
        for (int i = 0; i < count; ++i) {
          if (send(fd, payload.data(), kSize, 0) != static_cast<ssize_t>(kSize)) break;
          if (from == b && recv(fd, payload.data(), kSize, 0) != static_cast<ssize_t>(kSize)) break;
        }
        close(fd);
      }
    });
    server_step.join();
    return result;
  };
  auto flows_now_raw = [&] {
    std::vector<std::pair<FlowKey, FlowTotals>> flows;
    EXPECT_TRUE((*program)->ReadFlows(flows).ok());
    return flows;
  };
  using Count = std::pair<uint64_t, uint64_t>;  // bytes, packets
  auto flows_now = [&] {
    std::map<std::pair<std::string, bool>, Count> out;
    for (const auto& [key, totals] : flows_now_raw()) {
      auto& sum = out[{key.remote, key.egress}];
      sum.first += totals.bytes;
      sum.second += totals.packets;
    }
    return out;
  };
  auto of = [](auto& flows, const std::string& address, bool egress) {
    return flows[{Remote(address), egress}];
  };
  auto datagrams = [](uint64_t n) { return Count{n * (kSize + 28), n}; };
  auto flows_map_entries = [&] {
    for (const auto& m : (*program)->Maps()) {
      if (m.name == "flows") return m.entries;
    }
    return uint64_t{999};
  };
  auto empty_the_map = [&] {
    std::vector<FlowKey> keys;
    std::vector<std::pair<FlowKey, FlowTotals>> taken;
    for (const auto& [key, totals] : flows_now_raw()) keys.push_back(key);
    ASSERT_TRUE((*program)->TakeFlows(keys, taken).ok());
    ASSERT_EQ(flows_map_entries(), 0u);
  };

  ASSERT_EQ(pod.Step(), 0);
  auto before = NetCounters(net_.a());
  ASSERT_EQ(exchange(1000, 0), 0);
  auto after = NetCounters(net_.a());
  auto counted = flows_now();
  EXPECT_EQ(of(counted, b, true), datagrams(1000));
  EXPECT_EQ(of(counted, b, false), datagrams(1000));
  EXPECT_EQ(static_cast<double>(of(counted, b, true).first),
            static_cast<double>(after["IpExt.OutOctets"] - before["IpExt.OutOctets"]));
  EXPECT_EQ(static_cast<double>(of(counted, b, false).first),
            static_cast<double>(after["IpExt.InOctets"] - before["IpExt.InOctets"]));
  empty_the_map();

  // B's 100 exchanges go to the server socket's entry, not the map (until the iterator folds
  // them there), on the socket path; B's second address goes through the map, per packet.
  before = NetCounters(net_.a());
  ASSERT_EQ(exchange(100, 50), 0);
  after = NetCounters(net_.a());
  EXPECT_EQ(flows_map_entries(), sockets() ? 1u : 3u);
  counted = flows_now();
  EXPECT_EQ(flows_map_entries(), 3u);
  EXPECT_EQ(of(counted, b, true), datagrams(100));
  EXPECT_EQ(of(counted, b, false), datagrams(100));
  EXPECT_EQ(of(counted, b2, false), datagrams(50));
  EXPECT_EQ(static_cast<double>(of(counted, b, false).first + of(counted, b2, false).first),
            static_cast<double>(after["IpExt.InOctets"] - before["IpExt.InOctets"]));
  empty_the_map();

  // Closed: the release fold has put the last 100 exchanges in the map before any iterator run.
  ASSERT_EQ(exchange(100, 0), 0);
  ASSERT_TRUE(pod.Exited());
  EXPECT_EQ(flows_map_entries(), 2u);
  counted = flows_now();
  EXPECT_EQ(of(counted, b, true), datagrams(100));
  EXPECT_EQ(of(counted, b, false), datagrams(100));
}

// IPv6: a TCP connection counted from its socket (keyed by the 16-byte address, sized with 40-byte
// IP headers) and a busy connected UDP socket counted in its entry, against nftables counters in
// namespace A (its own IPv6 traffic also carries MLD reports, so the protocol's packets are
// counted apart) and TCP's segment counter.
TEST_P(EbpfNetTest, Ipv6TrafficIsCountedLikeIpv4) {
  NetnsPair net6("nw6" + std::to_string(getpid() % 100000), 202, /*ipv6=*/true);
  ASSERT_TRUE(net6.ok()) << net6.error();
  ASSERT_EQ(Nft(net6.a(), R"(table inet nwcount {
  chain out {
    type filter hook output priority 0;
    meta nfproto ipv6 meta l4proto tcp counter
    meta nfproto ipv6 meta l4proto udp counter
  }
  chain in {
    type filter hook input priority 0;
    meta nfproto ipv6 meta l4proto tcp counter
    meta nfproto ipv6 meta l4proto udp counter
  }
})"),
            "");
  // (packets, bytes) of the four counters above, in order: out tcp, out udp, in tcp, in udp.
  auto nft_counters = [&] {
    std::string listing;
    Shell("ip netns exec " + net6.a() + " nft list table inet nwcount", &listing);
    std::vector<std::pair<uint64_t, uint64_t>> out;
    for (size_t at = listing.find("counter packets "); at != std::string::npos;
         at = listing.find("counter packets ", at + 1)) {
      unsigned long long packets = 0, bytes = 0;
      std::sscanf(listing.c_str() + at, "counter packets %llu bytes %llu", &packets, &bytes);
      out.emplace_back(packets, bytes);
    }
    out.resize(4);
    return out;
  };
  auto program = Load(Options());
  ASSERT_TRUE(program.ok()) << program.status();
  const std::string b = net6.address6_b();
  auto counted = [&](bool egress) {
    std::vector<std::pair<FlowKey, FlowTotals>> flows;
    EXPECT_TRUE((*program)->ReadFlows(flows).ok());
    std::pair<uint64_t, uint64_t> sum;  // bytes, packets
    for (const auto& [key, totals] : flows) {
      if (key.remote == Remote(b) && key.egress == egress) {
        sum.first += totals.bytes;
        sum.second += totals.packets;
      }
    }
    return sum;
  };

  // TCP: 2 MiB from the pod.
  TcpSink sink(net6.b(), b, 5230);
  auto before = NetCounters(net6.a());
  auto nft_before = nft_counters();
  ASSERT_EQ(RunChild(pod_cgroup_, net6.a(), [&] { return SendTcp(b, 5230, 2 << 20); }), 0);
  auto after = NetCounters(net6.a());
  auto nft_after = nft_counters();
  const uint64_t out_packets = nft_after[0].first - nft_before[0].first;
  const uint64_t out_bytes = nft_after[0].second - nft_before[0].second;
  const uint64_t in_bytes = nft_after[2].second - nft_before[2].second;
  // On the wire each segment beyond a GSO packet's first carries its own IPv6 (40) and TCP
  // header (32).
  const uint64_t out_segments = SegmentsOut(before, after);
  const uint64_t wire = out_bytes + (out_segments - out_packets) * 72;
  auto egress = counted(true), ingress = counted(false);
  std::printf(
      "ipv6 tcp: egress counted %llu vs %llu on the wire (%llu in IP datagrams), ingress "
      "%llu vs %llu\n",
      static_cast<unsigned long long>(egress.first), static_cast<unsigned long long>(wire),
      static_cast<unsigned long long>(out_bytes), static_cast<unsigned long long>(ingress.first),
      static_cast<unsigned long long>(in_bytes));
  EXPECT_GE(out_bytes, 2u << 20);
  EXPECT_EQ(egress.first, wire);
  EXPECT_EQ(egress.second, out_segments);
  EXPECT_EQ(ingress.first, in_bytes);

  // UDP: a connected socket on one CPU, 1,000 datagrams of 200 bytes echoed back (it gets its
  // entry on the way), then closed.
  UdpEcho echo(net6.b(), 5320, "::");
  nft_before = nft_counters();
  ASSERT_EQ(RunChild(pod_cgroup_, net6.a(),
                     [&] { return PinToOneCpu() ? ExchangeUdp(b, 5320, 1000, 200) : 1; }),
            0);
  nft_after = nft_counters();
  const auto udp_egress = counted(true), udp_ingress = counted(false);
  const uint64_t datagram = 200 + 8 + 40;
  EXPECT_EQ(nft_after[1].second - nft_before[1].second, 1000 * datagram);
  EXPECT_EQ(nft_after[3].second - nft_before[3].second, 1000 * datagram);
  EXPECT_EQ(udp_egress.first - egress.first, 1000 * datagram);
  EXPECT_EQ(udp_egress.second - egress.second, 1000u);
  EXPECT_EQ(udp_ingress.first - ingress.first, 1000 * datagram);
  EXPECT_EQ(udp_ingress.second - ingress.second, 1000u);
}

// A long-lived connection is counted every interval while it is open (the socket fold run before
// each read), from the moment the programs load (not what it sent before), and what is left when
// it closes lands in the next interval: nothing twice, nothing lost.
TEST_P(EbpfNetTest, LiveConnectionsAreCountedEachIntervalFromLoadToClose) {
  TcpSink sink(net_.b(), net_.address_b(), 5205);
  HeldConnection connection(pod_cgroup_, net_.a(), net_.address_b(), 5205);
  ASSERT_TRUE(connection.Send(1 << 20));  // before the agent: not counted
  auto collector = Collector();
  ASSERT_NE(collector, nullptr);
  ASSERT_TRUE(collector->CollectOnce().ok());

  for (uint64_t bytes : {2u << 20, 256u << 10}) {
    auto before = NetCounters(net_.a());
    ASSERT_TRUE(connection.Send(bytes));
    auto after = NetCounters(net_.a());
    auto sample = collector->CollectOnce();
    ASSERT_TRUE(sample.ok()) << sample.status();
    const uint64_t wire = WireOctetsOut(before, after), wire_in = WireOctetsIn(before, after);
    auto egress = Flows(*sample, Remote(net_.address_b()), true);
    auto ingress = Flows(*sample, Remote(net_.address_b()), false);
    std::printf(
        "open connection, %llu bytes sent: egress counted %llu vs %llu on the wire, "
        "ingress %llu vs %llu\n",
        static_cast<unsigned long long>(bytes),
        static_cast<unsigned long long>(egress[kPodUid].first),
        static_cast<unsigned long long>(wire),
        static_cast<unsigned long long>(ingress[kPodUid].first),
        static_cast<unsigned long long>(wire_in));
    EXPECT_GE(wire, bytes);
    EXPECT_EQ(egress[kPodUid].first, wire);
    EXPECT_EQ(ingress[kPodUid].first, wire_in);
  }

  // The last bytes and the close: the FIN exchange and what the final fold finds.
  auto before = NetCounters(net_.a());
  ASSERT_TRUE(connection.Send(64 << 10));
  ASSERT_TRUE(connection.Close());
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  auto after = NetCounters(net_.a());
  auto sample = collector->CollectOnce();
  ASSERT_TRUE(sample.ok()) << sample.status();
  auto egress = Flows(*sample, Remote(net_.address_b()), true);
  auto ingress = Flows(*sample, Remote(net_.address_b()), false);
  EXPECT_EQ(egress[kPodUid].first, WireOctetsOut(before, after));
  EXPECT_EQ(ingress[kPodUid].first, WireOctetsIn(before, after));
  // Closed: nothing more to count.
  sample = collector->CollectOnce();
  ASSERT_TRUE(sample.ok());
  EXPECT_EQ(Flows(*sample, Remote(net_.address_b()), true).count(kPodUid), 0u);
}

// Waits until namespace `netns` has no TCP socket on local `port` but its listener: every
// segment of the connection, retransmissions and the closing handshake included, has been sent
// and answered, so the kernel's counters read after it are final.
bool WaitForTcpClosed(const std::string& netns, int port, int timeout_ms) {
  const std::string local_port = absl::StrFormat(":%04X ", port);
  bool closed = false;
  RunInNetns(netns, [&] {
    for (int waited = 0; waited <= timeout_ms && !closed; waited += 50) {
      closed = true;
      for (const char* file : {"/proc/thread-self/net/tcp", "/proc/thread-self/net/tcp6"}) {
        std::ifstream in(file);
        std::string line;
        std::getline(in, line);  // header
        while (std::getline(in, line)) {
          // "  sl  local_address rem_address   st ...": the state follows the remote address.
          std::vector<std::string> f = absl::StrSplit(line, ' ', absl::SkipEmpty());
          if (f.size() > 3 && absl::StrContains(f[1] + " ", local_port) && f[3] != "0A") {
            closed = false;
          }
        }
      }
      if (!closed) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  });
  return closed;
}

TEST_P(EbpfNetTest, RetransmitsUnderLossMatchRetransSegs) {
  auto collector = Collector();
  ASSERT_NE(collector, nullptr);
  ASSERT_EQ(Nft(net_.b(),
                "table inet nwloss {\n chain input {\n type filter hook input priority 0;\n"
                " tcp dport 5202 meta length > 200 numgen random mod 20 == 0 drop\n }\n}"),
            "");
  TcpSink sink(net_.b(), net_.address_b(), 5202);
  // Only data segments are lost. A lost final ACK would make B send its FIN again, and A's
  // TIME_WAIT would take it and answer through the namespace's control socket: segments the
  // kernel counts that no cgroup (the pod's or any other) sends or receives, so no cgroup program
  // can see them.
  ASSERT_TRUE(collector->CollectOnce().ok());
  auto a0 = NetCounters(net_.a()), b0 = NetCounters(net_.b()), h0 = NetCounters("");
  ASSERT_EQ(
      RunChild(pod_cgroup_, net_.a(), [&] { return SendTcp(net_.address_b(), 5202, 4 << 20); }), 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  ASSERT_TRUE(WaitForTcpClosed(net_.b(), 5202, 10'000)) << "B's side never got its last ACK";
  auto a1 = NetCounters(net_.a()), b1 = NetCounters(net_.b()), h1 = NetCounters("");
  auto sample = collector->CollectOnce();
  ASSERT_TRUE(sample.ok());
  const uint64_t truth = (a1["Tcp.RetransSegs"] - a0["Tcp.RetransSegs"]) +
                         (b1["Tcp.RetransSegs"] - b0["Tcp.RetransSegs"]) +
                         (h1["Tcp.RetransSegs"] - h0["Tcp.RetransSegs"]);
  ASSERT_GT(truth, 10u) << "5% loss on 4 MiB must cause retransmits";
  std::printf("retransmits: counted %llu, RetransSegs delta %llu\n",
              static_cast<unsigned long long>(sample->tcp_retransmits()),
              static_cast<unsigned long long>(truth));
  const double tolerance = std::max(2.0, truth * 0.05);
  EXPECT_NEAR(static_cast<double>(sample->tcp_retransmits()), static_cast<double>(truth),
              tolerance);
  // The pod's own (the sender's, in A) are on its flow to B.
  const double pods = static_cast<double>(a1["Tcp.RetransSegs"] - a0["Tcp.RetransSegs"]);
  std::printf("retransmits on the pod's flow: %llu, A's RetransSegs delta %.0f\n",
              static_cast<unsigned long long>(
                  TcpTrouble(*sample, Remote(net_.address_b()))[kPodUid].retransmits),
              pods);
  EXPECT_NEAR(
      static_cast<double>(TcpTrouble(*sample, Remote(net_.address_b()))[kPodUid].retransmits), pods,
      std::max(2.0, pods * 0.05));
  // Retransmitted segments are on the wire, and counted, as often as they are sent.
  auto egress = Flows(*sample, Remote(net_.address_b()), true);
  auto ingress = Flows(*sample, Remote(net_.address_b()), false);
  std::printf("under loss: egress counted %llu vs %llu on the wire, ingress %llu vs %llu\n",
              static_cast<unsigned long long>(egress[kPodUid].first),
              static_cast<unsigned long long>(WireOctetsOut(a0, a1)),
              static_cast<unsigned long long>(ingress[kPodUid].first),
              static_cast<unsigned long long>(WireOctetsIn(a0, a1)));
  EXPECT_EQ(egress[kPodUid].first, WireOctetsOut(a0, a1));
  EXPECT_EQ(egress[kPodUid].second, SegmentsOut(a0, a1));
  EXPECT_EQ(ingress[kPodUid].first, WireOctetsIn(a0, a1));
}

TEST_P(EbpfNetTest, RefusedAndSlowConnectsAreCounted) {
  auto collector = Collector();
  ASSERT_NE(collector, nullptr);
  ASSERT_TRUE(collector->CollectOnce().ok());
  // Refused: nothing listens on 5999 in B, which answers each SYN with a reset.
  ASSERT_EQ(RunChild(pod_cgroup_, net_.a(),
                     [&] {
                       for (int i = 0; i < 5; ++i) {
                         if (SendTcp(net_.address_b(), 5999, 1) != ECONNREFUSED) return 1;
                       }
                       return 0;
                     }),
            0);
  auto sample = collector->CollectOnce();
  ASSERT_TRUE(sample.ok());
  EXPECT_GE(sample->tcp_failed_connects(), 5u);
  EXPECT_LE(sample->tcp_failed_connects(), 7u);
  // ... and on the pod's flow to B.
  auto trouble = TcpTrouble(*sample, Remote(net_.address_b()))[kPodUid];
  EXPECT_EQ(trouble.failed_connects, 5u) << sample->DebugString();
  EXPECT_EQ(trouble.resets, 5u) << "the 5 resets A received, on the pod's flow";
  // 5 received by A (B's 5 resets for a port nobody listens on count as sent only on 6.10+).
  EXPECT_GE(sample->tcp_resets(), 5u);

  // Slow: the first SYN of every connect to 5203 is dropped, so each takes one SYN timeout (1 s).
  ASSERT_EQ(Nft(net_.b(),
                "table inet nwslow {\n chain input {\n type filter hook input priority 0;\n"
                " tcp dport 5203 tcp flags syn numgen inc mod 2 == 0 drop\n }\n}"),
            "");
  TcpSink sink(net_.b(), net_.address_b(), 5203);
  ASSERT_EQ(RunChild(pod_cgroup_, net_.a(),
                     [&] {
                       return SendTcp(net_.address_b(), 5203, 100) ||
                              SendTcp(net_.address_b(), 5203, 100);
                     }),
            0);
  sample = collector->CollectOnce();
  ASSERT_TRUE(sample.ok());
  EXPECT_GE(sample->tcp_connects(), 2u);
  uint64_t slow = 0;  // at least 2^19 µs = 0.52 s
  for (int i = 19; i < sample->connect_latency_log2_us_size(); ++i) {
    slow += sample->connect_latency_log2_us(i);
  }
  EXPECT_GE(slow, 2u) << sample->DebugString();
  EXPECT_LE(slow, 3u);
  // The same connects (about 1 s each, or a few ms) are the slow ones on the pod's flow to B.
  EXPECT_EQ(TcpTrouble(*sample, Remote(net_.address_b()))[kPodUid].slow_connects, slow);
}

TEST_P(EbpfNetTest, AFullFlowMapCountsWhatItCouldNotKeep) {
  auto collector = Collector(/*flow_entries=*/4);
  ASSERT_NE(collector, nullptr);
  ASSERT_EQ(
      Shell("ip netns exec " + net_.a() + " ip route add 10.202.0.0/24 dev " + net_.device_a()), 0);
  ASSERT_TRUE(collector->CollectOnce().ok());
  ASSERT_EQ(RunChild(pod_cgroup_, net_.a(),
                     [&] {
                       for (int i = 1; i <= 16; ++i) {
                         if (SendUdp("10.202.0." + std::to_string(i), 5300, 1, 100) != 0) return 1;
                       }
                       return 0;
                     }),
            0);
  auto sample = collector->CollectOnce();
  ASSERT_TRUE(sample.ok());
  EXPECT_LE(sample->flows_size(), 4);
  EXPECT_GE(sample->flows_size(), 1);
  EXPECT_EQ(sample->flows_size() + static_cast<int>(sample->dropped_flows()), 16)
      << "each datagram is either in a flow or counted as a dropped packet";
  EXPECT_EQ(collector->counters().flow_map_full.load(), sample->dropped_flows());
  bool flows_map_listed = false;
  for (const auto& m : collector->source().Maps()) {
    if (m.name == "flows") {
      flows_map_listed = true;
      EXPECT_EQ(m.max_entries, 4u);
      EXPECT_LE(m.entries, 4u);
      EXPECT_GT(m.memory_bytes, 0u);
    }
  }
  EXPECT_TRUE(flows_map_listed);
}

TEST_P(EbpfNetTest, IdleFlowsLeaveTheKernelMapWithoutLosingCounts) {
  auto collector = Collector();
  ASSERT_NE(collector, nullptr);
  ASSERT_TRUE(collector->CollectOnce().ok());
  ASSERT_EQ(
      RunChild(pod_cgroup_, net_.a(), [&] { return SendUdp(net_.address_b(), 5300, 10, 100); }), 0);
  uint64_t total = 0;
  for (int i = 0; i < 5; ++i) {
    auto sample = collector->CollectOnce();
    ASSERT_TRUE(sample.ok());
    for (const auto& f : sample->flows()) total += f.packets();
  }
  EXPECT_EQ(total, 10u);
  EXPECT_EQ(collector->counters().flows_evicted.load(), 1u);
  for (const auto& m : collector->source().Maps()) {
    if (m.name == "flows") {
      EXPECT_EQ(m.entries, 0u);
    }
  }
}

TEST_P(EbpfNetTest, LoadFailuresAreClearAndWhatCannotRunIsSwitchedOff) {
  NetProgramOptions missing_cgroup = Options();
  missing_cgroup.cgroup_path += "/does-not-exist";
  auto missing = Load(missing_cgroup);
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("--bpf-cgroup"), std::string::npos) << missing.status();

  // A map the kernel refuses (zero entries) fails the load with the kernel's reason.
  auto refused = Load(Options(/*flow_entries=*/0));
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("refused"), std::string::npos) << refused.status();

  // TCP programs off: the byte counters still work and the switched-off ones say why.
  NetProgramOptions no_tcp = Options();
  no_tcp.tcp = false;
  auto program = Load(no_tcp);
  ASSERT_TRUE(program.ok()) << program.status();
  int loaded = 0, off = 0;
  for (const auto& p : (*program)->Programs()) {
    if (p.loaded) {
      ++loaded;
    } else {
      ++off;
      // The TCP tracepoints say --bpf-tcp; on the packet path the UDP folds say why too.
      if (p.name.rfind("nw_fold_", 0) != 0) {
        EXPECT_NE(p.why_off.find("--bpf-tcp"), std::string::npos) << p.name;
      } else {
        EXPECT_FALSE(p.why_off.empty()) << p.name;
      }
    }
  }
  // The counters, and on the socket path the UDP socket folds; off: the TCP tracepoints
  // (nw_tcp_state among them: no close fold), and on the packet path the folds.
  EXPECT_EQ(loaded, sockets() ? 4 : 2);
  EXPECT_EQ(off, sockets() ? 4 : 6);
  for (const SignalPath& path : (*program)->Paths()) {
    if (path.signal == "tcp_events") {
      EXPECT_EQ(path.path, "off");
    }
    if (path.signal == "tcp_bytes") {
      EXPECT_EQ(path.path, "packet");
      EXPECT_FALSE(path.why.empty());
    }
  }
  ASSERT_EQ(
      RunChild(pod_cgroup_, net_.a(), [&] { return SendUdp(net_.address_b(), 5300, 3, 100); }), 0);
  std::vector<std::pair<FlowKey, FlowTotals>> flows;
  ASSERT_TRUE((*program)->ReadFlows(flows).ok());
  uint64_t packets = 0;
  for (const auto& [key, totals] : flows) packets += totals.packets;
  EXPECT_EQ(packets, 3u);

  // Without the TCP programs there is no close fold: TCP is counted per packet, the same bytes.
  TcpSink sink(net_.b(), net_.address_b(), 5206);
  auto before = NetCounters(net_.a());
  ASSERT_EQ(
      RunChild(pod_cgroup_, net_.a(), [&] { return SendTcp(net_.address_b(), 5206, 1 << 20); }), 0);
  auto after = NetCounters(net_.a());
  flows.clear();
  ASSERT_TRUE((*program)->ReadFlows(flows).ok());
  uint64_t bytes = 0;
  for (const auto& [key, totals] : flows) {
    if (key.egress && key.remote == Remote(net_.address_b())) bytes += totals.bytes;
  }
  EXPECT_EQ(bytes - 3 * 128, WireOctetsOut(before, after));
  program->reset();

  // Counting from sockets switched off: every fold says why, and UDP is counted per packet.
  NetProgramOptions packets_only = Options();
  packets_only.sockets = false;
  auto per_packet = BpfNetProgram::Load(packets_only);
  ASSERT_TRUE(per_packet.ok()) << per_packet.status();
  for (const auto& p : (*per_packet)->Programs()) {
    EXPECT_EQ(p.loaded, p.name.rfind("nw_fold_", 0) != 0) << p.name << ": " << p.why_off;
  }
  ASSERT_EQ(
      RunChild(pod_cgroup_, net_.a(), [&] { return SendUdp(net_.address_b(), 5300, 5, 100); }), 0);
  flows.clear();
  ASSERT_TRUE((*per_packet)->ReadFlows(flows).ok());
  packets = 0;
  for (const auto& [key, totals] : flows) packets += totals.packets;
  EXPECT_EQ(packets, 5u);
}

TEST_P(EbpfNetTest, EveryProgramLoadsAndReportsItsRunTime) {
  auto stats = BpfStatsScope::Enable();
  ASSERT_TRUE(stats.ok()) << stats.status();
  auto program = Load(Options());
  ASSERT_TRUE(program.ok()) << program.status();
  TcpSink sink(net_.b(), net_.address_b(), 5204), held_sink(net_.b(), net_.address_b(), 5207);
  HeldConnection open(pod_cgroup_, net_.a(), net_.address_b(), 5207);
  ASSERT_TRUE(open.Send(64 << 10));
  ASSERT_EQ(
      RunChild(pod_cgroup_, net_.a(), [&] { return SendTcp(net_.address_b(), 5204, 1 << 20); }), 0);
  ASSERT_EQ(
      RunChild(pod_cgroup_, net_.a(), [&] { return SendUdp(net_.address_b(), 5300, 3, 100); }), 0);
  std::vector<std::pair<FlowKey, FlowTotals>> flows;
  ASSERT_TRUE((*program)->ReadFlows(flows).ok());  // runs the socket fold over `open`
  // The TCP state program is nw_fold_tcp_state on the socket path (with the close fold),
  // nw_tcp_state on the packet path: one of them is listed. On the packet path the folds are
  // listed, off, with the reason.
  EXPECT_EQ((*program)->Programs().size(), 8u);
  for (const auto& p : (*program)->Programs()) {
    const bool fold = p.name == "nw_fold_sockets" || p.name == "nw_fold_udp_release";
    if (fold && !sockets()) {
      EXPECT_FALSE(p.loaded) << p.name;
      EXPECT_NE(p.why_off.find("switched off"), std::string::npos) << p.name << ": " << p.why_off;
      continue;
    }
    EXPECT_TRUE(p.loaded) << p.name << ": " << p.why_off;
    if (p.name == "nw_count_egress" || p.name == "nw_count_ingress" || fold ||
        p.name == "nw_fold_tcp_state" || p.name == "nw_tcp_state") {
      EXPECT_GT(p.run_count, 0u) << p.name;
      EXPECT_GT(p.run_time_ns, 0u) << p.name;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Paths, EbpfNetTest,
                         ::testing::Values(CountingMode::kSockets, CountingMode::kPackets),
                         ModeName);

// Closed sockets, on the socket path without its iterator too: every count reaches the flows map
// through the folds at close (TCP's in nw_fold_tcp_state, UDP's in nw_fold_udp_release), exactly.
class EbpfClosedSocketTest : public EbpfNetTest {};

TEST_P(EbpfClosedSocketTest, ClosedConnectionsAndSocketsAreCountedExactly) {
  auto program = Load(Options());
  ASSERT_TRUE(program.ok()) << program.status();
  auto flows_to_b = [&](bool egress) {
    std::vector<std::pair<FlowKey, FlowTotals>> flows;
    EXPECT_TRUE((*program)->ReadFlows(flows).ok());
    std::pair<uint64_t, uint64_t> sum;  // bytes, packets
    std::vector<FlowKey> keys;
    for (const auto& [key, totals] : flows) {
      keys.push_back(key);
      if (key.remote == Remote(net_.address_b()) && key.egress == egress) {
        sum.first += totals.bytes;
        sum.second += totals.packets;
      }
    }
    return std::pair{sum, keys};
  };
  auto empty_the_map = [&] {
    std::vector<std::pair<FlowKey, FlowTotals>> taken;
    ASSERT_TRUE((*program)->TakeFlows(flows_to_b(true).second, taken).ok());
  };

  // TCP: 4 MiB from the pod, the connection closed.
  TcpSink sink(net_.b(), net_.address_b(), 5208);
  auto before = NetCounters(net_.a());
  ASSERT_EQ(
      RunChild(pod_cgroup_, net_.a(), [&] { return SendTcp(net_.address_b(), 5208, 4 << 20); }), 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  auto after = NetCounters(net_.a());
  const auto egress = flows_to_b(true).first, ingress = flows_to_b(false).first;
  std::printf("closed tcp: egress counted %llu vs %llu on the wire, ingress %llu vs %llu\n",
              static_cast<unsigned long long>(egress.first),
              static_cast<unsigned long long>(WireOctetsOut(before, after)),
              static_cast<unsigned long long>(ingress.first),
              static_cast<unsigned long long>(WireOctetsIn(before, after)));
  EXPECT_EQ(egress.first, WireOctetsOut(before, after));
  EXPECT_EQ(egress.second, SegmentsOut(before, after));
  EXPECT_EQ(ingress.first, WireOctetsIn(before, after));
  EXPECT_EQ(ingress.second, after["Tcp.InSegs"] - before["Tcp.InSegs"]);
  empty_the_map();

  // UDP: a connected socket on one CPU, 1,000 datagrams of 200 bytes echoed (it gets its entry on
  // the way on the socket path), then closed.
  UdpEcho echo(net_.b(), 5313);
  before = NetCounters(net_.a());
  ASSERT_EQ(RunChild(pod_cgroup_, net_.a(),
                     [&] {
                       return PinToOneCpu() ? ExchangeUdp(net_.address_b(), 5313, 1000, 200) : 1;
                     }),
            0);
  after = NetCounters(net_.a());
  const auto udp_egress = flows_to_b(true).first, udp_ingress = flows_to_b(false).first;
  EXPECT_EQ(udp_egress, (std::pair<uint64_t, uint64_t>(1000 * 228, 1000)));
  EXPECT_EQ(udp_ingress, (std::pair<uint64_t, uint64_t>(1000 * 228, 1000)));
  EXPECT_EQ(udp_egress.first, after["IpExt.OutOctets"] - before["IpExt.OutOctets"]);
  EXPECT_EQ(udp_ingress.first, after["IpExt.InOctets"] - before["IpExt.InOctets"]);
}

INSTANTIATE_TEST_SUITE_P(Paths, EbpfClosedSocketTest,
                         ::testing::Values(CountingMode::kSockets,
                                           CountingMode::kSocketsFoldedAtClose,
                                           CountingMode::kPackets),
                         ModeName);

// The probe's answers against the loader's: what the probe says this kernel runs loads, and a
// path it says cannot run is switched off before loading, with the probe's reason. Prints the
// features and the paths (every make test says how this kernel counts).
TEST(KernelFeaturesTest, TheProbeAgreesWithWhatTheKernelLoads) {
  ASSERT_EQ(geteuid(), 0u) << "the eBPF tests must run as root (CI runs them as root)";
  ASSERT_EQ(nodewatch::testing::EnsureKernelMounts(), "");
  const KernelFeatures& features = Features();
  const CountingPlan plan = PlanCounting(features, {});
  std::printf("kernel features: %s\ncounting paths: %s\n", features.Describe().c_str(),
              plan.Describe().c_str());
  for (const auto& [name, probe] : features.List()) {
    EXPECT_EQ(probe->available, probe->why_not.empty()) << name;
  }
  ASSERT_TRUE(features.cgroup_skb.available) << features.Describe();
  TestCgroup cgroup("nodewatch-probe-" + std::to_string(getpid()));
  ASSERT_TRUE(cgroup.ok()) << cgroup.error();
  auto program = BpfNetProgram::Load({.cgroup_path = cgroup.path(), .features = &features});
  ASSERT_TRUE(program.ok()) << program.status();
  // The loader ends on the planned paths: no refusal the probe did not foresee.
  for (const SignalPath& loaded : (*program)->Paths()) {
    for (const SignalPath& planned : plan.List()) {
      if (planned.signal != loaded.signal) continue;
      EXPECT_EQ(loaded.path, planned.path) << loaded.signal << ": " << loaded.why;
      EXPECT_EQ(loaded.why, planned.why) << loaded.signal;
    }
  }
  // Each fold the probe rules out is off with the probe's reason, never loaded.
  for (const auto& p : (*program)->Programs()) {
    if (p.name == "nw_fold_sockets" && !features.socket_storage_iterator.available) {
      EXPECT_FALSE(p.loaded);
      EXPECT_NE(p.why_off.find(features.socket_storage_iterator.why_not), std::string::npos)
          << p.why_off;
    }
  }
}

}  // namespace
}  // namespace nodewatch::agent
