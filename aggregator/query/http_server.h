// HttpServer: a small HTTP/1.1 server for the operator JSON API: one request per connection
// (Connection: close), TLS through OpenSSL with optional client certificates, GET only, bounded
// worker pool, header size and socket timeouts so a slow or hostile client cannot hold it.
// (Debian's civetweb loads OpenSSL 3 at run time without symbols renamed in 3.0 and crashes on
// the first TLS connection, so the aggregator does not use it.)
//
//   auto server = HttpServer::Start({.listen = "0.0.0.0:7445", .tls = files},
//                                   [](const HttpRequest& r) { return HttpResponse{200, "{}"}; });
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "common/executor.h"
#include "common/tls.h"

namespace nodewatch::aggregator {

struct HttpRequest {
  std::string method;
  std::string path;                           // decoded, without the query
  std::map<std::string, std::string> params;  // decoded query parameters
  std::string authorization;                  // the Authorization header, or ""
  std::string peer_certificate_pem;           // verified client certificate, or ""
  std::string peer;                           // "ip:port"
};

struct HttpResponse {
  int status = 200;
  std::string body;  // JSON
};

struct HttpServerOptions {
  std::string listen;           // host:port; port 0 picks one
  std::optional<TlsFiles> tls;  // none: plain HTTP (--insecure)
  size_t threads = 4;
  size_t max_queued = 64;  // connections waiting for a worker; more are closed
  size_t max_header_bytes = 16 * 1024;
  int io_timeout_ms = 10'000;  // for the whole exchange of one connection
};

class HttpServer {
 public:
  using Handler = std::function<HttpResponse(const HttpRequest&)>;
  static absl::StatusOr<std::unique_ptr<HttpServer>> Start(const HttpServerOptions& options,
                                                           Handler handler);
  ~HttpServer();
  int port() const { return port_; }
  uint64_t refused() const { return refused_.load(); }  // bad requests, TLS failures, overload

 private:
  HttpServer(HttpServerOptions options, Handler handler);
  void AcceptLoop();
  void Serve(int fd, const std::string& peer);
  // shutdown(2)s connections past their deadline (all of them with `all`).
  void ShutDownConnections(bool all);

  const HttpServerOptions options_;
  Handler handler_;
  void* ssl_ctx_ = nullptr;  // SSL_CTX*
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stopping_{false};
  std::atomic<uint64_t> refused_{0};
  std::unique_ptr<BoundedExecutor> workers_;
  std::thread acceptor_;
  std::mutex conns_mu_;
  std::map<int, std::chrono::steady_clock::time_point> conns_;  // connections being served
};

// "%41b+c" -> "Ab c"; malformed escapes are kept as they are.
std::string UrlDecode(const std::string& s);

// Parses a request head (request line and headers, without the blank line) from an untrusted
// client: method, decoded path and query, Authorization. InvalidArgument when malformed.
absl::StatusOr<HttpRequest> ParseRequestHead(const std::string& head);

}  // namespace nodewatch::aggregator
