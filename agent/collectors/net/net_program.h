// BpfNetProgram: bpf/net.bpf.c loaded into the kernel (RAII: destroying it detaches and unloads
// everything). cgroup_skb counters attach to one cgroup v2 directory and see every socket in it
// and below; the TCP tracepoints are node-wide. The paths come from PlanCounting() over the
// kernel's probed features: what the kernel cannot run is switched off before loading, with a log
// line (and ProgramStats::why_off, Paths()); the rest keeps working. Every path counts the same
// bytes (bpf/net.bpf.c, packet_wire_bytes()).
#pragma once

#include <memory>
#include <string>

#include "agent/collectors/net/net_counters.h"

struct nw_net_bpf;
struct bpf_link;

namespace nodewatch::agent {

struct NetProgramOptions {
  std::string cgroup_path;        // cgroup v2 directory to count traffic of (and below)
  uint32_t flow_entries = 16384;  // flows map size: distinct (cgroup, remote, direction)
  bool tcp = true;                // load the TCP tracepoint programs
  // Count TCP connections and UDP sockets from their socket storage where the kernel can (false:
  // every packet through the flows hash, the "packet" path; tests and benchmarks force it).
  bool sockets = true;
  // The kernel's features (ProbeKernelFeatures()); null: probed by Load.
  const KernelFeatures* features = nullptr;
  bool calibrate_empty = false;  // benchmarks only: cgroup_skb programs that count nothing
  // Tests only: the socket path without its iterator (live sockets' counts reach the flows map
  // only when they close), so that kernels that refuse the iterator still check the rest of it.
  bool fold_live_sockets = true;
};

class BpfNetProgram final : public NetCounterSource {
 public:
  // Loads and attaches. Fails when nothing can be counted (no cgroup_skb support, the cgroup
  // cannot be opened, the kernel refuses the programs or maps); TCP programs the kernel cannot
  // run are switched off instead.
  static absl::StatusOr<std::unique_ptr<BpfNetProgram>> Load(const NetProgramOptions& options);
  ~BpfNetProgram() override;

  absl::Status ReadFlows(std::vector<std::pair<FlowKey, FlowTotals>>& out) override;
  absl::Status TakeFlows(const std::vector<FlowKey>& keys,
                         std::vector<std::pair<FlowKey, FlowTotals>>& out) override;
  absl::Status ReadTcp(TcpTotals& out) override;
  uint64_t FlowCapacity() const override { return options_.flow_entries; }
  std::vector<ProgramStats> Programs() const override;
  std::vector<MapStats> Maps() const override;
  std::vector<SignalPath> Paths() const override;

 private:
  explicit BpfNetProgram(NetProgramOptions options) : options_(std::move(options)) {}
  // (Re)opens the object and loads it; the TCP programs stay off when `tcp_off` says why, the
  // socket folds (TCP and UDP counted from their sockets) when `sockets_off` does (the TCP one
  // also when `tcp_off` does, the UDP one when `udp_off` does).
  absl::Status OpenAndLoad(const std::string& tcp_off, const std::string& sockets_off,
                           const std::string& udp_off);
  // Attaches every program not switched off, the folds first; on a failure that cannot be
  // switched off alone, detaches everything and says why: FailedPrecondition for a cgroup_skb
  // program (the cgroup), Unavailable for a fold (retried with every packet counted per packet).
  absl::Status AttachAll();
  void DetachAll();
  // Runs the iterator that folds live counted sockets (TCP and UDP) into the flows map.
  absl::Status FoldLiveSockets();
  // Looks up and deletes one entry; false if it is not there.
  bool Take(int map_fd, const void* key, void* value);
  NetProgramOptions options_;
  nw_net_bpf* skel_ = nullptr;
  int cgroup_fd_ = -1;
  std::vector<bpf_link*> links_;
  KernelBtfFacts btf_;  // the tracepoints and iterator this object needs, read once in Load
  bpf_link* fold_link_ = nullptr;       // iter/bpf_sk_storage_map, when counting from sockets
  std::vector<ProgramStats> programs_;  // names, attach points, why_off
  SignalPath tcp_bytes_{"tcp_bytes", "packet", ""}, udp_bytes_{"udp_bytes", "packet", ""};
  SignalPath tcp_events_{"tcp_events", "off", ""};
  bool lookup_and_delete_ = true;       // false once the kernel refused it for hashes (< 5.14)
};

}  // namespace nodewatch::agent
