// Cost, alerts and the operator's view end to end: an aggregator with real mTLS and RocksDB on
// disk, nodes and their samples fed through its ingest engine, then read back through the gRPC
// query API, the `nodewatch` CLI and the JSON API over HTTPS (client certificate, bearer token,
// refusals, malformed requests).
#include <arpa/inet.h>
#include <curl/curl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fstream>
#include <future>

#include "grpcpp/grpcpp.h"
#include "nodewatch/v1/query.grpc.pb.h"
#include "tests/support/inprocess_aggregator.h"
#include "tests/support/process.h"

namespace nodewatch::testing {
namespace {

using ::testing::HasSubstr;

struct HttpResult {
  long status = 0;
  std::string body;
};

size_t Append(char* data, size_t size, size_t n, void* out) {
  static_cast<std::string*>(out)->append(data, size * n);
  return size * n;
}

HttpResult Get(const std::string& url, const std::string& ca, const CertFiles* client,
               const std::string& token = "") {
  HttpResult r;
  CURL* curl = curl_easy_init();
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_CAINFO, ca.c_str());
  curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, 10'000L);
  if (client != nullptr) {
    curl_easy_setopt(curl, CURLOPT_SSLCERT, client->cert.c_str());
    curl_easy_setopt(curl, CURLOPT_SSLKEY, client->key.c_str());
  }
  curl_slist* headers = nullptr;
  if (!token.empty()) {
    headers = curl_slist_append(headers, ("Authorization: Bearer " + token).c_str());
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
  }
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, Append);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &r.body);
  if (curl_easy_perform(curl) == CURLE_OK)
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &r.status);
  curl_slist_free_all(headers);
  curl_easy_cleanup(curl);
  return r;
}

// Plain TCP bytes to the HTTPS port: what a broken or hostile client sends.
std::string RawExchange(int port, const std::string& bytes) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) return "connect failed";
  (void)!write(fd, bytes.data(), bytes.size());
  shutdown(fd, SHUT_WR);
  std::string out;
  char buf[1024];
  for (ssize_t n; (n = read(fd, buf, sizeof buf)) > 0;) out.append(buf, static_cast<size_t>(n));
  close(fd);
  return out;
}

class CostIntegration : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = MakeTempDir("cost");
    pki_ = std::make_unique<TestPki>(dir_ + "/pki");
    server_ = pki_->Issue(
        "aggregator", {.cn = "nodewatch-aggregator", .dns = {"localhost"}, .ips = {"127.0.0.1"}});
    operator_ = pki_->Issue("operator", {.cn = "alice", .orgs = {"nodewatch:operators"}});
    node_ = pki_->Issue("node", {.cn = "system:node:a", .orgs = {"system:nodes"}});
    token_file_ = dir_ + "/token";
    std::ofstream(token_file_) << "s3cret-operator-token-0123456789\n";
    auto agg = StartInProcessAggregator(dir_, *pki_, server_, [&](aggregator::AggregatorConfig& c) {
      c.http_listen = "127.0.0.1:0";
      c.metrics_listen = "127.0.0.1:0";
      c.operator_token_file = token_file_;
      c.cost.monitor.cluster = "prod-eu";
      c.cost.monitor.monthly_budget_usd = 0.5;
      c.cost.transfer_cidrs = {"192.0.2.0/24=eu-west-1/eu-west-1b"};
    });
    ASSERT_TRUE(agg.ok()) << agg.status();
    agg_ = std::move(*agg);
  }
  void TearDown() override {
    agg_.reset();
    if (!HasFailure()) std::filesystem::remove_all(dir_);
  }
  void Submit(const std::string& node, const nodewatch::v1::Hello* hello,
              const nodewatch::v1::RecordBatch* batch) {
    std::promise<absl::StatusOr<uint64_t>> done;
    auto cb = [&](absl::StatusOr<uint64_t> a) { done.set_value(a); };
    if (hello != nullptr) {
      agg_->engine().SubmitHello(node, *hello, cb);
    } else {
      agg_->engine().SubmitBatch(node, *batch, cb);
    }
    auto result = done.get_future().get();
    ASSERT_TRUE(result.ok()) << result.status();
  }
  void AddNode(const std::string& name, const std::string& type, nodewatch::v1::Lifecycle life,
               const std::string& zone, const std::string& address) {
    nodewatch::v1::Hello h;
    h.set_spool_id("spool-" + name);
    auto* info = h.mutable_node_info();
    info->set_provider("aws");
    info->set_region("eu-west-1");
    info->set_zone(zone);
    info->set_instance_type(type);
    info->set_lifecycle(life);
    auto* a = info->add_addresses();
    a->set_type("InternalIP");
    a->set_address(address);
    Submit(name, &h, nullptr);
    agg_->engine().StreamOpened(name);
  }
  std::string Url(const std::string& path) {
    return "https://127.0.0.1:" + std::to_string(agg_->http_port()) + path;
  }
  std::pair<int, std::string> Cli(std::vector<std::string> args) {
    std::vector<std::string> all = {"--server",   "127.0.0.1:" + std::to_string(agg_->query_port()),
                                    "--tls-ca",   pki_->ca_file(),
                                    "--tls-cert", operator_.cert,
                                    "--tls-key",  operator_.key};
    all.insert(all.end(), args.begin(), args.end());
    Subprocess cli(BinaryPath("nodewatch"), all, dir_ + "/cli-" + args[0] + ".log");
    cli.Start();
    const int status = cli.Stop(0);
    return {status, cli.log()};
  }

  std::string dir_;
  std::unique_ptr<TestPki> pki_;
  CertFiles server_, operator_, node_;
  std::string token_file_;
  std::unique_ptr<aggregator::Aggregator> agg_;
};

TEST_F(CostIntegration, CostAlertsAndInterruptionsThroughGrpcCliAndJson) {
  const auto spot = nodewatch::v1::LIFECYCLE_SPOT;
  AddNode("a", "m5.large", spot, "eu-west-1a", "10.0.1.10");
  AddNode("b", "m5.large", nodewatch::v1::LIFECYCLE_ON_DEMAND, "eu-west-1b", "10.0.2.10");
  AddNode("c", "x9.unknown", spot, "eu-west-1a", "10.0.1.11");
  // Node a sends 2 GB to b (cross-zone), 1 GB to the internet, 3 GB to c (same zone) and 4 GB to
  // a range the operator placed in zone b, from namespace "shop"; then a spot notice.
  nodewatch::v1::RecordBatch batch;
  auto* r = batch.add_records();
  r->set_seq(1);
  r->set_time_unix_ms(SystemClock::Get().NowUnixMs());
  auto flow = [&](const char* ip, uint64_t bytes) {
    auto* f = r->mutable_network()->add_flows();
    char raw[4];
    inet_pton(AF_INET, ip, raw);
    f->set_remote_address(std::string(raw, 4));
    f->set_direction(nodewatch::v1::DIRECTION_EGRESS);
    f->set_bytes(bytes);
    f->set_pod_namespace("shop");
  };
  flow("10.0.2.10", 2'000'000'000);
  flow("93.184.216.34", 1'000'000'000);
  flow("10.0.1.11", 3'000'000'000);
  flow("192.0.2.7", 4'000'000'000);
  auto* n = batch.add_records();
  n->set_seq(2);
  n->set_time_unix_ms(SystemClock::Get().NowUnixMs());
  n->mutable_interruption()->set_provider("aws");
  n->mutable_interruption()->set_event_id("spot-1");
  n->mutable_interruption()->set_kind(nodewatch::v1::INTERRUPTION_KIND_SPOT_TERMINATE);
  n->mutable_interruption()->set_state(nodewatch::v1::NOTICE_STATE_ACTIVE);
  auto* d = batch.add_records();
  d->set_seq(3);
  d->set_time_unix_ms(SystemClock::Get().NowUnixMs());
  auto* dev = d->mutable_disk()->add_devices();
  dev->set_device("nvme0n1");
  dev->set_writes(42);
  auto* fs = d->mutable_disk()->add_filesystems();
  fs->set_mountpoint("/var/lib/containerd");
  fs->set_device("nvme0n1p1");
  fs->set_fstype("xfs");
  fs->set_size_bytes(100ull << 30);
  fs->set_available_bytes(5ull << 30);
  fs->set_predicted_full_unix_ms(SystemClock::Get().NowUnixMs() + 3 * 3'600'000);
  // The classifier learns node addresses on each cycle: run one before the sample arrives.
  agg_->cost().RunOnce();
  Submit("a", nullptr, &batch);
  agg_->cost().RunOnce();

  // /metrics: per-node series with node_exporter names, cost and alert series; promtool agrees.
  std::string exposition;
  {
    CURL* curl = curl_easy_init();
    const std::string url = "http://127.0.0.1:" + std::to_string(agg_->metrics_port()) + "/metrics";
    curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, Append);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &exposition);
    ASSERT_EQ(curl_easy_perform(curl), CURLE_OK);
    curl_easy_cleanup(curl);
  }
  EXPECT_THAT(exposition,
              HasSubstr(R"(node_disk_writes_completed_total{device="nvme0n1",node="a"} 42)"));
  EXPECT_THAT(
      exposition,
      HasSubstr(
          R"(node_filesystem_avail_bytes{device="nvme0n1p1",fstype="xfs",mountpoint="/var/lib/containerd",node="a"} 5368709120)"));
  EXPECT_THAT(exposition,
              HasSubstr(R"(nodewatch_network_transmit_bytes_total{node="a"} 10000000000)"));
  EXPECT_THAT(exposition,
              HasSubstr(R"(nodewatch_alert_firing{rule="budget-forecast",subject="prod-eu"} 1)"));
  const std::string scraped = dir_ + "/metrics.txt";
  std::ofstream(scraped) << exposition;
  Subprocess promtool("/bin/sh", {"-c", "promtool check metrics < '" + scraped + "'"},
                      dir_ + "/promtool.log");
  promtool.Start();
  EXPECT_EQ(promtool.Stop(0), 0) << promtool.log();
  EXPECT_EQ(promtool.log(), "") << "promtool found problems";

  // gRPC, with the operator certificate.
  auto creds = MakeChannelCredentials({pki_->ca_file(), operator_.cert, operator_.key});
  ASSERT_TRUE(creds.ok());
  auto stub = nodewatch::v1::QueryService::NewStub(
      grpc::CreateChannel("127.0.0.1:" + std::to_string(agg_->query_port()), *creds));
  grpc::ClientContext ctx;
  nodewatch::v1::CostRequest request;
  request.set_include_nodes(true);
  nodewatch::v1::CostReport report;
  ASSERT_TRUE(stub->GetCost(&ctx, request, &report).ok());
  EXPECT_NEAR(report.hourly_usd(), 0.0365 + 0.096, 1e-9);  // c is unpriced
  ASSERT_EQ(report.transfer_size(), 5);
  EXPECT_EQ(report.transfer(0).bytes_today(), 3'000'000'000u);  // same zone
  EXPECT_EQ(report.transfer(1).bytes_today(), 6'000'000'000u);  // cross zone (incl. override)
  EXPECT_EQ(report.transfer(3).bytes_today(), 1'000'000'000u);  // internet
  EXPECT_NEAR(report.transfer(1).usd_today(), 0.06, 1e-9);
  EXPECT_NEAR(report.transfer(3).usd_today(), 0.09, 1e-9);
  ASSERT_EQ(report.namespaces_size(), 1);
  EXPECT_EQ(report.namespaces(0).namespace_(), "shop");
  EXPECT_EQ(report.nodes_size(), 3);
  int unpriced = 0;
  for (const auto& g : report.groups()) {
    EXPECT_EQ(g.cluster(), "prod-eu");
    unpriced += static_cast<int>(g.unpriced_nodes());
  }
  EXPECT_EQ(unpriced, 1);
  EXPECT_EQ(report.spot().interruptions_month(), 1u);

  grpc::ClientContext alerts_ctx;
  nodewatch::v1::ListAlertsResponse alerts;
  ASSERT_TRUE(stub->ListAlerts(&alerts_ctx, {}, &alerts).ok());
  bool forecast_firing = false;
  for (const auto& a : alerts.alerts()) {
    forecast_firing |= a.rule() == "budget-forecast" && a.state() == "firing";
  }
  EXPECT_TRUE(forecast_firing) << alerts.DebugString();

  // The CLI.
  auto [cost_status, cost_out] = Cli({"cost", "--nodes"});
  EXPECT_EQ(cost_status, 0) << cost_out;
  EXPECT_THAT(cost_out, HasSubstr("prod-eu"));
  EXPECT_THAT(cost_out, HasSubstr("cross-zone"));
  EXPECT_THAT(cost_out, HasSubstr("unpriced"));
  auto [alerts_status, alerts_out] = Cli({"alerts"});
  EXPECT_EQ(alerts_status, 0) << alerts_out;
  EXPECT_THAT(alerts_out, HasSubstr("budget-forecast"));
  auto [int_status, int_out] = Cli({"interruptions", "--since", "1h"});
  EXPECT_EQ(int_status, 0) << int_out;
  EXPECT_THAT(int_out, HasSubstr("spot-terminate"));
  EXPECT_THAT(int_out, HasSubstr("OUTCOME"));

  // JSON over HTTPS: certificate, token, neither, a node's certificate.
  auto by_cert = Get(Url("/api/v1/cost"), pki_->ca_file(), &operator_);
  EXPECT_EQ(by_cert.status, 200) << by_cert.body;
  EXPECT_THAT(by_cert.body, HasSubstr(R"("cluster":"prod-eu")"));
  auto by_token = Get(Url("/api/v1/interruptions?since=1h&node=a"), pki_->ca_file(), nullptr,
                      "s3cret-operator-token-0123456789");
  EXPECT_EQ(by_token.status, 200) << by_token.body;
  EXPECT_THAT(by_token.body, HasSubstr(R"("eventId":"spot-1")"));
  auto alerts_json = Get(Url("/api/v1/alerts?all=true"), pki_->ca_file(), &operator_);
  EXPECT_THAT(alerts_json.body, HasSubstr("budget-forecast"));
  EXPECT_EQ(Get(Url("/api/v1/nodes/b"), pki_->ca_file(), &operator_).status, 200);
  EXPECT_EQ(Get(Url("/api/v1/cost"), pki_->ca_file(), nullptr).status, 401);
  EXPECT_EQ(Get(Url("/api/v1/cost"), pki_->ca_file(), nullptr, "wrong-token-wrong-token").status,
            403);
  EXPECT_EQ(Get(Url("/api/v1/cost"), pki_->ca_file(), &node_).status, 401);
  EXPECT_EQ(Get(Url("/api/v1/nodes/zz"), pki_->ca_file(), &operator_).status, 404);
  EXPECT_EQ(Get(Url("/api/v1/interruptions?since=yesterday"), pki_->ca_file(), &operator_).status,
            400);
  EXPECT_EQ(Get(Url("/api/v1/interruptions?node=nope"), pki_->ca_file(), &operator_).status, 404);
}

TEST_F(CostIntegration, HostileHttpClientsGetErrorsAndTheServerKeepsServing) {
  // Not TLS at all, a huge header, garbage: each connection is refused, the process lives on.
  EXPECT_EQ(RawExchange(agg_->http_port(), "GET /api/v1/cost HTTP/1.1\r\n\r\n").find("200"),
            std::string::npos);
  RawExchange(agg_->http_port(), std::string(100'000, 'A'));
  RawExchange(agg_->http_port(), std::string("\x16\x03\x01\x00\x05hello", 10));
  auto ok = Get(Url("/api/v1/alerts"), pki_->ca_file(), &operator_);
  EXPECT_EQ(ok.status, 200) << ok.body;
  EXPECT_GE(agg_->http_refused(), 3u);
}

}  // namespace
}  // namespace nodewatch::testing
