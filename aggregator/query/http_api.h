// HttpApi: the operator API as JSON over HTTP(S), for curl, scripts and browsers. Same answers and
// the same credentials as the gRPC QueryService: a bearer token (`Authorization: Bearer ...`) or
// a client certificate with O=nodewatch:operators. HTTPS with the aggregator's server certificate
// unless --insecure.
//
//   GET /api/v1/nodes                         the node directory
//   GET /api/v1/nodes/NAME                    one node
//   GET /api/v1/cost[?nodes=true]             cost report (per-node lines with nodes=true)
//   GET /api/v1/interruptions?since=7d[&node=NAME]   timeline with drain outcomes
//   GET /api/v1/alerts[?all=true]             pending and firing alerts (resolved too with all)
//
// Errors are {"error": "...", "code": "NOT_FOUND"} with the matching HTTP status. Requests run on
// the HTTP server's own bounded workers, never on gRPC's.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "aggregator/query/http_server.h"
#include "aggregator/query/query_service.h"
#include "common/tls.h"

namespace nodewatch::aggregator {

struct HttpApiOptions {
  std::string listen;  // host:port; port 0 picks one
  bool tls = true;
  TlsFiles tls_files;  // server certificate and key, CA for client certificates
  size_t threads = 4;
};

class HttpApi {
 public:
  static absl::StatusOr<std::unique_ptr<HttpApi>> Start(const HttpApiOptions& options,
                                                        QueryService& query, IngestEngine& engine,
                                                        const Clock& clock);
  int port() const { return server_->port(); }
  uint64_t refused() const { return server_->refused(); }

  // Routes one request: the HTTP status and JSON body.
  HttpResponse Handle(const HttpRequest& request);

 private:
  HttpApi(QueryService& query, IngestEngine& engine, const Clock& clock)
      : query_(query), engine_(engine), clock_(clock) {}

  QueryService& query_;
  IngestEngine& engine_;
  const Clock& clock_;
  std::unique_ptr<HttpServer> server_;
};

}  // namespace nodewatch::aggregator
