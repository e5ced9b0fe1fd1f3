// CloudProvider: one cloud's instance metadata service, turned into NodeInfo facts and
// InterruptionNotice records. Providers only read metadata and report; the CloudCollector
// deduplicates and spools what they report.
//
//   auto provider = MakeCloudProvider(options, http, clock, counters);   // --cloud auto|aws|...
//   (*provider)->FetchNodeInfo();       // instance id/type, region, zone, lifecycle, addresses
//   (*provider)->Start(sink);           // watcher threads call sink.OnNotice(...)
//   (*provider)->Stop();
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "agent/collectors/cloud/http_client.h"
#include "common/clock.h"
#include "nodewatch/v1/records.pb.h"

namespace nodewatch::agent {

struct CloudOptions {
  std::string cloud = "auto";          // auto|aws|gcp|azure|digitalocean|none
  std::string metadata_endpoint;       // empty: http://169.254.169.254
  bool aws_imdsv1_fallback = false;    // use IMDSv1 if no IMDSv2 token can be had
  int64_t aws_poll_ms = 1000;          // spot instance-action and rebalance
  int64_t aws_scheduled_poll_ms = 10'000;
  int64_t gcp_preemption_notice_ms = 30'000;  // Spot VM: notice to shutdown
  int64_t azure_poll_ms = 1000;
  std::string azure_resource_name;     // empty: compute.name from instance metadata
  int64_t request_timeout_ms = 2000;
  // Where a provider keeps what must survive an agent restart (GCP event generations); empty:
  // memory only.
  std::string state_file;
};

// What providers count; exported on the agent's /metrics.
struct CloudCounters {
  std::atomic<uint64_t> requests{0};
  std::atomic<uint64_t> request_errors{0};      // transport failures, 5xx
  std::atomic<uint64_t> malformed_payloads{0};  // a body that does not parse as documented
  std::atomic<uint64_t> unauthorized{0};        // AWS 401 (token expired or revoked)
  std::atomic<uint64_t> token_refreshes{0};
  std::atomic<uint64_t> notices{0};             // notices spooled
  std::atomic<uint64_t> duplicate_notices{0};   // reported again and ignored
  std::atomic<uint64_t> foreign_events{0};      // Azure events naming other VMs
  std::atomic<uint64_t> acknowledgements{0};    // Azure StartRequests sent
};

class NoticeSink {
 public:
  virtual ~NoticeSink() = default;
  // Called from provider threads; must be thread-safe. notice.provider and event_id are set.
  virtual void OnNotice(nodewatch::v1::InterruptionNotice notice) = 0;
};

class CloudProvider {
 public:
  virtual ~CloudProvider() = default;
  virtual std::string name() const = 0;
  // Cloud facts of this instance; fields the cloud does not know stay empty.
  virtual absl::StatusOr<nodewatch::v1::NodeInfo> FetchNodeInfo() = 0;
  // Starts watching for notices. Call once; Stop() joins.
  virtual void Start(NoticeSink& sink) = 0;
  virtual void Stop() = 0;
  // Tells the cloud the node is ready for the event (Azure StartRequests).
  virtual absl::Status Acknowledge(const std::string& event_id) {
    return absl::UnimplementedError(name() + " has no acknowledgement");
  }
};

absl::StatusOr<std::unique_ptr<CloudProvider>> MakeCloudProvider(const CloudOptions& options,
                                                                 HttpClient& http,
                                                                 const Clock& clock,
                                                                 CloudCounters& counters);

// A provider for nodes without a cloud (bare metal, --cloud none): no facts, no notices.
std::unique_ptr<CloudProvider> MakeNoCloudProvider();

}  // namespace nodewatch::agent
