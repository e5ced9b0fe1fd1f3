// GCP: hanging GETs (`wait_for_change=true&last_etag=…`) on instance/preempted and
// instance/maintenance-event, so a change is seen the moment the metadata server publishes it.
// Payloads as in reference/interruptions.md §3.1.
#include <map>
#include <mutex>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "agent/collectors/cloud/providers.h"
#include "common/file_util.h"

namespace nodewatch::agent {
namespace {

using nodewatch::v1::InterruptionNotice;
using nodewatch::v1::NodeInfo;

constexpr int kHangSeconds = 60;

std::string LastSegment(const std::string& path) {
  auto slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

class GcpProvider final : public ProviderBase {
 public:
  GcpProvider(const CloudOptions& o, HttpClient& h, const Clock& c, CloudCounters& n)
      : ProviderBase(o, h, c, n, "http://169.254.169.254") {
    LoadState();
  }
  ~GcpProvider() override { Stop(); }

  std::string name() const override { return "gcp"; }

  absl::StatusOr<NodeInfo> FetchNodeInfo() override {
    auto id = Get("instance/id", options_.request_timeout_ms);
    if (!id.ok()) return id.status();
    if (id->status != 200) return absl::UnavailableError(absl::StrCat("gcp instance/id: HTTP ", id->status));
    NodeInfo info;
    info.set_provider("gcp");
    info.set_instance_id(id->body);
    auto text = [&](const std::string& key) {
      auto r = Get(key, options_.request_timeout_ms);
      return r.ok() && r->status == 200 ? r->body : std::string();
    };
    {
      std::lock_guard<std::mutex> lock(state_mu_);
      instance_id_ = id->body;
    }
    info.set_instance_type(LastSegment(text("instance/machine-type")));
    info.set_zone(LastSegment(text("instance/zone")));
    if (auto dash = info.zone().rfind('-'); dash != std::string::npos) {
      info.set_region(info.zone().substr(0, dash));
    }
    std::string preemptible = text("instance/scheduling/preemptible");
    std::string model = text("instance/scheduling/provisioning-model");
    info.set_lifecycle(preemptible == "TRUE" || model == "SPOT" ? nodewatch::v1::LIFECYCLE_SPOT
                                                                : nodewatch::v1::LIFECYCLE_ON_DEMAND);
    // What a preemption does to this VM: STOP (the Spot default; the VM comes back with the same
    // name and disks) or DELETE. Metadata servers that do not offer the key leave it unknown,
    // and a preemption is then reported as a termination, the stronger of the two.
    std::string action = text("instance/scheduling/instance-termination-action");
    {
      std::lock_guard<std::mutex> lock(state_mu_);
      preemption_stops_ = action == "STOP";
    }
    for (auto [type, key] :
         {std::pair{"InternalIP", "instance/network-interfaces/0/ip"},
          {"ExternalIP", "instance/network-interfaces/0/access-configs/0/external-ip"},
          {"Hostname", "instance/hostname"}}) {
      AddAddress(info, type, text(key));
    }
    return info;
  }

  void Start(NoticeSink& sink) override {
    Spawn([this, &sink] { Watch("instance/preempted", preempted_etag_, sink); });
    Spawn([this, &sink] { Watch("instance/maintenance-event", maintenance_etag_, sink); });
  }

 private:
  absl::StatusOr<HttpResponse> Get(const std::string& key, int64_t timeout_ms,
                                   const std::string& query = "") {
    HttpRequest get{.url = base_ + "/computeMetadata/v1/" + key + query,
                    .headers = {{"Metadata-Flavor", "Google"}},
                    .timeout_ms = timeout_ms};
    return Fetch(get);
  }

  // One round of the watch: a plain GET when we have no ETag yet, else a hanging GET that
  // returns when the value changes (or after kHangSeconds with the same value).
  void Watch(const std::string& key, std::string& etag, NoticeSink& sink) {
    std::string query;
    int64_t timeout = options_.request_timeout_ms;
    if (!etag.empty()) {
      query = absl::StrCat("?wait_for_change=true&last_etag=", etag, "&timeout_sec=", kHangSeconds);
      timeout = (kHangSeconds + 10) * 1000;
    }
    auto r = Get(key, timeout, query);
    if (!r.ok() || r->status != 200) {
      // Cut connection, timeout or error: back off a second and re-read the current value.
      WarnThrottled(absl::StrCat("gcp ", key, ": ",
                                 r.ok() ? absl::StrCat("HTTP ", r->status) : r.status().ToString()));
      etag.clear();
      Sleep(1000);
      return;
    }
    std::string new_etag = r->header("etag");
    if (new_etag.empty()) {
      Malformed(key + " response without ETag", r->body);
      Sleep(1000);
      return;
    }
    ClearWarning();
    bool changed = new_etag != etag;
    etag = new_etag;
    if (changed) Handle(key, r->body, sink);
  }

  // GCP notices carry no event id. Each activation of a key (FALSE→TRUE, NONE→maintenance)
  // starts a new generation, persisted before it is reported, so an agent restarted mid-event
  // reports the same id (a duplicate, dropped) and a later event gets a new one.
  struct Generation {
    int64_t number = 0;
    bool active = false;
  };

  void LoadState() {
    if (options_.state_file.empty()) return;
    auto text = ReadFileToString(options_.state_file);
    if (!text.ok()) return;
    for (absl::string_view line : absl::StrSplit(*text, '\n', absl::SkipEmpty())) {
      std::vector<std::string> f = absl::StrSplit(line, ' ');
      Generation g;
      int64_t active = 0;
      if (f.size() == 3 && absl::SimpleAtoi(f[1], &g.number) && absl::SimpleAtoi(f[2], &active)) {
        g.active = active != 0;
        generations_[f[0]] = g;
      }
    }
  }

  void SaveStateLocked() {
    if (options_.state_file.empty()) return;
    std::string text;
    for (const auto& [key, g] : generations_) {
      absl::StrAppend(&text, key, " ", g.number, " ", g.active ? 1 : 0, "\n");
    }
    if (auto s = WriteFileAtomic(options_.state_file, text); !s.ok()) {
      log_->warn("gcp: cannot persist event generations: {}", s);
    }
  }

  // Returns the event id for `key` becoming active (new generation unless already active).
  std::string Activate(const std::string& key, const std::string& prefix) {
    std::lock_guard<std::mutex> lock(state_mu_);
    Generation& g = generations_[key];
    if (!g.active) {
      ++g.number;
      g.active = true;
      SaveStateLocked();
    }
    return absl::StrCat(prefix, "-", instance_id_, "-", g.number);
  }

  // Returns the id of the generation that just ended, or "" if none was active.
  std::string Deactivate(const std::string& key, const std::string& prefix) {
    std::lock_guard<std::mutex> lock(state_mu_);
    Generation& g = generations_[key];
    if (!g.active) return "";
    g.active = false;
    SaveStateLocked();
    return absl::StrCat(prefix, "-", instance_id_, "-", g.number);
  }

  void Handle(const std::string& key, const std::string& value, NoticeSink& sink) {
    InterruptionNotice n;
    n.set_provider("gcp");
    n.set_notice_time_unix_ms(clock_.NowUnixMs());
    n.set_raw_payload(value);
    if (key == "instance/preempted") {
      if (value == "FALSE") {
        Deactivate(key, "preempted");
        return;
      }
      if (value != "TRUE") return Malformed("preempted value", value);
      bool stops = false;
      {
        std::lock_guard<std::mutex> lock(state_mu_);
        stops = preemption_stops_;
      }
      n.set_kind(stops ? nodewatch::v1::INTERRUPTION_KIND_SPOT_STOP
                       : nodewatch::v1::INTERRUPTION_KIND_SPOT_TERMINATE);
      n.set_event_id(Activate(key, "preempted"));
      n.set_deadline_unix_ms(clock_.NowUnixMs() + options_.gcp_preemption_notice_ms);
      n.set_state(nodewatch::v1::NOTICE_STATE_ACTIVE);
      n.set_description(stops ? "GCE preemption (termination action STOP: the VM is stopped)"
                              : "GCE preemption");
      sink.OnNotice(std::move(n));
      return;
    }
    if (value == "NONE") {
      std::string ended = Deactivate(key, "maintenance");
      if (ended.empty()) return;
      n.set_kind(nodewatch::v1::INTERRUPTION_KIND_SCHEDULED_MAINTENANCE);
      n.set_event_id(ended);
      n.set_state(nodewatch::v1::NOTICE_STATE_COMPLETED);
      n.set_description("GCE host maintenance over");
      sink.OnNotice(std::move(n));
      return;
    }
    if (value != "TERMINATE_ON_HOST_MAINTENANCE" && value != "MIGRATE_ON_HOST_MAINTENANCE") {
      return Malformed("maintenance-event value", value);
    }
    n.set_kind(nodewatch::v1::INTERRUPTION_KIND_SCHEDULED_MAINTENANCE);
    n.set_event_id(Activate(key, "maintenance"));
    // The value changes 60 s before the maintenance starts.
    n.set_deadline_unix_ms(clock_.NowUnixMs() + 60'000);
    n.set_state(nodewatch::v1::NOTICE_STATE_ACTIVE);
    n.set_description(absl::StrCat("GCE host maintenance: ", value));
    sink.OnNotice(std::move(n));
  }

  std::string instance_id_;
  bool preemption_stops_ = false;  // instance-termination-action is STOP
  std::string preempted_etag_;
  std::string maintenance_etag_;
  std::mutex state_mu_;
  std::map<std::string, Generation> generations_;
};

}  // namespace

std::unique_ptr<CloudProvider> MakeGcpProvider(const CloudOptions& o, HttpClient& h,
                                               const Clock& c, CloudCounters& n) {
  return std::make_unique<GcpProvider>(o, h, c, n);
}

}  // namespace nodewatch::agent
