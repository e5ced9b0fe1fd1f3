// Fuzz target: arbitrary bytes as a spool segment file left on disk (torn writes, bit rot,
// hostile files). Opening the spool must succeed or fail cleanly, reading must return records in
// strictly increasing seq order, and a new append must get a seq above every one read.
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <fstream>

#include "agent/spool/spool.h"
#include "common/logging.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string dir = [] {
    (void)nodewatch::SetLogLevel("off");
    char templ[] = "/tmp/nodewatch-spool-fuzz-XXXXXX";
    return std::string(mkdtemp(templ));
  }();
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  {
    std::ofstream f(dir + "/telemetry-00000000000000000001.seg", std::ios::binary);
    f.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  }
  auto spool = nodewatch::agent::Spool::Open({.dir = dir});
  if (!spool.ok()) return 0;
  std::vector<nodewatch::v1::Record> records;
  if (!(*spool)->Read(nodewatch::agent::Lane::kTelemetry, 0, 1 << 20, 1ull << 32, nullptr, &records)
           .ok()) {
    abort();  // recovery must leave only readable frames behind
  }
  uint64_t last = 0;
  for (const auto& r : records) {
    if (r.seq() <= last) abort();
    last = r.seq();
  }
  nodewatch::v1::Record next;
  next.mutable_heartbeat()->set_load1(1);
  auto seq = (*spool)->AppendTelemetry({next});
  if (seq.ok() && *seq <= last) abort();
  return 0;
}
