// Time as an injected dependency (STYLE.md G3): everything that polls, backs off, expires or
// timestamps reads a Clock&, so tests set the time instead of sleeping.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>

namespace nodewatch {

class Clock {
 public:
  virtual ~Clock() = default;
  // Wall-clock time in milliseconds since the Unix epoch. Thread-safe.
  virtual int64_t NowUnixMs() const = 0;
  // Monotonic time in nanoseconds from an arbitrary origin, for intervals. Thread-safe.
  virtual int64_t MonotonicNs() const = 0;
};

class SystemClock final : public Clock {
 public:
  int64_t NowUnixMs() const override {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
  }
  int64_t MonotonicNs() const override {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
  }
  // Process-wide instance for production wiring in main().
  static SystemClock& Get() {
    static SystemClock clock;
    return clock;
  }
};

// Test double: time moves only when the test says so.
class FakeClock final : public Clock {
 public:
  explicit FakeClock(int64_t start_unix_ms = 1'760'000'000'000) : now_ms_(start_unix_ms) {}
  int64_t NowUnixMs() const override { return now_ms_.load(); }
  int64_t MonotonicNs() const override { return now_ms_.load() * 1'000'000; }
  void Advance(int64_t ms) { now_ms_ += ms; }
  void Set(int64_t unix_ms) { now_ms_ = unix_ms; }

 private:
  std::atomic<int64_t> now_ms_;
};

}  // namespace nodewatch
