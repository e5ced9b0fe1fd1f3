#include <rocksdb/compaction_filter.h>
#include <rocksdb/db.h>
#include <rocksdb/filter_policy.h>
#include <rocksdb/merge_operator.h>
#include <rocksdb/slice_transform.h>
#include <rocksdb/table.h>
#include <rocksdb/write_batch.h>

#include <chrono>

#include "absl/strings/str_cat.h"
#include "aggregator/store/keys.h"
#include "aggregator/store/store.h"
#include "common/logging.h"

namespace nodewatch::aggregator {
namespace {

using nodewatch::internal::StoredNode;
using nodewatch::v1::Record;

constexpr char kRecordsCf[] = "records";
constexpr char kInterruptionsCf[] = "interruptions";
constexpr char kNodesCf[] = "nodes";
constexpr char kStateCf[] = "state";
constexpr char kRollupsCf[] = "rollups";

// Counters are 8-byte little-endian unsigned sums; an operand or value of another size (which this
// store never writes) counts as zero rather than failing the read.
uint64_t DecodeCounter(const rocksdb::Slice& s) {
  if (s.size() != 8) return 0;
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | static_cast<uint8_t>(s[static_cast<size_t>(i)]);
  return v;
}
std::string EncodeCounter(uint64_t v) {
  std::string out(8, '\0');
  for (size_t i = 0; i < 8; ++i) out[i] = static_cast<char>((v >> (8 * i)) & 0xFF);
  return out;
}

class CounterAddOperator final : public rocksdb::AssociativeMergeOperator {
 public:
  bool Merge(const rocksdb::Slice& /*key*/, const rocksdb::Slice* existing,
             const rocksdb::Slice& value, std::string* new_value,
             rocksdb::Logger* /*logger*/) const override {
    uint64_t sum = (existing != nullptr ? DecodeCounter(*existing) : 0) + DecodeCounter(value);
    *new_value = EncodeCounter(sum);
    return true;
  }
  const char* Name() const override { return "nodewatch.CounterAdd"; }
};

absl::Status FromRocks(const rocksdb::Status& s, const std::string& what) {
  if (s.ok()) return absl::OkStatus();
  std::string msg = absl::StrCat(what, ": ", s.ToString());
  if (s.IsNotFound()) return absl::NotFoundError(msg);
  if (s.IsCorruption()) return absl::DataLossError(msg);
  if (s.IsIOError() && s.subcode() == rocksdb::Status::kNoSpace) {
    return absl::ResourceExhaustedError(msg);
  }
  if (s.IsBusy() || s.IsTryAgain() || s.IsIncomplete()) return absl::UnavailableError(msg);
  return absl::InternalError(msg);
}

int64_t WallMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Drops records whose time is older than the retention during compaction. `time_offset` is where
// the 8-byte time sits in the key.
class RetentionFilter final : public rocksdb::CompactionFilter {
 public:
  RetentionFilter(int64_t retention_ms, size_t time_offset, const char* name)
      : retention_ms_(retention_ms), time_offset_(time_offset), name_(name) {}
  bool Filter(int /*level*/, const rocksdb::Slice& key, const rocksdb::Slice& /*value*/,
              std::string* /*new_value*/, bool* /*value_changed*/) const override {
    if (key.size() != kRecordKeySize) return false;  // never drop what we do not understand
    int64_t t =
        UnflipTime(ReadBigEndian(std::string_view(key.data(), key.size()), time_offset_, 8));
    return t < WallMs() - retention_ms_;
  }
  const char* Name() const override { return name_; }

 private:
  int64_t retention_ms_;
  size_t time_offset_;
  const char* name_;
};

class RocksDbStore final : public Store {
 public:
  ~RocksDbStore() override {
    if (!db_) return;
    for (auto* h : handles_) db_->DestroyColumnFamilyHandle(h);
    db_->Close().PermitUncheckedError();
  }

  absl::Status Open(const StoreOptions& options) {
    options_ = options;
    records_filter_ =
        std::make_unique<RetentionFilter>(options.retention_ms, 4, "records-retention");
    interruptions_filter_ =
        std::make_unique<RetentionFilter>(options.retention_ms, 0, "interruptions-retention");

    rocksdb::DBOptions db_options;
    db_options.create_if_missing = true;
    db_options.create_missing_column_families = true;
    db_options.IncreaseParallelism(2);
    db_options.bytes_per_sync = 1 << 20;
    db_options.wal_bytes_per_sync = 1 << 20;
    db_options.keep_log_file_num = 4;
    db_options.max_open_files = -1;
    if (options.env != nullptr) db_options.env = options.env;

    rocksdb::BlockBasedTableOptions table;
    table.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10, false));
    table.whole_key_filtering = false;

    auto base = [&] {
      rocksdb::ColumnFamilyOptions cf;
      cf.OptimizeLevelStyleCompaction(64 << 20);
      cf.level_compaction_dynamic_level_bytes = true;
      cf.periodic_compaction_seconds = 24 * 3600;  // so old files meet the retention filter daily
      return cf;
    };
    rocksdb::ColumnFamilyOptions records = base();
    records.prefix_extractor.reset(rocksdb::NewFixedPrefixTransform(4));
    records.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));
    records.memtable_prefix_bloom_size_ratio = 0.1;
    records.compaction_filter = records_filter_.get();
    rocksdb::ColumnFamilyOptions interruptions = base();
    interruptions.compaction_filter = interruptions_filter_.get();
    rocksdb::ColumnFamilyOptions nodes = base();
    rocksdb::ColumnFamilyOptions rollups = base();
    rollups.merge_operator = std::make_shared<CounterAddOperator>();

    std::vector<rocksdb::ColumnFamilyDescriptor> cfs = {{rocksdb::kDefaultColumnFamilyName, base()},
                                                        {kRecordsCf, records},
                                                        {kInterruptionsCf, interruptions},
                                                        {kNodesCf, nodes},
                                                        {kStateCf, base()},
                                                        {kRollupsCf, rollups}};
    rocksdb::DB* db = nullptr;
    auto s = rocksdb::DB::Open(db_options, options.path, cfs, &handles_, &db);
    if (!s.ok()) return FromRocks(s, absl::StrCat("open RocksDB at '", options.path, "'"));
    db_.reset(db);
    records_ = handles_[1];
    interruptions_ = handles_[2];
    nodes_ = handles_[3];
    state_ = handles_[4];
    rollups_ = handles_[5];
    return absl::OkStatus();
  }

  absl::StatusOr<std::vector<StoredNode>> LoadNodes() override {
    std::vector<StoredNode> out;
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), nodes_));
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      StoredNode node;
      if (!node.ParseFromArray(it->value().data(), static_cast<int>(it->value().size()))) {
        return absl::DataLossError(
            absl::StrCat("node entry '", it->key().ToString(), "' does not parse"));
      }
      out.push_back(std::move(node));
    }
    if (auto s = FromRocks(it->status(), "scan nodes"); !s.ok()) return s;
    return out;
  }

  absl::Status Write(const WriteSet& writes) override {
    rocksdb::WriteBatch batch;
    std::string value;
    for (const auto& r : writes.records) {
      r.record->SerializeToString(&value);
      auto s = batch.Put(records_, RecordKey(r.node_id, r.key_time_ms, r.record->seq()), value);
      if (!s.ok()) return FromRocks(s, "batch put");
      if (r.record->has_interruption()) {
        s = batch.Put(interruptions_, InterruptionKey(r.key_time_ms, r.node_id, r.record->seq()),
                      value);
        if (!s.ok()) return FromRocks(s, "batch put");
      }
    }
    for (const auto* n : writes.nodes) {
      n->SerializeToString(&value);
      auto s = batch.Put(nodes_, n->name(), value);
      if (!s.ok()) return FromRocks(s, "batch put");
    }
    for (const auto& c : writes.counters) {
      auto s = batch.Merge(rollups_, c.key, EncodeCounter(c.delta));
      if (!s.ok()) return FromRocks(s, "batch merge");
    }
    rocksdb::WriteOptions wo;
    wo.sync = options_.sync;
    return FromRocks(db_->Write(wo, &batch), "write batch");
  }

  absl::Status ScanRecords(uint32_t node_id, int64_t since_ms, uint64_t since_seq, int64_t until_ms,
                           const RecordVisitor& visit) override {
    std::string lower = RecordKey(node_id, since_ms, since_seq);
    std::string upper = RecordKey(node_id, until_ms, 0);
    rocksdb::Slice upper_slice(upper);
    rocksdb::ReadOptions ro;
    ro.iterate_upper_bound = &upper_slice;
    ro.prefix_same_as_start = true;
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, records_));
    Record record;
    DecodedRecordKey key{};
    for (it->Seek(lower); it->Valid(); it->Next()) {
      if (!DecodeRecordKey(std::string_view(it->key().data(), it->key().size()), &key) ||
          !record.ParseFromArray(it->value().data(), static_cast<int>(it->value().size()))) {
        return absl::DataLossError("stored record does not parse");
      }
      if (!visit(key.time_ms, record)) break;
    }
    return FromRocks(it->status(), "scan records");
  }

  absl::Status ScanInterruptions(int64_t since_ms, int64_t until_ms,
                                 const InterruptionVisitor& visit) override {
    std::string lower = InterruptionKey(since_ms, 0, 0);
    std::string upper = InterruptionKey(until_ms, 0, 0);
    rocksdb::Slice upper_slice(upper);
    rocksdb::ReadOptions ro;
    ro.iterate_upper_bound = &upper_slice;
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, interruptions_));
    Record record;
    DecodedRecordKey key{};
    for (it->Seek(lower); it->Valid(); it->Next()) {
      if (!DecodeInterruptionKey(std::string_view(it->key().data(), it->key().size()), &key) ||
          !record.ParseFromArray(it->value().data(), static_cast<int>(it->value().size()))) {
        return absl::DataLossError("stored interruption does not parse");
      }
      if (!visit(key.node_id, key.time_ms, record)) break;
    }
    return FromRocks(it->status(), "scan interruptions");
  }

  absl::Status PutState(const std::string& key, const std::string& value) override {
    rocksdb::WriteOptions wo;
    wo.sync = options_.sync;
    return FromRocks(db_->Put(wo, state_, key, value), absl::StrCat("put state '", key, "'"));
  }

  absl::Status DeleteState(const std::string& key) override {
    rocksdb::WriteOptions wo;
    wo.sync = options_.sync;
    return FromRocks(db_->Delete(wo, state_, key), absl::StrCat("delete state '", key, "'"));
  }

  absl::Status ScanState(
      const std::string& prefix,
      const std::function<bool(const std::string&, const std::string&)>& visit) override {
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), state_));
    for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix); it->Next()) {
      if (!visit(it->key().ToString(), it->value().ToString())) break;
    }
    return FromRocks(it->status(), "scan state");
  }

  absl::Status ScanCounters(
      const std::string& prefix,
      const std::function<bool(const std::string&, uint64_t)>& visit) override {
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), rollups_));
    for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix); it->Next()) {
      if (!visit(it->key().ToString(), DecodeCounter(it->value()))) break;
    }
    return FromRocks(it->status(), "scan rollups");
  }

  absl::Status DeleteCounterRange(const std::string& begin, const std::string& end) override {
    rocksdb::WriteOptions wo;
    wo.sync = options_.sync;
    return FromRocks(db_->DeleteRange(wo, rollups_, begin, end), "delete rollups");
  }

  absl::Status CompactAll() override {
    rocksdb::CompactRangeOptions options;
    options.bottommost_level_compaction = rocksdb::BottommostLevelCompaction::kForce;
    for (auto* handle : {records_, interruptions_}) {
      if (auto s = FromRocks(db_->CompactRange(options, handle, nullptr, nullptr), "compact");
          !s.ok()) {
        return s;
      }
    }
    return absl::OkStatus();
  }

  uint64_t ApproximateSizeBytes() override {
    uint64_t sst = 0;
    uint64_t mem = 0;
    db_->GetAggregatedIntProperty(rocksdb::DB::Properties::kTotalSstFilesSize, &sst);
    db_->GetAggregatedIntProperty(rocksdb::DB::Properties::kCurSizeAllMemTables, &mem);
    return sst + mem;
  }

 private:
  StoreOptions options_;
  std::unique_ptr<RetentionFilter> records_filter_;
  std::unique_ptr<RetentionFilter> interruptions_filter_;
  std::unique_ptr<rocksdb::DB> db_;
  std::vector<rocksdb::ColumnFamilyHandle*> handles_;
  rocksdb::ColumnFamilyHandle* records_ = nullptr;
  rocksdb::ColumnFamilyHandle* interruptions_ = nullptr;
  rocksdb::ColumnFamilyHandle* nodes_ = nullptr;
  rocksdb::ColumnFamilyHandle* state_ = nullptr;
  rocksdb::ColumnFamilyHandle* rollups_ = nullptr;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Store>> OpenRocksDbStore(const StoreOptions& options) {
  auto store = std::make_unique<RocksDbStore>();
  if (auto s = store->Open(options); !s.ok()) return s;
  return std::unique_ptr<Store>(std::move(store));
}

}  // namespace nodewatch::aggregator
