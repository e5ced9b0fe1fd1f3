// Where a node's lives begin and end, and what their notices said, as the ingest writer applies
// Hellos and notices to the stored node.
#include "aggregator/ingest/node_lives.h"

#include <gtest/gtest.h>

namespace nodewatch::aggregator {
namespace {

using nodewatch::internal::StoredNode;
using nodewatch::v1::Hello;
using nodewatch::v1::InterruptionNotice;

Hello HelloFrom(const std::string& boot, const std::string& instance,
                const std::string& type = "m5.large") {
  Hello h;
  h.set_boot_id(boot);
  h.mutable_node_info()->set_instance_id(instance);
  h.mutable_node_info()->set_instance_type(type);
  h.mutable_node_info()->set_lifecycle(nodewatch::v1::LIFECYCLE_SPOT);
  h.mutable_node_info()->set_persistent_disk_bytes(100'000'000'000);
  return h;
}

InterruptionNotice Notice(nodewatch::v1::InterruptionKind kind, const std::string& provider = "aws",
                          nodewatch::v1::NoticeState state = nodewatch::v1::NOTICE_STATE_ACTIVE) {
  InterruptionNotice n;
  n.set_provider(provider);
  n.set_kind(kind);
  n.set_state(state);
  return n;
}

// A node heard from until `last_seen`, as the engine leaves it after each message.
void Seen(StoredNode& node, int64_t last_seen) {
  node.set_last_seen_unix_ms(last_seen);
  TouchCurrentLife(node, last_seen);
}

TEST(NodeLives, WhatEachNoticeSaysWillHappenToTheInstance) {
  using K = nodewatch::v1::InterruptionKind;
  const std::vector<std::tuple<K, std::string, std::string, std::string>> cases = {
      {nodewatch::v1::INTERRUPTION_KIND_SPOT_TERMINATE, "aws", "", "terminate"},
      {nodewatch::v1::INTERRUPTION_KIND_TERMINATE, "azure", "", "terminate"},
      {nodewatch::v1::INTERRUPTION_KIND_SPOT_STOP, "gcp", "", "stop"},
      {nodewatch::v1::INTERRUPTION_KIND_SPOT_HIBERNATE, "aws", "", "stop"},
      {nodewatch::v1::INTERRUPTION_KIND_REBOOT, "azure", "", "reboot"},
      {nodewatch::v1::INTERRUPTION_KIND_REDEPLOY, "azure", "", "reboot"},
      {nodewatch::v1::INTERRUPTION_KIND_FREEZE, "azure", "", ""},
      {nodewatch::v1::INTERRUPTION_KIND_REBALANCE, "aws", "", ""},
      {nodewatch::v1::INTERRUPTION_KIND_SCHEDULED_MAINTENANCE, "aws", "system-reboot: x", "reboot"},
      {nodewatch::v1::INTERRUPTION_KIND_SCHEDULED_MAINTENANCE, "aws", "instance-stop: x", "stop"},
      {nodewatch::v1::INTERRUPTION_KIND_SCHEDULED_MAINTENANCE, "aws", "instance-retirement: x",
       "stop"},
      {nodewatch::v1::INTERRUPTION_KIND_SCHEDULED_MAINTENANCE, "aws", "system-maintenance: x", ""},
  };
  for (const auto& [kind, provider, description, end] : cases) {
    auto n = Notice(kind, provider);
    n.set_description(description);
    SCOPED_TRACE(nodewatch::v1::InterruptionKind_Name(kind) + " " + description);
    EXPECT_EQ(NoticedEnd(n).value_or("nullopt"), end);
  }
  auto gcp = Notice(nodewatch::v1::INTERRUPTION_KIND_SCHEDULED_MAINTENANCE, "gcp");
  gcp.set_raw_payload("TERMINATE_ON_HOST_MAINTENANCE");
  EXPECT_EQ(NoticedEnd(gcp), "reboot");
  gcp.set_raw_payload("MIGRATE_ON_HOST_MAINTENANCE");
  EXPECT_EQ(NoticedEnd(gcp), "");
  // A canceled event takes its end back; a completed one arrives after the fact.
  EXPECT_EQ(NoticedEnd(Notice(nodewatch::v1::INTERRUPTION_KIND_SPOT_STOP, "aws",
                              nodewatch::v1::NOTICE_STATE_CANCELED)),
            "");
  EXPECT_FALSE(NoticedEnd(Notice(nodewatch::v1::INTERRUPTION_KIND_REBOOT, "azure",
                                 nodewatch::v1::NOTICE_STATE_COMPLETED))
                   .has_value());
}

TEST(NodeLives, AStoppedSpotNodeThatComesBackIsTwoLivesOfOneInstance) {
  StoredNode node;
  node.set_first_seen_unix_ms(1'000);
  ApplyHelloToLives(node, HelloFrom("boot-1", "i-1"), 5'000);
  ASSERT_EQ(node.lives_size(), 1);
  EXPECT_EQ(node.lives(0).start_unix_ms(), 1'000) << "the first life begins at first seen";
  Seen(node, 9'000);
  ApplyHelloToLives(node, HelloFrom("boot-1", "i-1"), 9'500);  // a reconnect: the same life
  ASSERT_EQ(node.lives_size(), 1);
  Seen(node, 10'000);
  auto stop = Notice(nodewatch::v1::INTERRUPTION_KIND_SPOT_STOP);
  stop.set_boot_id("boot-1");
  ApplyNoticeToLives(node, stop);
  Seen(node, 12'000);
  ApplyHelloToLives(node, HelloFrom("boot-2", "i-1", "m5.xlarge"), 100'000);
  ASSERT_EQ(node.lives_size(), 2);
  EXPECT_EQ(node.lives(0).ended(), "stopped");
  EXPECT_EQ(node.lives(0).last_seen_unix_ms(), 12'000);
  EXPECT_EQ(node.lives(0).noticed_kind(), nodewatch::v1::INTERRUPTION_KIND_SPOT_STOP);
  EXPECT_EQ(node.lives(0).instance_type(), "m5.large");
  EXPECT_EQ(node.lives(1).ended(), "");
  EXPECT_EQ(node.lives(1).start_unix_ms(), 100'000);
  EXPECT_EQ(node.lives(1).boot_id(), "boot-2");
  EXPECT_EQ(node.lives(1).instance_type(), "m5.xlarge") << "each life has its own type";
  EXPECT_EQ(node.lives(1).persistent_disk_bytes(), 100'000'000'000u);
}

TEST(NodeLives, ReplacedRebootedAndRestartedLivesEndAsTheySay) {
  StoredNode node;
  ApplyHelloToLives(node, HelloFrom("b1", "i-1"), 1'000);
  ApplyNoticeToLives(node, Notice(nodewatch::v1::INTERRUPTION_KIND_REBOOT, "azure"));
  Seen(node, 2'000);
  ApplyHelloToLives(node, HelloFrom("b2", "i-1"), 3'000);
  Seen(node, 4'000);
  ApplyHelloToLives(node, HelloFrom("b3", "i-1"), 5'000);  // no notice announced it
  ApplyNoticeToLives(node, Notice(nodewatch::v1::INTERRUPTION_KIND_SPOT_TERMINATE));
  Seen(node, 6'000);
  ApplyHelloToLives(node, HelloFrom("b4", "i-2"), 7'000);  // the name reused by a new instance
  ASSERT_EQ(node.lives_size(), 4);
  EXPECT_EQ(node.lives(0).ended(), "rebooted");
  EXPECT_EQ(node.lives(1).ended(), "restarted");
  EXPECT_EQ(node.lives(2).ended(), "replaced");
  EXPECT_EQ(node.lives(3).instance_id(), "i-2");
}

TEST(NodeLives, ANoticeDeliveredAfterTheRebootBelongsToTheLifeItNames) {
  StoredNode node;
  ApplyHelloToLives(node, HelloFrom("b1", "i-1"), 1'000);
  Seen(node, 2'000);
  ApplyHelloToLives(node, HelloFrom("b2", "i-1"), 60'000);
  EXPECT_EQ(node.lives(0).ended(), "restarted");
  // The stop notice was spooled before the instance stopped and sent after it came back.
  auto stop = Notice(nodewatch::v1::INTERRUPTION_KIND_SPOT_STOP);
  stop.set_boot_id("b1");
  ApplyNoticeToLives(node, stop);
  EXPECT_EQ(node.lives(0).ended(), "stopped");
  EXPECT_EQ(node.lives(1).noticed_end(), "") << "the current life was not told anything";
  // And a notice of a boot no longer kept changes nothing.
  stop.set_boot_id("b0");
  ApplyNoticeToLives(node, stop);
  EXPECT_EQ(node.lives(1).noticed_end(), "");
}

TEST(NodeLives, ACanceledNoticeTakesItsEndBack) {
  StoredNode node;
  ApplyHelloToLives(node, HelloFrom("b1", "i-1"), 1'000);
  auto event = Notice(nodewatch::v1::INTERRUPTION_KIND_SCHEDULED_MAINTENANCE);
  event.set_description("instance-stop: The instance is running on degraded hardware");
  ApplyNoticeToLives(node, event);
  EXPECT_EQ(node.lives(0).noticed_end(), "stop");
  event.set_state(nodewatch::v1::NOTICE_STATE_CANCELED);
  ApplyNoticeToLives(node, event);
  EXPECT_EQ(node.lives(0).noticed_end(), "");
}

TEST(NodeLives, KeepsABoundedNumberOfLivesAndNodesFromBeforeLivesGetOne) {
  StoredNode node;
  for (int i = 0; i < kMaxLivesPerNode + 10; ++i) {
    ApplyHelloToLives(node, HelloFrom("b" + std::to_string(i), "i-1"), 1'000 * (i + 1));
  }
  ASSERT_EQ(node.lives_size(), kMaxLivesPerNode);
  EXPECT_EQ(node.lives(node.lives_size() - 1).boot_id(),
            "b" + std::to_string(kMaxLivesPerNode + 9));

  StoredNode old;  // stored by an aggregator that did not keep lives
  old.set_first_seen_unix_ms(1'000);
  old.set_last_seen_unix_ms(9'000);
  old.set_boot_id("b1");
  old.mutable_info()->set_instance_type("t3.large");
  auto lives = LivesOf(old);
  ASSERT_EQ(lives.size(), 1);
  EXPECT_EQ(lives[0].start_unix_ms(), 1'000);
  EXPECT_EQ(lives[0].last_seen_unix_ms(), 9'000);
  EXPECT_EQ(lives[0].instance_type(), "t3.large");
}

}  // namespace
}  // namespace nodewatch::aggregator
