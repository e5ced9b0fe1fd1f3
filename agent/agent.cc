#include "agent/agent.h"

#include <malloc.h>
#include <unistd.h>

#include "agent/collectors/disk/block_io_program.h"
#include "agent/collectors/net/net_program.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "common/tls.h"

namespace nodewatch::agent {

absl::StatusOr<std::unique_ptr<Agent>> Agent::Create(const AgentConfig& config,
                                                     std::unique_ptr<HostProbe> probe,
                                                     const Clock& clock) {
  RETURN_IF_ERROR(ValidateAgentConfig(config));
  std::unique_ptr<Agent> agent(new Agent(config, clock));
  agent->http_ = MakeCurlHttpClient();
  ASSIGN_OR_RETURN(
      agent->provider_,
      MakeCloudProvider({.cloud = config.cloud,
                         .metadata_endpoint = config.metadata_endpoint,
                         .aws_imdsv1_fallback = config.aws_imdsv1_fallback,
                         .aws_poll_ms = config.aws_poll_interval_ms,
                         .aws_scheduled_poll_ms = config.aws_scheduled_poll_interval_ms,
                         .gcp_preemption_notice_ms = config.gcp_preemption_notice_ms,
                         .azure_poll_ms = config.azure_poll_interval_ms,
                         .azure_resource_name = config.azure_resource_name,
                         .state_file = config.spool_dir + "/cloud.state"},
                        *agent->http_, clock, agent->cloud_counters_));
  agent->probe_ = std::make_unique<CloudHostProbe>(std::move(probe), *agent->provider_, clock);
  if (agent->config_.node_name.empty()) {
    char host[256] = {};
    gethostname(host, sizeof(host) - 1);
    agent->config_.node_name = host;
  }
  agent->boot_id_ = agent->probe_->BootId();
  ASSIGN_OR_RETURN(agent->spool_, Spool::Open({.dir = config.spool_dir,
                                               .max_bytes = config.spool_max_bytes,
                                               .segment_bytes = config.spool_segment_bytes}));
  agent->cloud_ = std::make_unique<CloudCollector>(*agent->spool_, *agent->provider_, clock,
                                                   agent->cloud_counters_,
                                                   config.spool_dir + "/notices.ledger",
                                                   agent->boot_id_);
  RETURN_IF_ERROR(agent->cloud_->Load());
  std::shared_ptr<grpc::ChannelCredentials> creds;
  if (config.insecure) {
    GetLogger("agent")->warn("--insecure: streaming in plaintext without authentication");
    creds = grpc::InsecureChannelCredentials();
  } else {
    ASSIGN_OR_RETURN(creds, MakeChannelCredentials({.ca_file = config.tls_ca,
                                                    .cert_file = config.tls_cert,
                                                    .key_file = config.tls_key}));
  }
  agent->heartbeat_ = std::make_unique<HeartbeatCollector>(*agent->spool_, *agent->probe_, clock,
                                                           config.interval_ms);
  agent->load_ = std::make_unique<LoadGenerator>(
      *agent->spool_, clock, config.synthetic_records_per_second, config.synthetic_records_total);
  if (config.filesystems) {
    agent->filesystems_ = std::make_unique<FilesystemCollector>(
        *agent->spool_, std::make_shared<FilesystemProbeImpl>(config.proc_root), clock,
        FilesystemCollectorOptions{.interval_ms = config.interval_ms,
                                   .statfs_timeout_ms = config.statfs_timeout_ms});
  }
  if (config.bpf) {
    agent->SetUpBpf();
    // Probing and loading parsed the kernel's BTF several times (5+ MiB each, once per BPF
    // object for CO-RE); hand the freed pages back instead of keeping them as heap for good.
    malloc_trim(0);
  }
  Agent* self = agent.get();
  for (const auto& endpoint : config.aggregators) {
    UplinkOptions options{
        .endpoint = endpoint, .credentials = creds, .max_backoff_ms = config.max_backoff_ms};
    self->acks_[endpoint] = 0;
    self->uplinks_.push_back(std::make_unique<Uplink>(
        options, *self->spool_,
        [self] {
          nodewatch::v1::Hello hello;
          hello.set_node_name(self->config_.node_name);
          hello.set_boot_id(self->boot_id_);
          hello.set_agent_version(NODEWATCH_VERSION);
          *hello.mutable_node_info() = self->heartbeat_->node_info();
          hello.set_highest_seq(self->spool_->highest_seq());
          hello.set_lowest_seq(self->spool_->lowest_seq_held());
          hello.set_spool_id(self->spool_->spool_id());
          return hello;
        },
        [self](const std::string& ep, uint64_t acked) { self->OnAck(ep, acked); },
        [self](const nodewatch::v1::Command& command) { self->cloud_->HandleCommand(command); },
        clock));
  }
  if (!config.metrics_listen.empty()) {
    ASSIGN_OR_RETURN(agent->metrics_,
                     StartAgentMetrics(
                         config.metrics_listen, *agent->spool_, agent->cloud_counters_,
                         agent->provider_->name(), [self] { return self->uplink_status(); },
                         agent->filesystems_ ? &agent->filesystems_->counters() : nullptr,
                         config.bpf ? &agent->bpf_view_ : nullptr));
  }
  return agent;
}

Agent::~Agent() {
  metrics_.reset();  // its scrapes read the collectors: gone first
  Stop();
}

// Loads what this kernel can run; anything it refuses is logged, left off and reported as
// nodewatch_agent_bpf_collector_up 0, and the agent carries on without it.
void Agent::SetUpBpf() {
  auto log = GetLogger("agent.bpf");
  if (config_.bpf_stats) {
    if (auto stats = BpfStatsScope::Enable(); stats.ok()) {
      bpf_stats_.emplace(std::move(*stats));
    } else {
      log->warn("no BPF run-time statistics: {}", stats.status());
    }
  }
  // One probe for every loader, and one line that says how this node counts.
  bpf_view_.features = ProbeKernelFeatures();
  const CountingPlan plan = PlanCounting(
      bpf_view_.features,
      {.network = true, .tcp = config_.bpf_tcp, .sockets = true, .block_io = config_.bpf_block_io});
  log->info("kernel {}: BPF features {}; planned counting paths: {}",
            heartbeat_->node_info().kernel_release(),
            bpf_view_.features.Describe(), plan.Describe());
  // The pods' cgroup tree is always walked from the cgroup v2 root; the counters attach there too
  // unless --bpf-cgroup names a subtree.
  auto root = FindCgroup2Mount("/proc");
  const std::string cgroup = !config_.bpf_cgroup.empty() ? config_.bpf_cgroup
                             : root.ok()                 ? *root
                                                         : std::string();
  if (cgroup.empty()) {
    bpf_view_.unavailable["network"] = std::string(root.status().message());
  } else {
    auto program =
        BpfNetProgram::Load({.cgroup_path = cgroup,
                             .flow_entries = static_cast<uint32_t>(config_.bpf_flow_entries),
                             .tcp = config_.bpf_tcp,
                             .features = &bpf_view_.features});
    if (program.ok()) {
      network_ = std::make_unique<NetworkCollector>(
          *spool_, std::move(*program),
          std::make_unique<CgroupPodResolver>(root.ok() ? *root : cgroup, config_.pods_log_dir,
                                              clock_),
          clock_, NetworkCollectorOptions{.interval_ms = config_.interval_ms});
    } else {
      bpf_view_.unavailable["network"] = std::string(program.status().message());
    }
  }
  if (!config_.bpf_block_io) {
    bpf_view_.unavailable["block_io"] = "switched off (--bpf-block-io=false)";
  } else {
    auto program = BpfBlockIoProgram::Load({.features = &bpf_view_.features});
    if (program.ok()) {
      block_io_ = std::make_unique<BlockIoCollector>(
          *spool_, std::move(*program), config_.proc_root, clock_, config_.interval_ms);
    } else {
      bpf_view_.unavailable["block_io"] = std::string(program.status().message());
    }
  }
  for (const auto& [collector, why] : bpf_view_.unavailable) {
    log->warn("eBPF {} signals off: {}", collector, why);
  }
  bpf_view_.network = network_.get();
  bpf_view_.block_io = block_io_.get();
  // What loaded, which may be less than the plan (a refusal the probe did not foresee).
  if (network_) {
    bpf_view_.paths = network_->source().Paths();
  } else {
    const std::string why = bpf_view_.unavailable["network"];
    bpf_view_.paths = {{"tcp_bytes", "off", why}, {"udp_bytes", "off", why},
                       {"tcp_events", "off", why}};
  }
  bpf_view_.paths.push_back(block_io_ ? SignalPath{"block_io", plan.block_io.path, ""}
                                      : SignalPath{"block_io", "off",
                                                   bpf_view_.unavailable["block_io"]});
  log->info("counting paths: {}", DescribePaths(bpf_view_.paths));
  nodewatch::v1::NodeInfo counting;
  for (const auto& [name, probe] : bpf_view_.features.List()) {
    auto* feature = counting.add_kernel_features();
    feature->set_name(name);
    feature->set_available(probe->available);
    feature->set_reason(probe->why_not);
  }
  for (const SignalPath& p : bpf_view_.paths) {
    auto* path = counting.add_counting_paths();
    path->set_signal(p.signal);
    path->set_path(p.path);
    path->set_reason(p.why);
  }
  heartbeat_->SetKernelCounting(counting);
}

void Agent::Start() {
  auto log = GetLogger("agent");
  log->info(
      "nodewatch-agent {} for node '{}' on {}: spool {} (spool id {}, highest seq {}), {} "
      "aggregator(s)",
      NODEWATCH_VERSION, config_.node_name, provider_->name(), config_.spool_dir,
      spool_->spool_id(), spool_->highest_seq(), uplinks_.size());
  heartbeat_->Start();
  cloud_->Start();
  load_->Start();
  if (filesystems_) filesystems_->Start();
  if (network_) network_->Start();
  if (block_io_) block_io_->Start();
  for (auto& u : uplinks_) u->Start();
}

void Agent::Stop() {
  if (cloud_) cloud_->Stop();
  if (load_) load_->Stop();
  if (filesystems_) filesystems_->Stop();
  if (network_) network_->Stop();
  if (block_io_) block_io_->Stop();
  if (heartbeat_) heartbeat_->Stop();
  for (auto& u : uplinks_) u->Stop();
  if (spool_) (void)spool_->Trim(0, /*force=*/true);
}

std::vector<UplinkStatus> Agent::uplink_status() const {
  std::vector<UplinkStatus> out;
  for (const auto& u : uplinks_) out.push_back(u->status());
  return out;
}

void Agent::OnAck(const std::string& endpoint, uint64_t acked) {
  uint64_t everywhere = 0;
  {
    std::lock_guard<std::mutex> lock(acks_mu_);
    acks_[endpoint] = std::max(acks_[endpoint], acked);
    everywhere = UINT64_MAX;
    for (const auto& [ep, a] : acks_) everywhere = std::min(everywhere, a);
  }
  // A record leaves the spool only when every aggregator holds it.
  if (auto s = spool_->Trim(everywhere); !s.ok()) {
    GetLogger("agent.spool")->error("spool trim failed: {}", s);
  }
}

}  // namespace nodewatch::agent
