// Fuzz target: bytes an agent could send. Parses them as AgentMessage (the ingest service does
// the same with every message) and feeds whatever parses through the IngestEngine on an
// in-memory RocksDB: Hello first, then the batch. Must never crash, and the node's watermark must
// never pass a seq it does not hold or know to be lost.
#include <rocksdb/env.h>

#include <cstdint>
#include <future>

#include "aggregator/ingest/ingest_engine.h"
#include "common/logging.h"

namespace {

struct Fixture {
  Fixture() {
    (void)nodewatch::SetLogLevel("off");
    env.reset(rocksdb::NewMemEnv(rocksdb::Env::Default()));
    store = std::move(*nodewatch::aggregator::OpenRocksDbStore({.path = "/fuzz/db", .env = env.get()}));
    engine = std::make_unique<nodewatch::aggregator::IngestEngine>(*store, clock);
    if (!engine->Start().ok()) abort();
  }
  nodewatch::FakeClock clock;
  std::unique_ptr<rocksdb::Env> env;
  std::unique_ptr<nodewatch::aggregator::Store> store;
  std::unique_ptr<nodewatch::aggregator::IngestEngine> engine;
};

absl::StatusOr<uint64_t> Wait(std::promise<absl::StatusOr<uint64_t>>& p) {
  return p.get_future().get();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Fixture* fixture = new Fixture();
  nodewatch::v1::AgentMessage message;
  if (!message.ParseFromArray(data, static_cast<int>(size))) return 0;
  auto& engine = *fixture->engine;
  std::promise<absl::StatusOr<uint64_t>> hello_done;
  nodewatch::v1::Hello hello = message.has_hello() ? message.hello() : nodewatch::v1::Hello();
  engine.SubmitHello("fuzz-node", hello, [&](absl::StatusOr<uint64_t> a) { hello_done.set_value(a); });
  if (!Wait(hello_done).ok()) return 0;  // refused (e.g. absurd seqs): nothing else to try
  if (message.has_batch()) {
    std::promise<absl::StatusOr<uint64_t>> done;
    engine.SubmitBatch("fuzz-node", message.batch(),
                       [&](absl::StatusOr<uint64_t> a) { done.set_value(a); });
    auto acked = Wait(done);
    if (acked.ok()) {
      auto node = engine.GetNode("fuzz-node");
      if (!node || node->acked_seq() != *acked) abort();
    }
  }
  return 0;
}
