#include "agent/collectors/host/heartbeat_collector.h"

#include <google/protobuf/util/message_differencer.h>

#include <chrono>

#include "common/logging.h"

namespace nodewatch::agent {

using nodewatch::v1::Record;

HeartbeatCollector::HeartbeatCollector(Spool& spool, HostProbe& probe, const Clock& clock,
                                       int64_t interval_ms)
    : spool_(spool),
      probe_(probe),
      clock_(clock),
      started_ms_(clock.NowUnixMs()),
      thread_(interval_ms, [this] {
        if (auto s = CollectOnce(); !s.ok()) {
          GetLogger("agent.collector")->warn("heartbeat not spooled: {}", s);
        }
      }) {
  node_info_ = probe_.ReadNodeInfo();
}

HeartbeatCollector::~HeartbeatCollector() { Stop(); }

nodewatch::v1::NodeInfo HeartbeatCollector::node_info() const {
  std::lock_guard<std::mutex> lock(mu_);
  return node_info_;
}

void HeartbeatCollector::SetKernelCounting(const nodewatch::v1::NodeInfo& counting) {
  std::lock_guard<std::mutex> lock(mu_);
  counting_.Clear();
  *counting_.mutable_kernel_features() = counting.kernel_features();
  *counting_.mutable_counting_paths() = counting.counting_paths();
  *node_info_.mutable_kernel_features() = counting_.kernel_features();
  *node_info_.mutable_counting_paths() = counting_.counting_paths();
}

absl::Status HeartbeatCollector::CollectOnce() {
  std::vector<Record> records;
  const int64_t now = clock_.NowUnixMs();
  nodewatch::v1::NodeInfo info = probe_.ReadNodeInfo();
  {
    std::lock_guard<std::mutex> lock(mu_);
    info.MergeFrom(counting_);
    if (!have_node_info_ || !google::protobuf::util::MessageDifferencer::Equals(info, node_info_)) {
      have_node_info_ = true;
      node_info_ = info;
      Record r;
      r.set_time_unix_ms(now);
      *r.mutable_node_info() = info;
      records.push_back(std::move(r));
    }
  }
  HostStats host = probe_.ReadStats();
  SpoolStats spool = spool_.stats();
  Record r;
  r.set_time_unix_ms(now);
  auto* hb = r.mutable_heartbeat();
  hb->set_uptime_seconds(host.uptime_seconds);
  hb->set_load1(host.load1);
  hb->set_memory_total_bytes(host.memory_total_bytes);
  hb->set_memory_available_bytes(host.memory_available_bytes);
  hb->set_agent_rss_bytes(host.self_rss_bytes);
  hb->set_spool_bytes(spool.bytes);
  hb->set_spool_records(spool.records);
  hb->set_spool_dropped_records(spool.dropped_records);
  hb->set_agent_uptime_seconds(static_cast<uint64_t>((now - started_ms_) / 1000));
  records.push_back(std::move(r));
  return spool_.AppendTelemetry(std::move(records)).status();
}

LoadGenerator::LoadGenerator(Spool& spool, const Clock& clock, int64_t records_per_second,
                             int64_t total)
    : spool_(spool), clock_(clock), rate_(records_per_second), total_(total) {}

LoadGenerator::~LoadGenerator() { Stop(); }

void LoadGenerator::Start() {
  if (rate_ <= 0 || running_.exchange(true)) return;
  thread_ = std::thread([this] { Run(); });
}

void LoadGenerator::Stop() {
  running_ = false;
  if (thread_.joinable()) thread_.join();
}

void LoadGenerator::Run() {
  auto log = GetLogger("agent.load");
  constexpr int64_t kTickMs = 20;
  const int64_t start_ns = clock_.MonotonicNs();
  int64_t emitted = 0;
  while (running_ && (total_ <= 0 || emitted < total_)) {
    int64_t elapsed_ms = (clock_.MonotonicNs() - start_ns) / 1'000'000;
    int64_t due = rate_ * (elapsed_ms + kTickMs) / 1000;
    if (total_ > 0) due = std::min(due, total_);
    std::vector<Record> batch;
    for (int64_t i = emitted; i < due; ++i) {
      Record r;
      r.set_time_unix_ms(clock_.NowUnixMs());
      r.mutable_heartbeat()->set_agent_uptime_seconds(static_cast<uint64_t>(elapsed_ms / 1000));
      r.mutable_heartbeat()->set_spool_records(static_cast<uint64_t>(i));
      batch.push_back(std::move(r));
    }
    if (!batch.empty()) {
      size_t n = batch.size();
      if (auto s = spool_.AppendTelemetry(std::move(batch)); !s.ok()) {
        log->warn("synthetic records not spooled: {}", s.status());
      } else {
        emitted += static_cast<int64_t>(n);
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(kTickMs));
  }
  log->info("load generator done: {} records", emitted);
}

}  // namespace nodewatch::agent
