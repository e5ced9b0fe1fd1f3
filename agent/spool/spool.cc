#include "agent/spool/spool.h"

#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <random>
#include <set>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "common/file_util.h"
#include "common/logging.h"
#include "common/status_macros.h"

namespace nodewatch::agent {

using nodewatch::v1::Record;

namespace {

constexpr size_t kFrameHeader = 8;  // u32 length, u32 crc32c, little-endian
constexpr const char* kLaneNames[] = {"urgent", "telemetry"};
constexpr const char* kMetaFile = "spool.meta";
constexpr uint64_t kSeqReservation = 1 << 16;

void PutU32(char* p, uint32_t v) { std::memcpy(p, &v, 4); }
uint32_t GetU32(const char* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

int64_t MonotonicNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

std::string RandomId() {
  std::random_device rd;
  return absl::StrFormat("%08x%08x%08x%08x", rd(), rd(), rd(), rd());
}

absl::Status PwriteAll(int fd, const std::string& data, uint64_t offset, const std::string& path) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = pwrite(fd, data.data() + done, data.size() - done,
                       static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus("pwrite", path, errno);
    }
    done += static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

// Reads frames of one segment sequentially through a buffer.
class FrameReader {
 public:
  FrameReader(int fd, uint64_t offset, uint64_t end) : fd_(fd), offset_(offset), end_(end) {}

  // Next frame's payload, or nullopt at a clean end. `torn` is set when the bytes left do not
  // form a whole valid frame.
  bool Next(std::string_view* payload, bool* torn) {
    *torn = false;
    tail_ = false;
    if (offset_ >= end_) return false;
    if (!Ensure(kFrameHeader)) return *torn = tail_ = true, false;
    uint32_t len = GetU32(buf_.data() + pos_);
    uint32_t crc = GetU32(buf_.data() + pos_ + 4);
    if (len == 0 || len > (64u << 20)) return *torn = true, false;
    if (offset_ + kFrameHeader + len > end_) return *torn = tail_ = true, false;
    if (!Ensure(kFrameHeader + len)) return *torn = tail_ = true, false;
    const char* data = buf_.data() + pos_ + kFrameHeader;
    if (Crc32c(data, len) != crc) {
      tail_ = offset_ + kFrameHeader + len == end_;  // the very last frame: a torn write
      return *torn = true, false;
    }
    *payload = std::string_view(data, len);
    pos_ += kFrameHeader + len;
    offset_ += kFrameHeader + len;
    return true;
  }
  uint64_t offset() const { return offset_; }
  // After a torn Next(): whether the bad bytes are the file's final, incomplete write (what a
  // crash mid-append leaves) rather than damage in the middle.
  bool tail() const { return tail_; }

 private:
  bool Ensure(size_t need) {
    if (buf_.size() - pos_ >= need) return true;
    buf_.erase(0, pos_);
    pos_ = 0;
    uint64_t file_pos = offset_ + buf_.size();
    size_t want = std::max<size_t>(need - buf_.size(), 256 << 10);
    want = static_cast<size_t>(std::min<uint64_t>(want, end_ - file_pos));
    size_t old = buf_.size();
    buf_.resize(old + want);
    size_t got = 0;
    while (got < want) {
      ssize_t n = pread(fd_, buf_.data() + old + got, want - got, static_cast<off_t>(file_pos + got));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      got += static_cast<size_t>(n);
    }
    buf_.resize(old + got);
    return buf_.size() >= need;
  }

  int fd_;
  uint64_t offset_;
  uint64_t end_;
  std::string buf_;
  size_t pos_ = 0;
  bool tail_ = false;
};

}  // namespace

struct Spool::Segment {
  Lane lane;
  uint64_t first_seq;
  uint64_t last_seq = 0;  // 0: empty
  uint64_t size = 0;      // durable bytes; readers never look past it
  uint64_t records = 0;
  int fd = -1;
  std::string path;
  bool damaged = false;         // recovery truncated this segment
  bool torn_tail_only = false;  // ... and only an unfinished last write
  ~Segment() {
    if (fd >= 0) close(fd);
  }
};

Spool::Spool(SpoolOptions options) : options_(std::move(options)) {}
Spool::~Spool() {
  std::lock_guard<std::mutex> lock(mu_);
  (void)PersistMetaLocked();
}

absl::StatusOr<std::unique_ptr<Spool>> Spool::Open(const SpoolOptions& options) {
  if (options.dir.empty()) return absl::InvalidArgumentError("spool-dir is not set");
  if (options.max_bytes < 4 * options.segment_bytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "spool-max-bytes must be at least 4 segments (", 4 * options.segment_bytes, " bytes)"));
  }
  std::unique_ptr<Spool> spool(new Spool(options));
  RETURN_IF_ERROR(spool->Recover());
  return spool;
}

std::string Spool::SegmentPath(Lane lane, uint64_t first_seq) const {
  return absl::StrFormat("%s/%s-%020u.seg", options_.dir, kLaneNames[static_cast<int>(lane)],
                         first_seq);
}

absl::Status Spool::Recover() {
  RETURN_IF_ERROR(MakeDirs(options_.dir));
  const std::string meta_path = options_.dir + "/" + kMetaFile;
  auto meta = ReadFileToString(meta_path);
  if (meta.ok()) {
    for (absl::string_view line : absl::StrSplit(*meta, '\n', absl::SkipEmpty())) {
      std::pair<std::string, std::string> kv = absl::StrSplit(line, absl::MaxSplits('=', 1));
      if (kv.first == "spool_id") spool_id_ = kv.second;
      if ((kv.first == "acked_seq" && !absl::SimpleAtoi(kv.second, &acked_seq_)) ||
          (kv.first == "seq_reserved" && !absl::SimpleAtoi(kv.second, &seq_reserved_))) {
        return absl::DataLossError(absl::StrCat(meta_path, ": bad value '", line, "'"));
      }
    }
  } else if (!absl::IsNotFound(meta.status())) {
    return meta.status();
  }
  if (spool_id_.empty()) spool_id_ = RandomId();

  DIR* dir = opendir(options_.dir.c_str());
  if (dir == nullptr) return ErrnoStatus("opendir", options_.dir, errno);
  std::vector<std::tuple<Lane, uint64_t, std::string>> found;
  while (dirent* entry = readdir(dir)) {
    std::string name = entry->d_name;
    for (int lane = 0; lane < 2; ++lane) {
      std::string prefix = std::string(kLaneNames[lane]) + "-";
      uint64_t first = 0;
      if (name.rfind(prefix, 0) == 0 && name.size() == prefix.size() + 24 &&
          name.substr(name.size() - 4) == ".seg" &&
          absl::SimpleAtoi(name.substr(prefix.size(), 20), &first)) {
        found.emplace_back(static_cast<Lane>(lane), first, options_.dir + "/" + name);
      }
    }
  }
  closedir(dir);
  std::sort(found.begin(), found.end());
  for (const auto& [lane, first, path] : found) RETURN_IF_ERROR(RecoverSegment(lane, first, path));

  next_seq_ = acked_seq_ + 1;
  for (auto& lane : lanes_) {
    for (auto& [first, seg] : lane.segments) next_seq_ = std::max(next_seq_, seg->last_seq + 1);
    // Damage anywhere but the tail of a lane's newest segment may have hidden records that were
    // already sent: continue above every seq ever handed out so none is reused.
    for (auto& [first, seg] : lane.segments) {
      if (seg->damaged && (seg != lane.segments.rbegin()->second || !seg->torn_tail_only)) {
        damaged_ = true;
      }
    }
  }
  if (damaged_) next_seq_ = std::max(next_seq_, seq_reserved_);
  if (corrupt_frames_ > 0) {
    GetLogger("agent.spool")
        ->warn("spool: truncated {} torn or corrupt frame(s) at open{}", corrupt_frames_,
               damaged_ ? "; records in the damaged range are lost and seqs continue at " +
                              std::to_string(next_seq_)
                        : "");
  }
  return PersistMetaLocked();
}

absl::Status Spool::RecoverSegment(Lane lane, uint64_t first_seq, const std::string& path) {
  int fd = open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus("open", path, errno);
  auto seg = std::make_shared<Segment>();
  seg->lane = lane;
  seg->first_seq = first_seq;
  seg->fd = fd;
  seg->path = path;
  off_t end = lseek(fd, 0, SEEK_END);
  if (end < 0) return ErrnoStatus("lseek", path, errno);

  FrameReader reader(fd, 0, static_cast<uint64_t>(end));
  std::string_view payload;
  bool torn = false;
  uint64_t good_end = 0;
  Record record;
  while (reader.Next(&payload, &torn)) {
    // A frame whose checksum matches but whose content is wrong is corruption too.
    if (!record.ParseFromArray(payload.data(), static_cast<int>(payload.size())) ||
        record.seq() <= seg->last_seq || (seg->records == 0 && record.seq() != first_seq)) {
      torn = true;
      break;
    }
    seg->last_seq = record.seq();
    ++seg->records;
    good_end = reader.offset();
    if (lane == Lane::kUrgent && record.seq() > acked_seq_) urgent_unacked_.insert(record.seq());
  }
  seg->size = good_end;
  if (torn || good_end != static_cast<uint64_t>(end)) {
    ++corrupt_frames_;
    seg->damaged = true;
    seg->torn_tail_only = reader.tail();
    if (ftruncate(fd, static_cast<off_t>(good_end)) != 0) {
      return ErrnoStatus("ftruncate", path, errno);
    }
    if (fdatasync(fd) != 0) return ErrnoStatus("fdatasync", path, errno);
  }
  if (seg->records == 0) {
    // Nothing valid: the file was created but its first frame never became durable.
    seg.reset();
    if (unlink(path.c_str()) != 0) return ErrnoStatus("unlink", path, errno);
    return absl::OkStatus();
  }
  lanes_[static_cast<int>(lane)].segments[first_seq] = std::move(seg);
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<Spool::Segment>> Spool::NewSegment(Lane lane, uint64_t first_seq) {
  auto seg = std::make_shared<Segment>();
  seg->lane = lane;
  seg->first_seq = first_seq;
  seg->path = SegmentPath(lane, first_seq);
  // O_TRUNC: a file of this name can only be the leftover of a failed write of these same seqs.
  seg->fd = open(seg->path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (seg->fd < 0) return ErrnoStatus("open", seg->path, errno);
  lanes_[static_cast<int>(lane)].segments[first_seq] = seg;
  return seg;
}

absl::Status Spool::WriteFrames(Lane lane, std::vector<Record>& records, uint64_t* last_seq) {
  for (const auto& r : records) {
    if (r.ByteSizeLong() + 16 > options_.max_record_bytes) {
      return absl::InvalidArgumentError(
          absl::StrCat("record of ", r.ByteSizeLong(), " bytes exceeds the spool's record limit"));
    }
  }
  struct Pending {
    std::shared_ptr<Segment> seg;
    bool created = false;
    std::string data;
    uint64_t last_seq = 0;
    uint64_t records = 0;
  };
  std::vector<Pending> pending;
  auto& segments = lanes_[static_cast<int>(lane)].segments;
  uint64_t seq = next_seq_;
  absl::Status status;
  for (auto& record : records) {
    record.set_seq(seq);
    std::string payload = record.SerializeAsString();
    const size_t frame_len = kFrameHeader + payload.size();
    if (pending.empty() || pending.back().seg->size + pending.back().data.size() + frame_len >
                               options_.segment_bytes) {
      if (pending.empty() && !segments.empty()) {
        auto& last = segments.rbegin()->second;
        if (last->size + frame_len <= options_.segment_bytes) pending.push_back(Pending{last, false, {}, 0, 0});
      }
      if (pending.empty() || !pending.back().data.empty()) {
        auto seg = NewSegment(lane, seq);
        if (!seg.ok()) {
          status = seg.status();
          break;
        }
        pending.push_back(Pending{*seg, true, {}, 0, 0});
      }
    }
    Pending& p = pending.back();
    char header[kFrameHeader];
    PutU32(header, static_cast<uint32_t>(payload.size()));
    PutU32(header + 4, Crc32c(payload.data(), payload.size()));
    p.data.append(header, kFrameHeader);
    p.data.append(payload);
    p.last_seq = seq;
    ++p.records;
    ++seq;
  }
  // Seqs are reserved in the meta file ahead of use, so that even after damage a restart can
  // continue above every seq that ever left this spool.
  if (status.ok() && seq > seq_reserved_) {
    seq_reserved_ = seq + kSeqReservation;
    status = PersistMetaLocked();
  }
  bool created_any = false;
  for (auto& p : pending) {
    if (!status.ok()) break;
    created_any |= p.created;
    status = PwriteAll(p.seg->fd, p.data, p.seg->size, p.seg->path);
    if (status.ok() && fdatasync(p.seg->fd) != 0) {
      status = ErrnoStatus("fdatasync", p.seg->path, errno);
    }
  }
  if (status.ok() && created_any) status = FsyncDir(options_.dir);
  if (!status.ok()) {
    // Nothing was published: forget segments made for this write so seqs are reused cleanly.
    for (auto& p : pending) {
      if (!p.created) continue;
      segments.erase(p.seg->first_seq);
      unlink(p.seg->path.c_str());
    }
    return status;
  }
  // Durable: publish to readers.
  for (auto& p : pending) {
    p.seg->size += p.data.size();
    p.seg->last_seq = p.last_seq;
    p.seg->records += p.records;
  }
  next_seq_ = seq;
  *last_seq = seq - 1;
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> Spool::AppendUrgent(Record record) {
  std::vector<Record> one;
  one.push_back(std::move(record));
  uint64_t last = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    RETURN_IF_ERROR(WriteFrames(Lane::kUrgent, one, &last));
    urgent_unacked_.insert(last);
  }
  new_records_cv_.notify_all();
  return last;
}

absl::StatusOr<uint64_t> Spool::AppendTelemetry(std::vector<Record> records) {
  if (records.empty()) return highest_seq();
  uint64_t last = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    RETURN_IF_ERROR(WriteFrames(Lane::kTelemetry, records, &last));
    EnforceBoundLocked();
  }
  new_records_cv_.notify_all();
  return last;
}

void Spool::EnforceBoundLocked() {
  auto total = [this] {
    uint64_t bytes = 0;
    for (auto& lane : lanes_) {
      for (auto& [first, seg] : lane.segments) bytes += seg->size;
    }
    return bytes;
  };
  auto& telemetry = lanes_[static_cast<int>(Lane::kTelemetry)].segments;
  while (total() > options_.max_bytes && telemetry.size() > 1) {
    std::shared_ptr<Segment> victim = telemetry.begin()->second;
    uint64_t lost = 0;
    if (victim->last_seq > acked_seq_) {
      if (victim->first_seq > acked_seq_) {
        lost = victim->records;
      } else {
        FrameReader reader(victim->fd, 0, victim->size);
        std::string_view payload;
        bool torn = false;
        Record record;
        while (reader.Next(&payload, &torn)) {
          if (record.ParseFromArray(payload.data(), static_cast<int>(payload.size())) &&
              record.seq() > acked_seq_) {
            ++lost;
          }
        }
      }
    }
    dropped_records_ += lost;
    telemetry.erase(telemetry.begin());
    if (unlink(victim->path.c_str()) != 0) {
      GetLogger("agent.spool")->error("spool: unlink {}: {}", victim->path, std::strerror(errno));
    }
    GetLogger("agent.spool")
        ->warn("spool full ({} bytes max): dropped {} unacknowledged telemetry records (seq {}..{})",
               options_.max_bytes, lost, victim->first_seq, victim->last_seq);
  }
}

absl::Status Spool::Read(Lane lane, uint64_t after, size_t max_records, size_t max_bytes,
                         SpoolCursor* cursor, std::vector<Record>* out) {
  std::vector<std::pair<std::shared_ptr<Segment>, uint64_t>> snapshot;  // segment, durable size
  uint64_t floor = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    floor = std::max(after, acked_seq_);
    for (auto& [first, seg] : lanes_[static_cast<int>(lane)].segments) {
      if (seg->last_seq > floor) snapshot.emplace_back(seg, seg->size);
    }
  }
  size_t taken = 0;
  size_t bytes = 0;
  for (auto& [seg, size] : snapshot) {
    uint64_t offset = 0;
    // Resume where this reader stopped if every record before that point is at or below floor.
    if (cursor != nullptr && cursor->lane == static_cast<int>(lane) &&
        cursor->segment_first_seq == seg->first_seq && cursor->last_seq <= floor &&
        cursor->offset <= size) {
      offset = cursor->offset;
    }
    FrameReader reader(seg->fd, offset, size);
    std::string_view payload;
    bool torn = false;
    while (taken < max_records && bytes < max_bytes && reader.Next(&payload, &torn)) {
      Record record;
      if (!record.ParseFromArray(payload.data(), static_cast<int>(payload.size()))) {
        return absl::DataLossError(absl::StrCat("spool segment ", seg->path, " is corrupt"));
      }
      if (cursor != nullptr) {
        *cursor = {seg->first_seq, reader.offset(), record.seq(), static_cast<int>(lane)};
      }
      if (record.seq() <= floor) continue;
      bytes += payload.size();
      ++taken;
      out->push_back(std::move(record));
    }
    if (torn) return absl::DataLossError(absl::StrCat("spool segment ", seg->path, " is corrupt"));
    if (taken >= max_records || bytes >= max_bytes) break;
  }
  return absl::OkStatus();
}

absl::Status Spool::Trim(uint64_t acked_seq, bool force) {
  std::lock_guard<std::mutex> lock(mu_);
  acked_seq = std::min(acked_seq, next_seq_ - 1);
  if (acked_seq <= acked_seq_ && !force) return absl::OkStatus();
  acked_seq_ = std::max(acked_seq_, acked_seq);
  urgent_unacked_.erase(urgent_unacked_.begin(), urgent_unacked_.upper_bound(acked_seq_));
  std::vector<std::shared_ptr<Segment>> doomed;
  for (auto& lane : lanes_) {
    // The newest segment of a lane stays: it is where the next append goes.
    while (lane.segments.size() > 1 && lane.segments.begin()->second->last_seq <= acked_seq_) {
      doomed.push_back(lane.segments.begin()->second);
      lane.segments.erase(lane.segments.begin());
    }
  }
  int64_t now = MonotonicNs();
  // The watermark must be durable before segments go, or a restart could reuse their seqs.
  if (!doomed.empty() || force || now - last_meta_write_ns_ > 1'000'000'000) {
    RETURN_IF_ERROR(PersistMetaLocked());
    last_meta_write_ns_ = now;
  }
  for (auto& seg : doomed) {
    if (unlink(seg->path.c_str()) != 0) return ErrnoStatus("unlink", seg->path, errno);
  }
  return absl::OkStatus();
}

absl::Status Spool::PersistMetaLocked() {
  return WriteFileAtomic(options_.dir + "/" + kMetaFile,
                         absl::StrCat("spool_id=", spool_id_, "\nacked_seq=", acked_seq_,
                                      "\nseq_reserved=", seq_reserved_, "\n"));
}

uint64_t Spool::WaitForNewRecords(uint64_t seen, int64_t timeout_ms) {
  std::unique_lock<std::mutex> lock(mu_);
  new_records_cv_.wait_for(lock, std::chrono::milliseconds(timeout_ms),
                           [&] { return next_seq_ - 1 > seen; });
  return next_seq_ - 1;
}

uint64_t Spool::highest_seq() const {
  std::lock_guard<std::mutex> lock(mu_);
  return next_seq_ - 1;
}

uint64_t Spool::lowest_seq_held() const {
  std::lock_guard<std::mutex> lock(mu_);
  uint64_t lowest = next_seq_;
  if (!urgent_unacked_.empty()) lowest = std::min(lowest, *urgent_unacked_.begin());
  // Telemetry seqs inside a segment are all present (seqs between them are urgent), so the first
  // unacknowledged telemetry seq is either the first seq of the oldest segment or acked + 1.
  for (auto& [first, seg] : lanes_[static_cast<int>(Lane::kTelemetry)].segments) {
    if (seg->last_seq <= acked_seq_) continue;
    lowest = std::min(lowest, std::max(first, acked_seq_ + 1));
    break;
  }
  return lowest;
}

SpoolStats Spool::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  SpoolStats s;
  for (auto& lane : lanes_) {
    for (auto& [first, seg] : lane.segments) {
      s.bytes += seg->size;
      if (seg->last_seq > acked_seq_) s.records += seg->records;
      ++s.segments;
    }
  }
  s.dropped_records = dropped_records_;
  s.corrupt_frames = corrupt_frames_;
  s.highest_seq = next_seq_ - 1;
  s.acked_seq = acked_seq_;
  return s;
}

}  // namespace nodewatch::agent
