// Small POSIX file helpers with explicit durability: callers say when data must reach the disk.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"

namespace nodewatch {

// errno → absl::Status, naming the operation and path.
absl::Status ErrnoStatus(const std::string& op, const std::string& path, int err);

absl::StatusOr<std::string> ReadFileToString(const std::string& path);

// Replaces `path` with `content` so that a crash leaves either the old or the new file: write a
// temporary, fsync it, rename over, fsync the directory.
absl::Status WriteFileAtomic(const std::string& path, const std::string& content);

// fsync of a directory, so that file creations, renames and unlinks in it are durable.
absl::Status FsyncDir(const std::string& dir);

absl::Status MakeDirs(const std::string& dir);

// CRC-32C (Castagnoli), the checksum of spool frames.
uint32_t Crc32c(const void* data, size_t len);

}  // namespace nodewatch
