#include "agent/collectors/cloud/cloud_collector.h"

#include <fcntl.h>
#include <unistd.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/file_util.h"
#include "common/logging.h"

namespace nodewatch::agent {

using nodewatch::v1::InterruptionNotice;

namespace {
constexpr size_t kLedgerKeep = 512;            // keys remembered after a compaction
constexpr int64_t kCloudFactsRefreshMs = 600'000;
}  // namespace

CloudCollector::CloudCollector(Spool& spool, CloudProvider& provider, const Clock& clock,
                               CloudCounters& counters, std::string ledger_path,
                               std::string boot_id)
    : spool_(spool),
      provider_(provider),
      clock_(clock),
      counters_(counters),
      ledger_path_(std::move(ledger_path)),
      boot_id_(std::move(boot_id)) {}

CloudCollector::~CloudCollector() { Stop(); }

std::string CloudCollector::Key(const InterruptionNotice& n) {
  return absl::StrCat(n.provider(), "\t", n.event_id(), "\t", static_cast<int>(n.state()));
}

absl::Status CloudCollector::Load() {
  auto text = ReadFileToString(ledger_path_);
  if (!text.ok() && !absl::IsNotFound(text.status())) return text.status();
  std::vector<std::string> lines;
  if (text.ok()) lines = absl::StrSplit(*text, '\n', absl::SkipEmpty());
  std::lock_guard<std::mutex> lock(mu_);
  seen_.insert(lines.begin(), lines.end());
  // Keep the ledger small: the last kLedgerKeep keys are plenty to recognise a re-read notice.
  if (lines.size() > 2 * kLedgerKeep) {
    std::string keep;
    for (size_t i = lines.size() - kLedgerKeep; i < lines.size(); ++i) keep += lines[i] + "\n";
    return WriteFileAtomic(ledger_path_, keep);
  }
  return absl::OkStatus();
}

void CloudCollector::Start() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (started_) return;
    started_ = true;
  }
  provider_.Start(*this);
}

void CloudCollector::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!started_) return;
    started_ = false;
  }
  provider_.Stop();
}

void CloudCollector::OnNotice(InterruptionNotice notice) {
  auto log = GetLogger("agent.cloud");
  const std::string key = Key(notice);
  std::lock_guard<std::mutex> lock(mu_);
  if (seen_.count(key) > 0) {
    ++counters_.duplicate_notices;
    return;
  }
  if (notice.boot_id().empty()) notice.set_boot_id(boot_id_);
  nodewatch::v1::Record record;
  record.set_time_unix_ms(clock_.NowUnixMs());
  *record.mutable_interruption() = notice;
  // Durable first (urgent lane: fsynced, sent ahead of all telemetry), then remembered.
  auto seq = spool_.AppendUrgent(std::move(record));
  if (!seq.ok()) {
    log->error("interruption notice {} from {} could not be spooled: {}", notice.event_id(),
               notice.provider(), seq.status());
    return;  // not remembered: the next poll reports it again
  }
  seen_.insert(key);
  ++counters_.notices;
  int fd = open(ledger_path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (fd >= 0) {
    std::string line = key + "\n";
    bool ok = write(fd, line.data(), line.size()) == static_cast<ssize_t>(line.size()) &&
              fdatasync(fd) == 0;
    close(fd);
    if (!ok) log->warn("notice ledger {} not updated; a restart may report {} again", ledger_path_, notice.event_id());
  }
  log->warn("interruption notice: {} {} event {} state {} deadline {} (seq {})", notice.provider(),
            nodewatch::v1::InterruptionKind_Name(notice.kind()), notice.event_id(),
            nodewatch::v1::NoticeState_Name(notice.state()), notice.deadline_unix_ms(), *seq);
}

void CloudCollector::HandleCommand(const nodewatch::v1::Command& command) {
  auto log = GetLogger("agent.cloud");
  if (!command.has_acknowledge_scheduled_event()) {
    log->warn("command {}: no action this agent knows", command.id());
    return;
  }
  const auto& ack = command.acknowledge_scheduled_event();
  if (ack.provider() != provider_.name()) {
    log->warn("command {}: acknowledge for {} but this node runs on {}", command.id(),
              ack.provider(), provider_.name());
    return;
  }
  if (auto s = provider_.Acknowledge(ack.event_id()); !s.ok()) {
    log->error("command {}: acknowledging {} failed: {}", command.id(), ack.event_id(), s);
  }
}

CloudHostProbe::CloudHostProbe(std::unique_ptr<HostProbe> host, CloudProvider& provider,
                               const Clock& clock)
    : host_(std::move(host)), provider_(provider), clock_(clock) {}

nodewatch::v1::NodeInfo CloudHostProbe::ReadNodeInfo() {
  nodewatch::v1::NodeInfo info = host_->ReadNodeInfo();
  std::lock_guard<std::mutex> lock(mu_);
  const int64_t now = clock_.NowUnixMs();
  if (!cloud_ || now - fetched_ms_ > kCloudFactsRefreshMs) {
    auto fetched = provider_.FetchNodeInfo();
    if (fetched.ok()) {
      cloud_ = *fetched;
      fetched_ms_ = now;
    } else if (!cloud_) {
      GetLogger("agent.cloud")->warn("{} instance metadata unavailable: {}", provider_.name(),
                                     fetched.status());
    }
  }
  if (!cloud_) {
    info.set_provider(provider_.name());
    return info;
  }
  nodewatch::v1::NodeInfo merged = *cloud_;
  merged.set_hostname(info.hostname());
  merged.set_kernel_release(info.kernel_release());
  merged.set_os_image(info.os_image());
  merged.set_architecture(info.architecture());
  merged.set_persistent_disk_bytes(info.persistent_disk_bytes());
  std::set<std::string> have;
  for (const auto& a : merged.addresses()) have.insert(a.address());
  for (const auto& a : info.addresses()) {
    if (have.insert(a.address()).second) *merged.add_addresses() = a;
  }
  return merged;
}

}  // namespace nodewatch::agent
