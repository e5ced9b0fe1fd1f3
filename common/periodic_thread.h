// A thread that runs `tick` now and then every `interval_ms` until stopped. Stop() interrupts the
// wait at once (it does not interrupt a running tick) and joins. Used by the agent's collectors.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>

namespace nodewatch {

class PeriodicThread {
 public:
  PeriodicThread(int64_t interval_ms, std::function<void()> tick)
      : interval_ms_(interval_ms), tick_(std::move(tick)) {}
  PeriodicThread(const PeriodicThread&) = delete;
  PeriodicThread& operator=(const PeriodicThread&) = delete;
  ~PeriodicThread() { Stop(); }

  void Start() {
    std::lock_guard<std::mutex> lock(mu_);
    if (running_) return;
    running_ = true;
    thread_ = std::thread([this] {
      std::unique_lock<std::mutex> lock(mu_);
      while (running_) {
        lock.unlock();
        tick_();
        lock.lock();
        cv_.wait_for(lock, std::chrono::milliseconds(interval_ms_), [&] { return !running_; });
      }
    });
  }

  void Stop() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      running_ = false;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
  }

 private:
  const int64_t interval_ms_;
  const std::function<void()> tick_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool running_ = false;
  std::thread thread_;
};

}  // namespace nodewatch
