// AWS: IMDSv2 (token PUT, cached and refreshed ahead of expiry, renewed on 401), spot
// instance-action and rebalance recommendation polled every `aws_poll_ms`, scheduled maintenance
// events every `aws_scheduled_poll_ms`. Payloads as in reference/interruptions.md §2.
#include <nlohmann/json.hpp>

#include <mutex>
#include <optional>

#include "absl/strings/str_cat.h"
#include "agent/collectors/cloud/cloud_time.h"
#include "agent/collectors/cloud/providers.h"

namespace nodewatch::agent {
namespace {

using nodewatch::v1::InterruptionNotice;
using nodewatch::v1::NodeInfo;

constexpr int64_t kTokenTtlSeconds = 21'600;
constexpr int64_t kRefreshAheadMs = 60'000;

class AwsProvider final : public ProviderBase {
 public:
  AwsProvider(const CloudOptions& o, HttpClient& h, const Clock& c, CloudCounters& n)
      : ProviderBase(o, h, c, n, "http://169.254.169.254") {}
  ~AwsProvider() override { Stop(); }

  std::string name() const override { return "aws"; }

  absl::StatusOr<NodeInfo> FetchNodeInfo() override {
    NodeInfo info;
    info.set_provider("aws");
    auto id = Get("/latest/meta-data/instance-id");
    if (!id.ok()) return id.status();
    if (id->status != 200) {
      return absl::UnavailableError(absl::StrCat("aws instance-id: HTTP ", id->status));
    }
    info.set_instance_id(id->body);
    auto text = [&](const std::string& path) -> std::string {
      auto r = Get(path);
      return r.ok() && r->status == 200 ? r->body : "";
    };
    info.set_instance_type(text("/latest/meta-data/instance-type"));
    info.set_zone(text("/latest/meta-data/placement/availability-zone"));
    std::string region = text("/latest/meta-data/placement/region");
    if (region.empty() && info.zone().size() > 1) region = info.zone().substr(0, info.zone().size() - 1);
    info.set_region(region);
    std::string lifecycle = text("/latest/meta-data/instance-life-cycle");
    info.set_lifecycle(lifecycle == "spot" ? nodewatch::v1::LIFECYCLE_SPOT
                                           : nodewatch::v1::LIFECYCLE_ON_DEMAND);
    for (auto [type, path] : {std::pair{"InternalIP", "/latest/meta-data/local-ipv4"},
                              {"ExternalIP", "/latest/meta-data/public-ipv4"},
                              {"Hostname", "/latest/meta-data/local-hostname"}}) {
      AddAddress(info, type, text(path));
    }
    return info;
  }

  void Start(NoticeSink& sink) override {
    Spawn([this, &sink] {
      PollSpot(sink);
      PollRebalance(sink);
      Sleep(options_.aws_poll_ms);
    });
    Spawn([this, &sink] {
      PollScheduled(sink);
      Sleep(options_.aws_scheduled_poll_ms);
    });
  }

 private:
  // The cached IMDSv2 token, refreshed ahead of expiry. Empty with IMDSv1 fallback.
  absl::StatusOr<std::string> Token(bool force_new) {
    std::lock_guard<std::mutex> lock(token_mu_);
    const int64_t now = clock_.NowUnixMs();
    // Renew ahead of expiry: a minute early, or a quarter of the lifetime for short tokens.
    const int64_t ahead = std::min(kRefreshAheadMs, token_ttl_ms_ / 4);
    if (!force_new && !token_.empty() && now < token_expires_ms_ - ahead) return token_;
    HttpRequest put{.method = "PUT",
                    .url = base_ + "/latest/api/token",
                    .headers = {{"X-aws-ec2-metadata-token-ttl-seconds",
                                 std::to_string(kTokenTtlSeconds)}},
                    .timeout_ms = options_.request_timeout_ms};
    auto r = Fetch(put);
    if (r.ok() && r->status == 200 && !r->body.empty()) {
      ++counters_.token_refreshes;
      int64_t ttl = kTokenTtlSeconds;
      if (std::string h = r->header("x-aws-ec2-metadata-token-ttl-seconds"); !h.empty()) {
        ttl = std::max<int64_t>(1, std::atoll(h.c_str()));
      }
      token_ = r->body;
      token_ttl_ms_ = ttl * 1000;
      token_expires_ms_ = now + token_ttl_ms_;
      return token_;
    }
    token_.clear();
    if (options_.aws_imdsv1_fallback) return std::string();
    if (!r.ok()) return r.status();
    return absl::UnavailableError(absl::StrCat("IMDSv2 token: HTTP ", r->status));
  }

  // GET with the token; a 401 means the token expired or was revoked: renew once and retry.
  absl::StatusOr<HttpResponse> Get(const std::string& path) {
    for (int attempt = 0; attempt < 2; ++attempt) {
      auto token = Token(/*force_new=*/attempt > 0);
      if (!token.ok()) return token.status();
      HttpRequest get{.url = base_ + path, .timeout_ms = options_.request_timeout_ms};
      if (!token->empty()) get.headers["X-aws-ec2-metadata-token"] = *token;
      auto r = Fetch(get);
      if (!r.ok() || r->status != 401) return r;
      ++counters_.unauthorized;
    }
    return absl::UnauthenticatedError(absl::StrCat("IMDS ", path, ": 401 with a fresh token"));
  }

  // 200 with a body, or nullopt for 404 ("nothing pending"); other outcomes are logged.
  std::optional<std::string> Poll(const std::string& path) {
    auto r = Get(path);
    if (!r.ok()) {
      WarnThrottled(absl::StrCat("aws ", path, ": ", r.status().ToString()));
      return std::nullopt;
    }
    if (r->status == 404) {
      ClearWarning();
      return std::nullopt;
    }
    if (r->status != 200) {
      WarnThrottled(absl::StrCat("aws ", path, ": HTTP ", r->status));
      return std::nullopt;
    }
    ClearWarning();
    return r->body;
  }

  void PollSpot(NoticeSink& sink) {
    auto body = Poll("/latest/meta-data/spot/instance-action");
    if (!body) return;
    auto json = nlohmann::json::parse(*body, nullptr, /*allow_exceptions=*/false);
    if (!json.is_object() || !json.contains("action") || !json["action"].is_string() ||
        !json.contains("time") || !json["time"].is_string()) {
      return Malformed("spot instance-action", *body);
    }
    std::string action = json["action"];
    auto time = ParseRfc3339(json["time"]);
    nodewatch::v1::InterruptionKind kind;
    if (action == "terminate") {
      kind = nodewatch::v1::INTERRUPTION_KIND_SPOT_TERMINATE;
    } else if (action == "stop") {
      kind = nodewatch::v1::INTERRUPTION_KIND_SPOT_STOP;
    } else if (action == "hibernate") {
      kind = nodewatch::v1::INTERRUPTION_KIND_SPOT_HIBERNATE;
    } else {
      return Malformed("spot instance-action (unknown action)", *body);
    }
    if (!time.ok()) return Malformed("spot instance-action time", *body);
    InterruptionNotice n;
    n.set_provider("aws");
    n.set_kind(kind);
    n.set_event_id(absl::StrCat("spot-", action, "-", json["time"].get<std::string>()));
    n.set_notice_time_unix_ms(clock_.NowUnixMs());
    // Hibernation starts at once: there is no two-minute warning.
    n.set_deadline_unix_ms(kind == nodewatch::v1::INTERRUPTION_KIND_SPOT_HIBERNATE ? clock_.NowUnixMs()
                                                                                  : *time);
    n.set_state(nodewatch::v1::NOTICE_STATE_ACTIVE);
    n.set_raw_payload(*body);
    n.set_description(absl::StrCat("EC2 spot instance-action ", action));
    sink.OnNotice(std::move(n));
  }

  void PollRebalance(NoticeSink& sink) {
    auto body = Poll("/latest/meta-data/events/recommendations/rebalance");
    if (!body) return;
    auto json = nlohmann::json::parse(*body, nullptr, false);
    if (!json.is_object() || !json.contains("noticeTime") || !json["noticeTime"].is_string()) {
      return Malformed("rebalance recommendation", *body);
    }
    auto time = ParseRfc3339(json["noticeTime"]);
    if (!time.ok()) return Malformed("rebalance noticeTime", *body);
    InterruptionNotice n;
    n.set_provider("aws");
    n.set_kind(nodewatch::v1::INTERRUPTION_KIND_REBALANCE);
    n.set_event_id(absl::StrCat("rebalance-", json["noticeTime"].get<std::string>()));
    n.set_notice_time_unix_ms(*time);
    n.set_state(nodewatch::v1::NOTICE_STATE_ACTIVE);
    n.set_raw_payload(*body);
    n.set_description("EC2 instance rebalance recommendation");
    sink.OnNotice(std::move(n));
  }

  void PollScheduled(NoticeSink& sink) {
    auto body = Poll("/latest/meta-data/events/maintenance/scheduled");
    if (!body) return;
    auto json = nlohmann::json::parse(*body, nullptr, false);
    if (!json.is_array()) return Malformed("scheduled events", *body);
    for (const auto& e : json) {
      auto str = [&](const char* key) -> std::string {
        return e.is_object() && e.contains(key) && e[key].is_string() ? e[key].get<std::string>()
                                                                       : "";
      };
      std::string id = str("EventId");
      std::string state = str("State");
      auto not_before = ParseAwsEventTime(str("NotBefore"));
      if (id.empty() || !not_before.ok()) {
        Malformed("scheduled event", e.dump());
        continue;
      }
      InterruptionNotice n;
      n.set_provider("aws");
      n.set_kind(nodewatch::v1::INTERRUPTION_KIND_SCHEDULED_MAINTENANCE);
      n.set_event_id(id);
      n.set_notice_time_unix_ms(clock_.NowUnixMs());
      n.set_deadline_unix_ms(*not_before);
      n.set_not_before_unix_ms(*not_before);
      // NotAfter is missing for some events (degraded hardware instance-stop).
      if (auto not_after = ParseAwsEventTime(str("NotAfter")); not_after.ok()) {
        n.set_not_after_unix_ms(*not_after);
      }
      n.set_state(state == "canceled"    ? nodewatch::v1::NOTICE_STATE_CANCELED
                  : state == "completed" ? nodewatch::v1::NOTICE_STATE_COMPLETED
                                         : nodewatch::v1::NOTICE_STATE_ACTIVE);
      n.set_raw_payload(e.dump());
      n.set_description(absl::StrCat(str("Code"), ": ", str("Description")));
      sink.OnNotice(std::move(n));
    }
  }

  std::mutex token_mu_;
  std::string token_;
  int64_t token_expires_ms_ = 0;
  int64_t token_ttl_ms_ = kTokenTtlSeconds * 1000;
};

}  // namespace

std::unique_ptr<CloudProvider> MakeAwsProvider(const CloudOptions& o, HttpClient& h,
                                               const Clock& c, CloudCounters& n) {
  return std::make_unique<AwsProvider>(o, h, c, n);
}

}  // namespace nodewatch::agent
