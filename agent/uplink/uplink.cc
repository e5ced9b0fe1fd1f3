#include "agent/uplink/uplink.h"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <optional>
#include <random>

#include "common/logging.h"

namespace nodewatch::agent {

using nodewatch::v1::AgentMessage;
using nodewatch::v1::AggregatorMessage;
using nodewatch::v1::Record;

namespace {
constexpr int kMaxMessageBytes = 8 << 20;
}

grpc::ChannelArguments AgentChannelArguments(int64_t max_backoff_ms) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 60'000);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 20'000);
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 500);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 500);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, static_cast<int>(max_backoff_ms));
  args.SetInt(GRPC_ARG_MAX_SEND_MESSAGE_LENGTH, kMaxMessageBytes);
  args.SetInt(GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH, kMaxMessageBytes);
  // Each uplink gets its own connection even to the same address (agents stream to every replica).
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  return args;
}

// The reactor: records what gRPC reports and wakes the uplink thread. Owned by that thread, which
// destroys it only after OnDone.
class Uplink::Session final : public grpc::ClientBidiReactor<AgentMessage, AggregatorMessage> {
 public:
  void Start(nodewatch::v1::AgentService::Stub* stub, AgentMessage hello) {
    stub->async()->Stream(&context_, this);
    out_ = std::move(hello);
    write_in_flight_ = true;
    StartWrite(&out_);
    StartRead(&in_);
    AddHold();  // writes are started from the uplink thread, not from reactions
    StartCall();
  }

  // Waits until no write is in flight, then starts one. False if the stream broke.
  bool Write(AgentMessage msg) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return !write_in_flight_ || broken_; });
    if (broken_) return false;
    out_ = std::move(msg);
    write_in_flight_ = true;
    lock.unlock();
    StartWrite(&out_);
    return true;
  }

  // Cancels the call and waits for OnDone. Call once.
  grpc::Status Close() {
    context_.TryCancel();
    RemoveHold();
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return done_; });
    return final_status_;
  }
  void Cancel() { context_.TryCancel(); }

  // Waits up to timeout_ms for something to change; returns the latest state.
  void Wait(int64_t timeout_ms) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, std::chrono::milliseconds(timeout_ms),
                 [&] { return broken_ || changed_; });
    changed_ = false;
  }
  bool broken() {
    std::lock_guard<std::mutex> lock(mu_);
    return broken_;
  }
  bool write_idle() {
    std::lock_guard<std::mutex> lock(mu_);
    return !write_in_flight_;
  }
  // Highest ack seen, or -1 before the first.
  int64_t acked() {
    std::lock_guard<std::mutex> lock(mu_);
    return acked_;
  }
  std::deque<nodewatch::v1::Command> TakeCommands() {
    std::lock_guard<std::mutex> lock(mu_);
    return std::exchange(commands_, {});
  }

  void OnWriteDone(bool ok) override {
    std::lock_guard<std::mutex> lock(mu_);
    write_in_flight_ = false;
    if (!ok) broken_ = true;
    changed_ = true;
    cv_.notify_all();
  }
  void OnReadDone(bool ok) override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      changed_ = true;
      cv_.notify_all();
      if (!ok) {
        broken_ = true;
        return;
      }
      if (in_.has_ack()) {
        acked_ = std::max<int64_t>(acked_, static_cast<int64_t>(in_.ack().acked_seq()));
      } else if (in_.has_command()) {
        commands_.push_back(in_.command());
      }
    }
    StartRead(&in_);
  }
  void OnDone(const grpc::Status& status) override {
    std::lock_guard<std::mutex> lock(mu_);
    final_status_ = status;
    done_ = true;
    broken_ = true;
    cv_.notify_all();
  }

 private:
  grpc::ClientContext context_;
  AgentMessage out_;
  AggregatorMessage in_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool write_in_flight_ = false;
  bool broken_ = false;
  bool done_ = false;
  bool changed_ = false;
  int64_t acked_ = -1;
  std::deque<nodewatch::v1::Command> commands_;
  grpc::Status final_status_;
};

Uplink::Uplink(UplinkOptions options, Spool& spool, HelloFactory hello, AckListener on_ack,
               CommandListener on_command, const Clock& clock)
    : options_(std::move(options)),
      spool_(spool),
      hello_(std::move(hello)),
      on_ack_(std::move(on_ack)),
      on_command_(std::move(on_command)),
      clock_(clock) {
  channel_ = grpc::CreateCustomChannel(options_.endpoint, options_.credentials,
                                       AgentChannelArguments(options_.max_backoff_ms));
  stub_ = nodewatch::v1::AgentService::NewStub(channel_);
}

Uplink::~Uplink() { Stop(); }

void Uplink::Start() {
  if (running_.exchange(true)) return;
  thread_ = std::thread([this] { Run(); });
}

void Uplink::Stop() {
  if (!running_.exchange(false)) {
    if (thread_.joinable()) thread_.join();
    return;
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (current_ != nullptr) current_->Cancel();
    stop_cv_.notify_all();
  }
  if (thread_.joinable()) thread_.join();
}

UplinkStatus Uplink::status() const {
  std::lock_guard<std::mutex> lock(mu_);
  return status_;
}

void Uplink::Run() {
  auto log = GetLogger("agent.uplink");
  std::mt19937_64 rng(std::random_device{}());
  int64_t backoff = options_.min_backoff_ms;
  while (running_) {
    bool acknowledged = RunSession();
    if (!running_) break;
    if (acknowledged) backoff = options_.min_backoff_ms;
    // Jitter ±20% so a fleet does not reconnect in lockstep after an aggregator restart.
    std::uniform_real_distribution<double> jitter(0.8, 1.2);
    auto wait_ms = static_cast<int64_t>(static_cast<double>(backoff) * jitter(rng));
    log->debug("{}: reconnecting in {} ms", options_.endpoint, wait_ms);
    std::unique_lock<std::mutex> lock(mu_);
    stop_cv_.wait_for(lock, std::chrono::milliseconds(wait_ms), [&] { return !running_; });
    backoff = std::min<int64_t>(options_.max_backoff_ms, static_cast<int64_t>(backoff * 1.6));
  }
}

bool Uplink::RunSession() {
  auto log = GetLogger("agent.uplink");
  auto session = std::make_unique<Session>();
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!running_) return false;
    current_ = session.get();
    ++status_.sessions;
  }
  AgentMessage hello;
  *hello.mutable_hello() = hello_();
  session->Start(stub_.get(), std::move(hello));

  bool acknowledged = false;
  int64_t deadline = clock_.MonotonicNs() + options_.hello_timeout_ms * 1'000'000;
  while (running_ && !session->broken() && session->acked() < 0 &&
         clock_.MonotonicNs() < deadline) {
    session->Wait(100);
  }
  if (running_ && !session->broken() && session->acked() >= 0) {
    acknowledged = true;
    {
      std::lock_guard<std::mutex> lock(mu_);
      status_.connected = true;
      status_.last_error.clear();
    }
    log->info("{}: stream open, aggregator holds up to seq {}", options_.endpoint,
              session->acked());
    Pump(*session);
  }
  grpc::Status final_status = session->Close();
  {
    std::lock_guard<std::mutex> lock(mu_);
    current_ = nullptr;
    status_.connected = false;
    if (!final_status.ok()) status_.last_error = final_status.error_message();
  }
  if (!running_) return acknowledged;
  if (final_status.error_code() == grpc::StatusCode::PERMISSION_DENIED ||
      final_status.error_code() == grpc::StatusCode::UNAUTHENTICATED) {
    log->error("{}: aggregator refused this agent: {}", options_.endpoint,
               final_status.error_message());
  } else {
    log->warn("{}: stream closed ({}: {})", options_.endpoint,
              static_cast<int>(final_status.error_code()), final_status.error_message());
  }
  return acknowledged;
}

bool Uplink::Pump(Session& session) {
  uint64_t sent_urgent = 0;
  uint64_t sent_telemetry = 0;
  std::optional<uint64_t> reported_ack;
  SpoolCursor urgent_cursor;
  SpoolCursor telemetry_cursor;
  std::vector<Record> records;
  while (running_ && !session.broken()) {
    auto acked = static_cast<uint64_t>(std::max<int64_t>(0, session.acked()));
    if (!reported_ack || acked > *reported_ack) {
      reported_ack = acked;
      {
        std::lock_guard<std::mutex> lock(mu_);
        status_.acked_seq = acked;
      }
      on_ack_(options_.endpoint, acked);
    }
    for (auto& command : session.TakeCommands()) on_command_(command);

    records.clear();
    // Urgent first: a notice overtakes any telemetry backlog.
    auto status = spool_.Read(Lane::kUrgent, std::max(sent_urgent, acked), options_.batch_records,
                              options_.batch_bytes, &urgent_cursor, &records);
    const bool from_urgent = !records.empty();
    bool window_open = std::max(sent_telemetry, acked) - acked < options_.max_unacked_records;
    if (status.ok() && records.empty() && window_open) {
      status = spool_.Read(Lane::kTelemetry, std::max(sent_telemetry, acked),
                           options_.batch_records, options_.batch_bytes, &telemetry_cursor,
                           &records);
    }
    if (!status.ok()) {
      GetLogger("agent.uplink")->error("{}: spool read failed: {}", options_.endpoint, status);
      return false;
    }
    if (records.empty()) {
      if (!window_open) {
        session.Wait(100);
      } else {
        spool_.WaitForNewRecords(spool_.highest_seq(), 100);
      }
      continue;
    }
    uint64_t last = records.back().seq();
    AgentMessage msg;
    auto* batch = msg.mutable_batch();
    batch->set_lowest_seq_held(spool_.lowest_seq_held());
    for (auto& r : records) *batch->add_records() = std::move(r);
    size_t count = records.size();
    if (from_urgent) {
      GetLogger("agent.uplink")->debug("{}: sending {} urgent record(s) up to seq {}",
                                       options_.endpoint, count, last);
    }
    if (!session.Write(std::move(msg))) return false;
    (from_urgent ? sent_urgent : sent_telemetry) = last;
    std::lock_guard<std::mutex> lock(mu_);
    status_.records_sent += count;
  }
  return true;
}

}  // namespace nodewatch::agent
