#include "bench/sim_agent.h"

#include <sys/resource.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

namespace nodewatch::bench {

nodewatch::v1::Record BenchRecord(uint64_t seq, int64_t time_ms) {
  nodewatch::v1::Record r;
  r.set_seq(seq);
  r.set_time_unix_ms(time_ms);
  auto* hb = r.mutable_heartbeat();
  hb->set_uptime_seconds(86'400 + seq);
  hb->set_load1(0.42);
  hb->set_memory_total_bytes(16ull << 30);
  hb->set_memory_available_bytes(9ull << 30);
  hb->set_agent_rss_bytes(22ull << 20);
  hb->set_spool_bytes(4096);
  hb->set_agent_uptime_seconds(3600);
  return r;
}

SimAgent::SimAgent(nodewatch::v1::AgentService::Stub* stub, std::string node, int batches,
                   int records_per_batch, std::atomic<uint64_t>* acked_records)
    : node_(std::move(node)),
      batches_(batches),
      records_per_batch_(records_per_batch),
      acked_records_(acked_records) {
  stub->async()->Stream(&context_, this);
}

void SimAgent::Start() {
  out_.mutable_hello()->set_node_name(node_);
  out_.mutable_hello()->set_spool_id("bench-" + node_);
  out_.mutable_hello()->set_agent_version("bench");
  AddHold();  // batches start from Go(), outside any reaction
  StartWrite(&out_);
  StartRead(&in_);
  StartCall();
}

void SimAgent::Go() {
  started_ = true;
  if (batches_ > 0) SendNextBatch();
}

void SimAgent::SendNextBatch() {
  out_.Clear();
  auto* batch = out_.mutable_batch();
  const int64_t now = static_cast<int64_t>(time(nullptr)) * 1000;
  for (int i = 0; i < records_per_batch_; ++i) {
    ++last_seq_;
    *batch->add_records() = BenchRecord(last_seq_, now + static_cast<int64_t>(last_seq_));
  }
  batch->set_lowest_seq_held(acked_seq_ + 1);
  ++sent_batches_;
  StartWrite(&out_);
}

void SimAgent::OnWriteDone(bool ok) {}

void SimAgent::OnReadDone(bool ok) {
  if (!ok) {
    if (!hold_removed_.exchange(true)) RemoveHold();
    return;
  }
  uint64_t acked = in_.ack().acked_seq();
  if (!hello_acked_.exchange(true)) {
    acked_seq_ = acked;
  } else if (acked > acked_seq_) {
    acked_records_->fetch_add(acked - acked_seq_);
    acked_seq_ = acked;
  }
  if (started_ && sent_batches_ < batches_ && acked_seq_ == last_seq_) {
    SendNextBatch();
  } else if (started_ && batches_ > 0 && sent_batches_ == batches_ && acked_seq_ == last_seq_ &&
             !writes_done_) {
    writes_done_ = true;
    StartWritesDone();
    if (!hold_removed_.exchange(true)) RemoveHold();
  }
  StartRead(&in_);
}

void SimAgent::OnDone(const grpc::Status& status) {
  status_ok_ = status.ok() || status.error_code() == grpc::StatusCode::CANCELLED;
  std::lock_guard<std::mutex> lock(mu_);
  done_ = true;
  cv_.notify_all();
}

void SimAgent::Cancel() {
  context_.TryCancel();
  if (!hold_removed_.exchange(true)) RemoveHold();
}

void SimAgent::WaitDone() {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [&] { return done_; });
}

double RssMiB(int pid) {
  std::ifstream in(pid == 0 ? "/proc/self/status" : "/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) {
      std::istringstream s(line.substr(6));
      double kb = 0;
      s >> kb;
      return kb / 1024.0;
    }
  }
  return 0;
}

double CpuSeconds(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string content((std::istreambuf_iterator<char>(in)), {});
  auto close = content.rfind(')');
  std::istringstream s(content.substr(close + 2));
  std::string field;
  double utime = 0;
  double stime = 0;
  for (int i = 3; i <= 15; ++i) {
    s >> field;
    if (i == 14) utime = std::stod(field);
    if (i == 15) stime = std::stod(field);
  }
  return (utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

void RaiseFileLimit() {
  rlimit limit{};
  getrlimit(RLIMIT_NOFILE, &limit);
  limit.rlim_cur = limit.rlim_max;
  setrlimit(RLIMIT_NOFILE, &limit);
}

}  // namespace nodewatch::bench
