// Store: the aggregator's only door to persistent state. RocksDbStore is the implementation;
// nothing else in the aggregator includes RocksDB (STYLE.md G9).
//
// Writes come from one ingest writer thread and are durable (synced) when Write returns; reads
// may run on any thread concurrently with writes.
//
//   auto store = RocksDbStore::Open({.path = "/var/lib/nodewatch/db"});
//   WriteSet w;
//   w.records.push_back({node_id, key_time_ms, record});
//   w.nodes.push_back(updated_node);              // dedupe watermark commits with the records
//   RETURN_IF_ERROR((*store)->Write(w));
//   (*store)->ScanRecords(node_id, since, 0, until, [](int64_t t, const Record& r) { return true;
//   });
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "nodewatch/internal/store.pb.h"
#include "nodewatch/v1/records.pb.h"

namespace rocksdb {
class Env;
}

namespace nodewatch::aggregator {

struct StoredRecord {
  uint32_t node_id;
  int64_t key_time_ms;  // the time the record is filed under (record time, or receive time)
  const nodewatch::v1::Record* record;
};

// An amount added to a named counter in the `rollups` column family (data-transfer bytes per day,
// node and class). Counters are unsigned 64-bit sums merged by RocksDB, never read-modify-write.
struct CounterDelta {
  std::string key;
  uint64_t delta;
};

// Everything one group commit writes: applied atomically, synced before Write returns. Counter
// deltas derived from the records commit with them, so a rollup never counts a record twice or
// misses one, whatever crashes.
struct WriteSet {
  std::vector<StoredRecord> records;
  std::vector<const nodewatch::internal::StoredNode*> nodes;
  std::vector<CounterDelta> counters;
  bool empty() const { return records.empty() && nodes.empty() && counters.empty(); }
};

// Return false to stop a scan.
using RecordVisitor = std::function<bool(int64_t key_time_ms, const nodewatch::v1::Record&)>;
using InterruptionVisitor =
    std::function<bool(uint32_t node_id, int64_t time_ms, const nodewatch::v1::Record&)>;

class Store {
 public:
  virtual ~Store() = default;
  virtual absl::StatusOr<std::vector<nodewatch::internal::StoredNode>> LoadNodes() = 0;
  virtual absl::Status Write(const WriteSet& writes) = 0;
  // Records of one node filed at or after (since_ms, since_seq) and before until_ms, in
  // (time, seq) order. since_seq lets a paged reader resume just after its last record.
  virtual absl::Status ScanRecords(uint32_t node_id, int64_t since_ms, uint64_t since_seq,
                                   int64_t until_ms, const RecordVisitor& visit) = 0;
  virtual absl::Status ScanInterruptions(int64_t since_ms, int64_t until_ms,
                                         const InterruptionVisitor& visit) = 0;
  // Small keyed state outside the history (the drain journal, alert states), in its own column
  // family: synced puts and deletes, any thread. Values are opaque to the store.
  virtual absl::Status PutState(const std::string& key, const std::string& value) = 0;
  virtual absl::Status DeleteState(const std::string& key) = 0;
  // Every entry whose key starts with `prefix`, in key order; return false to stop.
  virtual absl::Status ScanState(
      const std::string& prefix,
      const std::function<bool(const std::string& key, const std::string& value)>& visit) = 0;
  // Every rollup counter whose key starts with `prefix`, in key order; return false to stop.
  // Rollups are not subject to the history retention; DeleteCountersBefore prunes them.
  virtual absl::Status ScanCounters(
      const std::string& prefix,
      const std::function<bool(const std::string& key, uint64_t value)>& visit) = 0;
  // Deletes every counter key in [begin, end).
  virtual absl::Status DeleteCounterRange(const std::string& begin, const std::string& end) = 0;
  // Approximate bytes on disk (SST files + memtables).
  virtual uint64_t ApproximateSizeBytes() = 0;
  // Compacts everything now, which also applies retention. RocksDB does this in the background
  // (and at least daily); operators and tests may force it.
  virtual absl::Status CompactAll() = 0;
};

struct StoreOptions {
  std::string path;
  int64_t retention_ms = 14LL * 24 * 3600 * 1000;
  rocksdb::Env* env = nullptr;  // nullptr: the default (disk); tests pass a MemEnv
  bool sync = true;             // false only in benchmarks that say so
};

// Opens (creating if needed) the database with its column families.
absl::StatusOr<std::unique_ptr<Store>> OpenRocksDbStore(const StoreOptions& options);

}  // namespace nodewatch::aggregator
