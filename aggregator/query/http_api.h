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
// civetweb's worker threads (bounded), never on gRPC's.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "aggregator/query/query_service.h"
#include "common/tls.h"

struct mg_context;

namespace nodewatch::aggregator {

struct HttpApiOptions {
  std::string listen;  // host:port; port 0 picks one
  bool tls = true;
  TlsFiles tls_files;  // server certificate and key, CA for client certificates
  int threads = 4;
};

class HttpApi {
 public:
  static absl::StatusOr<std::unique_ptr<HttpApi>> Start(const HttpApiOptions& options,
                                                        QueryService& query, IngestEngine& engine,
                                                        const Clock& clock);
  ~HttpApi();
  int port() const { return port_; }

  // Routes one request (exposed for the handler): returns the HTTP status and JSON body.
  std::pair<int, std::string> Handle(const std::string& method, const std::string& path,
                                     const std::string& query_string,
                                     const std::string& authorization, const std::string& peer_pem,
                                     const std::string& peer);

 private:
  HttpApi(QueryService& query, IngestEngine& engine, const Clock& clock, HttpApiOptions options)
      : query_(query), engine_(engine), clock_(clock), options_(std::move(options)) {}

  QueryService& query_;
  IngestEngine& engine_;
  const Clock& clock_;
  const HttpApiOptions options_;
  mg_context* ctx_ = nullptr;
  int port_ = 0;
};

}  // namespace nodewatch::aggregator
