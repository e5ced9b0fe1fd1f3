// Arming and taking back one interruption notice per trial in the metadata simulator, shared by
// the latency benchmarks. Each armed notice is a new cloud event (its own id), so the agent and
// the aggregator treat every trial as a fresh interruption.
#pragma once

#include <chrono>
#include <random>
#include <string>
#include <thread>

#include "bench/bench_support.h"
#include "tests/support/metadata_simulator.h"

namespace nodewatch::bench {

// Arms trial `trial`'s notice; polled clouds at a random phase of the agent's poll. Returns when
// it is visible (MetadataSimulator::last_visible_ms() has the time).
inline void ArmNotice(testing::MetadataSimulator& sim, const std::string& cloud, int trial,
                      std::mt19937& rng) {
  if (cloud == "aws") {
    // A new second, so the instance-action `time` (the event's identity) differs per trial.
    const int64_t next_second = (NowMs() / 1000 + 1) * 1000;
    std::this_thread::sleep_until(std::chrono::system_clock::time_point(
        std::chrono::milliseconds(next_second + static_cast<int64_t>(rng() % 1000))));
    sim.ArmAwsSpot("terminate");
  } else if (cloud == "gcp") {
    sim.SetGcpPreempted(true);
  } else {
    std::this_thread::sleep_for(std::chrono::milliseconds(rng() % 1000));
    sim.AddAzureEvent("BENCH-" + std::to_string(trial), "Preempt", {"nodewatch-vmss_3"},
                      NowMs() + 30'000);
  }
}

// Takes the notice back and waits until the end has landed (Azure reports it as a COMPLETED
// notice one poll later).
inline void ClearNotice(testing::MetadataSimulator& sim, const std::string& cloud, int trial,
                        int64_t settle_ms) {
  if (cloud == "aws") sim.Clear();
  if (cloud == "gcp") sim.SetGcpPreempted(false);
  if (cloud == "azure") sim.RemoveAzureEvent("BENCH-" + std::to_string(trial));
  std::this_thread::sleep_for(std::chrono::milliseconds(cloud == "azure" ? 1500 : settle_ms));
}

}  // namespace nodewatch::bench
