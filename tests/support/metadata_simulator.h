// MetadataSimulator: a real HTTP server that plays one cloud's instance metadata service (AWS
// IMDSv2, GCP metadata with hanging GETs, Azure IMDS + Scheduled Events, DigitalOcean droplet
// metadata) with the payloads, headers and status codes of reference/interruptions.md, scriptable
// from the test (methods below) or over HTTP (the control endpoint `/_sim/...`, used by
// nodewatch-metadata-sim, `make demo` and the end-to-end tests).
//
//   MetadataSimulator sim({.cloud = "aws"});
//   sim.Start();                           // http://127.0.0.1:<port>
//   sim.ArmAwsSpot("terminate");           // instance-action appears now, time = now + 2 min
//   sim.InjectFault("/latest/meta-data/spot", Fault::kMalformed, 3);
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

struct mg_connection;
struct mg_context;

namespace nodewatch::testing {

class MetadataSimulator {
 public:
  struct Options {
    std::string cloud = "aws";  // aws|gcp|azure|digitalocean
    int port = 0;               // 0: a free port
    std::string azure_vm_name = "nodewatch-vmss_3";
    bool aws_allow_imdsv1 = false;
  };
  enum class Fault { k401, k500, kSlow, kMalformed, kCut };

  explicit MetadataSimulator(Options options);
  ~MetadataSimulator();
  bool Start();
  void Stop();
  int port() const { return port_; }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }

  // AWS. Times are Unix ms; "visible" is when the notice starts being served.
  // `window_ms`: the instance-action `time` is visible + window (real AWS: 2 minutes; tests
  // shorten it).
  void ArmAwsSpot(const std::string& action, int64_t visible_at_ms = 0,
                  int64_t window_ms = 120'000);
  void ArmAwsRebalance(int64_t visible_at_ms = 0);
  void SetAwsScheduledEvent(const std::string& id, const std::string& code,
                            const std::string& state, int64_t not_before_ms,
                            int64_t not_after_ms /* 0: omit NotAfter */);
  void SetAwsTokenMaxTtl(int seconds);  // tokens expire sooner than asked
  // The instance id served from now on (a replacement instance under the same node name).
  void SetAwsInstanceId(const std::string& id);
  void ExpireAwsTokens();               // every token issued so far now answers 401
  // GCP.
  void SetGcpPreempted(bool preempted);
  void SetGcpMaintenance(const std::string& value);  // NONE|MIGRATE_ON_HOST_MAINTENANCE|TERMINATE_ON_HOST_MAINTENANCE
  // instance/scheduling/instance-termination-action: "STOP", "DELETE", or "" (not served: 404).
  void SetGcpTerminationAction(const std::string& action);
  // Azure. resources: the VM names the event lists.
  void AddAzureEvent(const std::string& id, const std::string& type,
                     const std::vector<std::string>& resources, int64_t not_before_ms,
                     const std::string& status = "Scheduled");
  void RemoveAzureEvent(const std::string& id);
  std::vector<std::string> AzureStartRequests();
  // Everything armed goes away (notices, events, faults).
  void Clear();
  // The next `count` requests whose path starts with `path_prefix` get `fault`.
  void InjectFault(const std::string& path_prefix, Fault fault, int count);
  // When the latest armed notice became visible (Unix ms), for latency measurements.
  int64_t last_visible_ms();
  uint64_t requests() const { return requests_.load(); }

 private:
  struct Reply {
    int status = 200;
    std::string body;
    std::map<std::string, std::string> headers;
  };
  static int Dispatch(mg_connection* conn, void* self);
  int Handle(mg_connection* conn);
  bool TakeFault(const std::string& path, Fault* fault);
  Reply Aws(const std::string& method, const std::string& path, mg_connection* conn);
  Reply Gcp(const std::string& path, const std::string& query, mg_connection* conn);
  Reply Azure(const std::string& method, const std::string& path, const std::string& body,
              mg_connection* conn);
  Reply DigitalOcean(const std::string& path);
  Reply Control(const std::string& path, const std::map<std::string, std::string>& params);
  std::string GcpValue(const std::string& key);
  void Changed();  // wakes hanging GETs; call with mu_ held

  Options options_;
  int port_ = 0;
  mg_context* ctx_ = nullptr;
  std::atomic<uint64_t> requests_{0};

  std::mutex mu_;
  std::condition_variable changed_cv_;
  bool stopping_ = false;
  // AWS
  std::map<std::string, int64_t> aws_tokens_;  // token -> expiry (Unix ms)
  int aws_token_max_ttl_ = 21'600;
  std::string aws_spot_action_;
  int64_t aws_spot_visible_ms_ = 0;
  int64_t aws_spot_window_ms_ = 120'000;
  int64_t aws_rebalance_visible_ms_ = -1;
  struct AwsEvent {
    std::string code, state;
    int64_t not_before, not_after;
  };
  std::map<std::string, AwsEvent> aws_events_;
  std::string aws_instance_id_;  // "" : the default i-0a1b2c3d4e5f60718
  // GCP
  bool gcp_preempted_ = false;
  std::string gcp_maintenance_ = "NONE";
  std::string gcp_termination_action_;  // "" : not served
  // Azure
  struct AzureEvent {
    std::string type, status;
    std::vector<std::string> resources;
    int64_t not_before;
  };
  std::map<std::string, AzureEvent> azure_events_;
  int64_t azure_incarnation_ = 1;
  std::vector<std::string> azure_start_requests_;
  // Faults, latency
  std::vector<std::tuple<std::string, Fault, int>> faults_;
  int64_t last_visible_ms_ = 0;
};

}  // namespace nodewatch::testing
