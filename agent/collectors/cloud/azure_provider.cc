// Azure: Scheduled Events polled every `azure_poll_ms` (warmed at start: the first call can take
// up to two minutes), diffed on DocumentIncarnation, filtered to events whose Resources name this
// VM; an event that disappears is reported COMPLETED. Acknowledge() POSTs StartRequests.
// Payloads as in reference/interruptions.md §3.2.
#include <nlohmann/json.hpp>

#include <map>
#include <mutex>

#include "absl/strings/str_cat.h"
#include "agent/collectors/cloud/cloud_time.h"
#include "agent/collectors/cloud/providers.h"

namespace nodewatch::agent {
namespace {

using nodewatch::v1::InterruptionNotice;
using nodewatch::v1::NodeInfo;

constexpr char kEventsPath[] = "/metadata/scheduledevents?api-version=2020-07-01";
constexpr int64_t kFirstCallTimeoutMs = 120'000;

class AzureProvider final : public ProviderBase {
 public:
  AzureProvider(const CloudOptions& o, HttpClient& h, const Clock& c, CloudCounters& n)
      : ProviderBase(o, h, c, n, "http://169.254.169.254"), resource_(o.azure_resource_name) {}
  ~AzureProvider() override { Stop(); }

  std::string name() const override { return "azure"; }

  absl::StatusOr<NodeInfo> FetchNodeInfo() override {
    auto r = Fetch({.url = base_ + "/metadata/instance?api-version=2021-02-01",
                    .headers = {{"Metadata", "true"}},
                    .timeout_ms = options_.request_timeout_ms});
    if (!r.ok()) return r.status();
    if (r->status != 200) return absl::UnavailableError(absl::StrCat("azure instance: HTTP ", r->status));
    auto json = nlohmann::json::parse(r->body, nullptr, false);
    if (!json.is_object() || !json.contains("compute") || !json["compute"].is_object()) {
      Malformed("instance metadata", r->body);
      return absl::InvalidArgumentError("azure instance metadata has no compute section");
    }
    const auto& compute = json["compute"];
    auto str = [](const nlohmann::json& j, const char* key) {
      return j.contains(key) && j[key].is_string() ? j[key].get<std::string>() : std::string();
    };
    NodeInfo info;
    info.set_provider("azure");
    info.set_instance_id(str(compute, "vmId"));
    info.set_instance_type(str(compute, "vmSize"));
    info.set_region(str(compute, "location"));
    std::string zone = str(compute, "zone");
    info.set_zone(zone.empty() ? "" : absl::StrCat(info.region(), "-", zone));
    info.set_lifecycle(str(compute, "priority") == "Spot" ? nodewatch::v1::LIFECYCLE_SPOT
                                                          : nodewatch::v1::LIFECYCLE_ON_DEMAND);
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (resource_.empty()) resource_ = str(compute, "name");
    }
    if (json.contains("network") && json["network"].is_object()) {
      const auto& ifaces = json["network"].value("interface", nlohmann::json::array());
      if (ifaces.is_array() && !ifaces.empty() && ifaces[0].is_object()) {
        const auto& v4 = ifaces[0].value("ipv4", nlohmann::json::object());
        const auto& addrs = v4.is_object() ? v4.value("ipAddress", nlohmann::json::array())
                                           : nlohmann::json::array();
        if (addrs.is_array() && !addrs.empty() && addrs[0].is_object()) {
          for (auto [type, key] : {std::pair{"InternalIP", "privateIpAddress"},
                                   {"ExternalIP", "publicIpAddress"}}) {
            AddAddress(info, type, str(addrs[0], key));
          }
        }
      }
    }
    return info;
  }

  void Start(NoticeSink& sink) override {
    Spawn([this, &sink] {
      Poll(sink);
      Sleep(options_.azure_poll_ms);
    });
  }

  absl::Status Acknowledge(const std::string& event_id) override {
    nlohmann::json body = {{"StartRequests", {{{"EventId", event_id}}}}};
    auto r = Fetch({.method = "POST",
                    .url = base_ + kEventsPath,
                    .headers = {{"Metadata", "true"}, {"Content-Type", "application/json"}},
                    .body = body.dump(),
                    .timeout_ms = options_.request_timeout_ms});
    if (!r.ok()) return r.status();
    if (r->status != 200) {
      return absl::UnavailableError(absl::StrCat("StartRequests for ", event_id, ": HTTP ", r->status));
    }
    ++counters_.acknowledgements;
    log_->info("azure: acknowledged scheduled event {} (StartRequests)", event_id);
    return absl::OkStatus();
  }

 private:
  void Poll(NoticeSink& sink) {
    auto r = Fetch({.url = base_ + kEventsPath,
                    .headers = {{"Metadata", "true"}},
                    .timeout_ms = warmed_ ? options_.request_timeout_ms : kFirstCallTimeoutMs});
    if (!r.ok() || r->status != 200) {
      WarnThrottled(absl::StrCat("azure scheduled events: ",
                                 r.ok() ? absl::StrCat("HTTP ", r->status) : r.status().ToString()));
      return;
    }
    warmed_ = true;
    ClearWarning();
    auto json = nlohmann::json::parse(r->body, nullptr, false);
    if (!json.is_object() || !json.contains("DocumentIncarnation") ||
        !json["DocumentIncarnation"].is_number_integer() || !json.contains("Events") ||
        !json["Events"].is_array()) {
      return Malformed("scheduled events document", r->body);
    }
    int64_t incarnation = json["DocumentIncarnation"];
    if (incarnation == incarnation_) return;  // nothing changed since the last poll
    std::string resource;
    {
      std::lock_guard<std::mutex> lock(mu_);
      resource = resource_;
    }
    std::map<std::string, InterruptionNotice> now_active;
    for (const auto& e : json["Events"]) {
      auto n = ParseEvent(e, resource);
      if (n) now_active[n->event_id()] = std::move(*n);
    }
    incarnation_ = incarnation;
    for (auto& [id, n] : now_active) sink.OnNotice(n);
    for (auto& [id, previous] : active_) {
      if (now_active.count(id) > 0) continue;
      // Finished events simply disappear from the document.
      InterruptionNotice done = previous;
      done.set_state(nodewatch::v1::NOTICE_STATE_COMPLETED);
      done.set_notice_time_unix_ms(clock_.NowUnixMs());
      sink.OnNotice(std::move(done));
    }
    active_ = std::move(now_active);
  }

  std::optional<InterruptionNotice> ParseEvent(const nlohmann::json& e, const std::string& resource) {
    auto str = [&](const char* key) {
      return e.is_object() && e.contains(key) && e[key].is_string() ? e[key].get<std::string>()
                                                                     : std::string();
    };
    std::string id = str("EventId");
    std::string type = str("EventType");
    if (id.empty() || type.empty() || !e.contains("Resources") || !e["Resources"].is_array()) {
      Malformed("scheduled event", e.dump());
      return std::nullopt;
    }
    bool ours = false;
    for (const auto& res : e["Resources"]) ours |= res.is_string() && res.get<std::string>() == resource;
    if (!ours) {
      ++counters_.foreign_events;
      return std::nullopt;
    }
    static const std::map<std::string, nodewatch::v1::InterruptionKind> kKinds = {
        {"Preempt", nodewatch::v1::INTERRUPTION_KIND_SPOT_TERMINATE},
        {"Terminate", nodewatch::v1::INTERRUPTION_KIND_TERMINATE},
        {"Reboot", nodewatch::v1::INTERRUPTION_KIND_REBOOT},
        {"Redeploy", nodewatch::v1::INTERRUPTION_KIND_REDEPLOY},
        {"Freeze", nodewatch::v1::INTERRUPTION_KIND_FREEZE}};
    auto kind = kKinds.find(type);
    if (kind == kKinds.end()) {
      Malformed("scheduled event type", e.dump());
      return std::nullopt;
    }
    InterruptionNotice n;
    n.set_provider("azure");
    n.set_kind(kind->second);
    n.set_event_id(id);
    n.set_notice_time_unix_ms(clock_.NowUnixMs());
    // NotBefore is blank once the event has Started: it is happening now.
    std::string not_before = str("NotBefore");
    if (!not_before.empty()) {
      auto t = ParseRfc1123(not_before);
      if (!t.ok()) {
        Malformed("scheduled event NotBefore", e.dump());
        return std::nullopt;
      }
      n.set_not_before_unix_ms(*t);
      n.set_deadline_unix_ms(*t);
    } else {
      n.set_deadline_unix_ms(clock_.NowUnixMs());
    }
    n.set_state(nodewatch::v1::NOTICE_STATE_ACTIVE);
    n.set_raw_payload(e.dump());
    n.set_description(absl::StrCat(type, " (", str("EventStatus"), "): ", str("Description")));
    return n;
  }

  std::mutex mu_;
  std::string resource_;
  bool warmed_ = false;
  int64_t incarnation_ = -1;
  std::map<std::string, InterruptionNotice> active_;
};

}  // namespace

std::unique_ptr<CloudProvider> MakeAzureProvider(const CloudOptions& o, HttpClient& h,
                                                 const Clock& c, CloudCounters& n) {
  return std::make_unique<AzureProvider>(o, h, c, n);
}

}  // namespace nodewatch::agent
