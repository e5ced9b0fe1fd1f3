#include "aggregator/cost/cost_ledger.h"

#include <algorithm>
#include <ctime>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace nodewatch::aggregator {

using nodewatch::v1::Record;

namespace {

constexpr int64_t kDayMs = 86'400'000;
constexpr int64_t kInterruptionMemoryMs = 40 * kDayMs;
constexpr char kPrefix[] = "x/";
const char kHostNamespace[] = "(host)";
const char kOtherNamespace[] = "(other)";

// Agent-supplied names become key segments: no '/', bounded length, never empty.
std::string Segment(const std::string& s, const char* if_empty) {
  if (s.empty()) return if_empty;
  std::string out = s.substr(0, 253);
  std::replace(out.begin(), out.end(), '/', '_');
  return out;
}

std::string NamespaceKey(int64_t day, const std::string& provider, const std::string& ns,
                         TransferClass c) {
  return absl::StrCat(kPrefix, DayName(day), "/s/", provider, "/", ns, "/", static_cast<int>(c));
}

// Parses a day name back; -1 when it is not one.
int64_t ParseDay(std::string_view name) {
  tm t{};
  std::string s(name);
  if (s.size() != 10 || strptime(s.c_str(), "%Y-%m-%d", &t) == nullptr) return -1;
  return timegm(&t) / 86'400;
}

}  // namespace

int64_t DayOf(int64_t unix_ms) {
  return unix_ms >= 0 ? unix_ms / kDayMs : (unix_ms - kDayMs + 1) / kDayMs;
}

std::string DayName(int64_t day) {
  time_t seconds = static_cast<time_t>(day * 86'400);
  tm utc{};
  gmtime_r(&seconds, &utc);
  return absl::StrFormat("%04d-%02d-%02d", utc.tm_year + 1900, utc.tm_mon + 1, utc.tm_mday);
}

bool IsSpotReclaim(const InterruptionEvent& e) {
  using nodewatch::v1::InterruptionKind;
  return e.state != nodewatch::v1::NOTICE_STATE_CANCELED &&
         (e.kind == InterruptionKind::INTERRUPTION_KIND_SPOT_TERMINATE ||
          e.kind == InterruptionKind::INTERRUPTION_KIND_SPOT_STOP ||
          e.kind == InterruptionKind::INTERRUPTION_KIND_SPOT_HIBERNATE);
}

std::string CostLedger::NodeKey(int64_t day, const std::string& node, TransferClass c) {
  return absl::StrCat(kPrefix, DayName(day), "/n/", node, "/", static_cast<int>(c));
}

CostLedger::CostLedger(const TransferClassifier& classifier, CostLedgerOptions options)
    : classifier_(classifier), options_(options) {}

void CostLedger::Add(ClassBytes& into, const ClassBytes& from) {
  for (int i = 0; i < kTransferClasses; ++i)
    into[static_cast<size_t>(i)] += from[static_cast<size_t>(i)];
}

absl::Status CostLedger::Load(Store& store, int64_t now_ms) {
  std::lock_guard<std::mutex> lock(mu_);
  days_.clear();
  auto s = store.ScanCounters(kPrefix, [&](const std::string& key, uint64_t value) {
    Apply(key, value);
    return true;
  });
  if (!s.ok()) return s;
  for (const auto& [day, d] : days_) {
    for (const auto& [pn, bytes] : d.namespaces) derive_namespaces_[day][pn.second] = true;
  }
  interruptions_.clear();
  auto nodes = store.LoadNodes();
  if (!nodes.ok()) return nodes.status();
  std::unordered_map<uint32_t, std::string> names;
  for (const auto& n : *nodes) names[n.id()] = n.name();
  return store.ScanInterruptions(
      now_ms - kInterruptionMemoryMs, now_ms + kDayMs,
      [&](uint32_t id, int64_t time, const Record& r) {
        interruptions_.push_back({.node = names[id],
                                  .event_id = r.interruption().event_id(),
                                  .time_ms = time,
                                  .kind = r.interruption().kind(),
                                  .state = r.interruption().state(),
                                  .provider = r.interruption().provider()});
        return true;
      });
}

void CostLedger::Apply(const std::string& key, uint64_t delta) {
  // x/<day>/n/<node>/<class>  or  x/<day>/s/<provider>/<namespace>/<class>
  std::string_view k(key);
  if (k.size() < 17 || k.substr(0, 2) != kPrefix || k[12] != '/' || k[14] != '/') return;
  const int64_t day = ParseDay(k.substr(2, 10));
  const size_t last = k.rfind('/');
  int cls = 0;
  if (day < 0 || last <= 15 ||
      !absl::SimpleAtoi(absl::string_view(k.data() + last + 1, k.size() - last - 1), &cls) ||
      cls < 0 || cls >= kTransferClasses) {
    return;  // not a key this ledger writes: ignore rather than miscount
  }
  const auto c = static_cast<size_t>(cls);
  Day& d = days_[day];
  const std::string_view rest = k.substr(15, last - 15);
  if (k[13] == 'n') {
    d.nodes[std::string(rest)][c] += delta;
    d.total[c] += delta;
  } else if (k[13] == 's') {
    const size_t slash = rest.find('/');
    if (slash == std::string_view::npos) return;
    std::string provider(rest.substr(0, slash));
    d.namespaces[{provider, std::string(rest.substr(slash + 1))}][c] += delta;
    d.providers[provider][c] += delta;
  }
}

void CostLedger::Derive(const std::string& node, const nodewatch::v1::NodeInfo& info,
                        int64_t key_time_ms, const Record& record, std::vector<CounterDelta>* out) {
  if (!record.has_network()) return;
  ++counters_.samples;
  const NodeLocation from{info.provider(), info.region(), info.zone()};
  const int64_t day = DayOf(key_time_ms);
  ClassBytes node_bytes{};
  std::map<std::string, ClassBytes> ns_bytes;
  const TransferClassifier::View classes = classifier_.Snapshot();
  for (const auto& flow : record.network().flows()) {
    if (flow.direction() != nodewatch::v1::DIRECTION_EGRESS || flow.bytes() == 0) continue;
    ++counters_.flows;
    const size_t len = flow.remote_address().size();
    if (len != 4 && len != 16) ++counters_.unclassifiable_flows;
    const auto c = static_cast<size_t>(classes.Classify(from, flow.remote_address()));
    uint64_t bytes = flow.bytes();
    if (bytes > options_.max_flow_bytes) {  // a hostile or broken agent; sums must not wrap
      bytes = options_.max_flow_bytes;
      ++counters_.clamped_flows;
    }
    node_bytes[c] += bytes;
    ns_bytes[Segment(flow.pod_namespace(), kHostNamespace)][c] += bytes;
  }
  const std::string n = Segment(node, "(unnamed)");
  const std::string provider = Segment(info.provider(), "none");
  for (int c = 0; c < kTransferClasses; ++c) {
    if (node_bytes[static_cast<size_t>(c)] == 0) continue;
    out->push_back(
        {NodeKey(day, n, static_cast<TransferClass>(c)), node_bytes[static_cast<size_t>(c)]});
  }
  std::lock_guard<std::mutex> lock(mu_);
  auto& seen = derive_namespaces_[day];
  for (auto& [ns, bytes] : ns_bytes) {
    std::string name = ns;
    if (seen.count(name) == 0) {
      if (seen.size() >= options_.max_namespaces_per_day) {
        name = kOtherNamespace;
        ++counters_.namespaces_folded;
      }
      seen[name] = true;
    }
    for (int c = 0; c < kTransferClasses; ++c) {
      if (bytes[static_cast<size_t>(c)] == 0) continue;
      out->push_back({NamespaceKey(day, provider, name, static_cast<TransferClass>(c)),
                      bytes[static_cast<size_t>(c)]});
    }
  }
}

void CostLedger::Stored(const std::string& node, const nodewatch::v1::NodeInfo& info,
                        int64_t key_time_ms, const Record& record) {
  if (record.has_interruption()) {
    std::lock_guard<std::mutex> lock(mu_);
    if (interruptions_.size() >= options_.max_interruptions) {
      ++counters_.dropped_entries;
      return;
    }
    interruptions_.push_back({.node = node,
                              .event_id = record.interruption().event_id(),
                              .time_ms = key_time_ms,
                              .kind = record.interruption().kind(),
                              .state = record.interruption().state(),
                              .provider = record.interruption().provider()});
  } else if (record.has_disk()) {
    std::lock_guard<std::mutex> lock(mu_);
    size_t known = 0;
    for (auto it = filesystems_.lower_bound({node, ""});
         it != filesystems_.end() && it->first.first == node; ++it) {
      ++known;
    }
    for (const auto& fs : record.disk().filesystems()) {
      if (filesystems_.count({node, fs.mountpoint()}) == 0) {
        if (known >= options_.max_filesystems_per_node) {
          ++counters_.dropped_entries;
          continue;
        }
        ++known;
      }
      FilesystemForecast f{.node = node,
                           .mountpoint = fs.mountpoint(),
                           .observed_ms = key_time_ms,
                           .predicted_full_ms = fs.predicted_full_unix_ms()};
      if (fs.size_bytes() > 0 && fs.available_bytes() <= fs.size_bytes()) {
        f.used_fraction =
            1.0 - static_cast<double>(fs.available_bytes()) / static_cast<double>(fs.size_bytes());
      }
      filesystems_[{node, fs.mountpoint()}] = std::move(f);
    }
  }
}

void CostLedger::CountersCommitted(const std::vector<CounterDelta>& deltas) {
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& d : deltas) Apply(d.key, d.delta);
}

absl::Status CostLedger::Prune(Store& store, int64_t now_ms) {
  const int64_t cutoff = DayOf(now_ms) - options_.keep_days;
  {
    std::lock_guard<std::mutex> lock(mu_);
    days_.erase(days_.begin(), days_.lower_bound(cutoff));
    derive_namespaces_.erase(derive_namespaces_.begin(), derive_namespaces_.lower_bound(cutoff));
    std::erase_if(interruptions_, [&](const InterruptionEvent& e) {
      return e.time_ms < now_ms - kInterruptionMemoryMs;
    });
    std::erase_if(filesystems_, [&](const auto& entry) {
      return entry.second.observed_ms < now_ms - kDayMs;  // node gone or agent stopped reporting
    });
  }
  // One range deletion per day, not per cycle: range tombstones are cheap but not free.
  if (cutoff <= pruned_before_day_) return absl::OkStatus();
  auto s = store.DeleteCounterRange(kPrefix, absl::StrCat(kPrefix, DayName(cutoff)));
  if (s.ok()) pruned_before_day_ = cutoff;
  return s;
}

TransferTotals CostLedger::Totals(int64_t first_day, int64_t last_day) const {
  TransferTotals t;
  std::lock_guard<std::mutex> lock(mu_);
  for (auto it = days_.lower_bound(first_day); it != days_.end() && it->first <= last_day; ++it) {
    Add(t.total, it->second.total);
    for (const auto& [node, bytes] : it->second.nodes) Add(t.by_node[node], bytes);
    for (const auto& [ns, bytes] : it->second.namespaces) Add(t.by_namespace[ns], bytes);
    for (const auto& [p, bytes] : it->second.providers) Add(t.by_provider[p], bytes);
  }
  return t;
}

std::map<std::string, ClassBytes> CostLedger::ProviderTotals(int64_t first_day,
                                                             int64_t last_day) const {
  std::map<std::string, ClassBytes> out;
  std::lock_guard<std::mutex> lock(mu_);
  for (auto it = days_.lower_bound(first_day); it != days_.end() && it->first <= last_day; ++it) {
    for (const auto& [p, bytes] : it->second.providers) Add(out[p], bytes);
  }
  return out;
}

std::vector<InterruptionEvent> CostLedger::Interruptions(int64_t since_ms) const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<InterruptionEvent> out;
  for (const auto& e : interruptions_) {
    if (e.time_ms >= since_ms) out.push_back(e);
  }
  return out;
}

std::vector<FilesystemForecast> CostLedger::Filesystems() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<FilesystemForecast> out;
  out.reserve(filesystems_.size());
  for (const auto& [key, f] : filesystems_) out.push_back(f);
  return out;
}

size_t CostLedger::rollup_entries() const {
  std::lock_guard<std::mutex> lock(mu_);
  size_t n = 0;
  for (const auto& [day, d] : days_) n += d.nodes.size() + d.namespaces.size();
  return n;
}

}  // namespace nodewatch::aggregator
