#include "agent/collectors/cloud/http_client.h"

#include <curl/curl.h>

#include <mutex>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace nodewatch::agent {
namespace {

constexpr size_t kMaxBody = 1 << 20;

struct Collected {
  HttpResponse* response;
  const std::atomic<bool>* cancel = nullptr;
  bool too_big = false;
};

int OnProgress(void* user, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
  auto* c = static_cast<Collected*>(user);
  return c->cancel != nullptr && c->cancel->load() ? 1 : 0;
}

size_t OnBody(char* data, size_t size, size_t count, void* user) {
  auto* c = static_cast<Collected*>(user);
  size_t n = size * count;
  if (c->response->body.size() + n > kMaxBody) {
    c->too_big = true;
    return 0;  // aborts the transfer
  }
  c->response->body.append(data, n);
  return n;
}

size_t OnHeader(char* data, size_t size, size_t count, void* user) {
  auto* c = static_cast<Collected*>(user);
  size_t n = size * count;
  std::string line(data, n);
  auto colon = line.find(':');
  if (colon != std::string::npos) {
    std::string name = absl::AsciiStrToLower(absl::StripAsciiWhitespace(line.substr(0, colon)));
    c->response->headers[name] = std::string(absl::StripAsciiWhitespace(line.substr(colon + 1)));
  }
  return n;
}

class CurlHttpClient final : public HttpClient {
 public:
  CurlHttpClient() {
    static std::once_flag once;
    std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
  }

  absl::StatusOr<HttpResponse> Do(const HttpRequest& request) override {
    std::unique_ptr<CURL, decltype(&curl_easy_cleanup)> curl(curl_easy_init(), &curl_easy_cleanup);
    if (!curl) return absl::InternalError("curl_easy_init failed");
    HttpResponse response;
    Collected collected{&response, request.cancel};
    curl_slist* headers = nullptr;
    for (const auto& [name, value] : request.headers) {
      headers = curl_slist_append(headers, absl::StrCat(name, ": ", value).c_str());
    }
    // No "Expect: 100-continue" round trip for POST bodies.
    headers = curl_slist_append(headers, "Expect:");
    CURL* c = curl.get();
    curl_easy_setopt(c, CURLOPT_URL, request.url.c_str());
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, request.method.c_str());
    if (request.method == "PUT" || request.method == "POST") {
      curl_easy_setopt(c, CURLOPT_POSTFIELDS, request.body.c_str());
      curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, static_cast<long>(request.body.size()));
    }
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, static_cast<long>(request.timeout_ms));
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(std::min<int64_t>(request.timeout_ms, 1000)));
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_NOPROXY, "*");  // metadata is link-local; never via a proxy
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, &OnBody);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &collected);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, &OnHeader);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &collected);
    if (request.cancel != nullptr) {
      curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
      curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, &OnProgress);
      curl_easy_setopt(c, CURLOPT_XFERINFODATA, &collected);
    }
    CURLcode rc = curl_easy_perform(c);
    curl_slist_free_all(headers);
    if (collected.too_big) {
      return absl::ResourceExhaustedError(absl::StrCat(request.url, ": body over 1 MiB"));
    }
    if (rc != CURLE_OK) {
      std::string what = absl::StrCat(request.method, " ", request.url, ": ", curl_easy_strerror(rc));
      if (rc == CURLE_ABORTED_BY_CALLBACK) return absl::CancelledError(what);
      return rc == CURLE_OPERATION_TIMEDOUT ? absl::DeadlineExceededError(what)
                                            : absl::UnavailableError(what);
    }
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    response.status = static_cast<int>(status);
    return response;
  }
};

}  // namespace

std::unique_ptr<HttpClient> MakeCurlHttpClient() { return std::make_unique<CurlHttpClient>(); }

}  // namespace nodewatch::agent
