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

TEST(Cli, NodeDetailsSayHowTheNodeCounts) {
  nodewatch::v1::NodeSummary s;
  s.set_name("worker-2");
  s.mutable_info()->set_kernel_release("6.18.44-fc-v1300");
  EXPECT_THAT(NodeDetails(s, 0), HasSubstr("Counting paths: - (the agent did not report them)"));
  auto* iterator = s.mutable_info()->add_kernel_features();
  iterator->set_name("socket_storage_iterator");
  iterator->set_reason("kernel refuses bpf_iter programs: Operation not permitted");
  auto* btf = s.mutable_info()->add_kernel_features();
  btf->set_name("tp_btf");
  btf->set_available(true);
  auto* tcp = s.mutable_info()->add_counting_paths();
  tcp->set_signal("tcp_bytes");
  tcp->set_path("packet");
  tcp->set_reason("socket_storage_iterator: kernel refuses bpf_iter programs");
  auto* disk = s.mutable_info()->add_counting_paths();
  disk->set_signal("block_io");
  disk->set_path("tp_btf");
  const std::string details = NodeDetails(s, 0);
  EXPECT_THAT(details, HasSubstr("worker-2"));
  EXPECT_THAT(details, HasSubstr("Kernel: 6.18.44-fc-v1300"));
  EXPECT_THAT(details, HasSubstr("tcp_bytes"));
  EXPECT_THAT(details, HasSubstr("packet"));
  EXPECT_THAT(details, HasSubstr("block_io"));
  EXPECT_THAT(details, HasSubstr("1 of 2 available; missing:\n  socket_storage_iterator: kernel "
                                 "refuses bpf_iter programs: Operation not permitted"));
  // -o json: lowerCamelCase, as every JSON of nodewatch.
  EXPECT_THAT(ToJson(s), HasSubstr("\"countingPaths\":[{\"signal\":\"tcp_bytes\",\"path\":\"packet\""));
  EXPECT_THAT(ToJson(s), HasSubstr("\"kernelFeatures\""));
}

TEST(Cli, NodeDetailsListTheLives) {
  nodewatch::v1::NodeSummary s;
  s.set_name("worker-3");
  s.set_connected(false);
  auto life = [&](const std::string& instance, const std::string& boot, int64_t from, int64_t to,
                  const std::string& ended, const std::string& noticed) {
    auto* l = s.add_lives();
    l->set_instance_id(instance);
    l->set_boot_id(boot);
    l->set_instance_type("m5.large");
    l->set_lifecycle(nodewatch::v1::LIFECYCLE_SPOT);
    l->set_start_unix_ms(from);
    l->set_last_seen_unix_ms(to);
    l->set_ended(ended);
    l->set_noticed_end(noticed);
  };
  const int64_t t = 1'700'000'000'000;
  life("i-0abc", "5e3f1a2b-1111", t, t + 3'600'000, "stopped", "stop");
  life("i-0abc", "9c0d7e6f-2222", t + 3 * 3'600'000 + 300'000, t + 4 * 3'600'000, "", "stop");
  const std::string details = NodeDetails(s, t + 5 * 3'600'000);
  EXPECT_THAT(details, HasSubstr("Lives:"));
  EXPECT_THAT(details, HasSubstr("5e3f1a2b"));
  EXPECT_THAT(details, HasSubstr("stopped"));
  EXPECT_THAT(details, HasSubstr("2h05m")) << details;  // away between the two lives
  EXPECT_THAT(details, HasSubstr("away (stop)")) << details;

  nodewatch::v1::CostReport report;
  auto* l = report.add_lives();
  l->set_node("worker-3");
  l->set_instance_id("i-0abc");
  l->set_instance_type("m5.large");
  l->set_lifecycle("spot");
  l->set_ended("stopped");
  l->set_priced(true);
  l->set_hours_month(1);
  l->set_usd_month(0.0365);
  l->set_stopped_hours_month(2.1);
  l->set_storage_usd_month(0.02);
  const std::string cost = CostSummary(report);
  EXPECT_THAT(cost, HasSubstr("Lives this month:"));
  EXPECT_THAT(cost, HasSubstr("$0.04"));
  EXPECT_THAT(cost, HasSubstr("2.1"));
}

TEST(Cli, NetworkAndDiskSamplesReadAsSentences) {
  nodewatch::v1::Record r;
  r.set_time_unix_ms(1'700'000'000'000);
  auto* net = r.mutable_network();
  auto* f = net->add_flows();
  f->set_pod_namespace("shop");
  f->set_pod_name("web-1");
  f->set_remote_address(std::string("\x0a\x00\x02\x05", 4));
  f->set_direction(nodewatch::v1::DIRECTION_EGRESS);
  f->set_bytes(3ull << 30);
  f->set_tcp_retransmits(5);
  auto* failing = net->add_flows();
  failing->set_pod_namespace("shop");
  failing->set_pod_name("cart-0");
  failing->set_remote_address(std::string("\x0a\x00\x02\x09", 4));
  failing->set_direction(nodewatch::v1::DIRECTION_EGRESS);
  failing->set_tcp_retransmits(2);
  failing->set_tcp_failed_connects(6);
  failing->set_tcp_slow_connects(1);
  failing->set_tcp_resets(6);
  auto* in = net->add_flows();
  in->set_remote_address(std::string(16, '\0'));
  in->set_direction(nodewatch::v1::DIRECTION_INGRESS);
  in->set_bytes(1 << 20);
  net->set_tcp_connects(100);
  net->set_tcp_failed_connects(2);
  net->set_tcp_retransmits(7);
  net->set_tcp_resets(1);
  net->set_dropped_flows(4);
  for (uint64_t c : {0, 0, 10, 60, 30}) net->add_connect_latency_log2_us(c);  // p50 in [8, 16) us
  std::string line = SummarizeRecord(r);
  EXPECT_THAT(line, HasSubstr("tx 3.0GiB rx 1.0MiB in 3 flow(s)"));
  EXPECT_THAT(line, HasSubstr("tcp 100 connects (2 failed, p50 <16us), 7 retransmits, 1 resets"));
  EXPECT_THAT(line, HasSubstr("4 flows NOT counted"));
  EXPECT_THAT(line, HasSubstr("top: shop/web-1 -> 10.0.2.5 3.0GiB"));
  EXPECT_THAT(
      line, HasSubstr("most TCP trouble: shop/cart-0 -> 10.0.2.9 2 retransmits, 6 failed / 1 slow "
                      "connects, 6 resets"));

  nodewatch::v1::Record d;
  d.set_time_unix_ms(1'700'000'000'000);
  auto* dev = d.mutable_disk()->add_devices();
  dev->set_device("nvme0n1");
  dev->set_reads(10);
  dev->set_read_bytes(40960);
  dev->set_writes(20);
  dev->set_written_bytes(1 << 20);
  dev->set_io_errors(3);
  for (int i = 0; i < 12; ++i) dev->add_write_latency_log2_us(i == 11 ? 1 : 0);  // ~4 ms
  auto* fs = d.mutable_disk()->add_filesystems();
  fs->set_mountpoint("/var");
  fs->set_size_bytes(100ull << 30);
  fs->set_available_bytes(38ull << 30);
  fs->set_predicted_full_unix_ms(1'700'000'000'000 + 6 * 3'600'000);
  auto* nfs = d.mutable_disk()->add_filesystems();
  nfs->set_mountpoint("/mnt/nfs");
  nfs->set_timed_out(true);
  line = SummarizeRecord(d);
  EXPECT_THAT(line, HasSubstr("nvme0n1 r 10/40.0KiB w 20/1.0MiB write p99 <4.1ms 3 ERRORS"));
  EXPECT_THAT(line, HasSubstr("/var 62% used of 100.0GiB, full in 6.0h"));
  EXPECT_THAT(line, HasSubstr("/mnt/nfs statfs TIMED OUT"));
}

}  // namespace
}  // namespace nodewatch::cli
