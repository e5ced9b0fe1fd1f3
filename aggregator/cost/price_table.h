// PriceTable: hourly instance prices by provider, region, instance type and lifecycle, and
// data-transfer prices per GB by transfer class. Loaded from YAML (a documented default is built
// in; operators override it with --price-table FILE):
//
//   source: "where the figures come from, and when"
//   instances:
//     - {provider: aws, region: us-east-1, type: t3.medium, on_demand: 0.0416, spot: 0.0125}
//     - {provider: aws, region: "*", type: t3.medium, on_demand: 0.0416}   # any other region
//   transfer:
//     - {provider: aws, cross_zone: 0.01, cross_region: 0.02, internet: 0.09}  # per provider
//   storage:
//     - {provider: aws, region: "*", per_gb_month: 0.08}   # a stopped instance's disks
//
// Lookups prefer an exact region over "*". A spot node whose type has no spot price is priced at
// on-demand (an upper bound) and counted as such. Immutable after Load, so any thread may read.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <tuple>

#include "absl/status/statusor.h"
#include "nodewatch/v1/records.pb.h"

namespace nodewatch::aggregator {

enum class TransferClass { kSameZone = 0, kCrossZone, kCrossRegion, kInternet, kUnclassified };
constexpr int kTransferClasses = 5;
const char* TransferClassName(TransferClass c);

struct InstancePrice {
  double on_demand = 0;  // USD per hour
  double spot = 0;       // USD per hour; 0: unknown
};

struct TransferPrice {
  double per_gb[kTransferClasses] = {0, 0, 0, 0, 0};  // USD per GB (10^9 bytes), by class
};

class PriceTable {
 public:
  // Parses the YAML text above; errors name the entry and the key.
  static absl::StatusOr<PriceTable> Parse(const std::string& yaml, const std::string& origin);
  // The built-in table (aggregator/cost/default_prices.yaml).
  static const PriceTable& BuiltIn();
  static absl::StatusOr<PriceTable> LoadFile(const std::string& path);

  std::optional<InstancePrice> Instance(const std::string& provider, const std::string& region,
                                        const std::string& type) const;
  TransferPrice Transfer(const std::string& provider, const std::string& region) const;
  // USD per GB-month (10^9 bytes, 730 hours) of the persistent disks a stopped instance keeps
  // paying for; nullopt when the table has no storage row for the provider.
  std::optional<double> StoragePerGbMonth(const std::string& provider,
                                          const std::string& region) const;
  // USD per hour for a node; nullopt when its type is not in the table.
  std::optional<double> HourlyPrice(const nodewatch::v1::NodeInfo& info) const;

  const std::string& source() const { return source_; }
  const std::string& origin() const { return origin_; }
  size_t instance_count() const { return instances_.size(); }

 private:
  using Key = std::tuple<std::string, std::string, std::string>;  // provider, region, type
  std::map<Key, InstancePrice> instances_;
  std::map<std::pair<std::string, std::string>, TransferPrice> transfer_;
  std::map<std::pair<std::string, std::string>, double> storage_;  // provider, region
  std::string source_;
  std::string origin_;
};

}  // namespace nodewatch::aggregator
