// IngestEngine: turns agents' Hello and RecordBatch messages into durable history, exactly once.
//
// One writer thread owns every node's dedupe state. Streams submit work without blocking; the
// writer takes everything queued (up to a group limit), applies dedupe, and commits the records of
// all those batches together with their nodes' new watermarks in one synced WriteBatch (group
// commit), then runs each submitter's completion with its node's watermark: the Ack to send.
//
// Dedupe: per node, `acked_seq` (every seq at or below it is stored or known lost) plus the few
// stored seqs above it (notices that overtook telemetry). A resent record is recognised and
// skipped. A batch's `lowest_seq_held` tells which missing seqs the agent dropped (spool full):
// the watermark moves past them and they are counted as lost.
//
// GRPC-free, so it is unit-tested directly on a Store over RocksDB's in-memory Env.
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "aggregator/store/store.h"
#include "common/clock.h"
#include "nodewatch/v1/agent.pb.h"
#include "nodewatch/v1/query.pb.h"

namespace nodewatch::aggregator {

struct IngestOptions {
  size_t max_group_items = 1024;           // messages per group commit
  size_t max_group_records = 50'000;       // records per group commit
  size_t max_batch_records = 10'000;       // a bigger batch is refused
  size_t max_pending_seqs = 65'536;        // out-of-order seqs held per node
  int64_t max_future_skew_ms = 3'600'000;  // record times further ahead are filed at receive time
};

struct IngestCounters {
  std::atomic<uint64_t> records_stored{0};
  std::atomic<uint64_t> duplicates{0};
  std::atomic<uint64_t> lost_records{0};
  std::atomic<uint64_t> clamped_times{0};
  std::atomic<uint64_t> rejected_batches{0};
  std::atomic<uint64_t> commits{0};
  std::atomic<uint64_t> commit_errors{0};
  std::atomic<uint64_t> commit_micros_total{0};
  std::atomic<uint64_t> spool_resets{0};
  std::atomic<uint64_t> duplicate_notices{0};  // same cloud event spooled twice by an agent
};

// Sees every newly stored record (never a duplicate): derives rollup counters that commit
// atomically with it, then hears about it once it is durable. Both calls run on the writer thread
// and must be quick and must not block (no I/O).
class RecordTap {
 public:
  virtual ~RecordTap() = default;
  // Before the commit: appends counter deltas to commit together with `record`.
  virtual void Derive(const std::string& node, const nodewatch::v1::NodeInfo& info,
                      int64_t key_time_ms, const nodewatch::v1::Record& record,
                      std::vector<CounterDelta>* out) = 0;
  // After the commit succeeded, once per stored record, then once with every delta committed.
  virtual void Stored(const std::string& node, const nodewatch::v1::NodeInfo& info,
                      int64_t key_time_ms, const nodewatch::v1::Record& record) = 0;
  virtual void CountersCommitted(const std::vector<CounterDelta>& deltas) = 0;
};

class IngestEngine {
 public:
  // Receives the node's watermark once the message's records are durable, or why it was refused.
  using Completion = std::function<void(absl::StatusOr<uint64_t> acked_seq)>;

  IngestEngine(Store& store, const Clock& clock, IngestOptions options = {});
  ~IngestEngine();

  // Runs on the writer thread once per newly stored interruption notice (never for a duplicate),
  // after its commit. Must not block. Set before Start().
  using NoticeListener =
      std::function<void(const std::string& node, const nodewatch::v1::NodeInfo& info,
                         const nodewatch::v1::InterruptionNotice& notice)>;
  void SetNoticeListener(NoticeListener listener) { notice_listener_ = std::move(listener); }
  // A node's agent said Hello from another boot than the stored one: the node restarted, came
  // back from a stop, or is a new instance under the same name. Runs on the writer thread once
  // the Hello is committed. Must not block. Set before Start().
  struct NodeBoot {
    std::string node;
    std::string boot_id;
    std::string instance_id;
    std::string previous_boot_id;
    std::string previous_instance_id;
    int64_t previous_last_seen_unix_ms = 0;  // the old life's last message
    int64_t unix_ms = 0;                     // the new life's Hello
  };
  using BootListener = std::function<void(const NodeBoot& boot)>;
  void SetBootListener(BootListener listener) { boot_listener_ = std::move(listener); }
  // Add before Start(); not owned, must outlive the engine's writer. Taps run in the order added.
  void AddRecordTap(RecordTap* tap) { taps_.push_back(tap); }

  // Loads the node directory and starts the writer.
  absl::Status Start();
  void Stop();

  // Thread-safe and non-blocking; `done` runs on the writer thread.
  void SubmitHello(const std::string& node, nodewatch::v1::Hello hello, Completion done);
  void SubmitBatch(const std::string& node, nodewatch::v1::RecordBatch batch, Completion done);
  // Appends a record the aggregator itself wrote (a remediation step) to a known node's history.
  // Its seq comes from a per-node counter above 2^63, so it never collides with an agent's.
  // `done` gets that seq, or NotFound for a node that never said Hello.
  void SubmitLocalRecord(const std::string& node, nodewatch::v1::Record record, Completion done);
  void StreamOpened(const std::string& node);
  void StreamClosed(const std::string& node);

  std::vector<nodewatch::v1::NodeSummary> ListNodes() const;
  std::optional<nodewatch::v1::NodeSummary> GetNode(const std::string& name) const;
  std::optional<uint32_t> NodeId(const std::string& name) const;
  std::optional<std::string> NodeName(uint32_t id) const;
  size_t connected_streams() const;
  size_t queue_depth() const;
  const IngestCounters& counters() const { return counters_; }

 private:
  struct NodeEntry {
    nodewatch::internal::StoredNode stored;
    std::set<uint64_t> pending;
    std::set<std::string> notice_keys;  // mirror of stored.notice_keys for lookups
  };
  struct Item {
    std::string node;
    bool is_hello = false;
    bool is_local = false;
    nodewatch::v1::Hello hello;
    nodewatch::v1::RecordBatch batch;
    Completion done;
  };
  using Touched = std::map<std::string, NodeEntry>;

  void Enqueue(std::unique_ptr<Item> item);
  void WriterLoop();
  void CommitGroup(std::vector<std::unique_ptr<Item>>& group);
  NodeEntry* Touch(Touched& touched, const std::string& node, bool create);
  absl::StatusOr<uint64_t> ApplyHello(Touched& touched, const Item& item);
  absl::StatusOr<uint64_t> ApplyBatch(Touched& touched, const Item& item, WriteSet* writes);
  absl::StatusOr<uint64_t> ApplyLocal(Touched& touched, Item& item, WriteSet* writes);
  void ApplyLowestHeld(NodeEntry& entry, uint64_t lowest_held);
  static void AbsorbPending(NodeEntry& entry);
  // False if this notice identity was stored before for the node.
  static bool RememberNotice(NodeEntry& entry, const nodewatch::v1::InterruptionNotice& n);
  nodewatch::v1::NodeSummary Summarize(const NodeEntry& entry) const;

  Store& store_;
  const Clock& clock_;
  const IngestOptions options_;
  IngestCounters counters_;
  NoticeListener notice_listener_;
  BootListener boot_listener_;
  std::vector<NodeBoot> boots_;  // writer thread only: this group's new boots, told after commit
  std::vector<RecordTap*> taps_;

  mutable std::mutex mu_;  // guards nodes_, ids_, connected_
  std::map<std::string, NodeEntry> nodes_;
  std::map<uint32_t, std::string> ids_;
  std::map<std::string, int> connected_;
  uint32_t next_id_ = 1;

  mutable std::mutex queue_mu_;
  std::condition_variable queue_cv_;
  std::deque<std::unique_ptr<Item>> queue_;
  bool running_ = false;
  std::thread writer_;
};

}  // namespace nodewatch::aggregator
