#include "agent/collectors/host/host_probe.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "common/file_util.h"

namespace nodewatch::agent {
namespace {

std::string OsImage() {
  auto text = ReadFileToString("/etc/os-release");
  if (!text.ok()) return "";
  for (absl::string_view line : absl::StrSplit(*text, '\n')) {
    if (absl::ConsumePrefix(&line, "PRETTY_NAME=")) {
      absl::ConsumePrefix(&line, "\"");
      absl::ConsumeSuffix(&line, "\"");
      return std::string(line);
    }
  }
  return "";
}

}  // namespace

uint64_t PersistentDiskBytes(const std::string& sys_block) {
  std::error_code ec;
  uint64_t total = 0;
  for (const auto& entry : std::filesystem::directory_iterator(sys_block, ec)) {
    const std::string name = entry.path().filename().string();
    bool stacked = false;
    for (const char* prefix : {"loop", "ram", "zram", "dm-", "md", "sr", "nbd", "fd"}) {
      stacked = stacked || absl::StartsWith(name, prefix);
    }
    if (stacked) continue;
    auto model = ReadFileToString(entry.path().string() + "/device/model");
    const std::string m = model.ok() ? std::string(absl::StripAsciiWhitespace(*model)) : "";
    if (absl::StrContains(m, "Instance Storage") || m == "nvme_card" || m == "EphemeralDisk") {
      continue;
    }
    auto sectors_text = ReadFileToString(entry.path().string() + "/size");
    uint64_t sectors = 0;  // always 512-byte units, whatever the device's block size
    if (sectors_text.ok() &&
        absl::SimpleAtoi(absl::StripAsciiWhitespace(*sectors_text), &sectors)) {
      total += sectors * 512;
    }
  }
  return total;
}

nodewatch::v1::NodeInfo HostProbeImpl::ReadNodeInfo() {
  nodewatch::v1::NodeInfo info;
  info.set_provider("none");
  utsname uts{};
  if (uname(&uts) == 0) {
    info.set_hostname(uts.nodename);
    info.set_kernel_release(uts.release);
    info.set_architecture(uts.machine);
  }
  info.set_os_image(OsImage());
  info.set_persistent_disk_bytes(PersistentDiskBytes(sys_block_));
  ifaddrs* addrs = nullptr;
  if (getifaddrs(&addrs) == 0) {
    std::set<std::pair<std::string, std::string>> seen;  // sorted: stable NodeInfo for diffing
    for (ifaddrs* a = addrs; a != nullptr; a = a->ifa_next) {
      if (a->ifa_addr == nullptr || (a->ifa_flags & IFF_LOOPBACK) || !(a->ifa_flags & IFF_UP)) {
        continue;
      }
      char buf[INET6_ADDRSTRLEN] = {};
      if (a->ifa_addr->sa_family == AF_INET) {
        inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(a->ifa_addr)->sin_addr, buf, sizeof buf);
        seen.emplace("InternalIP", buf);
      } else if (a->ifa_addr->sa_family == AF_INET6) {
        auto* in6 = reinterpret_cast<sockaddr_in6*>(a->ifa_addr);
        if (IN6_IS_ADDR_LINKLOCAL(&in6->sin6_addr)) continue;
        inet_ntop(AF_INET6, &in6->sin6_addr, buf, sizeof buf);
        seen.emplace("InternalIPv6", buf);
      }
    }
    freeifaddrs(addrs);
    for (const auto& [type, address] : seen) {
      auto* a = info.add_addresses();
      a->set_type(type);
      a->set_address(address);
    }
  }
  return info;
}

HostStats HostProbeImpl::ReadStats() {
  HostStats stats;
  if (auto up = ReadFileToString(proc_root_ + "/uptime"); up.ok()) {
    double seconds = 0;
    std::vector<std::string> parts = absl::StrSplit(*up, ' ');
    if (!parts.empty() && absl::SimpleAtod(parts[0], &seconds)) {
      stats.uptime_seconds = static_cast<uint64_t>(seconds);
    }
  }
  if (auto load = ReadFileToString(proc_root_ + "/loadavg"); load.ok()) {
    std::vector<std::string> parts = absl::StrSplit(*load, ' ');
    if (!parts.empty()) (void)absl::SimpleAtod(parts[0], &stats.load1);
  }
  if (auto mem = ReadFileToString(proc_root_ + "/meminfo"); mem.ok()) {
    for (absl::string_view line : absl::StrSplit(*mem, '\n')) {
      uint64_t* target = nullptr;
      if (absl::ConsumePrefix(&line, "MemTotal:")) target = &stats.memory_total_bytes;
      if (absl::ConsumePrefix(&line, "MemAvailable:")) target = &stats.memory_available_bytes;
      if (target == nullptr) continue;
      line = absl::StripAsciiWhitespace(line);
      absl::ConsumeSuffix(&line, " kB");
      uint64_t kb = 0;
      if (absl::SimpleAtoi(line, &kb)) *target = kb * 1024;
    }
  }
  // Our own RSS from /proc/self/statm (pages), independent of proc_root_.
  if (auto statm = ReadFileToString("/proc/self/statm"); statm.ok()) {
    std::vector<std::string> parts = absl::StrSplit(*statm, ' ');
    uint64_t pages = 0;
    if (parts.size() > 1 && absl::SimpleAtoi(parts[1], &pages)) {
      stats.self_rss_bytes = pages * static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
    }
  }
  return stats;
}

std::string HostProbeImpl::BootId() {
  auto id = ReadFileToString(proc_root_ + "/sys/kernel/random/boot_id");
  if (!id.ok()) return "";
  return std::string(absl::StripAsciiWhitespace(*id));
}

}  // namespace nodewatch::agent
