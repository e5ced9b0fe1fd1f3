// Each cloud provider against the metadata simulator over real HTTP (loopback).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <thread>

#include "agent/collectors/cloud/cloud_collector.h"
#include "agent/collectors/cloud/cloud_provider.h"
#include "tests/support/metadata_simulator.h"
#include "tests/support/process.h"

namespace nodewatch::agent {
namespace {

using nodewatch::v1::InterruptionNotice;
using testing::MetadataSimulator;

class RecordingSink final : public NoticeSink {
 public:
  void OnNotice(InterruptionNotice n) override {
    std::lock_guard<std::mutex> lock(mu_);
    notices_.push_back(std::move(n));
  }
  std::vector<InterruptionNotice> notices() {
    std::lock_guard<std::mutex> lock(mu_);
    return notices_;
  }
  // Waits until `count` notices arrived.
  bool WaitFor(size_t count, int64_t timeout_ms = 5000) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    while (std::chrono::steady_clock::now() < deadline) {
      if (notices().size() >= count) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return notices().size() >= count;
  }

 private:
  std::mutex mu_;
  std::vector<InterruptionNotice> notices_;
};

class CloudProviderTest : public ::testing::Test {
 protected:
  void StartSim(const std::string& cloud) {
    sim_ = std::make_unique<MetadataSimulator>(MetadataSimulator::Options{.cloud = cloud});
    ASSERT_TRUE(sim_->Start());
  }
  std::unique_ptr<CloudProvider> Provider(const std::string& cloud, CloudOptions o = {}) {
    o.cloud = cloud;
    o.metadata_endpoint = sim_->url();
    o.aws_poll_ms = 100;
    o.azure_poll_ms = 100;
    o.aws_scheduled_poll_ms = 100;
    auto p = MakeCloudProvider(o, *http_, clock_, counters_);
    EXPECT_TRUE(p.ok()) << p.status();
    return std::move(*p);
  }
  int64_t Now() { return clock_.NowUnixMs(); }

  SystemClock clock_;
  std::unique_ptr<HttpClient> http_ = MakeCurlHttpClient();
  CloudCounters counters_;
  std::unique_ptr<MetadataSimulator> sim_;
};

TEST_F(CloudProviderTest, AutoDetectsEachCloud) {
  for (const char* cloud : {"aws", "gcp", "azure", "digitalocean"}) {
    StartSim(cloud);
    EXPECT_EQ(Provider("auto")->name(), cloud);
    sim_->Stop();
  }
}

TEST_F(CloudProviderTest, AwsNodeInfoThroughImdsV2) {
  StartSim("aws");
  auto info = Provider("aws")->FetchNodeInfo();
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->instance_id(), "i-0a1b2c3d4e5f60718");
  EXPECT_EQ(info->instance_type(), "m5.large");
  EXPECT_EQ(info->zone(), "us-east-1a");
  EXPECT_EQ(info->region(), "us-east-1");
  EXPECT_EQ(info->lifecycle(), nodewatch::v1::LIFECYCLE_SPOT);
  EXPECT_EQ(info->addresses_size(), 3);
  EXPECT_EQ(counters_.token_refreshes.load(), 1u);  // one token, cached for every request
}

TEST_F(CloudProviderTest, AwsSpotRebalanceAndScheduledEvents) {
  StartSim("aws");
  auto provider = Provider("aws");
  RecordingSink sink;
  provider->Start(sink);
  const int64_t armed = Now();
  sim_->ArmAwsSpot("terminate", armed);
  ASSERT_TRUE(sink.WaitFor(1));
  auto spot = sink.notices()[0];
  EXPECT_EQ(spot.kind(), nodewatch::v1::INTERRUPTION_KIND_SPOT_TERMINATE);
  EXPECT_EQ(spot.provider(), "aws");
  EXPECT_NEAR(static_cast<double>(spot.deadline_unix_ms()), static_cast<double>(armed + 120'000), 1000);
  EXPECT_THAT(spot.event_id(), ::testing::StartsWith("spot-terminate-"));
  EXPECT_THAT(spot.raw_payload(), ::testing::HasSubstr("\"action\":\"terminate\""));

  sim_->ArmAwsRebalance();
  sim_->SetAwsScheduledEvent("instance-event-0d59937288b749b32", "instance-stop", "active",
                             Now() + 3'600'000, /*not_after_ms=*/0);  // degraded hardware: no NotAfter
  ASSERT_TRUE(sink.WaitFor(8));
  std::set<nodewatch::v1::InterruptionKind> kinds;
  for (auto& n : sink.notices()) kinds.insert(n.kind());
  EXPECT_TRUE(kinds.count(nodewatch::v1::INTERRUPTION_KIND_REBALANCE));
  EXPECT_TRUE(kinds.count(nodewatch::v1::INTERRUPTION_KIND_SCHEDULED_MAINTENANCE));
  sim_->SetAwsScheduledEvent("instance-event-0d59937288b749b32", "instance-stop", "canceled",
                             Now() + 3'600'000, 0);
  ASSERT_TRUE(sink.WaitFor(12));
  bool canceled = false;
  for (auto& n : sink.notices()) canceled |= n.state() == nodewatch::v1::NOTICE_STATE_CANCELED;
  EXPECT_TRUE(canceled);
  provider->Stop();
  EXPECT_EQ(counters_.malformed_payloads.load(), 0u);
}

TEST_F(CloudProviderTest, AwsRenewsTheTokenOn401AndAheadOfExpiry) {
  StartSim("aws");
  auto provider = Provider("aws");
  ASSERT_TRUE(provider->FetchNodeInfo().ok());
  sim_->ExpireAwsTokens();  // the cached token is now refused with 401
  auto info = provider->FetchNodeInfo();
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_GE(counters_.unauthorized.load(), 1u);
  EXPECT_EQ(counters_.token_refreshes.load(), 2u);
  // A token that lives 2 s is renewed before it expires, so no request meets a 401.
  sim_->SetAwsTokenMaxTtl(2);
  sim_->ExpireAwsTokens();
  ASSERT_TRUE(provider->FetchNodeInfo().ok());
  const uint64_t unauthorized = counters_.unauthorized.load();
  const uint64_t refreshes = counters_.token_refreshes.load();
  std::this_thread::sleep_for(std::chrono::milliseconds(1700));
  ASSERT_TRUE(provider->FetchNodeInfo().ok());
  EXPECT_GT(counters_.token_refreshes.load(), refreshes);
  EXPECT_EQ(counters_.unauthorized.load(), unauthorized);
}

TEST_F(CloudProviderTest, AwsImdsV1OnlyWhenConfigured) {
  StartSim("aws");
  sim_->InjectFault("/latest/api/token", MetadataSimulator::Fault::k500, 100);
  EXPECT_FALSE(Provider("aws")->FetchNodeInfo().ok());  // IMDSv1 is not used unless allowed
}

TEST_F(CloudProviderTest, AwsMalformedAndFailingRepliesNeverMakeANotice) {
  StartSim("aws");
  auto provider = Provider("aws");
  RecordingSink sink;
  sim_->InjectFault("/latest/meta-data/spot", MetadataSimulator::Fault::kMalformed, 5);
  sim_->InjectFault("/latest/meta-data/events/recommendations", MetadataSimulator::Fault::k500, 5);
  sim_->InjectFault("/latest/meta-data/events/maintenance", MetadataSimulator::Fault::kCut, 3);
  provider->Start(sink);
  std::this_thread::sleep_for(std::chrono::milliseconds(1200));
  provider->Stop();
  EXPECT_TRUE(sink.notices().empty());
  EXPECT_GE(counters_.malformed_payloads.load(), 5u);
  EXPECT_GE(counters_.request_errors.load(), 5u);
}

TEST_F(CloudProviderTest, GcpHangingGetSeesPreemptionAtOnce) {
  StartSim("gcp");
  auto provider = Provider("gcp", {.gcp_preemption_notice_ms = 30'000});
  auto info = provider->FetchNodeInfo();
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->instance_type(), "e2-standard-4");
  EXPECT_EQ(info->zone(), "us-central1-a");
  EXPECT_EQ(info->region(), "us-central1");
  EXPECT_EQ(info->lifecycle(), nodewatch::v1::LIFECYCLE_SPOT);
  RecordingSink sink;
  provider->Start(sink);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // watchers are hanging now
  auto t0 = std::chrono::steady_clock::now();
  sim_->SetGcpPreempted(true);
  ASSERT_TRUE(sink.WaitFor(1));
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(500));
  auto n = sink.notices()[0];
  EXPECT_EQ(n.kind(), nodewatch::v1::INTERRUPTION_KIND_SPOT_TERMINATE);
  EXPECT_NEAR(static_cast<double>(n.deadline_unix_ms() - n.notice_time_unix_ms()), 30'000, 5);
  provider->Stop();
}

// A Spot VM whose termination action is STOP comes back under the same name: its preemption is a
// stop (drained, then given back); DELETE is a termination.
TEST_F(CloudProviderTest, GcpPreemptionFollowsTheTerminationAction) {
  for (const auto& [action, kind] :
       {std::pair{"STOP", nodewatch::v1::INTERRUPTION_KIND_SPOT_STOP},
        std::pair{"DELETE", nodewatch::v1::INTERRUPTION_KIND_SPOT_TERMINATE}}) {
    SCOPED_TRACE(action);
    StartSim("gcp");
    sim_->SetGcpTerminationAction(action);
    auto provider = Provider("gcp");
    ASSERT_TRUE(provider->FetchNodeInfo().ok());
    RecordingSink sink;
    provider->Start(sink);
    sim_->SetGcpPreempted(true);
    ASSERT_TRUE(sink.WaitFor(1));
    EXPECT_EQ(sink.notices()[0].kind(), kind);
    provider->Stop();
  }
}

TEST_F(CloudProviderTest, GcpSurvivesACutHangingGetAndReportsMaintenance) {
  StartSim("gcp");
  auto provider = Provider("gcp");
  ASSERT_TRUE(provider->FetchNodeInfo().ok());
  RecordingSink sink;
  sim_->InjectFault("/computeMetadata/v1/instance/maintenance-event",
                    MetadataSimulator::Fault::kCut, 2);
  provider->Start(sink);
  std::this_thread::sleep_for(std::chrono::milliseconds(2500));  // through the cuts and backoff
  sim_->SetGcpMaintenance("TERMINATE_ON_HOST_MAINTENANCE");
  ASSERT_TRUE(sink.WaitFor(1, 5000));
  EXPECT_EQ(sink.notices()[0].kind(), nodewatch::v1::INTERRUPTION_KIND_SCHEDULED_MAINTENANCE);
  sim_->SetGcpMaintenance("NONE");
  ASSERT_TRUE(sink.WaitFor(2, 5000));
  EXPECT_EQ(sink.notices()[1].state(), nodewatch::v1::NOTICE_STATE_COMPLETED);
  EXPECT_EQ(sink.notices()[1].event_id(), sink.notices()[0].event_id());
  provider->Stop();
  EXPECT_GE(counters_.request_errors.load(), 2u);  // the two cut hanging GETs
}

TEST_F(CloudProviderTest, AzureKeepsOnlyThisVmsEventsAndAcknowledges) {
  StartSim("azure");
  auto provider = Provider("azure");
  auto info = provider->FetchNodeInfo();
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->instance_type(), "Standard_D4s_v5");
  EXPECT_EQ(info->lifecycle(), nodewatch::v1::LIFECYCLE_SPOT);
  RecordingSink sink;
  provider->Start(sink);
  const int64_t not_before = (Now() / 1000 + 30) * 1000;
  sim_->AddAzureEvent("OTHER-VM-EVENT", "Preempt", {"nodewatch-vmss_9"}, not_before);
  std::this_thread::sleep_for(std::chrono::milliseconds(400));
  EXPECT_TRUE(sink.notices().empty());
  EXPECT_GE(counters_.foreign_events.load(), 1u);
  sim_->AddAzureEvent("F020BA2E-3BC0-4C40-A10B-86575A9EABD5", "Preempt",
                      {"nodewatch-vmss_9", "nodewatch-vmss_3"}, not_before);
  ASSERT_TRUE(sink.WaitFor(1));
  auto n = sink.notices()[0];
  EXPECT_EQ(n.kind(), nodewatch::v1::INTERRUPTION_KIND_SPOT_TERMINATE);
  EXPECT_EQ(n.event_id(), "F020BA2E-3BC0-4C40-A10B-86575A9EABD5");
  EXPECT_EQ(n.deadline_unix_ms(), not_before);
  ASSERT_TRUE(provider->Acknowledge(n.event_id()).ok());
  EXPECT_THAT(sim_->AzureStartRequests(), ::testing::ElementsAre(n.event_id()));
  sim_->RemoveAzureEvent(n.event_id());
  ASSERT_TRUE(sink.WaitFor(2));
  EXPECT_EQ(sink.notices()[1].state(), nodewatch::v1::NOTICE_STATE_COMPLETED);
  sim_->InjectFault("/metadata/scheduledevents", MetadataSimulator::Fault::kMalformed, 3);
  sim_->AddAzureEvent("X", "Reboot", {"nodewatch-vmss_3"}, not_before);
  ASSERT_TRUE(sink.WaitFor(3));  // after the malformed replies, the real document gets through
  EXPECT_GE(counters_.malformed_payloads.load(), 3u);
  provider->Stop();
}

TEST_F(CloudProviderTest, DigitalOceanHasFactsButNoNotices) {
  StartSim("digitalocean");
  auto info = Provider("digitalocean")->FetchNodeInfo();
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->instance_id(), "318240117");
  EXPECT_EQ(info->region(), "fra1");
}

TEST_F(CloudProviderTest, CollectorSpoolsEachCloudEventOnceAcrossRestarts) {
  std::string dir = testing::MakeTempDir("cloud-collector");
  auto spool = std::move(*Spool::Open({.dir = dir}));
  auto provider = MakeNoCloudProvider();
  InterruptionNotice n;
  n.set_provider("aws");
  n.set_event_id("spot-terminate-2026-11-22T12:00:00Z");
  n.set_state(nodewatch::v1::NOTICE_STATE_ACTIVE);
  {
    CloudCollector collector(*spool, *provider, clock_, counters_, dir + "/notices.ledger");
    ASSERT_TRUE(collector.Load().ok());
    collector.OnNotice(n);
    collector.OnNotice(n);
  }
  {
    CloudCollector collector(*spool, *provider, clock_, counters_, dir + "/notices.ledger");
    ASSERT_TRUE(collector.Load().ok());
    collector.OnNotice(n);  // re-read after an agent restart
    n.set_state(nodewatch::v1::NOTICE_STATE_CANCELED);
    collector.OnNotice(n);  // a new state of the same event is news
  }
  std::vector<nodewatch::v1::Record> urgent;
  ASSERT_TRUE(spool->Read(Lane::kUrgent, 0, 100, 1 << 20, nullptr, &urgent).ok());
  ASSERT_EQ(urgent.size(), 2u);
  EXPECT_EQ(urgent[1].interruption().state(), nodewatch::v1::NOTICE_STATE_CANCELED);
  EXPECT_EQ(counters_.duplicate_notices.load(), 2u);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace nodewatch::agent
