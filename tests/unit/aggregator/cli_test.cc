#include "aggregator/cli/cli.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace nodewatch::cli {
namespace {

using ::testing::HasSubstr;

TEST(Cli, FormatsTimesAndAges) {
  EXPECT_EQ(FormatTime(0), "-");
  EXPECT_EQ(FormatTime(1'700'000'000'123), "2023-11-14T22:13:20.123Z");
  EXPECT_EQ(FormatAge(1000, 6000), "5s ago");
  EXPECT_EQ(FormatAge(0, 6000), "never");
  EXPECT_EQ(FormatAge(1000, 3 * 3600'000 + 1000), "3h ago");
}

TEST(Cli, ParsesKinds) {
  EXPECT_EQ(*ParseKind("heartbeat"), nodewatch::v1::RECORD_KIND_HEARTBEAT);
  EXPECT_EQ(*ParseKind("interruption"), nodewatch::v1::RECORD_KIND_INTERRUPTION);
  EXPECT_THAT(ParseKind("cpu").status().message(), HasSubstr("unknown kind 'cpu'"));
}

TEST(Cli, HistoryTableShowsEachRecord) {
  nodewatch::v1::Record n;
  n.set_seq(7);
  n.set_time_unix_ms(1'700'000'000'000);
  auto* notice = n.mutable_interruption();
  notice->set_provider("aws");
  notice->set_kind(nodewatch::v1::INTERRUPTION_KIND_SPOT_TERMINATE);
  notice->set_event_id("i-0abc");
  notice->set_deadline_unix_ms(1'700'000'120'000);
  notice->set_state(nodewatch::v1::NOTICE_STATE_ACTIVE);
  std::string table = HistoryTable({n});
  EXPECT_THAT(table, HasSubstr("TIME"));
  EXPECT_THAT(table, HasSubstr("interruption"));
  EXPECT_THAT(table, HasSubstr("aws spot-terminate event=i-0abc"));
  EXPECT_THAT(table, HasSubstr("deadline=2023-11-14T22:15:20.000Z"));
  EXPECT_THAT(table, HasSubstr("state=ACTIVE"));
}

TEST(Cli, NodesTableAndJson) {
  nodewatch::v1::NodeSummary s;
  s.set_name("worker-1");
  s.set_connected(true);
  s.mutable_info()->set_provider("aws");
  s.mutable_info()->set_lifecycle(nodewatch::v1::LIFECYCLE_SPOT);
  s.set_records(12);
  std::string table = NodesTable({s}, 0);
  EXPECT_THAT(table, HasSubstr("worker-1"));
  EXPECT_THAT(table, HasSubstr("spot"));
  EXPECT_THAT(ToJson(s), HasSubstr("\"name\":\"worker-1\""));
}

}  // namespace
}  // namespace nodewatch::cli
