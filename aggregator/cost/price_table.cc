#include "aggregator/cost/price_table.h"

#include <yaml-cpp/yaml.h>

#include <functional>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/status_macros.h"

namespace nodewatch::aggregator {

// Generated from default_prices.yaml by CMake (default_prices.cc).
extern const char kDefaultPricesYaml[];

const char* TransferClassName(TransferClass c) {
  switch (c) {
    case TransferClass::kSameZone:
      return "same-zone";
    case TransferClass::kCrossZone:
      return "cross-zone";
    case TransferClass::kCrossRegion:
      return "cross-region";
    case TransferClass::kInternet:
      return "internet";
    case TransferClass::kUnclassified:
      return "unclassified";
  }
  return "unclassified";
}

namespace {

absl::StatusOr<std::string> RequiredString(const YAML::Node& entry, const std::string& key,
                                           const std::string& where) {
  const YAML::Node v = entry[key];
  if (!v || !v.IsScalar() || v.Scalar().empty()) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": '", key, "' is required"));
  }
  return v.Scalar();
}

// A price: absent is 0; present must be a finite, non-negative number below $1000.
absl::StatusOr<double> Price(const YAML::Node& entry, const std::string& key,
                             const std::string& where) {
  const YAML::Node v = entry[key];
  if (!v) return 0.0;
  double price = 0;
  if (!v.IsScalar() || !YAML::convert<double>::decode(v, price) || !(price >= 0) || price > 1000) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": '", key, "' must be a price in USD between 0 and 1000"));
  }
  return price;
}

// Calls `entry` for each map of the list `key` ("price table F: key[i]" names it in errors). An
// absent list is empty unless `required`.
absl::Status ForEachEntry(
    const YAML::Node& root, const std::string& key, const std::string& origin, bool required,
    const std::function<absl::Status(const std::string& where, const YAML::Node& e)>& entry) {
  const YAML::Node list = root[key];
  if (!list && !required) return absl::OkStatus();
  if (!list || !list.IsSequence()) {
    return absl::InvalidArgumentError(
        absl::StrCat("price table ", origin, ": '", key, "' must be a list"));
  }
  for (size_t i = 0; i < list.size(); ++i) {
    const std::string where = absl::StrCat("price table ", origin, ": ", key, "[", i, "]");
    const YAML::Node e = list[i];
    if (!e.IsMap()) return absl::InvalidArgumentError(where + ": not a map");
    if (absl::Status s = entry(where, e); !s.ok()) return s;
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<PriceTable> PriceTable::Parse(const std::string& yaml, const std::string& origin) {
  YAML::Node root;
  try {
    root = YAML::Load(yaml);
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("price table ", origin, ": ", e.what()));
  }
  if (!root.IsMap()) {
    return absl::InvalidArgumentError(absl::StrCat("price table ", origin, ": not a YAML map"));
  }
  PriceTable table;
  table.origin_ = origin;
  if (root["source"] && root["source"].IsScalar()) table.source_ = root["source"].Scalar();
  RETURN_IF_ERROR(ForEachEntry(
      root, "instances", origin, /*required=*/true,
      [&](const std::string& where, const YAML::Node& e) -> absl::Status {
        auto provider = RequiredString(e, "provider", where);
        auto region = RequiredString(e, "region", where);
        auto type = RequiredString(e, "type", where);
        auto od = Price(e, "on_demand", where);
        auto spot = Price(e, "spot", where);
        for (const absl::Status& s :
             {provider.status(), region.status(), type.status(), od.status(), spot.status()}) {
          if (!s.ok()) return s;
        }
        if (*od <= 0) return absl::InvalidArgumentError(where + ": 'on_demand' is required");
        table.instances_[{*provider, *region, *type}] = {.on_demand = *od, .spot = *spot};
        return absl::OkStatus();
      }));
  RETURN_IF_ERROR(ForEachEntry(
      root, "transfer", origin, /*required=*/false,
      [&](const std::string& where, const YAML::Node& e) -> absl::Status {
        auto provider = RequiredString(e, "provider", where);
        if (!provider.ok()) return provider.status();
        std::string region = e["region"] && e["region"].IsScalar() ? e["region"].Scalar() : "*";
        if (region != "*") {
          // Transfer is summed per provider (the rollups do not keep regions), so a per-region
          // price could not be applied consistently.
          return absl::InvalidArgumentError(
              where + ": transfer prices are per provider; 'region' must be \"*\" or absent");
        }
        TransferPrice price;
        for (TransferClass c :
             {TransferClass::kCrossZone, TransferClass::kCrossRegion, TransferClass::kInternet}) {
          std::string key = TransferClassName(c);
          for (char& ch : key) ch = ch == '-' ? '_' : ch;
          auto p = Price(e, key, where);
          if (!p.ok()) return p.status();
          price.per_gb[static_cast<int>(c)] = *p;
        }
        table.transfer_[{*provider, region}] = price;
        return absl::OkStatus();
      }));
  RETURN_IF_ERROR(ForEachEntry(
      root, "storage", origin, /*required=*/false,
      [&](const std::string& where, const YAML::Node& e) -> absl::Status {
        auto provider = RequiredString(e, "provider", where);
        if (!provider.ok()) return provider.status();
        std::string region = e["region"] && e["region"].IsScalar() ? e["region"].Scalar() : "*";
        if (!e["per_gb_month"]) {
          return absl::InvalidArgumentError(where + ": 'per_gb_month' is required");
        }
        auto p = Price(e, "per_gb_month", where);
        if (!p.ok()) return p.status();
        table.storage_[{*provider, region}] = *p;
        return absl::OkStatus();
      }));
  return table;
}

const PriceTable& PriceTable::BuiltIn() {
  static const PriceTable* table = [] {
    auto parsed = Parse(kDefaultPricesYaml, "built-in");
    // The built-in table is checked by a unit test; a broken one is a build defect.
    if (!parsed.ok()) std::abort();
    return new PriceTable(std::move(*parsed));
  }();
  return *table;
}

absl::StatusOr<PriceTable> PriceTable::LoadFile(const std::string& path) {
  auto text = ReadFileToString(path);
  if (!text.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("config key 'price-table': ", text.status().message()));
  }
  return Parse(*text, path);
}

std::optional<InstancePrice> PriceTable::Instance(const std::string& provider,
                                                  const std::string& region,
                                                  const std::string& type) const {
  if (auto it = instances_.find({provider, region, type}); it != instances_.end()) {
    return it->second;
  }
  if (auto it = instances_.find({provider, "*", type}); it != instances_.end()) return it->second;
  return std::nullopt;
}

TransferPrice PriceTable::Transfer(const std::string& provider, const std::string& region) const {
  if (auto it = transfer_.find({provider, region}); it != transfer_.end()) return it->second;
  if (auto it = transfer_.find({provider, "*"}); it != transfer_.end()) return it->second;
  return {};
}

std::optional<double> PriceTable::StoragePerGbMonth(const std::string& provider,
                                                    const std::string& region) const {
  if (auto it = storage_.find({provider, region}); it != storage_.end()) return it->second;
  if (auto it = storage_.find({provider, "*"}); it != storage_.end()) return it->second;
  return std::nullopt;
}

std::optional<double> PriceTable::HourlyPrice(const nodewatch::v1::NodeInfo& info) const {
  auto price = Instance(info.provider(), info.region(), info.instance_type());
  if (!price) return std::nullopt;
  if (info.lifecycle() == nodewatch::v1::LIFECYCLE_SPOT && price->spot > 0) return price->spot;
  return price->on_demand;
}

}  // namespace nodewatch::aggregator
