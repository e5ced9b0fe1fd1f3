// Who may talk to the aggregator, and what bad input does to it: node identity comes only from a
// verified client certificate; bad certificates are refused at the handshake; malformed and
// oversized messages get an error while every other stream keeps being served.
#include <gmock/gmock.h>
#include <grpcpp/generic/generic_stub.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <fstream>

#include "common/file_util.h"
#include "nodewatch/v1/agent.grpc.pb.h"
#include "tests/integration/harness.h"

namespace nodewatch::testing {
namespace {

using nodewatch::v1::AgentMessage;
using nodewatch::v1::AggregatorMessage;

// A hand-driven agent stream, to send exactly what a test wants.
class RawAgent {
 public:
  RawAgent(const std::string& address, std::shared_ptr<grpc::ChannelCredentials> creds) {
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    args.SetMaxSendMessageSize(64 << 20);
    stub_ = nodewatch::v1::AgentService::NewStub(grpc::CreateCustomChannel(address, creds, args));
    context_.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    stream_ = stub_->Stream(&context_);
  }
  bool Send(const AgentMessage& m) { return stream_->Write(m); }
  std::optional<uint64_t> ReadAck() {
    AggregatorMessage m;
    if (!stream_->Read(&m)) return std::nullopt;
    return m.ack().acked_seq();
  }
  grpc::Status Finish() {
    stream_->WritesDone();
    return stream_->Finish();
  }

 private:
  std::unique_ptr<nodewatch::v1::AgentService::Stub> stub_;
  grpc::ClientContext context_;
  std::unique_ptr<grpc::ClientReaderWriter<AgentMessage, AggregatorMessage>> stream_;
};

AgentMessage Hello(const std::string& node) {
  AgentMessage m;
  m.mutable_hello()->set_node_name(node);
  m.mutable_hello()->set_spool_id("raw-spool");
  return m;
}

AgentMessage Batch(std::vector<uint64_t> seqs, size_t payload_bytes = 0) {
  AgentMessage m;
  for (uint64_t s : seqs) {
    auto* r = m.mutable_batch()->add_records();
    r->set_seq(s);
    r->set_time_unix_ms(1'760'000'000'000);
    r->mutable_interruption()->set_raw_payload(std::string(payload_bytes, 'p'));
  }
  return m;
}

class SecurityIntegration : public ::testing::Test {
 protected:
  SecurityIntegration() : c_("security") {}
  void SetUp() override { c_.StartAggregator({"--max-message-bytes", "256KiB"}); }
  std::shared_ptr<grpc::ChannelCredentials> NodeCreds(const std::string& node) {
    auto cert = c_.NodeCert(node);
    return Cluster::MakeCreds(c_.pki().ca_file(), cert.cert, cert.key);
  }
  Cluster c_;
};

TEST_F(SecurityIntegration, ACertificateForNodeACannotSpeakForNodeB) {
  RawAgent impostor(c_.ingest_address(), NodeCreds("node-a"));
  ASSERT_TRUE(impostor.Send(Hello("node-b")));
  EXPECT_FALSE(impostor.ReadAck().has_value());
  auto status = impostor.Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_THAT(status.error_message(), ::testing::HasSubstr("node-b"));

  // The real agent binary configured the same way is refused too, and says so.
  c_.StartAgent("node-b", {"--interval", "200ms"}, c_.NodeCert("node-a"));
  ASSERT_TRUE(Cluster::WaitFor(
      [&] { return c_.agent("node-b").log().find("refused this agent") != std::string::npos; },
      15'000))
      << c_.agent("node-b").log();
  auto nodes = c_.ListNodes();
  ASSERT_TRUE(nodes.has_value());
  EXPECT_TRUE(nodes->empty()) << "nothing may be stored for either node";
  EXPECT_THAT(c_.aggregator().log(), ::testing::HasSubstr("refused agent stream"));
}

// The kubelet keeps its client certificate and key in one file
// (/var/lib/kubelet/pki/kubelet-client-current.pem); an agent reusing the node identity points both
// --tls-cert and --tls-key at it.
TEST_F(SecurityIntegration, TheKubeletsCombinedCertificateAndKeyFileWorks) {
  auto cert = c_.NodeCert("kubelet-node");
  const std::string combined = c_.dir() + "/kubelet-client-current.pem";
  std::ofstream(combined) << ReadFileToString(cert.cert).value()
                          << ReadFileToString(cert.key).value();
  c_.StartAgent("kubelet-node", {"--interval", "200ms"}, CertFiles{combined, combined});
  ASSERT_TRUE(Cluster::WaitFor(
      [&] {
        auto node = c_.GetNode("kubelet-node");
        return node && node->connected() && node->records() >= 2;
      },
      15'000))
      << c_.agent("kubelet-node").log();
}

TEST_F(SecurityIntegration, OnlyKubeletStyleNodeCertificatesMayStream) {
  // An operator certificate is valid but is not a node's.
  RawAgent op(c_.ingest_address(), Cluster::MakeCreds(c_.pki().ca_file(), c_.operator_cert().cert,
                                                      c_.operator_cert().key));
  op.Send(Hello("alice"));
  EXPECT_FALSE(op.ReadAck().has_value());
  EXPECT_EQ(op.Finish().error_code(), grpc::StatusCode::PERMISSION_DENIED);
}

TEST_F(SecurityIntegration, ClientsWithoutAValidCertificateAreRefusedAtTheHandshake) {
  auto expect_refused = [&](std::shared_ptr<grpc::ChannelCredentials> creds, const char* what) {
    RawAgent agent(c_.ingest_address(), std::move(creds));
    agent.Send(Hello("node-x"));
    EXPECT_FALSE(agent.ReadAck().has_value()) << what;
    EXPECT_EQ(agent.Finish().error_code(), grpc::StatusCode::UNAVAILABLE) << what;
  };
  // No client certificate at all.
  expect_refused(Cluster::MakeCreds(c_.pki().ca_file(), "", ""), "no certificate");
  // A certificate from a CA the aggregator does not trust.
  TestPki rogue(c_.dir() + "/rogue", "rogue-ca");
  auto rogue_cert = rogue.Issue("node-x", {.cn = "system:node:node-x", .orgs = {"system:nodes"}});
  expect_refused(Cluster::MakeCreds(c_.pki().ca_file(), rogue_cert.cert, rogue_cert.key),
                 "unknown CA");
  // An expired certificate from the right CA.
  auto expired = c_.pki().Issue("expired", {.cn = "system:node:node-x",
                                            .orgs = {"system:nodes"},
                                            .not_before_offset_s = -7200,
                                            .not_after_offset_s = -3600});
  expect_refused(Cluster::MakeCreds(c_.pki().ca_file(), expired.cert, expired.key), "expired");
  // Plaintext.
  expect_refused(grpc::InsecureChannelCredentials(), "plaintext");

  // A valid node certificate works (the refusals above were not a broken server).
  RawAgent good(c_.ingest_address(), NodeCreds("node-x"));
  ASSERT_TRUE(good.Send(Hello("node-x")));
  EXPECT_EQ(good.ReadAck(), std::optional<uint64_t>(0));
  EXPECT_TRUE(good.Finish().ok());
}

TEST_F(SecurityIntegration, MalformedAndOversizedMessagesGetAnErrorAndOthersKeepStreaming) {
  c_.StartAgent("steady", {"--interval", "200ms"});
  auto steady_acked = [&] {
    auto n = c_.GetNode("steady");
    return n ? n->acked_seq() : 0;
  };
  ASSERT_TRUE(Cluster::WaitFor([&] { return steady_acked() > 0; }, 15'000));

  {  // Bytes that are not a protobuf at all, through the generic stub.
    auto creds = NodeCreds("raw");
    grpc::GenericStub stub(grpc::CreateChannel(c_.ingest_address(), creds));
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    grpc::CompletionQueue cq;
    auto call = stub.PrepareCall(&ctx, "/nodewatch.v1.AgentService/Stream", &cq);
    void* tag = nullptr;
    bool ok = false;
    call->StartCall(reinterpret_cast<void*>(1));
    ASSERT_TRUE(cq.Next(&tag, &ok));
    const char garbage[] = "\xff\xff\xff\xff\x0f this is not protobuf";
    grpc::Slice slice(garbage, sizeof garbage);
    grpc::ByteBuffer buffer(&slice, 1);
    call->Write(buffer, reinterpret_cast<void*>(2));
    ASSERT_TRUE(cq.Next(&tag, &ok));
    grpc::ByteBuffer reply;
    call->Read(&reply, reinterpret_cast<void*>(3));
    ASSERT_TRUE(cq.Next(&tag, &ok));
    EXPECT_FALSE(ok) << "the aggregator must not answer garbage";
    grpc::Status status;
    call->Finish(&status, reinterpret_cast<void*>(4));
    ASSERT_TRUE(cq.Next(&tag, &ok));
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(status.error_message(), ::testing::HasSubstr("malformed"));
    cq.Shutdown();
    while (cq.Next(&tag, &ok)) {
    }
  }
  {  // A message above --max-message-bytes.
    RawAgent agent(c_.ingest_address(), NodeCreds("big"));
    ASSERT_TRUE(agent.Send(Hello("big")));
    EXPECT_EQ(agent.ReadAck(), std::optional<uint64_t>(0));
    agent.Send(Batch({1}, 1 << 20));
    EXPECT_FALSE(agent.ReadAck().has_value());
    EXPECT_EQ(agent.Finish().error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  }
  {  // A batch before Hello.
    RawAgent agent(c_.ingest_address(), NodeCreds("early"));
    agent.Send(Batch({1}));
    EXPECT_FALSE(agent.ReadAck().has_value());
    EXPECT_EQ(agent.Finish().error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  }
  {  // Records without a payload and with seq 0.
    RawAgent agent(c_.ingest_address(), NodeCreds("empty"));
    ASSERT_TRUE(agent.Send(Hello("empty")));
    ASSERT_TRUE(agent.ReadAck().has_value());
    AgentMessage bad;
    bad.mutable_batch()->add_records()->set_seq(1);
    agent.Send(bad);
    EXPECT_FALSE(agent.ReadAck().has_value());
    EXPECT_EQ(agent.Finish().error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  }
  // Nothing of the bad streams was stored, the server is alive and the steady agent kept going.
  auto empty = c_.GetNode("empty");
  ASSERT_TRUE(empty.has_value());
  EXPECT_EQ(empty->records(), 0u);
  EXPECT_EQ(c_.GetNode("big")->records(), 0u);
  EXPECT_FALSE(c_.GetNode("early").has_value());
  uint64_t before = steady_acked();
  EXPECT_TRUE(Cluster::WaitFor([&] { return steady_acked() > before + 2; }, 10'000));
  EXPECT_TRUE(c_.aggregator().running());
}

TEST_F(SecurityIntegration, TheQueryApiNeedsAnOperatorCredential) {
  auto call = [&](std::shared_ptr<grpc::ChannelCredentials> creds, const std::string& token = "") {
    auto stub = nodewatch::v1::QueryService::NewStub(
        grpc::CreateChannel(c_.query_address(), std::move(creds)));
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    if (!token.empty()) ctx.AddMetadata("authorization", "Bearer " + token);
    nodewatch::v1::ListNodesResponse response;
    return stub->ListNodes(&ctx, {}, &response).error_code();
  };
  auto ca_only = Cluster::MakeCreds(c_.pki().ca_file(), "", "");
  EXPECT_EQ(call(ca_only), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(call(NodeCreds("node-q")), grpc::StatusCode::UNAUTHENTICATED);  // a node is no operator
  EXPECT_EQ(call(ca_only, "wrong-token-wrong-token"), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(
      call(Cluster::MakeCreds(c_.pki().ca_file(), c_.operator_cert().cert, c_.operator_cert().key)),
      grpc::StatusCode::OK);
}

TEST(QueryTokenIntegration, ABearerTokenFromTheTokenFileIsAccepted) {
  Cluster c("token");
  std::string token_file = c.dir() + "/token";
  std::ofstream(token_file) << "s3cr3t-operator-token-0123456789\n";
  c.StartAggregator({"--operator-token-file", token_file});
  auto stub = nodewatch::v1::QueryService::NewStub(
      grpc::CreateChannel(c.query_address(), Cluster::MakeCreds(c.pki().ca_file(), "", "")));
  grpc::ClientContext ctx;
  ctx.AddMetadata("authorization", "Bearer s3cr3t-operator-token-0123456789");
  nodewatch::v1::ListNodesResponse response;
  EXPECT_TRUE(stub->ListNodes(&ctx, {}, &response).ok());
}

}  // namespace
}  // namespace nodewatch::testing
