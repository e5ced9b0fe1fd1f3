#include "aggregator/remediation/kube_client.h"

#include <curl/curl.h>
#include <yaml-cpp/yaml.h>

#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/file_util.h"
#include "common/logging.h"
#include "common/status_macros.h"

namespace nodewatch::aggregator {
namespace {

constexpr size_t kMaxBodyBytes = 64
                                 << 20;  // a 5,000-pod list is ~50 MB; anything larger is hostile
constexpr int64_t kTokenRefreshMs = 60'000;

int64_t SteadyMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

std::string Trimmed(std::string s) { return std::string(absl::StripAsciiWhitespace(s)); }

// Reads `inline_key` (base64) or `file_key` (a path relative to `dir`) from a kubeconfig map.
absl::StatusOr<std::string> DataOrFile(const YAML::Node& map, const std::string& inline_key,
                                       const std::string& file_key, const std::string& dir) {
  if (map[inline_key]) {
    std::string decoded;
    if (!absl::Base64Unescape(map[inline_key].as<std::string>(), &decoded)) {
      return absl::InvalidArgumentError(absl::StrCat("kubeconfig: ", inline_key, " is not base64"));
    }
    return decoded;
  }
  if (map[file_key]) {
    std::filesystem::path p(map[file_key].as<std::string>());
    if (p.is_relative()) p = std::filesystem::path(dir) / p;
    auto data = ReadFileToString(p.string());
    if (!data.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("kubeconfig: ", file_key, ": ", data.status().message()));
    }
    return *data;
  }
  return std::string();
}

YAML::Node FindNamed(const YAML::Node& list, const std::string& name, const char* inner) {
  if (!list || !list.IsSequence()) return YAML::Node();
  for (const auto& item : list) {
    if (item["name"] && item["name"].as<std::string>() == name) return item[inner];
  }
  return YAML::Node();
}

// Counting semaphore with FIFO-ish wakeups; one per lane.
class Lane {
 public:
  explicit Lane(int limit) : free_(limit) {}
  void Acquire() {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return free_ > 0; });
    --free_;
  }
  void Release() {
    std::lock_guard<std::mutex> lock(mu_);
    ++free_;
    cv_.notify_one();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int free_;
};

// Token bucket for the background lane's request rate.
class RateLimiter {
 public:
  explicit RateLimiter(double qps) : qps_(qps), tokens_(qps) {}
  void Wait() {
    if (qps_ <= 0) return;
    std::unique_lock<std::mutex> lock(mu_);
    while (true) {
      const int64_t now = SteadyMs();
      tokens_ = std::min(qps_, tokens_ + static_cast<double>(now - last_ms_) * qps_ / 1000.0);
      last_ms_ = now;
      if (tokens_ >= 1) {
        tokens_ -= 1;
        return;
      }
      lock.unlock();
      std::this_thread::sleep_for(
          std::chrono::milliseconds(static_cast<int64_t>((1 - tokens_) * 1000 / qps_) + 1));
      lock.lock();
    }
  }

 private:
  std::mutex mu_;
  double qps_;
  double tokens_;
  int64_t last_ms_ = SteadyMs();
};

size_t AppendBody(char* data, size_t size, size_t n, void* out) {
  auto* body = static_cast<std::string*>(out);
  if (body->size() + size * n > kMaxBodyBytes) return 0;  // aborts the transfer
  body->append(data, size * n);
  return size * n;
}

size_t CaptureRetryAfter(char* data, size_t size, size_t n, void* out) {
  absl::string_view line(data, size * n);
  constexpr absl::string_view kName = "retry-after:";
  if (line.size() > kName.size() && absl::EqualsIgnoreCase(line.substr(0, kName.size()), kName)) {
    int seconds = -1;
    if (absl::SimpleAtoi(absl::StripAsciiWhitespace(line.substr(kName.size())), &seconds)) {
      *static_cast<int*>(out) = seconds;
    }
  }
  return size * n;
}

class CurlKubeClient final : public KubeClient {
 public:
  CurlKubeClient(KubeConnection connection, KubeClientOptions options)
      : connection_(std::move(connection)),
        options_(std::move(options)),
        interruption_lane_(options_.interruption_concurrency),
        background_lane_(options_.background_concurrency),
        background_rate_(options_.background_qps) {
    static std::once_flag curl_init;
    std::call_once(curl_init, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
    token_ = connection_.token;
  }

  ~CurlKubeClient() override {
    for (auto& pool : pools_) {
      for (CURL* handle : pool) curl_easy_cleanup(handle);
    }
  }

  absl::StatusOr<KubeResponse> Do(const KubeRequest& request) override {
    const bool interruption = request.lane == KubeLane::kInterruption;
    if (!interruption) background_rate_.Wait();
    Lane& lane = interruption ? interruption_lane_ : background_lane_;
    lane.Acquire();
    CURL* handle = TakeHandle(interruption);
    auto result = Perform(handle, request);
    if (result.ok() && result->status == 401 && !connection_.token_file.empty()) {
      // The projected token may have rotated under us: reload and try once more.
      ++counters_.unauthorized;
      ReloadToken(/*force=*/true);
      result = Perform(handle, request);
    }
    GiveHandle(interruption, handle);
    lane.Release();
    return result;
  }

  const KubeClientCounters& counters() const override { return counters_; }

 private:
  CURL* TakeHandle(bool interruption) {
    std::lock_guard<std::mutex> lock(pool_mu_);
    auto& pool = pools_[interruption ? 0 : 1];
    if (pool.empty()) return curl_easy_init();
    CURL* handle = pool.back();
    pool.pop_back();
    return handle;
  }

  void GiveHandle(bool interruption, CURL* handle) {
    std::lock_guard<std::mutex> lock(pool_mu_);
    pools_[interruption ? 0 : 1].push_back(handle);  // keeps its connection alive for reuse
  }

  std::string CurrentToken() {
    ReloadToken(/*force=*/false);
    std::lock_guard<std::mutex> lock(token_mu_);
    return token_;
  }

  void ReloadToken(bool force) {
    if (connection_.token_file.empty()) return;
    std::lock_guard<std::mutex> lock(token_mu_);
    const int64_t now = SteadyMs();
    if (!force && token_loaded_ms_ != 0 && now - token_loaded_ms_ < kTokenRefreshMs) return;
    auto token = ReadFileToString(connection_.token_file);
    token_loaded_ms_ = now;
    if (!token.ok()) {
      GetLogger("agg.kube")->warn("cannot read the token file: {}", token.status());
      return;
    }
    std::string fresh = Trimmed(*token);
    if (fresh != token_) {
      if (!token_.empty()) ++counters_.token_reloads;
      token_ = std::move(fresh);
    }
  }

  absl::StatusOr<KubeResponse> Perform(CURL* h, const KubeRequest& request) {
    ++counters_.requests;
    curl_easy_reset(h);
    KubeResponse response;
    const std::string url = connection_.server + request.path;
    curl_easy_setopt(h, CURLOPT_URL, url.c_str());
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, request.method.c_str());
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, static_cast<long>(request.timeout_ms));
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
    curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(h, CURLOPT_USERAGENT, options_.user_agent.c_str());
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, &AppendBody);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &response.body);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, &CaptureRetryAfter);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, &response.retry_after_seconds);
    if (request.method == "HEAD") curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
    if (!request.body.empty() || request.method == "POST" || request.method == "PUT" ||
        request.method == "PATCH") {
      curl_easy_setopt(h, CURLOPT_POSTFIELDS, request.body.data());
      curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, static_cast<long>(request.body.size()));
    }
    curl_slist* headers = nullptr;
    headers = curl_slist_append(headers, "Accept: application/json");
    if (!request.content_type.empty()) {
      headers = curl_slist_append(headers, ("Content-Type: " + request.content_type).c_str());
    }
    const std::string token = CurrentToken();
    if (!token.empty()) {
      headers = curl_slist_append(headers, ("Authorization: Bearer " + token).c_str());
    }
    headers = curl_slist_append(headers, "Expect:");
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
    // TLS: verify the server unless the kubeconfig says otherwise; client certificates as blobs.
    curl_blob ca{const_cast<char*>(connection_.ca_pem.data()), connection_.ca_pem.size(),
                 CURL_BLOB_NOCOPY};
    curl_blob cert{const_cast<char*>(connection_.client_cert_pem.data()),
                   connection_.client_cert_pem.size(), CURL_BLOB_NOCOPY};
    curl_blob key{const_cast<char*>(connection_.client_key_pem.data()),
                  connection_.client_key_pem.size(), CURL_BLOB_NOCOPY};
    if (!connection_.ca_pem.empty()) curl_easy_setopt(h, CURLOPT_CAINFO_BLOB, &ca);
    if (!connection_.client_cert_pem.empty()) {
      curl_easy_setopt(h, CURLOPT_SSLCERT_BLOB, &cert);
      curl_easy_setopt(h, CURLOPT_SSLCERTTYPE, "PEM");
      curl_easy_setopt(h, CURLOPT_SSLKEY_BLOB, &key);
      curl_easy_setopt(h, CURLOPT_SSLKEYTYPE, "PEM");
    }
    if (connection_.insecure_skip_verify) {
      curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 0L);
      curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 0L);
    }
    char error[CURL_ERROR_SIZE] = {0};
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, error);
    CURLcode code = curl_easy_perform(h);
    curl_slist_free_all(headers);
    if (code != CURLE_OK) {
      ++counters_.transport_errors;
      return absl::UnavailableError(absl::StrCat(request.method, " ", request.path, ": ",
                                                 error[0] ? error : curl_easy_strerror(code)));
    }
    long status = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    response.status = static_cast<int>(status);
    return response;
  }

  const KubeConnection connection_;
  const KubeClientOptions options_;
  KubeClientCounters counters_;
  Lane interruption_lane_;
  Lane background_lane_;
  RateLimiter background_rate_;
  std::mutex pool_mu_;
  std::vector<CURL*> pools_[2];
  std::mutex token_mu_;
  std::string token_;
  int64_t token_loaded_ms_ = 0;
};

}  // namespace

nlohmann::json KubeResponse::Json() const {
  return nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
}

std::string KubeResponse::Describe() const {
  nlohmann::json j = Json();
  if (j.is_object() && j.value("kind", "") == "Status") {
    return absl::StrCat(status, " ", j.value("reason", ""), ": ", j.value("message", ""));
  }
  return absl::StrCat(status, ": ", body.substr(0, 200));
}

absl::StatusOr<KubeConnection> LoadInClusterConnection(const std::string& sa_dir) {
  const char* host = std::getenv("KUBERNETES_SERVICE_HOST");
  const char* port = std::getenv("KUBERNETES_SERVICE_PORT");
  if (host == nullptr || port == nullptr || *host == '\0' || *port == '\0') {
    return absl::FailedPreconditionError(
        "not in a cluster: KUBERNETES_SERVICE_HOST/PORT are not set");
  }
  KubeConnection c;
  std::string h = host;
  if (h.find(':') != std::string::npos) h = absl::StrCat("[", h, "]");  // IPv6
  c.server = absl::StrCat("https://", h, ":", port);
  c.token_file = sa_dir + "/token";
  if (auto token = ReadFileToString(c.token_file); !token.ok()) {
    return absl::FailedPreconditionError(
        absl::StrCat("in-cluster: cannot read ", c.token_file, ": ", token.status().message()));
  }
  if (auto ca = ReadFileToString(sa_dir + "/ca.crt"); ca.ok()) c.ca_pem = *ca;
  if (const char* ns = std::getenv("POD_NAMESPACE"); ns != nullptr && *ns != '\0') {
    c.ns = ns;
  } else if (auto ns_file = ReadFileToString(sa_dir + "/namespace"); ns_file.ok()) {
    c.ns = Trimmed(*ns_file);
  }
  c.source = "in-cluster";
  return c;
}

absl::StatusOr<KubeConnection> LoadKubeconfig(const std::string& path, const std::string& context) {
  ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("kubeconfig ", path, ": ", e.what()));
  }
  const std::string dir = std::filesystem::path(path).parent_path().string();
  try {
    std::string ctx_name = context.empty() && root["current-context"]
                               ? root["current-context"].as<std::string>()
                               : context;
    YAML::Node ctx = FindNamed(root["contexts"], ctx_name, "context");
    if (!ctx.IsMap()) {
      return absl::InvalidArgumentError(
          absl::StrCat("kubeconfig ", path, ": context '", ctx_name, "' not found"));
    }
    YAML::Node cluster = FindNamed(root["clusters"], ctx["cluster"].as<std::string>(""), "cluster");
    if (!cluster.IsMap() || !cluster["server"]) {
      return absl::InvalidArgumentError(
          absl::StrCat("kubeconfig ", path, ": cluster of context '", ctx_name, "' has no server"));
    }
    YAML::Node user = FindNamed(root["users"], ctx["user"].as<std::string>(""), "user");
    KubeConnection c;
    c.server = cluster["server"].as<std::string>();
    while (!c.server.empty() && c.server.back() == '/') c.server.pop_back();
    ASSIGN_OR_RETURN(
        c.ca_pem, DataOrFile(cluster, "certificate-authority-data", "certificate-authority", dir));
    c.insecure_skip_verify = cluster["insecure-skip-tls-verify"].as<bool>(false);
    if (ctx["namespace"]) c.ns = ctx["namespace"].as<std::string>();
    if (user.IsMap()) {
      if (user["exec"]) {
        return absl::UnimplementedError(absl::StrCat(
            "kubeconfig ", path, ": user '", ctx["user"].as<std::string>(""),
            "' uses an exec plugin, which nodewatch does not run; use a token, tokenFile or client "
            "certificate (or run in-cluster)"));
      }
      c.token = user["token"].as<std::string>("");
      if (user["tokenFile"]) {
        std::filesystem::path p(user["tokenFile"].as<std::string>());
        if (p.is_relative()) p = std::filesystem::path(dir) / p;
        c.token_file = p.string();
      }
      ASSIGN_OR_RETURN(c.client_cert_pem,
                       DataOrFile(user, "client-certificate-data", "client-certificate", dir));
      ASSIGN_OR_RETURN(c.client_key_pem, DataOrFile(user, "client-key-data", "client-key", dir));
    }
    c.source = absl::StrCat("kubeconfig ", path, " (context ", ctx_name, ")");
    return c;
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("kubeconfig ", path, ": ", e.what()));
  }
}

absl::StatusOr<KubeConnection> LoadKubeConnection(const std::string& kubeconfig) {
  if (!kubeconfig.empty()) return LoadKubeconfig(kubeconfig);
  auto in_cluster = LoadInClusterConnection();
  if (in_cluster.ok() || !absl::IsFailedPrecondition(in_cluster.status())) return in_cluster;
  if (const char* env = std::getenv("KUBECONFIG"); env != nullptr && *env != '\0') {
    std::vector<std::string> paths = absl::StrSplit(env, ':', absl::SkipEmpty());
    if (!paths.empty()) return LoadKubeconfig(paths.front());
  }
  if (const char* home = std::getenv("HOME"); home != nullptr) {
    std::string path = absl::StrCat(home, "/.kube/config");
    if (std::filesystem::exists(path)) return LoadKubeconfig(path);
  }
  return absl::FailedPreconditionError(
      "no Kubernetes API: not in a cluster, and no --kubeconfig, $KUBECONFIG or ~/.kube/config");
}

std::unique_ptr<KubeClient> MakeCurlKubeClient(KubeConnection connection,
                                               KubeClientOptions options) {
  return std::make_unique<CurlKubeClient>(std::move(connection), std::move(options));
}

}  // namespace nodewatch::aggregator
