// KubeClient: the aggregator's only door to the Kubernetes API (STYLE.md G2). Raw HTTP verbs over
// libcurl with exactly one Content-Type per write, the metav1.Status body and Retry-After kept on
// every answer, service-account token reload (every minute and on a 401), and two request lanes:
// the interruption lane (cordon, taint, evict, delete, poll) has its own connections and
// concurrency, so background traffic (Events, the Lease, webhooks' lookups) of a busy fleet can
// never starve it.
//
//   ASSIGN_OR_RETURN(KubeConnection conn, LoadKubeConnection(""));   // in-cluster or $KUBECONFIG
//   auto client = MakeCurlKubeClient(conn, {});
//   ASSIGN_OR_RETURN(KubeResponse r, client->Do({.method = "GET", .path = "/api/v1/nodes/n1"}));
//   if (r.status == 404) ...
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace nodewatch::aggregator {

// Where the API server is and how to authenticate, from in-cluster files or a kubeconfig.
struct KubeConnection {
  std::string server;  // https://host:port (http:// only for tests)
  std::string ca_pem;  // trusted CA bundle (PEM); empty: system roots
  bool insecure_skip_verify = false;
  std::string token;            // static bearer token
  std::string token_file;       // re-read every minute and after a 401 (projected tokens rotate)
  std::string client_cert_pem;  // client certificate authentication
  std::string client_key_pem;
  std::string ns = "default";  // namespace for the Lease
  std::string source;          // "in-cluster", "kubeconfig <path>", "flags": for logs
};

// In-cluster: $KUBERNETES_SERVICE_HOST/PORT and the service-account directory (token, ca.crt,
// namespace). FailedPrecondition when not running in a pod.
absl::StatusOr<KubeConnection> LoadInClusterConnection(
    const std::string& sa_dir = "/var/run/secrets/kubernetes.io/serviceaccount");
// A kubeconfig file: current (or `context`) context's cluster and user; inline *-data and file
// paths (relative to the kubeconfig), token, tokenFile, client certificates. exec plugins are not
// supported (the error says so).
absl::StatusOr<KubeConnection> LoadKubeconfig(const std::string& path,
                                              const std::string& context = "");
// `kubeconfig` non-empty: that file. Else in-cluster when available, else $KUBECONFIG (first
// entry), else ~/.kube/config.
absl::StatusOr<KubeConnection> LoadKubeConnection(const std::string& kubeconfig);

enum class KubeLane { kInterruption, kBackground };

struct KubeRequest {
  std::string method = "GET";
  std::string path;          // with query, e.g. "/api/v1/pods?fieldSelector=..."
  std::string content_type;  // set for bodies
  std::string body;
  KubeLane lane = KubeLane::kInterruption;
  int64_t timeout_ms = 10'000;
};

struct KubeResponse {
  int status = 0;
  std::string body;
  int retry_after_seconds = -1;  // the Retry-After header, -1 when absent
  bool ok() const { return status >= 200 && status < 300; }
  // The body as JSON (a discarded value when it is not JSON).
  nlohmann::json Json() const;
  // For errors: "<code> <reason>: <message>" from the metav1.Status body, or the raw start.
  std::string Describe() const;
};

struct KubeClientOptions {
  int interruption_concurrency = 64;  // requests in flight on the interruption lane
  int background_concurrency = 4;     // and on the background lane
  double background_qps = 20;         // background requests per second (token bucket, burst 20)
  std::string user_agent = "nodewatch-aggregator";
};

struct KubeClientCounters {
  std::atomic<uint64_t> requests{0};
  std::atomic<uint64_t> transport_errors{0};
  std::atomic<uint64_t> token_reloads{0};
  std::atomic<uint64_t> unauthorized{0};
};

class KubeClient {
 public:
  virtual ~KubeClient() = default;
  // Any HTTP status is a response; transport failures (refused, TLS, timeout) are Unavailable.
  // Thread-safe; blocks while the request's lane is at its limit.
  virtual absl::StatusOr<KubeResponse> Do(const KubeRequest& request) = 0;
  virtual const KubeClientCounters& counters() const = 0;
};

std::unique_ptr<KubeClient> MakeCurlKubeClient(KubeConnection connection,
                                               KubeClientOptions options = {});

}  // namespace nodewatch::aggregator
