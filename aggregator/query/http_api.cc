#include "aggregator/query/http_api.h"

#include <google/protobuf/util/json_util.h>

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
  return absl::StrCat(R"({"error":")", escaped, R"(","code":")", absl::StatusCodeToString(s.code()),
                      R"("})");
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

}  // namespace

absl::StatusOr<std::unique_ptr<HttpApi>> HttpApi::Start(const HttpApiOptions& options,
                                                        QueryService& query, IngestEngine& engine,
                                                        const Clock& clock) {
  std::unique_ptr<HttpApi> api(new HttpApi(query, engine, clock));
  HttpServerOptions server{.listen = options.listen, .threads = options.threads};
  if (options.tls) server.tls = options.tls_files;
  auto started = HttpServer::Start(
      server, [self = api.get()](const HttpRequest& r) { return self->Handle(r); });
  if (!started.ok()) return started.status();
  api->server_ = std::move(*started);
  return api;
}

HttpResponse HttpApi::Handle(const HttpRequest& request) {
  auto reply = [](const absl::StatusOr<std::string>& body) -> HttpResponse {
    if (body.ok()) return {200, *body};
    return {HttpStatus(body.status().code()), ErrorJson(body.status())};
  };
  auto param = [&](const char* name) {
    auto it = request.params.find(name);
    return it == request.params.end() ? std::string() : it->second;
  };
  const std::string& path = request.path;
  if (request.method != "GET") return {405, ErrorJson(absl::InvalidArgumentError("only GET"))};
  if (auto s =
          query_.CheckCredential(request.authorization, request.peer_certificate_pem, request.peer);
      !s.ok()) {
    return reply(s);
  }
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
    request.set_include_nodes(param("nodes") == "true");
    auto report = query_.Cost(request);
    if (!report.ok()) return reply(report.status());
    return reply(JsonOf(*report));
  }
  if (path == "/api/v1/interruptions") {
    nodewatch::v1::ListInterruptionsRequest request;
    auto since = ParseSince(param("since"), clock_.NowUnixMs());
    if (!since.ok()) return reply(since.status());
    request.set_since_unix_ms(*since);
    request.set_node(param("node"));
    auto response = query_.Interruptions(request);
    if (!response.ok()) return reply(response.status());
    return reply(JsonOf(*response));
  }
  if (path == "/api/v1/alerts") {
    nodewatch::v1::ListAlertsRequest request;
    request.set_include_resolved(param("all") == "true");
    auto response = query_.Alerts(request);
    if (!response.ok()) return reply(response.status());
    return reply(JsonOf(*response));
  }
  return reply(absl::NotFoundError(absl::StrCat("no such endpoint '", path,
                                                "' (nodes, nodes/NAME, cost, interruptions, "
                                                "alerts under /api/v1/)")));
}

}  // namespace nodewatch::aggregator
