#include "common/metrics_endpoint.h"

#include <prometheus/collectable.h>
#include <prometheus/exposer.h>

#include <limits>

#include "absl/strings/str_cat.h"

namespace nodewatch {
namespace {

class FunctionCollectable final : public prometheus::Collectable {
 public:
  explicit FunctionCollectable(MetricsEndpoint::CollectFn collect) : collect_(std::move(collect)) {}
  std::vector<prometheus::MetricFamily> Collect() const override { return collect_(); }

 private:
  MetricsEndpoint::CollectFn collect_;
};

}  // namespace

void MetricFamilies::Counter(const std::string& name, const std::string& help, double value,
                             Labels labels) {
  Add(name, help, prometheus::MetricType::Counter, value, std::move(labels));
}

void MetricFamilies::Gauge(const std::string& name, const std::string& help, double value,
                           Labels labels) {
  Add(name, help, prometheus::MetricType::Gauge, value, std::move(labels));
}

void HistogramData::Observe(double value) {
  size_t i = 0;
  while (i < bounds_.size() && value > bounds_[i]) ++i;
  std::lock_guard<std::mutex> lock(mu_);
  ++counts_[i];
  sum_ += value;
}

HistogramData::Snapshot HistogramData::Take() const {
  std::lock_guard<std::mutex> lock(mu_);
  Snapshot s;
  s.bounds = bounds_;
  uint64_t running = 0;
  for (uint64_t c : counts_) {
    running += c;
    s.cumulative.push_back(running);
  }
  s.count = running;
  s.sum = sum_;
  return s;
}

void MetricFamilies::Histogram(const std::string& name, const std::string& help,
                               const HistogramData& data, Labels labels) {
  if (families_.empty() || families_.back().name != name) {
    prometheus::MetricFamily family;
    family.name = name;
    family.help = help;
    family.type = prometheus::MetricType::Histogram;
    families_.push_back(std::move(family));
  }
  HistogramData::Snapshot snap = data.Take();
  prometheus::ClientMetric metric;
  for (auto& [k, v] : labels) metric.label.push_back({k, v});
  metric.histogram.sample_count = snap.count;
  metric.histogram.sample_sum = snap.sum;
  for (size_t i = 0; i < snap.bounds.size(); ++i) {
    metric.histogram.bucket.push_back({snap.cumulative[i], snap.bounds[i]});
  }
  metric.histogram.bucket.push_back(
      {snap.cumulative.back(), std::numeric_limits<double>::infinity()});
  families_.back().metric.push_back(std::move(metric));
}

void MetricFamilies::Add(const std::string& name, const std::string& help,
                         prometheus::MetricType type, double value, Labels labels) {
  if (families_.empty() || families_.back().name != name) {
    prometheus::MetricFamily family;
    family.name = name;
    family.help = help;
    family.type = type;
    families_.push_back(std::move(family));
  }
  prometheus::ClientMetric metric;
  for (auto& [k, v] : labels) metric.label.push_back({k, v});
  (type == prometheus::MetricType::Counter ? metric.counter.value : metric.gauge.value) = value;
  families_.back().metric.push_back(std::move(metric));
}

absl::StatusOr<std::unique_ptr<MetricsEndpoint>> MetricsEndpoint::Start(const std::string& key,
                                                                        const std::string& address,
                                                                        CollectFn collect) {
  std::unique_ptr<MetricsEndpoint> endpoint(new MetricsEndpoint());
  try {
    endpoint->exposer_ = std::make_unique<prometheus::Exposer>(address);
  } catch (const std::exception& e) {  // prometheus-cpp reports bind failures by throwing
    return absl::InvalidArgumentError(
        absl::StrCat(key, " '", address, "': cannot listen: ", e.what()));
  }
  auto collectable = std::make_shared<FunctionCollectable>(std::move(collect));
  endpoint->exposer_->RegisterCollectable(collectable);
  endpoint->collectable_ = collectable;
  return endpoint;
}

MetricsEndpoint::~MetricsEndpoint() = default;

int MetricsEndpoint::port() const {
  auto ports = exposer_->GetListeningPorts();
  return ports.empty() ? 0 : ports.front();
}

}  // namespace nodewatch
