// Prometheus plumbing shared by the agent and the aggregator: an HTTP /metrics endpoint that asks
// a collect function for the current values at scrape time, and a small builder of metric
// families, so hot paths only bump atomics and nothing is registered twice.
//
//   auto endpoint = MetricsEndpoint::Start("0.0.0.0:9464", [&] {
//     MetricFamilies f;
//     f.Counter("nodewatch_x_total", "What x counts.", counters.x.load());
//     return f.Take();
//   });
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "prometheus/metric_family.h"

namespace prometheus {
class Exposer;
}

namespace nodewatch {

// A fixed-bucket histogram fed from hot paths (thread-safe) and exported by MetricFamilies.
class HistogramData {
 public:
  explicit HistogramData(std::vector<double> upper_bounds)
      : bounds_(std::move(upper_bounds)), counts_(bounds_.size() + 1, 0) {}
  void Observe(double value);
  struct Snapshot {
    std::vector<double> bounds;
    std::vector<uint64_t> cumulative;  // per bound, then +Inf
    double sum = 0;
    uint64_t count = 0;
  };
  Snapshot Take() const;

 private:
  mutable std::mutex mu_;
  std::vector<double> bounds_;
  std::vector<uint64_t> counts_;  // non-cumulative, last is +Inf
  double sum_ = 0;
};

class MetricFamilies {
 public:
  using Labels = std::map<std::string, std::string>;
  // Consecutive calls with the same name add samples (with other labels) to one family.
  void Counter(const std::string& name, const std::string& help, double value, Labels labels = {});
  void Gauge(const std::string& name, const std::string& help, double value, Labels labels = {});
  void Histogram(const std::string& name, const std::string& help, const HistogramData& data,
                 Labels labels = {});
  std::vector<prometheus::MetricFamily> Take() { return std::move(families_); }

 private:
  void Add(const std::string& name, const std::string& help, prometheus::MetricType type,
           double value, Labels labels);
  std::vector<prometheus::MetricFamily> families_;
};

class MetricsEndpoint {
 public:
  using CollectFn = std::function<std::vector<prometheus::MetricFamily>()>;
  // Listens on `address` (host:port; port 0 picks one). The error names `key`, the config key.
  static absl::StatusOr<std::unique_ptr<MetricsEndpoint>> Start(const std::string& key,
                                                                const std::string& address,
                                                                CollectFn collect);
  ~MetricsEndpoint();
  int port() const;

 private:
  MetricsEndpoint() = default;
  std::unique_ptr<prometheus::Exposer> exposer_;
  std::shared_ptr<void> collectable_;
};

}  // namespace nodewatch
