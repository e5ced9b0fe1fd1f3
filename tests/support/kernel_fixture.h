// Kernel test fixtures for the eBPF tests (run as root; CI runs them as root and a missing
// privilege is a failure, never a skip):
//   - NetnsPair: two network namespaces joined by a veth pair, static neighbours and IPv6 off (or
//     on, without link-local addresses, duplicate address detection or router solicitations) so
//     that the only IP traffic is the test's own (then /proc/net/netstat is ground truth).
//   - TestCgroup: a cgroup v2 directory of the test's own, removed at the end.
//   - RunInNetns / RunChild: code on a thread inside a namespace, or in a child process placed in a
//     cgroup and a namespace (sockets take the cgroup of the process that creates them).
//   - LoopDevice: a loop device over a file, detached at the end.
//   - SocketAddress, UdpEcho: an IPv4/IPv6 socket address; a UDP echo server in a namespace.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <thread>

namespace nodewatch::testing {

// Runs a shell command; returns its exit status and appends its output to `output` if given.
int Shell(const std::string& command, std::string* output = nullptr);

// Mounts bpffs at /sys/fs/bpf and tracefs at /sys/kernel/tracing when absent. Returns "" or why
// it could not.
std::string EnsureKernelMounts();

class NetnsPair {
 public:
  // Namespaces "<prefix>a"/"<prefix>b", addresses 10.<subnet>.0.1 (a) and .2 (b), and with
  // `ipv6` also fd00:<subnet>::1 (a) and ::2 (b).
  NetnsPair(const std::string& prefix, int subnet, bool ipv6 = false);
  ~NetnsPair();
  bool ok() const { return error_.empty(); }
  const std::string& error() const { return error_; }
  const std::string& a() const { return a_; }
  const std::string& b() const { return b_; }
  std::string address_a() const;
  std::string address_b() const;
  std::string address6_a() const;
  std::string address6_b() const;
  std::string device_a() const { return dev_a_; }
  std::string device_b() const { return dev_b_; }

 private:
  std::string a_, b_, dev_a_, dev_b_, error_;
  int subnet_;
};

// Runs `fn` on a new thread that has entered netns `name` (/var/run/netns/<name>), and waits.
void RunInNetns(const std::string& name, const std::function<void()>& fn);

// Forks a child that joins `cgroup_dir` and netns `netns` ("" keeps the current), runs `fn` and
// exits with its return value (101/102 if it could not join). Returns the child's pid (-1 if the
// fork failed); the caller waits for it.
pid_t StartChild(const std::string& cgroup_dir, const std::string& netns,
                 const std::function<int()>& fn);
// StartChild, then waits. Returns the exit status (-1 if it did not exit normally).
int RunChild(const std::string& cgroup_dir, const std::string& netns,
             const std::function<int()>& fn);

// Counters of /proc/thread-self/net/{snmp,netstat} ("Tcp.RetransSegs", "IpExt.OutOctets"...) as
// seen from netns `name` ("" for the current one).
std::map<std::string, uint64_t> NetCounters(const std::string& netns);

class TestCgroup {
 public:
  // Creates <cgroup2 mount>/<name> (and removes it, children first, at the end).
  explicit TestCgroup(const std::string& name);
  ~TestCgroup();
  bool ok() const { return error_.empty(); }
  const std::string& error() const { return error_; }
  const std::string& path() const { return path_; }
  // Creates a subdirectory (relative path, parents included); returns its full path.
  std::string Make(const std::string& relative);

 private:
  std::string path_, error_;
};

class LoopDevice {
 public:
  LoopDevice(const std::string& backing_file, uint64_t bytes);
  ~LoopDevice();
  bool ok() const { return error_.empty(); }
  const std::string& error() const { return error_; }
  const std::string& device() const { return device_; }  // "/dev/loop3"
  std::string name() const;                              // "loop3"

 private:
  std::string file_, device_, error_;
};

// The /proc/diskstats line of `name`: {"reads", "read_sectors", "writes", "write_sectors"} and,
// where the kernel has it, "flushes".
std::map<std::string, uint64_t> DiskStats(const std::string& name);

// address:port as a socket address of its family ("" = any IPv4 address).
struct SocketAddress {
  SocketAddress(const std::string& address, int port) {
    if (address.find(':') != std::string::npos) {
      auto* in6 = reinterpret_cast<sockaddr_in6*>(&storage);
      in6->sin6_family = AF_INET6;
      in6->sin6_port = htons(port);
      inet_pton(AF_INET6, address.c_str(), &in6->sin6_addr);
      length = sizeof(sockaddr_in6);
    } else {
      auto* in = reinterpret_cast<sockaddr_in*>(&storage);
      in->sin_family = AF_INET;
      in->sin_port = htons(port);
      if (!address.empty()) inet_pton(AF_INET, address.c_str(), &in->sin_addr);
      length = sizeof(sockaddr_in);
    }
  }
  int family() const { return storage.ss_family; }
  const sockaddr* get() const { return reinterpret_cast<const sockaddr*>(&storage); }
  sockaddr_storage storage{};
  socklen_t length = 0;
};

// A UDP server in a namespace on every address, `port`: echoes the datagrams that start with 'e'
// back to their sender, drops the others. Stops at destruction.
class UdpEcho {
 public:
  // `any`: "" for every IPv4 address, "::" for every address.
  UdpEcho(const std::string& netns, int port, const std::string& any = "");
  ~UdpEcho();

 private:
  std::thread thread_;
  std::atomic<bool> stop_{false};
};

}  // namespace nodewatch::testing
