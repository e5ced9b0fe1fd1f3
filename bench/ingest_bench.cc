// Aggregator ingest throughput with N simulated agents over mTLS, next to raw RocksDB synced
// WriteBatches of the same records on the same machine, in the same run.
//
//   ingest_bench [--streams 1000] [--batches 5] [--records 100]
//
// Prints BENCH ingest_records_per_s, rocksdb_raw_records_per_s, ingest_vs_rocksdb_ratio.
#include <rocksdb/db.h>
#include <rocksdb/write_batch.h>

#include <atomic>

#include "absl/synchronization/mutex.h"
#include <chrono>
#include <cstring>
#include <filesystem>
#include <thread>

#include "tests/support/inprocess_aggregator.h"
#include "aggregator/store/keys.h"
#include "bench/bench_support.h"
#include "bench/sim_agent.h"
#include "common/logging.h"
#include "tests/support/process.h"

namespace nb = nodewatch::bench;
namespace nt = nodewatch::testing;
using Clock = std::chrono::steady_clock;

namespace {

double Seconds(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

// The same records the agents send, written straight to RocksDB in synced WriteBatches of
// `per_write` records each, keys and values exactly as the store writes them.
double RawRocksDb(const std::string& path, int streams, int batches, int records,
                  size_t per_write) {
  rocksdb::Options options;
  options.create_if_missing = true;
  options.IncreaseParallelism(2);
  rocksdb::DB* raw = nullptr;
  if (!rocksdb::DB::Open(options, path, &raw).ok()) return 0;
  std::unique_ptr<rocksdb::DB> db(raw);
  rocksdb::WriteOptions wo;
  wo.sync = true;
  const int64_t now = static_cast<int64_t>(time(nullptr)) * 1000;
  std::string value;
  auto start = Clock::now();
  rocksdb::WriteBatch batch;
  size_t in_batch = 0;
  for (int b = 0; b < batches; ++b) {
    for (int s = 0; s < streams; ++s) {
      for (int i = 0; i < records; ++i) {
        uint64_t seq = static_cast<uint64_t>(b * records + i + 1);
        auto record = nb::BenchRecord(seq, now + static_cast<int64_t>(seq));
        record.SerializeToString(&value);
        (void)batch.Put(nodewatch::aggregator::RecordKey(static_cast<uint32_t>(s + 1),
                                                          record.time_unix_ms(), seq),
                        value);
        if (++in_batch == per_write) {
          if (!db->Write(wo, &batch).ok()) return 0;
          batch.Clear();
          in_batch = 0;
        }
      }
    }
  }
  if (in_batch > 0 && !db->Write(wo, &batch).ok()) return 0;
  return static_cast<double>(streams) * batches * records / Seconds(start, Clock::now());
}

}  // namespace

int main(int argc, char** argv) {
  // Debian's Abseil checks every Mutex acquisition for lock-order cycles (gRPC locks a lot): a
  // debugging aid that costs several percent of CPU in production.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  int streams = 1000;
  int batches = 5;
  int records = 100;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--streams")) streams = std::atoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--batches")) batches = std::atoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--records")) records = std::atoi(argv[i + 1]);
  }
  nb::RaiseFileLimit();
  (void)nodewatch::SetLogLevel("warn");
  std::string dir = nodewatch::testing::MakeTempDir("nodewatch-ingest-bench");
  nodewatch::testing::TestPki pki(dir + "/pki");
  auto server = pki.Issue("aggregator", {.cn = "nodewatch-aggregator", .dns = {"localhost"},
                                         .ips = {"127.0.0.1"}});

  auto agg = nt::StartInProcessAggregator(dir, pki, server);
  if (!agg.ok()) {
    std::fprintf(stderr, "aggregator: %s\n", agg.status().ToString().c_str());
    return 1;
  }
  const std::string address = "127.0.0.1:" + std::to_string((*agg)->ingest_port());

  std::atomic<uint64_t> acked{0};
  std::vector<std::unique_ptr<nodewatch::v1::AgentService::Stub>> stubs;
  std::vector<std::unique_ptr<nb::SimAgent>> agents;
  for (int i = 0; i < streams; ++i) {
    std::string node = "bench-" + std::to_string(i);
    auto cert = pki.Issue(node, {.cn = "system:node:" + node, .orgs = {"system:nodes"}});
    stubs.push_back(nodewatch::v1::AgentService::NewStub(
        nb::AgentChannel(address, nb::StaticCreds(pki.ca_file(), cert))));
    agents.push_back(std::make_unique<nb::SimAgent>(stubs.back().get(), node, batches, records,
                                                    &acked));
    agents.back()->Start();
  }
  auto connect_deadline = Clock::now() + std::chrono::seconds(120);
  for (auto& a : agents) {
    while (!a->hello_acked() && Clock::now() < connect_deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }
  const uint64_t total = static_cast<uint64_t>(streams) * batches * records;
  const uint64_t commits_before = (*agg)->engine().counters().commits.load();
  auto start = Clock::now();
  for (auto& a : agents) a->Go();
  auto deadline = start + std::chrono::seconds(600);
  while (acked.load() < total && Clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  double elapsed = Seconds(start, Clock::now());
  for (auto& a : agents) a->WaitDone();
  const uint64_t commits = (*agg)->engine().counters().commits.load() - commits_before;
  (*agg)->Shutdown();
  if (acked.load() < total) {
    std::fprintf(stderr, "only %lu of %lu records acknowledged\n",
                 static_cast<unsigned long>(acked.load()), static_cast<unsigned long>(total));
    return 1;
  }
  double ingest = static_cast<double>(total) / elapsed;
  std::printf("ingest: %d streams x %d batches x %d records over mTLS in %.2f s, %lu group "
              "commits (%.0f records each)\n",
              streams, batches, records, elapsed, static_cast<unsigned long>(commits),
              static_cast<double>(total) / static_cast<double>(std::max<uint64_t>(commits, 1)));
  // Same storage work as the aggregator did: as many synced WriteBatches as it made group commits.
  const size_t group = static_cast<size_t>(total / std::max<uint64_t>(commits, 1));
  double raw = RawRocksDb(dir + "/raw", streams, batches, records, std::max<size_t>(group, 1));
  // And the naive way: one synced WriteBatch per agent batch.
  double raw_per_batch =
      RawRocksDb(dir + "/raw-per-batch", streams, batches, records, static_cast<size_t>(records));
  std::printf("raw RocksDB: synced WriteBatches of %zu records (the aggregator's mean group), "
              "then of %d records (one per agent batch)\n", group, records);
  nb::PrintBench("ingest_records_per_s", ingest, "records/s");
  nb::PrintBench("rocksdb_raw_records_per_s", raw, "records/s");
  nb::PrintBench("ingest_vs_rocksdb_ratio", raw > 0 ? ingest / raw : 0, "ratio");
  nb::PrintBench("rocksdb_raw_per_batch_records_per_s", raw_per_batch, "records/s");
  std::filesystem::remove_all(dir);
  return 0;
}
