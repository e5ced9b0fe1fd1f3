#include "aggregator/ingest/ingest_engine.h"

#include "absl/strings/str_cat.h"
#include "aggregator/ingest/node_lives.h"
#include "common/logging.h"

namespace nodewatch::aggregator {

using nodewatch::v1::Record;

IngestEngine::IngestEngine(Store& store, const Clock& clock, IngestOptions options)
    : store_(store), clock_(clock), options_(options) {}

IngestEngine::~IngestEngine() { Stop(); }

absl::Status IngestEngine::Start() {
  auto nodes = store_.LoadNodes();
  if (!nodes.ok()) return nodes.status();
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& stored : *nodes) {
      NodeEntry entry;
      entry.pending.insert(stored.pending_seqs().begin(), stored.pending_seqs().end());
      entry.notice_keys.insert(stored.notice_keys().begin(), stored.notice_keys().end());
      next_id_ = std::max(next_id_, stored.id() + 1);
      ids_[stored.id()] = stored.name();
      entry.stored = std::move(stored);
      nodes_[entry.stored.name()] = std::move(entry);
    }
  }
  GetLogger("agg.ingest")->info("loaded {} node(s) from the store", nodes->size());
  std::lock_guard<std::mutex> lock(queue_mu_);
  running_ = true;
  writer_ = std::thread([this] { WriterLoop(); });
  return absl::OkStatus();
}

void IngestEngine::Stop() {
  {
    std::lock_guard<std::mutex> lock(queue_mu_);
    if (!running_) return;
    running_ = false;
  }
  queue_cv_.notify_all();
  if (writer_.joinable()) writer_.join();
  // Whatever is still queued was never made durable: tell its streams.
  std::deque<std::unique_ptr<Item>> left;
  {
    std::lock_guard<std::mutex> lock(queue_mu_);
    left.swap(queue_);
  }
  for (auto& item : left) item->done(absl::UnavailableError("aggregator is shutting down"));
}

void IngestEngine::SubmitHello(const std::string& node, nodewatch::v1::Hello hello,
                               Completion done) {
  auto item = std::make_unique<Item>();
  item->node = node;
  item->is_hello = true;
  item->hello = std::move(hello);
  item->done = std::move(done);
  Enqueue(std::move(item));
}

void IngestEngine::SubmitBatch(const std::string& node, nodewatch::v1::RecordBatch batch,
                               Completion done) {
  auto item = std::make_unique<Item>();
  item->node = node;
  item->batch = std::move(batch);
  item->done = std::move(done);
  Enqueue(std::move(item));
}

void IngestEngine::SubmitLocalRecord(const std::string& node, nodewatch::v1::Record record,
                                     Completion done) {
  auto item = std::make_unique<Item>();
  item->node = node;
  item->is_local = true;
  *item->batch.add_records() = std::move(record);
  item->done = std::move(done);
  Enqueue(std::move(item));
}

void IngestEngine::Enqueue(std::unique_ptr<Item> item) {
  {
    std::lock_guard<std::mutex> lock(queue_mu_);
    if (running_) {
      queue_.push_back(std::move(item));
      queue_cv_.notify_one();
      return;
    }
  }
  item->done(absl::UnavailableError("aggregator is shutting down"));
}

void IngestEngine::StreamOpened(const std::string& node) {
  std::lock_guard<std::mutex> lock(mu_);
  ++connected_[node];
}

void IngestEngine::StreamClosed(const std::string& node) {
  std::lock_guard<std::mutex> lock(mu_);
  if (--connected_[node] <= 0) connected_.erase(node);
}

size_t IngestEngine::connected_streams() const {
  std::lock_guard<std::mutex> lock(mu_);
  size_t n = 0;
  for (const auto& [node, count] : connected_) n += static_cast<size_t>(count);
  return n;
}

size_t IngestEngine::queue_depth() const {
  std::lock_guard<std::mutex> lock(queue_mu_);
  return queue_.size();
}

void IngestEngine::WriterLoop() {
  std::vector<std::unique_ptr<Item>> group;
  while (true) {
    {
      std::unique_lock<std::mutex> lock(queue_mu_);
      queue_cv_.wait(lock, [&] { return !running_ || !queue_.empty(); });
      if (!running_) return;
      size_t records = 0;
      while (!queue_.empty() && group.size() < options_.max_group_items &&
             records < options_.max_group_records) {
        records += static_cast<size_t>(queue_.front()->batch.records_size());
        group.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
    }
    CommitGroup(group);
    group.clear();
  }
}

IngestEngine::NodeEntry* IngestEngine::Touch(Touched& touched, const std::string& node,
                                             bool create) {
  if (auto it = touched.find(node); it != touched.end()) return &it->second;
  std::lock_guard<std::mutex> lock(mu_);
  if (auto it = nodes_.find(node); it != nodes_.end()) return &(touched[node] = it->second);
  if (!create) return nullptr;
  NodeEntry& entry = touched[node];
  entry.stored.set_name(node);
  // Ids of nodes created in a group that then fails to commit are simply never used.
  entry.stored.set_id(next_id_++);
  entry.stored.set_first_seen_unix_ms(clock_.NowUnixMs());
  return &entry;
}

void IngestEngine::AbsorbPending(NodeEntry& entry) {
  uint64_t acked = entry.stored.acked_seq();
  while (!entry.pending.empty() && *entry.pending.begin() <= acked + 1) {
    acked = std::max(acked, *entry.pending.begin());
    entry.pending.erase(entry.pending.begin());
  }
  entry.stored.set_acked_seq(acked);
}

void IngestEngine::ApplyLowestHeld(NodeEntry& entry, uint64_t lowest_held) {
  uint64_t acked = entry.stored.acked_seq();
  if (lowest_held <= acked + 1) return;
  // Seqs in (acked, lowest_held) that we do not hold will never come: the agent dropped them.
  uint64_t gap = lowest_held - 1 - acked;
  auto end = entry.pending.lower_bound(lowest_held);
  uint64_t held = static_cast<uint64_t>(std::distance(entry.pending.begin(), end));
  entry.pending.erase(entry.pending.begin(), end);
  uint64_t lost = gap - held;
  entry.stored.set_lost_records(entry.stored.lost_records() + lost);
  counters_.lost_records += lost;
  entry.stored.set_acked_seq(lowest_held - 1);
  AbsorbPending(entry);
  if (lost > 0) {
    GetLogger("agg.ingest")
        ->warn("node {}: {} record(s) below seq {} were dropped by the agent before delivery",
               entry.stored.name(), lost, lowest_held);
  }
}

namespace {
// Sequence numbers live below 2^63, so watermark arithmetic can never wrap.
constexpr uint64_t kMaxSeq = (1ull << 63) - 1;
}  // namespace

absl::StatusOr<uint64_t> IngestEngine::ApplyHello(Touched& touched, const Item& item) {
  if (item.hello.lowest_seq() > kMaxSeq || item.hello.highest_seq() > kMaxSeq) {
    return absl::InvalidArgumentError("Hello carries a sequence number above 2^63");
  }
  NodeEntry* entry = Touch(touched, item.node, /*create=*/true);
  auto& s = entry->stored;
  const auto& hello = item.hello;
  if (!s.spool_id().empty() && s.spool_id() != hello.spool_id()) {
    // A new spool (agent reinstalled, disk wiped): its seqs start over.
    GetLogger("agg.ingest")
        ->warn("node {}: new agent spool {} (was {}); sequence numbers restart", item.node,
               hello.spool_id(), s.spool_id());
    s.set_acked_seq(0);
    entry->pending.clear();
    ++counters_.spool_resets;
  } else if (hello.highest_seq() < s.acked_seq()) {
    GetLogger("agg.ingest")
        ->warn("node {}: agent holds seqs up to {} but {} are stored; its spool went back",
               item.node, hello.highest_seq(), s.acked_seq());
  }
  if (!s.boot_id().empty() && !hello.boot_id().empty() && s.boot_id() != hello.boot_id()) {
    boots_.push_back({.node = item.node,
                      .boot_id = hello.boot_id(),
                      .instance_id = hello.node_info().instance_id(),
                      .previous_boot_id = s.boot_id(),
                      .previous_instance_id = s.info().instance_id(),
                      .previous_last_seen_unix_ms = s.last_seen_unix_ms(),
                      .unix_ms = clock_.NowUnixMs()});
  }
  ApplyHelloToLives(s, hello, clock_.NowUnixMs());  // before last_seen moves: the old life's end
  s.set_spool_id(hello.spool_id());
  *s.mutable_info() = hello.node_info();
  s.set_boot_id(hello.boot_id());
  s.set_agent_version(hello.agent_version());
  s.set_last_seen_unix_ms(clock_.NowUnixMs());
  ApplyLowestHeld(*entry, hello.lowest_seq());
  return s.acked_seq();
}

absl::StatusOr<uint64_t> IngestEngine::ApplyBatch(Touched& touched, const Item& item,
                                                  WriteSet* writes) {
  const auto& batch = item.batch;
  if (static_cast<size_t>(batch.records_size()) > options_.max_batch_records) {
    return absl::InvalidArgumentError(absl::StrCat("batch of ", batch.records_size(),
                                                   " records exceeds the limit of ",
                                                   options_.max_batch_records));
  }
  if (batch.lowest_seq_held() > kMaxSeq) {
    return absl::InvalidArgumentError("lowest_seq_held is above 2^63");
  }
  for (const auto& r : batch.records()) {
    if (r.seq() == 0 || r.seq() > kMaxSeq) {
      return absl::InvalidArgumentError(absl::StrCat("record with invalid seq ", r.seq()));
    }
    if (r.payload_case() == Record::PAYLOAD_NOT_SET) {
      return absl::InvalidArgumentError(absl::StrCat("record seq ", r.seq(), " has no payload"));
    }
  }
  NodeEntry* entry = Touch(touched, item.node, /*create=*/false);
  if (entry == nullptr) return absl::FailedPreconditionError("batch before Hello");
  auto& s = entry->stored;
  const int64_t now = clock_.NowUnixMs();
  for (const auto& r : batch.records()) {
    if (r.seq() <= s.acked_seq() || entry->pending.count(r.seq()) > 0) {
      s.set_duplicates(s.duplicates() + 1);
      ++counters_.duplicates;
      continue;
    }
    if (r.seq() != s.acked_seq() + 1 && entry->pending.size() >= options_.max_pending_seqs) {
      break;  // not stored, not acked: the agent sends it again once the gap closes
    }
    if (!r.has_interruption() || RememberNotice(*entry, r.interruption())) {
      int64_t key_time = r.time_unix_ms();
      if (key_time <= 0 || key_time > now + options_.max_future_skew_ms) {
        key_time = now;  // absurd clock: file under receive time, the record keeps its own
        ++counters_.clamped_times;
      }
      writes->records.push_back({s.id(), key_time, &r});
      for (RecordTap* tap : taps_) tap->Derive(item.node, s.info(), key_time, r, &writes->counters);
      s.set_records(s.records() + 1);
      if (r.has_interruption()) {
        s.set_interruptions(s.interruptions() + 1);
        ApplyNoticeToLives(s, r.interruption());
      }
    } else {
      ++counters_.duplicate_notices;  // its seq still counts as received
    }
    if (r.seq() == s.acked_seq() + 1) {
      s.set_acked_seq(r.seq());
      AbsorbPending(*entry);
    } else {
      entry->pending.insert(r.seq());
    }
  }
  ApplyLowestHeld(*entry, batch.lowest_seq_held());
  s.set_last_seen_unix_ms(now);
  TouchCurrentLife(s, now);
  return s.acked_seq();
}

absl::StatusOr<uint64_t> IngestEngine::ApplyLocal(Touched& touched, Item& item, WriteSet* writes) {
  NodeEntry* entry = Touch(touched, item.node, /*create=*/false);
  if (entry == nullptr) {
    return absl::NotFoundError(absl::StrCat("node '", item.node, "' is not known"));
  }
  auto& s = entry->stored;
  const uint64_t seq = std::max<uint64_t>(s.local_seq(), kMaxSeq) + 1;
  s.set_local_seq(seq);
  Record& r = *item.batch.mutable_records(0);
  r.set_seq(seq);
  if (r.time_unix_ms() == 0) r.set_time_unix_ms(clock_.NowUnixMs());
  writes->records.push_back({s.id(), r.time_unix_ms(), &r});
  s.set_records(s.records() + 1);
  return seq;
}

bool IngestEngine::RememberNotice(NodeEntry& entry, const nodewatch::v1::InterruptionNotice& n) {
  std::string key =
      absl::StrCat(n.provider(), "\t", n.event_id(), "\t", static_cast<int>(n.state()));
  if (!entry.notice_keys.insert(key).second) return false;
  auto* keys = entry.stored.mutable_notice_keys();
  keys->Add(std::move(key));
  constexpr int kRemembered = 256;
  if (keys->size() > kRemembered) {
    entry.notice_keys.erase(keys->Get(0));
    keys->DeleteSubrange(0, 1);
  }
  return true;
}

void IngestEngine::CommitGroup(std::vector<std::unique_ptr<Item>>& group) {
  Touched touched;
  WriteSet writes;
  boots_.clear();  // a failed commit's boots are found again when the agent says Hello again
  std::vector<absl::StatusOr<uint64_t>> results;
  results.reserve(group.size());
  for (const auto& item : group) {
    results.push_back(item->is_hello   ? ApplyHello(touched, *item)
                      : item->is_local ? ApplyLocal(touched, *item, &writes)
                                       : ApplyBatch(touched, *item, &writes));
    if (!results.back().ok()) ++counters_.rejected_batches;
  }
  for (auto& [name, entry] : touched) {
    entry.stored.mutable_pending_seqs()->Assign(entry.pending.begin(), entry.pending.end());
    writes.nodes.push_back(&entry.stored);
  }
  absl::Status written = absl::OkStatus();
  if (!writes.empty()) {
    const int64_t start = clock_.MonotonicNs();
    written = store_.Write(writes);
    counters_.commit_micros_total += static_cast<uint64_t>((clock_.MonotonicNs() - start) / 1000);
    ++counters_.commits;
  }
  if (written.ok()) {
    counters_.records_stored += writes.records.size();
    std::map<uint32_t, const NodeEntry*> by_id;
    for (const auto& [name, entry] : touched) by_id[entry.stored.id()] = &entry;
    for (const auto& r : writes.records) {
      const NodeEntry& entry = *by_id.at(r.node_id);
      const std::string& node = entry.stored.name();
      for (RecordTap* tap : taps_) tap->Stored(node, entry.stored.info(), r.key_time_ms, *r.record);
      if (!r.record->has_interruption()) continue;
      const auto& n = r.record->interruption();
      GetLogger("agg.ingest")
          ->info("node {}: stored interruption notice {} {} event {} state {} (seq {})", node,
                 n.provider(), nodewatch::v1::InterruptionKind_Name(n.kind()), n.event_id(),
                 nodewatch::v1::NoticeState_Name(n.state()), r.record->seq());
      if (notice_listener_ && r.record->seq() <= kMaxSeq) {
        // Older agents leave the notice's life out: it is the node's current one.
        nodewatch::v1::InterruptionNotice told = n;
        if (told.boot_id().empty()) told.set_boot_id(entry.stored.boot_id());
        if (told.instance_id().empty()) told.set_instance_id(entry.stored.info().instance_id());
        notice_listener_(node, entry.stored.info(), told);
      }
    }
    if (!writes.counters.empty()) {
      for (RecordTap* tap : taps_) tap->CountersCommitted(writes.counters);
    }
    if (boot_listener_) {
      for (const NodeBoot& boot : boots_) {
        GetLogger("agg.ingest")
            ->info("node {}: new boot {} (was {}){}", boot.node, boot.boot_id,
                   boot.previous_boot_id,
                   boot.instance_id != boot.previous_instance_id
                       ? absl::StrCat(", instance ", boot.instance_id, " (was ",
                                      boot.previous_instance_id, ")")
                       : "");
        boot_listener_(boot);
      }
    }
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& [name, entry] : touched) {
      ids_[entry.stored.id()] = name;
      nodes_[name] = std::move(entry);
    }
  } else {
    ++counters_.commit_errors;
    GetLogger("agg.ingest")
        ->error("group commit of {} records failed: {}", writes.records.size(), written);
    for (auto& r : results) {
      if (r.ok())
        r = absl::UnavailableError(absl::StrCat("store write failed: ", written.message()));
    }
  }
  for (size_t i = 0; i < group.size(); ++i) group[i]->done(std::move(results[i]));
}

nodewatch::v1::NodeSummary IngestEngine::Summarize(const NodeEntry& entry) const {
  const auto& s = entry.stored;
  nodewatch::v1::NodeSummary out;
  out.set_name(s.name());
  *out.mutable_info() = s.info();
  out.set_first_seen_unix_ms(s.first_seen_unix_ms());
  out.set_last_seen_unix_ms(s.last_seen_unix_ms());
  auto it = connected_.find(s.name());
  out.set_connected(it != connected_.end() && it->second > 0);
  out.set_acked_seq(s.acked_seq());
  out.set_records(s.records());
  out.set_lost_records(s.lost_records());
  out.set_boot_id(s.boot_id());
  out.set_agent_version(s.agent_version());
  out.set_interruptions(s.interruptions());
  *out.mutable_lives() = LivesOf(s);
  return out;
}

std::vector<nodewatch::v1::NodeSummary> IngestEngine::ListNodes() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<nodewatch::v1::NodeSummary> out;
  out.reserve(nodes_.size());
  for (const auto& [name, entry] : nodes_) out.push_back(Summarize(entry));
  return out;
}

std::optional<nodewatch::v1::NodeSummary> IngestEngine::GetNode(const std::string& name) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = nodes_.find(name);
  if (it == nodes_.end()) return std::nullopt;
  return Summarize(it->second);
}

std::optional<uint32_t> IngestEngine::NodeId(const std::string& name) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = nodes_.find(name);
  if (it == nodes_.end()) return std::nullopt;
  return it->second.stored.id();
}

std::optional<std::string> IngestEngine::NodeName(uint32_t id) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = ids_.find(id);
  if (it == ids_.end()) return std::nullopt;
  return it->second;
}

}  // namespace nodewatch::aggregator
