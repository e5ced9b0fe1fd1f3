// Key encodings of the aggregator's RocksDB column families. Fixed-width big-endian integers, so
// that memcmp order equals numeric order (times are sign-flipped: negative times sort first).
//
//   records       [node id u32][time ms i64][seq u64]  -> nodewatch.v1.Record
//   interruptions [time ms i64][node id u32][seq u64]  -> nodewatch.v1.Record (interruption)
//   nodes         [node name]                          -> nodewatch.internal.StoredNode
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace nodewatch::aggregator {

inline void AppendBigEndian(std::string* out, uint64_t v, int bytes) {
  for (int i = bytes - 1; i >= 0; --i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
}
inline uint64_t ReadBigEndian(std::string_view in, size_t pos, int bytes) {
  uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) v = (v << 8) | static_cast<uint8_t>(in[pos + i]);
  return v;
}
inline uint64_t FlipTime(int64_t t) { return static_cast<uint64_t>(t) ^ (1ull << 63); }
inline int64_t UnflipTime(uint64_t v) { return static_cast<int64_t>(v ^ (1ull << 63)); }

constexpr size_t kRecordKeySize = 4 + 8 + 8;

inline std::string RecordKey(uint32_t node_id, int64_t time_ms, uint64_t seq) {
  std::string key;
  key.reserve(kRecordKeySize);
  AppendBigEndian(&key, node_id, 4);
  AppendBigEndian(&key, FlipTime(time_ms), 8);
  AppendBigEndian(&key, seq, 8);
  return key;
}

inline std::string InterruptionKey(int64_t time_ms, uint32_t node_id, uint64_t seq) {
  std::string key;
  key.reserve(kRecordKeySize);
  AppendBigEndian(&key, FlipTime(time_ms), 8);
  AppendBigEndian(&key, node_id, 4);
  AppendBigEndian(&key, seq, 8);
  return key;
}

struct DecodedRecordKey {
  uint32_t node_id;
  int64_t time_ms;
  uint64_t seq;
};

inline bool DecodeRecordKey(std::string_view key, DecodedRecordKey* out) {
  if (key.size() != kRecordKeySize) return false;
  out->node_id = static_cast<uint32_t>(ReadBigEndian(key, 0, 4));
  out->time_ms = UnflipTime(ReadBigEndian(key, 4, 8));
  out->seq = ReadBigEndian(key, 12, 8);
  return true;
}

inline bool DecodeInterruptionKey(std::string_view key, DecodedRecordKey* out) {
  if (key.size() != kRecordKeySize) return false;
  out->time_ms = UnflipTime(ReadBigEndian(key, 0, 8));
  out->node_id = static_cast<uint32_t>(ReadBigEndian(key, 8, 4));
  out->seq = ReadBigEndian(key, 12, 8);
  return true;
}

}  // namespace nodewatch::aggregator
