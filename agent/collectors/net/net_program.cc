#include "agent/collectors/net/net_program.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <optional>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "net.skel.h"
#include "nodewatch_bpf.h"

namespace nodewatch::agent {

namespace {

std::string Errno(int err) { return strerror(err < 0 ? -err : err); }

FlowKey ToFlowKey(const nw_flow_key& k) {
  FlowKey key;
  key.cgroup_id = k.cgroup_id;
  key.remote.assign(reinterpret_cast<const char*>(k.remote), k.family == 6 ? 16 : 4);
  key.egress = k.direction == NW_EGRESS;
  return key;
}

nw_flow_key FromFlowKey(const FlowKey& key) {
  nw_flow_key k{};
  k.cgroup_id = key.cgroup_id;
  std::memcpy(k.remote, key.remote.data(), std::min<size_t>(key.remote.size(), sizeof(k.remote)));
  k.family = key.remote.size() == 16 ? 6 : 4;
  k.direction = key.egress ? NW_EGRESS : NW_INGRESS;
  return k;
}

FlowTotals Trouble(const nw_tcp_trouble& t) {
  return {.tcp_retransmits = t.retransmits,
          .tcp_failed_connects = t.failed_connects,
          .tcp_resets = t.resets,
          .tcp_slow_connects = t.slow_connects};
}

FlowTotals SumFlow(const std::vector<nw_flow_value>& per_cpu) {
  FlowTotals t;
  for (const auto& v : per_cpu) t += {.bytes = v.bytes, .packets = v.packets};
  return t;
}

}  // namespace

absl::StatusOr<std::unique_ptr<BpfNetProgram>> BpfNetProgram::Load(
    const NetProgramOptions& options) {
  RouteLibbpfLogs();
  auto log = GetLogger("agent.bpf");
  const KernelFeatures probed =
      options.features != nullptr ? KernelFeatures{} : ProbeKernelFeatures();
  const KernelFeatures& features = options.features != nullptr ? *options.features : probed;
  const CountingPlan plan = PlanCounting(
      features, {.network = true, .tcp = options.tcp, .sockets = options.sockets, .block_io = false});
  if (plan.tcp_bytes.path == "off") {
    return absl::UnavailableError(absl::StrCat(
        "this kernel cannot run the network counters (", plan.tcp_bytes.why,
        "): no network counters; needs CONFIG_CGROUP_BPF and CAP_BPF/CAP_NET_ADMIN"));
  }
  std::unique_ptr<BpfNetProgram> self(new BpfNetProgram(options));
  self->cgroup_fd_ = open(options.cgroup_path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (self->cgroup_fd_ < 0) {
    return absl::NotFoundError(absl::StrCat("cannot open cgroup ", options.cgroup_path, ": ",
                                            Errno(errno), " (--bpf-cgroup)"));
  }
  // Why the TCP programs are off, and why TCP / UDP are counted per packet, if they are: known
  // from the probe before any attempt, so that a refusal is never blamed on parts not loaded.
  const std::string tcp_off = plan.tcp_events.path == "off" ? plan.tcp_events.why : "";
  const std::string tcp_sockets_off = plan.tcp_bytes.path == "socket" ? "" : plan.tcp_bytes.why;
  const std::string udp_sockets_off = plan.udp_bytes.path == "socket" ? "" : plan.udp_bytes.why;
  // Read once for every attempt below.
  self->btf_ = ReadKernelBtf(
      {"tcp_retransmit_skb", "inet_sock_set_state", "tcp_send_reset", "tcp_receive_reset"});
  // A refusal switches parts off and tries again, the part most likely to blame first: the socket
  // folds (compare-and-exchange, 5.12+), then the TCP programs with the folds back on (lockdown,
  // an old kernel), then both; the byte counters alone are the last attempt. Parts already off
  // (by option or probe) are not retried.
  struct Parts {  // which parts an attempt loads
    bool tcp, sockets;
    bool operator==(const Parts&) const = default;
  };
  absl::Status refused;
  std::string refused_with;                  // what the last refused attempt had on
  std::string tcp_refusal, sockets_refusal;  // the kernel's answer with only them to blame
  bool loaded = false;
  std::vector<Parts> tried;
  for (const Parts attempt :
       {Parts{.tcp = true, .sockets = true}, Parts{.tcp = true, .sockets = false},
        Parts{.tcp = false, .sockets = true}, Parts{.tcp = false, .sockets = false}}) {
    std::string tcp_why = tcp_off, tcp_sockets_why = tcp_sockets_off,
                udp_sockets_why = udp_sockets_off;
    if (!attempt.tcp && tcp_why.empty()) {
      tcp_why = absl::StrCat("kernel refused the TCP programs: ", tcp_refusal);
    }
    if (!attempt.sockets) {
      const std::string refused_folds =
          absl::StrCat("the kernel refused the socket folds: ", sockets_refusal);
      if (tcp_sockets_why.empty()) tcp_sockets_why = refused_folds;
      if (udp_sockets_why.empty()) udp_sockets_why = refused_folds;
    }
    const Parts parts{.tcp = tcp_why.empty(),
                      .sockets = tcp_sockets_why.empty() || udp_sockets_why.empty()};
    if (std::find(tried.begin(), tried.end(), parts) != tried.end()) continue;
    tried.push_back(parts);
    if (!refused.ok()) {
      log->warn("{}; retrying with {}", refused_with,
                absl::StrCat(
                    parts.tcp ? "the TCP programs" : "no TCP programs",
                    parts.sockets ? " and the socket folds" : ", every packet counted per packet"));
    }
    absl::Status status = self->OpenAndLoad(tcp_why, tcp_sockets_why, udp_sockets_why);
    if (status.ok()) status = self->AttachAll();
    if (status.ok()) {
      loaded = true;
      break;
    }
    if (absl::IsFailedPrecondition(status)) return status;  // the cgroup: nothing to switch off
    refused = status;
    if (parts.sockets && (sockets_refusal.empty() || !parts.tcp)) {
      sockets_refusal = std::string(status.message());
    }
    if (parts.tcp && !parts.sockets) tcp_refusal = std::string(status.message());
    refused_with = absl::StrCat("the kernel refused the network programs (TCP programs ",
                                parts.tcp ? "on" : "off", ", socket folds ",
                                parts.sockets ? "on" : "off", "): ", status.message());
  }
  if (!loaded) return refused;
  log->info("network counters on cgroup {} ({} flow entries): {}", options.cgroup_path,
            options.flow_entries, DescribePaths(self->Paths()));
  return self;
}

std::vector<SignalPath> BpfNetProgram::Paths() const {
  return {tcp_bytes_, udp_bytes_, tcp_events_};
}

absl::Status BpfNetProgram::AttachAll() {
  auto log = GetLogger("agent.bpf");
  // The folds come first in programs_: a connection handed to them by the cgroup_skb programs
  // must never miss them.
  for (auto& stats : programs_) {
    if (!stats.why_off.empty()) continue;
    bpf_program* program = bpf_object__find_program_by_name(skel_->obj, stats.name.c_str());
    const bool cgroup_skb = stats.attach.rfind("cgroup_skb", 0) == 0;
    const bool fold = stats.name.rfind("nw_fold_", 0) == 0;
    bpf_link* link = nullptr;
    if (stats.attach.rfind("iter/", 0) == 0) {
      union bpf_iter_link_info link_info {};
      link_info.map.map_fd = bpf_map__fd(skel_->maps.counted_sockets);
      DECLARE_LIBBPF_OPTS(bpf_iter_attach_opts, iter_options);
      iter_options.link_info = &link_info;
      iter_options.link_info_len = sizeof(link_info);
      link = fold_link_ = bpf_program__attach_iter(program, &iter_options);
    } else if (stats.attach.rfind("cgroup", 0) == 0) {
      link = bpf_program__attach_cgroup(program, cgroup_fd_);
    } else {
      link = bpf_program__attach(program);
    }
    if (link == nullptr) {
      const int err = errno;
      if (fold) {
        DetachAll();
        return absl::UnavailableError(
            absl::StrCat("cannot attach ", stats.attach, ": ", Errno(err)));
      }
      if (cgroup_skb) {
        DetachAll();
        return absl::FailedPreconditionError(absl::StrCat("cannot attach ", stats.attach, " to ",
                                                          options_.cgroup_path, ": ", Errno(err)));
      }
      stats.why_off = absl::StrCat("attach failed: ", Errno(err));
      log->warn("BPF program {} ({}) off: {}", stats.name, stats.attach, stats.why_off);
      continue;
    }
    if (link != fold_link_) links_.push_back(link);
    stats.loaded = true;
  }
  return absl::OkStatus();
}

void BpfNetProgram::DetachAll() {
  // Reverse order: the cgroup_skb programs (attached after the folds) go before them, so no
  // connection is handed to a fold that is already gone.
  for (auto it = links_.rbegin(); it != links_.rend(); ++it) bpf_link__destroy(*it);
  links_.clear();
  if (fold_link_ != nullptr) bpf_link__destroy(fold_link_);
  fold_link_ = nullptr;
}

absl::Status BpfNetProgram::FoldLiveSockets() {
  if (fold_link_ == nullptr) return absl::OkStatus();
  const int fd = bpf_iter_create(bpf_link__fd(fold_link_));
  if (fd < 0) {
    return absl::InternalError(absl::StrCat("cannot run the socket iterator: ", Errno(errno)));
  }
  // The program writes nothing: reading to the end runs it over every counted socket.
  char buffer[64];
  ssize_t n;
  while ((n = read(fd, buffer, sizeof(buffer))) > 0) {
  }
  const int err = errno;
  close(fd);
  if (n < 0) {
    return absl::InternalError(absl::StrCat("socket iterator: ", Errno(err)));
  }
  return absl::OkStatus();
}

absl::Status BpfNetProgram::OpenAndLoad(const std::string& tcp_off,
                                        const std::string& tcp_sockets_off,
                                        const std::string& udp_sockets_off) {
  auto log = GetLogger("agent.bpf");
  if (skel_ != nullptr) nw_net_bpf__destroy(skel_);
  programs_.clear();
  skel_ = nw_net_bpf__open();
  if (skel_ == nullptr) {
    return absl::InternalError(absl::StrCat("cannot open the network BPF object: ", Errno(errno)));
  }
  if (int err = bpf_map__set_max_entries(skel_->maps.flows, options_.flow_entries); err != 0) {
    return absl::InvalidArgumentError(absl::StrCat("flows map size: ", Errno(err)));
  }
  const std::map<std::string, int>& args = btf_.tracepoint_args;
  skel_->rodata->retransmit_has_err = args.at("tcp_retransmit_skb") >= 3;
  skel_->rodata->calibrate_empty = options_.calibrate_empty;
  // Counting from sockets needs the iterator over socket storage and the folds at close:
  // inet_sock_set_state (one of the TCP programs) for TCP, cgroup/sock_release for UDP. Without
  // them every packet is counted per packet: the same bytes, through the flows map.
  std::string tcp_why = tcp_sockets_off.empty() ? tcp_off : tcp_sockets_off;
  if (tcp_why.empty() && args.at("inet_sock_set_state") < 0) {
    tcp_why = "kernel has no tracepoint inet_sock_set_state";
  }
  const bool tcp_from_sockets = tcp_why.empty();
  const bool udp_from_sockets = udp_sockets_off.empty();
  skel_->rodata->tcp_from_sockets = tcp_from_sockets;
  skel_->rodata->udp_from_sockets = udp_from_sockets;
  tcp_bytes_ = {"tcp_bytes", tcp_from_sockets ? "socket" : "packet", tcp_why};
  udp_bytes_ = {"udp_bytes", udp_from_sockets ? "socket" : "packet", udp_sockets_off};
  tcp_events_ = {"tcp_events", tcp_off.empty() ? "tp_btf" : "off", tcp_off};
  // The folds come first: they attach before the counting programs hand sockets to them. When
  // TCP is counted from its sockets, nw_fold_tcp_state is loaded instead of nw_tcp_state: the
  // same work plus the close fold, one run per state change instead of two.
  if (tcp_from_sockets) {
    programs_.push_back({.name = "nw_fold_tcp_state", .attach = "tp_btf/inet_sock_set_state"});
  }
  bpf_program__set_autoload(skel_->progs.nw_fold_tcp_state, tcp_from_sockets);
  const std::string iterator_off =
      tcp_from_sockets || udp_from_sockets
          ? ""
          : (tcp_why == udp_sockets_off ? tcp_why : absl::StrCat("TCP: ", tcp_why, "; UDP: ",
                                                                 udp_sockets_off));
  programs_.push_back({.name = "nw_fold_udp_release",
                       .attach = "cgroup/sock_release",
                       .why_off = udp_sockets_off});
  programs_.push_back(
      {.name = "nw_fold_sockets", .attach = "iter/bpf_sk_storage_map", .why_off = iterator_off});
  bpf_program__set_autoload(skel_->progs.nw_fold_udp_release, udp_from_sockets);
  bpf_program__set_autoload(skel_->progs.nw_fold_sockets, iterator_off.empty());
  if (iterator_off.empty() && !options_.fold_live_sockets) {
    programs_.back().why_off = "switched off (tests: live sockets folded at close only)";
    bpf_program__set_autoload(skel_->progs.nw_fold_sockets, false);
  }

  struct Tracepoint {
    bpf_program* program;
    const char* tracepoint;
  };
  const Tracepoint tracepoints[] = {
      {skel_->progs.nw_tcp_retransmit, "tcp_retransmit_skb"},
      {skel_->progs.nw_tcp_state, "inet_sock_set_state"},
      {skel_->progs.nw_tcp_send_reset, "tcp_send_reset"},
      {skel_->progs.nw_tcp_receive_reset, "tcp_receive_reset"},
  };
  programs_.push_back({.name = "nw_count_egress", .attach = "cgroup_skb/egress"});
  programs_.push_back({.name = "nw_count_ingress", .attach = "cgroup_skb/ingress"});
  for (const auto& tp : tracepoints) {
    if (tp.program == skel_->progs.nw_tcp_state && tcp_from_sockets) {
      bpf_program__set_autoload(tp.program, false);  // nw_fold_tcp_state does its work
      continue;
    }
    ProgramStats stats{.name = bpf_program__name(tp.program),
                       .attach = absl::StrCat("tp_btf/", tp.tracepoint),
                       .why_off = tcp_off};
    if (stats.why_off.empty() && args.at(tp.tracepoint) < 0) {
      stats.why_off = absl::StrCat("kernel has no tracepoint ", tp.tracepoint);
    }
    if (!stats.why_off.empty()) {
      bpf_program__set_autoload(tp.program, false);
      log->warn("BPF program {} ({}) off: {}", stats.name, stats.attach, stats.why_off);
    }
    programs_.push_back(stats);
  }
  if (int err = nw_net_bpf__load(skel_); err != 0) {
    return absl::UnavailableError(absl::StrCat(
        "the kernel refused the network BPF programs: ", Errno(err),
        " (run with CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN; set --log-level trace for the "
        "verifier log)"));
  }
  return absl::OkStatus();
}

BpfNetProgram::~BpfNetProgram() {
  DetachAll();
  if (skel_ != nullptr) nw_net_bpf__destroy(skel_);
  if (cgroup_fd_ >= 0) close(cgroup_fd_);
}

absl::Status BpfNetProgram::ReadFlows(std::vector<std::pair<FlowKey, FlowTotals>>& out) {
  if (absl::Status folded = FoldLiveSockets(); !folded.ok()) return folded;
  const int fd = bpf_map__fd(skel_->maps.flows);
  std::vector<nw_flow_value> values(PossibleCpus());
  nw_flow_key key{}, next{};
  const nw_flow_key* previous = nullptr;
  std::map<FlowKey, size_t> index;  // position in `out` of each key read
  while (bpf_map_get_next_key(fd, previous, &next) == 0) {
    key = next;
    previous = &key;
    if (bpf_map_lookup_elem(fd, &key, values.data()) != 0) continue;  // deleted meanwhile
    index[ToFlowKey(key)] = out.size();
    out.emplace_back(ToFlowKey(key), SumFlow(values));
  }
  // The TCP trouble of the same keys (or of flows that moved no bytes this time).
  const int trouble_fd = bpf_map__fd(skel_->maps.tcp_trouble);
  nw_tcp_trouble trouble{};
  previous = nullptr;
  while (bpf_map_get_next_key(trouble_fd, previous, &next) == 0) {
    key = next;
    previous = &key;
    if (bpf_map_lookup_elem(trouble_fd, &key, &trouble) != 0) continue;
    FlowKey flow = ToFlowKey(key);
    auto [it, added] = index.try_emplace(flow, out.size());
    if (added) out.emplace_back(flow, FlowTotals{});
    out[it->second].second += Trouble(trouble);
  }
  return absl::OkStatus();
}

absl::Status BpfNetProgram::TakeFlows(const std::vector<FlowKey>& keys,
                                      std::vector<std::pair<FlowKey, FlowTotals>>& out) {
  const int fd = bpf_map__fd(skel_->maps.flows);
  const int trouble_fd = bpf_map__fd(skel_->maps.tcp_trouble);
  std::vector<nw_flow_value> values(PossibleCpus());
  nw_tcp_trouble trouble{};
  for (const FlowKey& key : keys) {
    nw_flow_key k = FromFlowKey(key);
    std::optional<FlowTotals> totals;
    if (Take(fd, &k, values.data())) totals = SumFlow(values);
    if (Take(trouble_fd, &k, &trouble)) {
      if (!totals) totals.emplace();
      *totals += Trouble(trouble);
    }
    if (totals) out.emplace_back(key, *totals);
  }
  return absl::OkStatus();
}

bool BpfNetProgram::Take(int map_fd, const void* key, void* value) {
  if (lookup_and_delete_) {
    if (bpf_map_lookup_and_delete_elem(map_fd, key, value) == 0) return true;
    if (errno == ENOENT) return false;
    lookup_and_delete_ = false;  // not supported by this kernel
  }
  // Kernels before 5.14 cannot lookup-and-delete hashes: read, then delete. What is counted
  // between the two is lost (the entry was idle for 3 intervals, so rarely).
  if (bpf_map_lookup_elem(map_fd, key, value) != 0) return false;
  bpf_map_delete_elem(map_fd, key);
  return true;
}

absl::Status BpfNetProgram::ReadTcp(TcpTotals& out) {
  const int counters = bpf_map__fd(skel_->maps.net_counters);
  out.retransmits = SumPerCpuArray(counters, NW_TCP_RETRANSMITS);
  out.connects = SumPerCpuArray(counters, NW_TCP_CONNECTS);
  out.failed_connects = SumPerCpuArray(counters, NW_TCP_FAILED_CONNECTS);
  out.resets_sent = SumPerCpuArray(counters, NW_TCP_RESETS_SENT);
  out.resets_received = SumPerCpuArray(counters, NW_TCP_RESETS_RECEIVED);
  out.flow_map_full = SumPerCpuArray(counters, NW_FLOW_MAP_FULL);
  out.connect_map_full = SumPerCpuArray(counters, NW_CONNECT_MAP_FULL);
  out.trouble_map_full = SumPerCpuArray(counters, NW_TROUBLE_MAP_FULL);
  const int latency = bpf_map__fd(skel_->maps.connect_latency);
  for (uint32_t slot = 0; slot < kLog2Slots; ++slot) {
    out.connect_latency_log2_us[slot] = SumPerCpuArray(latency, slot);
  }
  return absl::OkStatus();
}

std::vector<ProgramStats> BpfNetProgram::Programs() const {
  std::vector<ProgramStats> out = programs_;
  for (auto& stats : out) {
    if (stats.loaded) {
      ReadProgramStats(bpf_object__find_program_by_name(skel_->obj, stats.name.c_str()), stats);
    }
  }
  return out;
}

std::vector<MapStats> BpfNetProgram::Maps() const {
  std::vector<MapStats> out;
  for (const bpf_map* map : {skel_->maps.flows, skel_->maps.connect_start, skel_->maps.tcp_trouble})
    out.push_back(ReadMapStats(map));
  return out;
}

}  // namespace nodewatch::agent
