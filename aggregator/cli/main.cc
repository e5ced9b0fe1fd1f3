// nodewatch: the operator CLI.
//
//   nodewatch --server HOST:PORT nodes
//   nodewatch --server HOST:PORT history NODE --since 6h [--kind heartbeat] [-o json]
//   nodewatch --server HOST:PORT node NODE
//   nodewatch --server HOST:PORT interruptions --since 7d [--node NODE]
//   nodewatch --server HOST:PORT cost [--nodes]
//   nodewatch --server HOST:PORT alerts [--all]
#include <chrono>
#include <iostream>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "aggregator/cli/cli.h"
#include "common/clock.h"
#include "common/file_util.h"
#include "common/options.h"
#include "common/tls.h"
#include "grpcpp/grpcpp.h"
#include "nodewatch/v1/query.grpc.pb.h"

namespace {

struct CliConfig {
  std::string server = "localhost:7444";
  std::string tls_ca;
  std::string tls_cert;
  std::string tls_key;
  std::string token_file;
  bool insecure = false;
  int64_t since_ms = 6 * 3600 * 1000;
  int64_t until_ms = 0;
  std::vector<std::string> kinds;
  std::string output = "table";
  int64_t limit = 0;
  std::string node;
  int64_t timeout_ms = 30'000;
  bool nodes = false;
  bool all = false;
};

constexpr char kUsage[] =
    "usage: nodewatch [flags] COMMAND\n\n"
    "Commands:\n"
    "  nodes                 every node this aggregator knows, with connection state\n"
    "  node NAME             one node's details\n"
    "  history NODE          a node's records (--since, --until, --kind, --limit)\n"
    "  interruptions         interruption timeline with drain outcomes (--since, --node)\n"
    "  cost                  today, month to date, forecast by region and lifecycle; data\n"
    "                        transfer; spot savings (--nodes: per node)\n"
    "  alerts                pending and firing alerts (--all: resolved too)\n\n";

int Fail(const std::string& message, int code = 1) {
  std::cerr << "nodewatch: " << message << "\n";
  return code;
}

int FailRpc(const grpc::Status& s) {
  std::string hint;
  if (s.error_code() == grpc::StatusCode::UNAVAILABLE) {
    hint = " (is the aggregator running, and do --server and the TLS flags match it?)";
  }
  return Fail(absl::StrCat(s.error_message(), hint));
}

}  // namespace

int main(int argc, char** argv) {
  CliConfig c;
  nodewatch::OptionSet options("nodewatch", "Ask the nodewatch aggregator about nodes.");
  options.AddString("server", &c.server, "Aggregator query address host:port.");
  options.AddString("tls-ca", &c.tls_ca, "PEM CA bundle that signed the aggregator.");
  options.AddString("tls-cert", &c.tls_cert, "PEM operator certificate (O=nodewatch:operators).");
  options.AddString("tls-key", &c.tls_key, "PEM private key of --tls-cert.");
  options.AddString("token-file", &c.token_file, "File with a bearer token (instead of a cert).");
  options.AddBool("insecure", &c.insecure, "Plaintext (an aggregator started with --insecure).");
  options.AddDuration("since", &c.since_ms, "How far back to look.");
  options.AddDuration("until", &c.until_ms, "Stop this long before now (default: now).");
  options.AddStringList(
      "kind", &c.kinds,
      "history: node-info|heartbeat|interruption|network|disk|remediation (repeatable).");
  options.AddString("output", &c.output, "table or json (also -o).");
  options.AddInt("limit", &c.limit, "history: at most this many records (0: all).", 0, 1LL << 40);
  options.AddString("node", &c.node, "interruptions: only this node.");
  options.AddDuration("timeout", &c.timeout_ms, "Deadline of each call.");
  options.AddBool("nodes", &c.nodes, "cost: one line per node too.");
  options.AddBool("all", &c.all, "alerts: resolved alerts too.");

  std::vector<const char*> args(argv, argv + argc);
  for (auto& a : args) {
    if (std::string(a) == "-o") a = "--output";
  }
  auto positional = options.Parse(static_cast<int>(args.size()), args.data());
  if (!positional.ok()) return Fail(std::string(positional.status().message()), 2);
  if (options.help_requested() || positional->empty()) {
    std::cout << kUsage << options.Help();
    return positional->empty() && !options.help_requested() ? 2 : 0;
  }
  if (c.output != "table" && c.output != "json") return Fail("--output must be table or json", 2);
  const bool json = c.output == "json";

  std::shared_ptr<grpc::ChannelCredentials> creds;
  if (c.insecure) {
    creds = grpc::InsecureChannelCredentials();
  } else {
    if (c.tls_ca.empty()) return Fail("--tls-ca is required unless --insecure", 2);
    auto tls = nodewatch::MakeChannelCredentials({c.tls_ca, c.tls_cert, c.tls_key});
    if (!tls.ok()) return Fail(std::string(tls.status().message()), 2);
    creds = *tls;
  }
  std::string token;
  if (!c.token_file.empty()) {
    auto t = nodewatch::ReadFileToString(c.token_file);
    if (!t.ok()) return Fail(std::string(t.status().message()), 2);
    token = std::string(absl::StripAsciiWhitespace(*t));
  }
  auto stub = nodewatch::v1::QueryService::NewStub(grpc::CreateChannel(c.server, creds));
  auto context = [&] {
    auto ctx = std::make_unique<grpc::ClientContext>();
    ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(c.timeout_ms));
    if (!token.empty()) ctx->AddMetadata("authorization", "Bearer " + token);
    return ctx;
  };
  const int64_t now = nodewatch::SystemClock::Get().NowUnixMs();
  const std::string& command = (*positional)[0];

  if (command == "nodes") {
    nodewatch::v1::ListNodesResponse response;
    auto ctx = context();
    auto s = stub->ListNodes(ctx.get(), {}, &response);
    if (!s.ok()) return FailRpc(s);
    std::vector<nodewatch::v1::NodeSummary> nodes(response.nodes().begin(), response.nodes().end());
    std::cout << (json ? nodewatch::cli::ToJson(response) + "\n"
                       : nodewatch::cli::NodesTable(nodes, now));
    return 0;
  }
  if (command == "node") {
    if (positional->size() != 2) return Fail("usage: nodewatch node NAME", 2);
    nodewatch::v1::GetNodeRequest request;
    request.set_name((*positional)[1]);
    nodewatch::v1::NodeSummary response;
    auto ctx = context();
    auto s = stub->GetNode(ctx.get(), request, &response);
    if (!s.ok()) return FailRpc(s);
    std::cout << (json ? nodewatch::cli::ToJson(response) + "\n"
                       : nodewatch::cli::NodeDetails(response, now));
    return 0;
  }
  if (command == "history") {
    if (positional->size() != 2) return Fail("usage: nodewatch history NODE [--since 6h]", 2);
    nodewatch::v1::NodeHistoryRequest request;
    request.set_node((*positional)[1]);
    request.set_since_unix_ms(now - c.since_ms);
    if (c.until_ms > 0) request.set_until_unix_ms(now - c.until_ms);
    request.set_limit(static_cast<uint32_t>(c.limit));
    for (const auto& k : c.kinds) {
      auto kind = nodewatch::cli::ParseKind(k);
      if (!kind.ok()) return Fail(std::string(kind.status().message()), 2);
      request.add_kinds(*kind);
    }
    auto ctx = context();
    auto reader = stub->NodeHistory(ctx.get(), request);
    std::vector<nodewatch::v1::Record> records;
    nodewatch::v1::Record record;
    while (reader->Read(&record)) records.push_back(record);
    auto s = reader->Finish();
    if (!s.ok()) return FailRpc(s);
    if (json) {
      std::cout << "[";
      for (size_t i = 0; i < records.size(); ++i) {
        std::cout << (i ? ",\n " : "") << nodewatch::cli::ToJson(records[i]);
      }
      std::cout << "]\n";
    } else {
      std::cout << nodewatch::cli::HistoryTable(records);
    }
    return 0;
  }
  if (command == "interruptions") {
    nodewatch::v1::ListInterruptionsRequest request;
    request.set_since_unix_ms(now - c.since_ms);
    request.set_node(c.node);
    nodewatch::v1::ListInterruptionsResponse response;
    auto ctx = context();
    auto s = stub->ListInterruptions(ctx.get(), request, &response);
    if (!s.ok()) return FailRpc(s);
    std::cout << (json ? nodewatch::cli::ToJson(response) + "\n"
                       : nodewatch::cli::InterruptionsTable(response));
    return 0;
  }
  if (command == "cost") {
    nodewatch::v1::CostRequest request;
    request.set_include_nodes(c.nodes);
    nodewatch::v1::CostReport response;
    auto ctx = context();
    auto s = stub->GetCost(ctx.get(), request, &response);
    if (!s.ok()) return FailRpc(s);
    std::cout << (json ? nodewatch::cli::ToJson(response) + "\n"
                       : nodewatch::cli::CostSummary(response));
    return 0;
  }
  if (command == "alerts") {
    nodewatch::v1::ListAlertsRequest request;
    request.set_include_resolved(c.all);
    nodewatch::v1::ListAlertsResponse response;
    auto ctx = context();
    auto s = stub->ListAlerts(ctx.get(), request, &response);
    if (!s.ok()) return FailRpc(s);
    std::cout << (json ? nodewatch::cli::ToJson(response) + "\n"
                       : nodewatch::cli::AlertsTable(response, now));
    return 0;
  }
  return Fail(absl::StrCat("unknown command '", command, "'\n", kUsage), 2);
}
