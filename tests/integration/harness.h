// Integration harness: a test CA, a real nodewatch-aggregator process with its RocksDB on disk,
// real nodewatch-agent processes, and an operator client for the query API, all over mTLS on
// 127.0.0.1.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "common/tls.h"
#include "grpcpp/grpcpp.h"
#include "nodewatch/v1/query.grpc.pb.h"
#include "tests/support/metrics_scrape.h"
#include "tests/support/process.h"
#include "tests/support/test_pki.h"

namespace nodewatch::testing {

class Cluster {
 public:
  explicit Cluster(const std::string& name) : dir_(MakeTempDir(name)), pki_(dir_ + "/pki") {
    server_ = pki_.Issue(
        "aggregator", {.cn = "nodewatch-aggregator", .dns = {"localhost"}, .ips = {"127.0.0.1"}});
    operator_ = pki_.Issue("operator", {.cn = "alice", .orgs = {"nodewatch:operators"}});
    ingest_port_ = FreePort();
    query_port_ = FreePort();
  }
  ~Cluster() {
    agents_.clear();
    aggregator_.reset();
    if (!::testing::Test::HasFailure()) std::filesystem::remove_all(dir_);
  }

  const std::string& dir() const { return dir_; }
  TestPki& pki() { return pki_; }
  std::string ingest_address() const { return "127.0.0.1:" + std::to_string(ingest_port_); }
  std::string query_address() const { return "127.0.0.1:" + std::to_string(query_port_); }
  const CertFiles& operator_cert() const { return operator_; }

  void StartAggregator(std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {"--listen",         ingest_address(),
                                     "--query-listen",   query_address(),
                                     "--metrics-listen", "",
                                     "--http-listen",    "",
                                     "--data-dir",       dir_ + "/aggregator",
                                     "--tls-ca",         pki_.ca_file(),
                                     "--tls-cert",       server_.cert,
                                     "--tls-key",        server_.key};
    // Never let a test act on whatever cluster ~/.kube/config points at.
    if (std::find(extra.begin(), extra.end(), "--remediation") == extra.end()) {
      args.insert(args.end(), {"--remediation", "off"});
    }
    args.insert(args.end(), extra.begin(), extra.end());
    aggregator_ = std::make_unique<Subprocess>(BinaryPath("nodewatch-aggregator"), args,
                                               dir_ + "/aggregator.log");
    aggregator_->Start();
    ASSERT_TRUE(WaitFor([&] { return ListNodes().has_value(); }, 15'000))
        << "aggregator did not come up:\n"
        << aggregator_->log();
  }
  void KillAggregator(int signal) { aggregator_->Stop(signal); }
  Subprocess& aggregator() { return *aggregator_; }

  // Issues a node certificate (CN system:node:<cert_node>) unless given, and starts an agent.
  Subprocess& StartAgent(const std::string& node, std::vector<std::string> extra = {},
                         std::optional<CertFiles> cert = std::nullopt) {
    if (!cert) cert = NodeCert(node);
    std::vector<std::string> args = {
        "--node-name",   node,           "--aggregator", ingest_address(),
        "--spool-dir",   SpoolDir(node), "--tls-ca",     pki_.ca_file(),
        "--tls-cert",    cert->cert,     "--tls-key",    cert->key,
        "--max-backoff", "1s",           "--cloud",      "none"};
    args.insert(args.end(), extra.begin(), extra.end());
    auto agent = std::make_unique<Subprocess>(BinaryPath("nodewatch-agent"), args,
                                              dir_ + "/agent-" + node + ".log");
    agent->Start();
    agents_[node] = std::move(agent);
    return *agents_[node];
  }
  Subprocess& agent(const std::string& node) { return *agents_.at(node); }
  std::string SpoolDir(const std::string& node) const { return dir_ + "/spool-" + node; }
  CertFiles NodeCert(const std::string& node) {
    return pki_.Issue("node-" + node, {.cn = "system:node:" + node, .orgs = {"system:nodes"}});
  }

  std::unique_ptr<nodewatch::v1::QueryService::Stub> QueryStub() {
    auto creds = MakeCreds(pki_.ca_file(), operator_.cert, operator_.key);
    return nodewatch::v1::QueryService::NewStub(grpc::CreateChannel(query_address(), creds));
  }
  static std::shared_ptr<grpc::ChannelCredentials> MakeCreds(const std::string& ca,
                                                             const std::string& cert,
                                                             const std::string& key) {
    auto creds = nodewatch::MakeChannelCredentials({ca, cert, key});
    EXPECT_TRUE(creds.ok()) << creds.status();
    return *creds;
  }

  std::optional<std::vector<nodewatch::v1::NodeSummary>> ListNodes() {
    auto stub = QueryStub();
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
    nodewatch::v1::ListNodesResponse response;
    if (!stub->ListNodes(&ctx, {}, &response).ok()) return std::nullopt;
    return std::vector<nodewatch::v1::NodeSummary>(response.nodes().begin(),
                                                   response.nodes().end());
  }
  std::optional<nodewatch::v1::NodeSummary> GetNode(const std::string& node) {
    auto stub = QueryStub();
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
    nodewatch::v1::GetNodeRequest request;
    request.set_name(node);
    nodewatch::v1::NodeSummary response;
    if (!stub->GetNode(&ctx, request, &response).ok()) return std::nullopt;
    return response;
  }
  std::vector<nodewatch::v1::Record> History(const std::string& node) {
    auto stub = QueryStub();
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
    nodewatch::v1::NodeHistoryRequest request;
    request.set_node(node);
    auto reader = stub->NodeHistory(&ctx, request);
    std::vector<nodewatch::v1::Record> out;
    nodewatch::v1::Record r;
    while (reader->Read(&r)) out.push_back(r);
    auto status = reader->Finish();
    EXPECT_TRUE(status.ok()) << status.error_message();
    return out;
  }

  static bool WaitFor(const std::function<bool()>& condition, int64_t timeout_ms) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    while (std::chrono::steady_clock::now() < deadline) {
      if (condition()) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return condition();
  }

 private:
  std::string dir_;
  TestPki pki_;
  CertFiles server_;
  CertFiles operator_;
  int ingest_port_;
  int query_port_;
  std::unique_ptr<Subprocess> aggregator_;
  std::map<std::string, std::unique_ptr<Subprocess>> agents_;
};

// The remediation steps in a node's history, oldest first.
inline std::vector<nodewatch::v1::Record> Steps(Cluster& c, const std::string& node) {
  std::vector<nodewatch::v1::Record> steps;
  for (const auto& r : c.History(node)) {
    if (r.has_remediation()) steps.push_back(r);
  }
  return steps;
}

// The first step with `action`, if the node's history has one.
inline std::optional<nodewatch::v1::Record> Step(Cluster& c, const std::string& node,
                                                 const std::string& action) {
  for (const auto& r : Steps(c, node)) {
    if (r.remediation().action() == action) return r;
  }
  return std::nullopt;
}

}  // namespace nodewatch::testing
