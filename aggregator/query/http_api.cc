#include "aggregator/query/http_api.h"

#include <civetweb.h>
#include <google/protobuf/util/json_util.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <cstring>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/options.h"

namespace nodewatch::aggregator {
namespace {

std::string JsonOf(const google::protobuf::Message& message) {
  google::protobuf::util::JsonPrintOptions options;
  options.always_print_primitive_fields = true;
  std::string out;
  if (!google::protobuf::util::MessageToJsonString(message, &out, options).ok()) return "{}";
  return out;
}

std::string ErrorJson(const absl::Status& s) {
  std::string message(s.message());
  std::string escaped;
  for (char c : message) {
    if (c == '"' || c == '\\') {
      escaped += '\\';
      escaped += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      escaped += ' ';
    } else {
      escaped += c;
    }
  }
  return absl::StrCat(R"({"error":")", escaped, R"(","code":")",
                      absl::StatusCodeToString(s.code()), R"("})");
}

int HttpStatus(absl::StatusCode code) {
  switch (code) {
    case absl::StatusCode::kOk:
      return 200;
    case absl::StatusCode::kInvalidArgument:
      return 400;
    case absl::StatusCode::kUnauthenticated:
      return 401;
    case absl::StatusCode::kPermissionDenied:
      return 403;
    case absl::StatusCode::kNotFound:
      return 404;
    case absl::StatusCode::kResourceExhausted:
      return 429;
    case absl::StatusCode::kUnavailable:
      return 503;
    default:
      return 500;
  }
}

// The value of `name` in a query string, or "" (civetweb decodes it).
std::string QueryParam(const std::string& query, const char* name) {
  char buf[512];
  int n = mg_get_var(query.c_str(), query.size(), name, buf, sizeof buf);
  return n > 0 ? std::string(buf, static_cast<size_t>(n)) : "";
}

// "7d", "6h" (ago) or unix milliseconds.
absl::StatusOr<int64_t> ParseSince(const std::string& text, int64_t now_ms) {
  if (text.empty()) return int64_t{0};
  int64_t unix_ms = 0;
  if (absl::SimpleAtoi(text, &unix_ms)) return unix_ms;
  auto ago = ParseDurationMs(text);
  if (!ago.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("since: '", text, "' is neither a duration (7d, 6h) nor unix milliseconds"));
  }
  return now_ms - *ago;
}

std::string PeerPem(const mg_request_info* info) {
  if (info->client_cert == nullptr || info->client_cert->peer_cert == nullptr) return "";
  BIO* bio = BIO_new(BIO_s_mem());
  std::string pem;
  if (PEM_write_bio_X509(bio, static_cast<X509*>(info->client_cert->peer_cert)) == 1) {
    char* data = nullptr;
    long len = BIO_get_mem_data(bio, &data);
    if (len > 0) pem.assign(data, static_cast<size_t>(len));
  }
  BIO_free(bio);
  return pem;
}

int HandleRequest(mg_connection* conn, void* cbdata) {
  auto* api = static_cast<HttpApi*>(cbdata);
  const mg_request_info* info = mg_get_request_info(conn);
  const char* auth = mg_get_header(conn, "Authorization");
  char peer[64];
  std::snprintf(peer, sizeof peer, "%s:%d", info->remote_addr, info->remote_port);
  auto [status, body] =
      api->Handle(info->request_method, info->local_uri != nullptr ? info->local_uri : "",
                  info->query_string != nullptr ? info->query_string : "",
                  auth != nullptr ? auth : "", PeerPem(info), peer);
  mg_printf(conn,
            "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
            "Cache-Control: no-store\r\nConnection: close\r\n\r\n",
            status, mg_get_response_code_text(conn, status), body.size() + 1);
  mg_write(conn, body.data(), body.size());
  mg_write(conn, "\n", 1);
  return status;
}

struct SslSetup {
  TlsFiles files;
};

// civetweb calls this with its SSL_CTX: the server certificate and key, and client certificates
// requested (not required: a bearer token also works) and verified against the CA.
int InitSsl(void* ssl_ctx, void* user_data) {
  auto* files = static_cast<const TlsFiles*>(user_data);
  auto* ctx = static_cast<SSL_CTX*>(ssl_ctx);
  if (SSL_CTX_use_certificate_chain_file(ctx, files->cert_file.c_str()) != 1 ||
      SSL_CTX_use_PrivateKey_file(ctx, files->key_file.c_str(), SSL_FILETYPE_PEM) != 1 ||
      SSL_CTX_load_verify_locations(ctx, files->ca_file.c_str(), nullptr) != 1) {
    return -1;
  }
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  return 1;
}

}  // namespace

absl::StatusOr<std::unique_ptr<HttpApi>> HttpApi::Start(const HttpApiOptions& options,
                                                        QueryService& query,
                                                        IngestEngine& engine, const Clock& clock) {
  std::unique_ptr<HttpApi> api(new HttpApi(query, engine, clock, options));
  mg_init_library(options.tls ? MG_FEATURES_TLS : 0);
  std::string port = options.listen;
  if (options.tls) port += "s";
  const std::string threads = std::to_string(options.threads);
  const char* mg_options[] = {"listening_ports", port.c_str(), "num_threads", threads.c_str(),
                              "request_timeout_ms", "30000", nullptr};
  mg_callbacks callbacks{};
  if (options.tls) callbacks.init_ssl = InitSsl;
  mg_init_data init{};
  init.callbacks = &callbacks;
  init.user_data = const_cast<TlsFiles*>(&api->options_.tls_files);
  init.configuration_options = mg_options;
  char error[256] = {0};
  mg_error_data error_data{};
  error_data.text = error;
  error_data.text_buffer_size = sizeof error;
  api->ctx_ = mg_start2(&init, &error_data);
  if (api->ctx_ == nullptr) {
    return absl::UnavailableError(absl::StrCat("http-listen: cannot serve on '", options.listen,
                                               "': ", error[0] ? error : "unknown error"));
  }
  mg_set_request_handler(api->ctx_, "/api/", HandleRequest, api.get());
  mg_server_port ports[1]{};
  if (mg_get_server_ports(api->ctx_, 1, ports) == 1) api->port_ = ports[0].port;
  return api;
}

HttpApi::~HttpApi() {
  if (ctx_ != nullptr) mg_stop(ctx_);
}

std::pair<int, std::string> HttpApi::Handle(const std::string& method, const std::string& path,
                                            const std::string& query_string,
                                            const std::string& authorization,
                                            const std::string& peer_pem, const std::string& peer) {
  auto reply = [](const absl::StatusOr<std::string>& body) -> std::pair<int, std::string> {
    if (body.ok()) return {200, *body};
    return {HttpStatus(body.status().code()), ErrorJson(body.status())};
  };
  if (method != "GET") return reply(absl::InvalidArgumentError("only GET is served"));
  if (auto s = query_.CheckCredential(authorization, peer_pem, peer); !s.ok()) return reply(s);
  const std::string nodes_prefix = "/api/v1/nodes/";
  if (path == "/api/v1/nodes") {
    nodewatch::v1::ListNodesResponse response;
    for (auto& n : engine_.ListNodes()) *response.add_nodes() = std::move(n);
    return reply(JsonOf(response));
  }
  if (absl::StartsWith(path, nodes_prefix) && path.size() > nodes_prefix.size()) {
    const std::string name = path.substr(nodes_prefix.size());
    auto node = engine_.GetNode(name);
    if (!node) return reply(absl::NotFoundError(absl::StrCat("no node '", name, "'")));
    return reply(JsonOf(*node));
  }
  if (path == "/api/v1/cost") {
    nodewatch::v1::CostRequest request;
    request.set_include_nodes(QueryParam(query_string, "nodes") == "true");
    auto report = query_.Cost(request);
    if (!report.ok()) return reply(report.status());
    return reply(JsonOf(*report));
  }
  if (path == "/api/v1/interruptions") {
    nodewatch::v1::ListInterruptionsRequest request;
    auto since = ParseSince(QueryParam(query_string, "since"), clock_.NowUnixMs());
    if (!since.ok()) return reply(since.status());
    request.set_since_unix_ms(*since);
    request.set_node(QueryParam(query_string, "node"));
    auto response = query_.Interruptions(request);
    if (!response.ok()) return reply(response.status());
    return reply(JsonOf(*response));
  }
  if (path == "/api/v1/alerts") {
    nodewatch::v1::ListAlertsRequest request;
    request.set_include_resolved(QueryParam(query_string, "all") == "true");
    auto response = query_.Alerts(request);
    if (!response.ok()) return reply(response.status());
    return reply(JsonOf(*response));
  }
  return reply(absl::NotFoundError(absl::StrCat("no such endpoint '", path,
                                                "' (nodes, nodes/NAME, cost, interruptions, "
                                                "alerts under /api/v1/)")));
}

}  // namespace nodewatch::aggregator
