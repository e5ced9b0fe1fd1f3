// The aggregator's /metrics as a real Prometheus server sees it (Debian package `prometheus`):
// scraped every second, values checked through Prometheus's HTTP query API, and the exposition
// linted by `promtool check metrics` — including the remediation histograms after a real drain.
#include <curl/curl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>

#include "nlohmann/json.hpp"
#include "tests/integration/harness.h"
#include "tests/support/fake_kube_api.h"
#include "tests/support/metadata_simulator.h"

namespace nodewatch::testing {
namespace {

using nlohmann::json;

size_t Append(char* data, size_t size, size_t n, void* out) {
  static_cast<std::string*>(out)->append(data, size * n);
  return size * n;
}

std::optional<std::string> HttpGet(const std::string& url) {
  CURL* h = curl_easy_init();
  std::string body;
  curl_easy_setopt(h, CURLOPT_URL, url.c_str());
  curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 5000L);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, &Append);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, &body);
  CURLcode code = curl_easy_perform(h);
  long status = 0;
  curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
  curl_easy_cleanup(h);
  if (code != CURLE_OK || status != 200) return std::nullopt;
  return body;
}

// The value of an instant query's single sample, if there is exactly one.
std::optional<double> Query(int prometheus_port, const std::string& promql) {
  CURL* h = curl_easy_init();
  char* escaped = curl_easy_escape(h, promql.c_str(), static_cast<int>(promql.size()));
  std::string url =
      "http://127.0.0.1:" + std::to_string(prometheus_port) + "/api/v1/query?query=" + escaped;
  curl_free(escaped);
  curl_easy_cleanup(h);
  auto body = HttpGet(url);
  if (!body) return std::nullopt;
  json j = json::parse(*body, nullptr, false);
  if (!j.is_object() || j.value("status", "") != "success") return std::nullopt;
  const json& result = j["data"]["result"];
  if (!result.is_array() || result.size() != 1) return std::nullopt;
  return std::stod(result[0]["value"][1].get<std::string>());
}

TEST(PrometheusIntegration, ARealPrometheusScrapesTheAggregator) {
  Cluster c("e2e-prometheus");
  MetadataSimulator sim({.cloud = "aws"});
  ASSERT_TRUE(sim.Start());
  FakeKubeApi api({.max_termination_ms = 500});
  ASSERT_TRUE(api.Start());
  api.AddNode(FakeKubeApi::MakeNode("prom-node-0"));
  for (int i = 0; i < 3; ++i) {
    api.AddPod(FakeKubeApi::MakePod("default", "web-" + std::to_string(i), "prom-node-0",
                                    {.owner_kind = "ReplicaSet", .grace_seconds = 1}));
  }
  const int metrics_port = FreePort();
  c.StartAggregator({"--metrics-listen", "127.0.0.1:" + std::to_string(metrics_port),
                     "--kube-api-server", api.url(), "--remediation", "on", "--lease-namespace",
                     "nodewatch", "--drain-poll", "200ms", "--cost-interval", "1s",
                     "--monthly-budget", "0.01", "--cluster", "prom"});
  c.StartAgent("prom-node-0", {"--cloud", "aws", "--metadata-endpoint", sim.url()});
  c.StartAgent("prom-node-1");
  c.StartAgent("prom-node-2");

  const int prometheus_port = FreePort();
  const std::string config = c.dir() + "/prometheus.yml";
  std::ofstream(config) << "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
                        << "scrape_configs:\n  - job_name: nodewatch\n    static_configs:\n"
                        << "      - targets: ['127.0.0.1:" << metrics_port << "']\n";
  Subprocess prometheus("/usr/bin/prometheus",
                        {"--config.file=" + config, "--storage.tsdb.path=" + c.dir() + "/tsdb",
                         "--web.listen-address=127.0.0.1:" + std::to_string(prometheus_port)},
                        c.dir() + "/prometheus.log");
  prometheus.Start();

  // A drain, so the remediation counters and histograms exist when Prometheus scrapes.
  ASSERT_TRUE(Cluster::WaitFor([&] { return c.GetNode("prom-node-0").has_value(); }, 15'000));
  sim.ArmAwsSpot("terminate", 0, 20'000);
  ASSERT_TRUE(Cluster::WaitFor([&] { return api.PodsOnNode("prom-node-0").empty(); }, 20'000));

  ASSERT_TRUE(Cluster::WaitFor(
      [&] { return Query(prometheus_port, "up{job=\"nodewatch\"}") == 1.0; }, 30'000))
      << prometheus.log();
  EXPECT_TRUE(Cluster::WaitFor(
      [&] { return Query(prometheus_port, "nodewatch_agents_connected") == 3.0; }, 15'000))
      << "Prometheus sees " << Query(prometheus_port, "nodewatch_agents_connected").value_or(-1);
  EXPECT_TRUE(Cluster::WaitFor(
      [&] { return Query(prometheus_port, "nodewatch_nodes_known") == 3.0; }, 15'000));
  EXPECT_TRUE(Cluster::WaitFor(
      [&] {
        return Query(prometheus_port,
                     "nodewatch_remediation_drains_total{provider=\"aws\",kind=\"spot-terminate\","
                     "result=\"complete\"}") == 1.0;
      },
      15'000));
  EXPECT_TRUE(Cluster::WaitFor(
      [&] {
        return Query(prometheus_port,
                     "nodewatch_remediation_notice_to_cordon_seconds_count{provider=\"aws\"}") ==
               1.0;
      },
      15'000));
  // Cost: three nodes running, the AWS m5.large spot node priced at the built-in $0.0365/h, its
  // reclaim counted, the tiny budget's forecast alert firing.
  EXPECT_TRUE(Cluster::WaitFor(
      [&] { return Query(prometheus_port, "sum(nodewatch_cost_nodes_running)") == 3.0; }, 15'000))
      << Query(prometheus_port, "sum(nodewatch_cost_nodes_running)").value_or(-1);
  EXPECT_TRUE(Cluster::WaitFor(
      [&] {
        return Query(prometheus_port,
                     "nodewatch_cost_hourly_dollars{cluster=\"prom\",provider=\"aws\","
                     "lifecycle=\"spot\"}") == 0.0365;
      },
      15'000));
  EXPECT_TRUE(Cluster::WaitFor(
      [&] { return Query(prometheus_port, "nodewatch_spot_interruptions_month") == 1.0; }, 15'000));
  EXPECT_TRUE(Cluster::WaitFor(
      [&] {
        return Query(prometheus_port,
                     "nodewatch_alerts{rule=\"budget-forecast\",state=\"firing\"}") == 1.0;
      },
      15'000));
  EXPECT_TRUE(Cluster::WaitFor(
      [&] {
        auto v = Query(prometheus_port, "sum(rate(nodewatch_ingest_records_total[10s])) > 0");
        return v.has_value();
      },
      15'000));

  // promtool lints the exposition (names, units, help, histogram shape).
  auto exposition = HttpGet("http://127.0.0.1:" + std::to_string(metrics_port) + "/metrics");
  ASSERT_TRUE(exposition.has_value());
  EXPECT_THAT(*exposition,
              ::testing::HasSubstr("nodewatch_remediation_deadline_slack_seconds_bucket"));
  const std::string scraped = c.dir() + "/metrics.txt";
  std::ofstream(scraped) << *exposition;
  Subprocess promtool("/bin/sh", {"-c", "promtool check metrics < '" + scraped + "'"},
                      c.dir() + "/promtool.log");
  promtool.Start();
  const int status = promtool.Stop(0);
  EXPECT_EQ(status, 0) << promtool.log();
  EXPECT_EQ(promtool.log(), "") << "promtool found problems";
  prometheus.Stop(SIGTERM);
  sim.Stop();
}

}  // namespace
}  // namespace nodewatch::testing
