#include "aggregator/ingest/node_lives.h"

#include "absl/strings/match.h"

namespace nodewatch::aggregator {

using nodewatch::v1::InterruptionNotice;
using nodewatch::v1::NodeLife;

namespace {

// Facts that may arrive late (metadata unavailable at the first Hello) or change within a boot.
void Refresh(NodeLife& life, const nodewatch::v1::NodeInfo& info) {
  if (life.instance_id().empty()) life.set_instance_id(info.instance_id());
  if (!info.instance_type().empty()) life.set_instance_type(info.instance_type());
  if (info.lifecycle() != nodewatch::v1::LIFECYCLE_UNSPECIFIED) {
    life.set_lifecycle(info.lifecycle());
  }
  if (!info.zone().empty()) life.set_zone(info.zone());
  if (info.persistent_disk_bytes() > 0) {
    life.set_persistent_disk_bytes(info.persistent_disk_bytes());
  }
}

// AWS scheduled events name their code first in the description ("instance-stop: ...").
std::string AwsMaintenanceEnd(const InterruptionNotice& n) {
  const std::string& d = n.description();
  if (absl::StartsWith(d, "instance-reboot") || absl::StartsWith(d, "system-reboot")) {
    return "reboot";
  }
  // Retirement stops an EBS-backed instance (and terminates an instance-store one).
  if (absl::StartsWith(d, "instance-stop") || absl::StartsWith(d, "instance-retirement")) {
    return "stop";
  }
  return "";  // system-maintenance: network or power work, the instance keeps running
}

}  // namespace

NodeLife OneLife(const nodewatch::v1::NodeInfo& info, const std::string& boot_id, int64_t start_ms,
                 int64_t last_seen_ms) {
  NodeLife life;
  life.set_instance_id(info.instance_id());
  life.set_boot_id(boot_id);
  life.set_instance_type(info.instance_type());
  life.set_lifecycle(info.lifecycle());
  life.set_zone(info.zone());
  life.set_persistent_disk_bytes(info.persistent_disk_bytes());
  life.set_start_unix_ms(start_ms);
  life.set_last_seen_unix_ms(last_seen_ms);
  return life;
}

std::optional<std::string> NoticedEnd(const InterruptionNotice& n) {
  if (n.state() == nodewatch::v1::NOTICE_STATE_CANCELED) return "";
  if (n.state() != nodewatch::v1::NOTICE_STATE_ACTIVE) return std::nullopt;
  switch (n.kind()) {
    case nodewatch::v1::INTERRUPTION_KIND_SPOT_TERMINATE:
    case nodewatch::v1::INTERRUPTION_KIND_TERMINATE:
      return "terminate";
    case nodewatch::v1::INTERRUPTION_KIND_SPOT_STOP:
    case nodewatch::v1::INTERRUPTION_KIND_SPOT_HIBERNATE:
      return "stop";
    case nodewatch::v1::INTERRUPTION_KIND_REBOOT:
    case nodewatch::v1::INTERRUPTION_KIND_REDEPLOY:  // restarted on another host, still billed
      return "reboot";
    case nodewatch::v1::INTERRUPTION_KIND_SCHEDULED_MAINTENANCE:
      if (n.provider() == "aws") return AwsMaintenanceEnd(n);
      // GCE: TERMINATE_ON_HOST_MAINTENANCE shuts the VM down and restarts it; MIGRATE moves
      // it while it runs.
      if (n.provider() == "gcp") {
        return absl::StrContains(n.raw_payload(), "TERMINATE") ? "reboot" : "";
      }
      return "";
    default:  // rebalance, freeze: nothing is taken away
      return "";
  }
}

std::string EndedHow(const NodeLife& life, const std::string& next_instance_id) {
  if (!life.instance_id().empty() && !next_instance_id.empty() &&
      life.instance_id() != next_instance_id) {
    return "replaced";
  }
  // A "terminate" after which the same instance is back was a stop in fact (a GCE preemption of
  // a VM whose termination action the agent could not read).
  if (life.noticed_end() == "stop" || life.noticed_end() == "terminate") return "stopped";
  if (life.noticed_end() == "reboot") return "rebooted";
  return "restarted";
}

void ApplyHelloToLives(nodewatch::internal::StoredNode& node, const nodewatch::v1::Hello& hello,
                       int64_t now_ms) {
  const auto& info = hello.node_info();
  auto* lives = node.mutable_lives();
  if (lives->empty()) {
    const int64_t start = node.first_seen_unix_ms() > 0 ? node.first_seen_unix_ms() : now_ms;
    *lives->Add() = OneLife(info, hello.boot_id(), start, start);
    return;
  }
  NodeLife& current = *lives->rbegin();
  const bool new_boot = !hello.boot_id().empty() && !current.boot_id().empty() &&
                        hello.boot_id() != current.boot_id();
  const bool new_instance = !info.instance_id().empty() && !current.instance_id().empty() &&
                            info.instance_id() != current.instance_id();
  if (!new_boot && !new_instance) {
    if (current.boot_id().empty()) current.set_boot_id(hello.boot_id());
    Refresh(current, info);
    current.set_last_seen_unix_ms(std::max(current.last_seen_unix_ms(), now_ms));
    return;
  }
  current.set_last_seen_unix_ms(std::max(current.last_seen_unix_ms(), node.last_seen_unix_ms()));
  current.set_ended(EndedHow(current, info.instance_id()));
  *lives->Add() = OneLife(info, hello.boot_id(), now_ms, now_ms);
  if (lives->size() > kMaxLivesPerNode) lives->DeleteSubrange(0, lives->size() - kMaxLivesPerNode);
}

void ApplyNoticeToLives(nodewatch::internal::StoredNode& node, const InterruptionNotice& notice) {
  auto* lives = node.mutable_lives();
  if (lives->empty()) return;
  // The life the notice belongs to: the current one, or (a notice spooled before a reboot and
  // delivered after it) the earlier boot it names.
  int index = lives->size() - 1;
  if (!notice.boot_id().empty()) {
    while (index >= 0 && (*lives)[index].boot_id() != notice.boot_id()) --index;
    if (index < 0) return;  // a life no longer kept
  }
  auto end = NoticedEnd(notice);
  if (!end) return;
  NodeLife& life = (*lives)[index];
  life.set_noticed_end(*end);
  life.set_noticed_kind(end->empty() ? nodewatch::v1::INTERRUPTION_KIND_UNSPECIFIED
                                     : notice.kind());
  if (index + 1 < lives->size()) life.set_ended(EndedHow(life, (*lives)[index + 1].instance_id()));
}

void TouchCurrentLife(nodewatch::internal::StoredNode& node, int64_t now_ms) {
  if (node.lives().empty()) return;
  NodeLife& current = *node.mutable_lives()->rbegin();
  current.set_last_seen_unix_ms(std::max(current.last_seen_unix_ms(), now_ms));
}

google::protobuf::RepeatedPtrField<NodeLife> LivesOf(const nodewatch::internal::StoredNode& node) {
  if (!node.lives().empty()) return node.lives();
  google::protobuf::RepeatedPtrField<NodeLife> out;
  *out.Add() =
      OneLife(node.info(), node.boot_id(), node.first_seen_unix_ms(), node.last_seen_unix_ms());
  return out;
}

}  // namespace nodewatch::aggregator
