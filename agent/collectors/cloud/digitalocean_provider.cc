// DigitalOcean: NodeInfo from droplet metadata (/metadata/v1.json). DigitalOcean publishes no
// interruption or maintenance signal in-band (reference/interruptions.md §3.4); on these nodes
// kubelet graceful node shutdown at ACPI power-off is the only warning.
#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "agent/collectors/cloud/providers.h"

namespace nodewatch::agent {
namespace {

class DigitalOceanProvider final : public ProviderBase {
 public:
  DigitalOceanProvider(const CloudOptions& o, HttpClient& h, const Clock& c, CloudCounters& n)
      : ProviderBase(o, h, c, n, "http://169.254.169.254") {}

  std::string name() const override { return "digitalocean"; }

  absl::StatusOr<nodewatch::v1::NodeInfo> FetchNodeInfo() override {
    auto r = Fetch({.url = base_ + "/metadata/v1.json", .timeout_ms = options_.request_timeout_ms});
    if (!r.ok()) return r.status();
    if (r->status != 200) return absl::UnavailableError(absl::StrCat("droplet metadata: HTTP ", r->status));
    auto json = nlohmann::json::parse(r->body, nullptr, false);
    if (!json.is_object()) {
      Malformed("droplet metadata", r->body);
      return absl::InvalidArgumentError("droplet metadata is not a JSON object");
    }
    nodewatch::v1::NodeInfo info;
    info.set_provider("digitalocean");
    if (json.contains("droplet_id") && json["droplet_id"].is_number_integer()) {
      info.set_instance_id(std::to_string(json["droplet_id"].get<int64_t>()));
    }
    if (json.contains("region") && json["region"].is_string()) info.set_region(json["region"]);
    info.set_lifecycle(nodewatch::v1::LIFECYCLE_ON_DEMAND);  // droplets have no spot tier
    if (json.contains("interfaces") && json["interfaces"].is_object()) {
      for (auto [group, type] : {std::pair{"private", "InternalIP"}, {"public", "ExternalIP"}}) {
        const auto& list = json["interfaces"].value(group, nlohmann::json::array());
        if (!list.is_array() || list.empty() || !list[0].is_object()) continue;
        const auto& v4 = list[0].value("ipv4", nlohmann::json::object());
        if (v4.is_object() && v4.contains("ip_address") && v4["ip_address"].is_string()) {
          AddAddress(info, type, v4["ip_address"].get<std::string>());
        }
      }
    }
    return info;
  }

  void Start(NoticeSink&) override {
    log_->info("digitalocean: no in-band interruption signal exists; relying on kubelet graceful "
               "node shutdown");
  }
};

class NoCloudProvider final : public CloudProvider {
 public:
  std::string name() const override { return "none"; }
  absl::StatusOr<nodewatch::v1::NodeInfo> FetchNodeInfo() override {
    nodewatch::v1::NodeInfo info;
    info.set_provider("none");
    return info;
  }
  void Start(NoticeSink&) override {}
  void Stop() override {}
};

}  // namespace

std::unique_ptr<CloudProvider> MakeDigitalOceanProvider(const CloudOptions& o, HttpClient& h,
                                                        const Clock& c, CloudCounters& n) {
  return std::make_unique<DigitalOceanProvider>(o, h, c, n);
}

std::unique_ptr<CloudProvider> MakeNoCloudProvider() { return std::make_unique<NoCloudProvider>(); }

}  // namespace nodewatch::agent
