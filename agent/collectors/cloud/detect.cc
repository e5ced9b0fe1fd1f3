// --cloud auto: asks each metadata service the question only it answers, quickly.
#include <optional>

#include "absl/strings/str_cat.h"
#include "agent/collectors/cloud/providers.h"
#include "common/logging.h"

namespace nodewatch::agent {
namespace {

constexpr int64_t kProbeTimeoutMs = 500;

std::string Detect(const std::string& base, HttpClient& http) {
  auto ok = [&](HttpRequest r) {
    r.timeout_ms = kProbeTimeoutMs;
    auto response = http.Do(r);
    return response.ok() && response->status == 200 ? std::optional<HttpResponse>(*response)
                                                    : std::nullopt;
  };
  if (ok({.method = "PUT",
          .url = base + "/latest/api/token",
          .headers = {{"X-aws-ec2-metadata-token-ttl-seconds", "60"}}})) {
    return "aws";
  }
  if (auto r = ok({.url = base + "/computeMetadata/v1/instance/id",
                   .headers = {{"Metadata-Flavor", "Google"}}});
      r && r->header("metadata-flavor") == "Google") {
    return "gcp";
  }
  if (ok({.url = base + "/metadata/instance?api-version=2021-02-01", .headers = {{"Metadata", "true"}}})) {
    return "azure";
  }
  if (ok({.url = base + "/metadata/v1/id"})) return "digitalocean";
  return "none";
}

}  // namespace

absl::StatusOr<std::unique_ptr<CloudProvider>> MakeCloudProvider(const CloudOptions& options,
                                                                 HttpClient& http,
                                                                 const Clock& clock,
                                                                 CloudCounters& counters) {
  std::string cloud = options.cloud;
  if (cloud == "auto") {
    std::string base = options.metadata_endpoint.empty() ? "http://169.254.169.254"
                                                         : options.metadata_endpoint;
    while (!base.empty() && base.back() == '/') base.pop_back();
    cloud = Detect(base, http);
    GetLogger("agent.cloud")->info("cloud detected: {}", cloud);
  }
  if (cloud == "aws") return MakeAwsProvider(options, http, clock, counters);
  if (cloud == "gcp") return MakeGcpProvider(options, http, clock, counters);
  if (cloud == "azure") return MakeAzureProvider(options, http, clock, counters);
  if (cloud == "digitalocean") return MakeDigitalOceanProvider(options, http, clock, counters);
  if (cloud == "none") return MakeNoCloudProvider();
  return absl::InvalidArgumentError(
      absl::StrCat("config key 'cloud': '", cloud, "' is not auto|aws|gcp|azure|digitalocean|none"));
}

}  // namespace nodewatch::agent
