#include "tests/support/kernel_fixture.h"

#include <fcntl.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>
#include <vector>

#include "agent/collectors/ebpf/bpf_support.h"

namespace nodewatch::testing {

int Shell(const std::string& command, std::string* output) {
  FILE* pipe = popen(("(" + command + ") 2>&1").c_str(), "r");
  if (pipe == nullptr) return -1;
  std::array<char, 4096> buffer{};
  std::string out;
  while (size_t n = fread(buffer.data(), 1, buffer.size(), pipe)) out.append(buffer.data(), n);
  int status = pclose(pipe);
  if (output != nullptr) *output += out;
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

std::string EnsureKernelMounts() {
  struct Fs {
    const char* path;
    const char* type;
    long magic;
  };
  const Fs wanted[] = {{"/sys/fs/bpf", "bpf", 0xcafe4a11},
                       {"/sys/kernel/tracing", "tracefs", 0x74726163}};
  for (const auto& fs : wanted) {
    struct statfs st {};
    if (statfs(fs.path, &st) == 0 && static_cast<long>(st.f_type) == fs.magic) continue;
    mkdir(fs.path, 0755);
    if (mount(fs.type, fs.path, fs.type, 0, nullptr) != 0) {
      return std::string("cannot mount ") + fs.type + " at " + fs.path + ": " + strerror(errno);
    }
  }
  return "";
}

NetnsPair::NetnsPair(const std::string& prefix, int subnet, bool ipv6) : subnet_(subnet) {
  a_ = prefix + "a";
  b_ = prefix + "b";
  dev_a_ = prefix + "va";
  dev_b_ = prefix + "vb";
  const std::string a = "ip netns exec " + a_ + " ";
  const std::string b = "ip netns exec " + b_ + " ";
  std::string out;
  auto run = [&](const std::string& cmd) {
    if (!error_.empty()) return;
    if (Shell(cmd, &out) != 0) error_ = "`" + cmd + "` failed: " + out;
  };
  std::string ignored;
  Shell("ip netns del " + a_ + "; ip netns del " + b_, &ignored);  // leftovers of a killed run
  run("ip netns add " + a_);
  run("ip netns add " + b_);
  for (const std::string& ns : {a, b}) {
    if (ipv6) {
      // Before the veth exists, so that it starts quiet: no link-local address (nothing to
      // solicit routers or announce from), no duplicate address detection.
      for (const char* conf : {"all", "default"}) {
        run(ns + "sysctl -qw net.ipv6.conf." + conf + ".addr_gen_mode=1");
        run(ns + "sysctl -qw net.ipv6.conf." + conf + ".accept_dad=0");
        run(ns + "sysctl -qw net.ipv6.conf." + conf + ".router_solicitations=0");
      }
    } else {
      run(ns + "sysctl -qw net.ipv6.conf.all.disable_ipv6=1");
      run(ns + "sysctl -qw net.ipv6.conf.default.disable_ipv6=1");
    }
  }
  run("ip link add " + dev_a_ + " netns " + a_ + " type veth peer name " + dev_b_ + " netns " + b_);
  const std::string mac = "02:00:00:00:" + std::to_string(subnet % 100) + ":0";
  run(a + "ip addr add " + address_a() + "/24 dev " + dev_a_);
  run(b + "ip addr add " + address_b() + "/24 dev " + dev_b_);
  run(a + "ip link set " + dev_a_ + " address " + mac + "1");
  run(b + "ip link set " + dev_b_ + " address " + mac + "2");
  if (ipv6) {
    run(a + "ip -6 addr add " + address6_a() + "/64 dev " + dev_a_ + " nodad");
    run(b + "ip -6 addr add " + address6_b() + "/64 dev " + dev_b_ + " nodad");
  }
  run(a + "ip link set " + dev_a_ + " up");
  run(b + "ip link set " + dev_b_ + " up");
  // Static neighbours: no ARP or neighbour discovery, so the veth carries only the test's packets.
  run(a + "ip neigh replace " + address_b() + " lladdr " + mac + "2 dev " + dev_a_ +
      " nud permanent");
  run(b + "ip neigh replace " + address_a() + " lladdr " + mac + "1 dev " + dev_b_ +
      " nud permanent");
  if (ipv6) {
    run(a + "ip -6 neigh replace " + address6_b() + " lladdr " + mac + "2 dev " + dev_a_ +
        " nud permanent");
    run(b + "ip -6 neigh replace " + address6_a() + " lladdr " + mac + "1 dev " + dev_b_ +
        " nud permanent");
  }
}

NetnsPair::~NetnsPair() { Shell("ip netns del " + a_ + "; ip netns del " + b_); }

std::string NetnsPair::address_a() const { return "10." + std::to_string(subnet_) + ".0.1"; }
std::string NetnsPair::address_b() const { return "10." + std::to_string(subnet_) + ".0.2"; }
std::string NetnsPair::address6_a() const { return "fd00:" + std::to_string(subnet_) + "::1"; }
std::string NetnsPair::address6_b() const { return "fd00:" + std::to_string(subnet_) + "::2"; }

namespace {

bool EnterNetns(const std::string& name) {
  if (name.empty()) return true;
  int fd = open(("/var/run/netns/" + name).c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  bool ok = setns(fd, CLONE_NEWNET) == 0;
  close(fd);
  return ok;
}

}  // namespace

void RunInNetns(const std::string& name, const std::function<void()>& fn) {
  std::thread thread([&] {
    if (!EnterNetns(name)) {
      fprintf(stderr, "cannot enter netns %s: %s\n", name.c_str(), strerror(errno));
      return;
    }
    fn();
  });
  thread.join();
}

pid_t StartChild(const std::string& cgroup_dir, const std::string& netns,
                 const std::function<int()>& fn) {
  pid_t pid = fork();
  if (pid == 0) {
    if (!cgroup_dir.empty()) {
      int fd = open((cgroup_dir + "/cgroup.procs").c_str(), O_WRONLY | O_CLOEXEC);
      if (fd < 0 || write(fd, "0", 1) != 1) _exit(101);
      close(fd);
    }
    if (!EnterNetns(netns)) _exit(102);
    _exit(fn());
  }
  return pid;
}

int RunChild(const std::string& cgroup_dir, const std::string& netns,
             const std::function<int()>& fn) {
  pid_t pid = StartChild(cgroup_dir, netns, fn);
  if (pid < 0) return -1;
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

std::map<std::string, uint64_t> NetCounters(const std::string& netns) {
  std::map<std::string, uint64_t> counters;
  RunInNetns(netns, [&] {
    for (const char* file : {"/proc/thread-self/net/snmp", "/proc/thread-self/net/netstat"}) {
      std::ifstream in(file);
      std::string header, values;
      while (std::getline(in, header) && std::getline(in, values)) {
        std::istringstream h(header), v(values);
        std::string prefix, prefix2;
        h >> prefix;
        v >> prefix2;
        prefix.pop_back();  // "Tcp:" -> "Tcp"
        std::string name;
        uint64_t value = 0;
        while (h >> name) {
          std::string raw;
          if (!(v >> raw)) break;
          value = raw.empty() || raw[0] == '-' ? 0 : std::strtoull(raw.c_str(), nullptr, 10);
          counters[prefix + "." + name] = value;
        }
      }
    }
  });
  return counters;
}

TestCgroup::TestCgroup(const std::string& name) {
  auto root = nodewatch::agent::FindCgroup2Mount("/proc");
  if (!root.ok()) {
    error_ = std::string(root.status().message());
    return;
  }
  path_ = *root + "/" + name;
  Shell("find " + path_ + " -depth -type d -exec rmdir {} + 2>/dev/null");
  if (mkdir(path_.c_str(), 0755) != 0) error_ = "mkdir " + path_ + ": " + strerror(errno);
}

TestCgroup::~TestCgroup() {
  if (!path_.empty()) Shell("find " + path_ + " -depth -type d -exec rmdir {} + 2>/dev/null");
}

std::string TestCgroup::Make(const std::string& relative) {
  std::string path = path_;
  std::istringstream parts(relative);
  std::string part;
  while (std::getline(parts, part, '/')) {
    path += "/" + part;
    mkdir(path.c_str(), 0755);
  }
  return path;
}

LoopDevice::LoopDevice(const std::string& backing_file, uint64_t bytes) : file_(backing_file) {
  std::string out;
  if (Shell("truncate -s " + std::to_string(bytes) + " " + file_, &out) != 0) {
    error_ = "truncate: " + out;
    return;
  }
  out.clear();
  if (Shell("losetup --find --show " + file_, &out) != 0) {
    error_ = "losetup: " + out;
    return;
  }
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
  device_ = out;
}

LoopDevice::~LoopDevice() {
  if (!device_.empty()) Shell("losetup -d " + device_);
  if (!file_.empty()) unlink(file_.c_str());
}

std::string LoopDevice::name() const {
  auto slash = device_.rfind('/');
  return slash == std::string::npos ? device_ : device_.substr(slash + 1);
}

std::map<std::string, uint64_t> DiskStats(const std::string& name) {
  std::ifstream in("/proc/diskstats");
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream f(line);
    uint64_t major, minor;
    std::string dev;
    uint64_t reads, reads_merged, read_sectors, read_ms, writes, writes_merged, write_sectors;
    if (!(f >> major >> minor >> dev) || dev != name) continue;
    f >> reads >> reads_merged >> read_sectors >> read_ms >> writes >> writes_merged >>
        write_sectors;
    std::map<std::string, uint64_t> stats = {{"reads", reads},
                                             {"read_sectors", read_sectors},
                                             {"writes", writes},
                                             {"write_sectors", write_sectors}};
    // Fields 8-15 (write time to discard time), then flushes completed (Linux 5.5+).
    uint64_t skipped[8], flushes;
    for (uint64_t& field : skipped) f >> field;
    if (f >> flushes) stats["flushes"] = flushes;
    return stats;
  }
  return {};
}

UdpEcho::UdpEcho(const std::string& netns, int port, const std::string& any) {
  std::atomic<bool> ready{false};
  thread_ = std::thread([=, this, &ready] {
    RunInNetns(netns, [&] {
      const SocketAddress sa(any, port);
      int fd = socket(sa.family(), SOCK_DGRAM | SOCK_CLOEXEC, 0);
      timeval tick{.tv_sec = 0, .tv_usec = 50'000};
      setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tick, sizeof(tick));
      const bool bound = bind(fd, sa.get(), sa.length) == 0;
      ready = true;
      char buffer[65536];
      while (bound && !stop_) {
        sockaddr_storage from{};
        socklen_t from_len = sizeof(from);
        ssize_t n =
            recvfrom(fd, buffer, sizeof(buffer), 0, reinterpret_cast<sockaddr*>(&from), &from_len);
        if (n > 0 && buffer[0] == 'e')
          sendto(fd, buffer, n, 0, reinterpret_cast<sockaddr*>(&from), from_len);
      }
      close(fd);
    });
  });
  while (!ready) std::this_thread::sleep_for(std::chrono::milliseconds(5));
}

UdpEcho::~UdpEcho() {
  stop_ = true;
  thread_.join();
}

}  // namespace nodewatch::testing
