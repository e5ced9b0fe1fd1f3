#include "tests/support/metadata_simulator.h"

#include <civetweb.h>

#include <chrono>
#include <ctime>
#include <functional>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "tests/support/process.h"

namespace nodewatch::testing {
namespace {

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string Format(int64_t ms, const char* format) {
  time_t s = static_cast<time_t>(ms / 1000);
  tm t{};
  gmtime_r(&s, &t);
  char buf[64];
  strftime(buf, sizeof buf, format, &t);
  return buf;
}
std::string Rfc3339(int64_t ms) { return Format(ms, "%Y-%m-%dT%H:%M:%SZ"); }
std::string AwsTime(int64_t ms) { return Format(ms, "%d %b %Y %H:%M:%S GMT"); }
std::string Rfc1123(int64_t ms) { return Format(ms, "%a, %d %b %Y %H:%M:%S GMT"); }

std::string Header(mg_connection* conn, const char* name) {
  const char* v = mg_get_header(conn, name);
  return v != nullptr ? v : "";
}

std::string EtagOf(const std::string& value) {
  return absl::StrCat(std::hash<std::string>{}(value)&0xffffffffffffULL);
}

}  // namespace

MetadataSimulator::MetadataSimulator(Options options) : options_(std::move(options)) {}
MetadataSimulator::~MetadataSimulator() { Stop(); }

bool MetadataSimulator::Start() {
  port_ = options_.port != 0 ? options_.port : FreePort();
  std::string ports = "127.0.0.1:" + std::to_string(port_);
  const char* opts[] = {
      "listening_ports", ports.c_str(),       "num_threads", "64",   "request_timeout_ms",
      "120000",          "enable_keep_alive", "yes",         nullptr};
  mg_callbacks callbacks{};
  ctx_ = mg_start(&callbacks, this, opts);
  if (ctx_ == nullptr) return false;
  mg_set_request_handler(ctx_, "/", &MetadataSimulator::Dispatch, this);
  return true;
}

void MetadataSimulator::Stop() {
  if (ctx_ == nullptr) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;  // releases hanging GETs, or mg_stop would wait for them
    Changed();
  }
  mg_stop(ctx_);
  ctx_ = nullptr;
}

int MetadataSimulator::Dispatch(mg_connection* conn, void* self) {
  return static_cast<MetadataSimulator*>(self)->Handle(conn);
}

void MetadataSimulator::Changed() {
  ++azure_incarnation_;
  changed_cv_.notify_all();
}

bool MetadataSimulator::TakeFault(const std::string& path, Fault* fault) {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& [prefix, f, count] : faults_) {
    if (count > 0 && path.rfind(prefix, 0) == 0) {
      --count;
      *fault = f;
      return true;
    }
  }
  return false;
}

int MetadataSimulator::Handle(mg_connection* conn) {
  ++requests_;
  const mg_request_info* ri = mg_get_request_info(conn);
  const std::string method = ri->request_method;
  const std::string path = ri->local_uri != nullptr ? ri->local_uri : "/";
  const std::string query = ri->query_string != nullptr ? ri->query_string : "";
  std::string body;
  char buf[4096];
  for (int n; (n = mg_read(conn, buf, sizeof buf)) > 0;) body.append(buf, static_cast<size_t>(n));

  Reply reply;
  Fault fault{};
  bool faulted = path.rfind("/_sim/", 0) != 0 && TakeFault(path, &fault);
  if (faulted && fault == Fault::kCut) {
    // Promise a body and hang up half-way: what a dropped connection looks like to the client.
    mg_printf(conn, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\nConnection: close\r\n\r\nTR");
    return 1;
  }
  if (faulted && fault == Fault::kSlow) std::this_thread::sleep_for(std::chrono::seconds(3));
  if (faulted && fault == Fault::k500) {
    reply = {500, "Internal Server Error", {}};
  } else if (faulted && fault == Fault::k401) {
    reply = {401, "", {}};
  } else if (path.rfind("/_sim/", 0) == 0) {
    std::map<std::string, std::string> params;
    for (absl::string_view kv : absl::StrSplit(query, '&', absl::SkipEmpty())) {
      std::pair<std::string, std::string> p = absl::StrSplit(kv, absl::MaxSplits('=', 1));
      char decoded[1024];
      mg_url_decode(p.second.c_str(), static_cast<int>(p.second.size()), decoded, sizeof decoded,
                    1);
      params[p.first] = decoded;
    }
    reply = Control(path.substr(6), params);
  } else if (options_.cloud == "aws") {
    reply = Aws(method, path, conn);
  } else if (options_.cloud == "gcp") {
    reply = Gcp(path, query, conn);
  } else if (options_.cloud == "azure") {
    reply = Azure(method, path + (query.empty() ? "" : "?" + query), body, conn);
  } else {
    reply = DigitalOcean(path);
  }
  if (faulted && fault == Fault::kMalformed && reply.status == 200) reply.body = "{\"not json";
  if (faulted && fault == Fault::kMalformed && reply.status == 404) {
    reply = {200, "{\"action\": 17, \"time\": [\"garbage\"]}", {}};
  }
  std::string head =
      absl::StrCat("HTTP/1.1 ", reply.status, " ", reply.status == 200 ? "OK" : "Error",
                   "\r\nContent-Length: ", reply.body.size(), "\r\n");
  if (!reply.headers.count("Content-Type")) reply.headers["Content-Type"] = "text/plain";
  for (const auto& [k, v] : reply.headers) absl::StrAppend(&head, k, ": ", v, "\r\n");
  absl::StrAppend(&head, "\r\n");
  mg_write(conn, head.data(), head.size());
  mg_write(conn, reply.body.data(), reply.body.size());
  return reply.status;
}

MetadataSimulator::Reply MetadataSimulator::Aws(const std::string& method, const std::string& path,
                                                mg_connection* conn) {
  std::lock_guard<std::mutex> lock(mu_);
  const int64_t now = NowMs();
  if (path == "/latest/api/token") {
    if (method != "PUT") return {405, "", {}};
    int64_t ttl = 0;
    if (!absl::SimpleAtoi(Header(conn, "X-aws-ec2-metadata-token-ttl-seconds"), &ttl) || ttl < 1 ||
        ttl > 21'600) {
      return {400, "", {}};
    }
    ttl = std::min<int64_t>(ttl, aws_token_max_ttl_);
    std::string token = absl::StrCat("AQAEA", std::mt19937_64(now)() & 0xffffffffffff, "==");
    aws_tokens_[token] = now + ttl * 1000;
    return {200, token, {{"X-aws-ec2-metadata-token-ttl-seconds", std::to_string(ttl)}}};
  }
  std::string token = Header(conn, "X-aws-ec2-metadata-token");
  auto t = aws_tokens_.find(token);
  bool valid = t != aws_tokens_.end() && t->second > now;
  if (!valid && !(token.empty() && options_.aws_allow_imdsv1)) return {401, "", {}};
  const std::string md = "/latest/meta-data/";
  static const std::map<std::string, std::string> kFacts = {
      {"instance-id", "i-0a1b2c3d4e5f60718"},
      {"instance-type", "m5.large"},
      {"placement/availability-zone", "us-east-1a"},
      {"placement/region", "us-east-1"},
      {"instance-life-cycle", "spot"},
      {"local-ipv4", "10.0.1.23"},
      {"public-ipv4", "203.0.113.10"},
      {"local-hostname", "ip-10-0-1-23.ec2.internal"}};
  if (path.rfind(md, 0) != 0) return {404, "Not Found", {}};
  std::string key = path.substr(md.size());
  if (key == "instance-id" && !aws_instance_id_.empty()) return {200, aws_instance_id_, {}};
  if (auto f = kFacts.find(key); f != kFacts.end()) return {200, f->second, {}};
  if (key == "spot/instance-action") {
    if (aws_spot_action_.empty() || now < aws_spot_visible_ms_) return {404, "Not Found", {}};
    nlohmann::json j = {{"action", aws_spot_action_},
                        {"time", Rfc3339(aws_spot_visible_ms_ + aws_spot_window_ms_)}};
    return {200, j.dump(), {{"Content-Type", "application/json"}}};
  }
  if (key == "events/recommendations/rebalance") {
    if (aws_rebalance_visible_ms_ < 0 || now < aws_rebalance_visible_ms_)
      return {404, "Not Found", {}};
    return {
        200, absl::StrCat("{\"noticeTime\": \"", Rfc3339(aws_rebalance_visible_ms_), "\"}"), {}};
  }
  if (key == "events/maintenance/scheduled") {
    if (aws_events_.empty()) return {200, "[]", {}};
    std::ostringstream out;
    out << "[\n";
    bool first = true;
    for (const auto& [id, e] : aws_events_) {
      out << (first ? "" : ",\n") << "  {\n    \"NotBefore\" : \"" << AwsTime(e.not_before)
          << "\",\n    \"Code\" : \"" << e.code << "\",\n    \"Description\" : \"scheduled "
          << e.code << "\",\n    \"EventId\" : \"" << id << "\",\n";
      if (e.not_after > 0) out << "    \"NotAfter\" : \"" << AwsTime(e.not_after) << "\",\n";
      out << "    \"State\" : \"" << e.state << "\"\n  }";
      first = false;
    }
    out << "\n]";
    return {200, out.str(), {}};
  }
  return {404, "Not Found", {}};
}

std::string MetadataSimulator::GcpValue(const std::string& key) {
  static const std::map<std::string, std::string> kFacts = {
      {"instance/id", "4520031799277581759"},
      {"instance/machine-type", "projects/482919395/machineTypes/e2-standard-4"},
      {"instance/zone", "projects/482919395/zones/us-central1-a"},
      {"instance/scheduling/preemptible", "TRUE"},
      {"instance/scheduling/provisioning-model", "SPOT"},
      {"instance/network-interfaces/0/ip", "10.128.0.5"},
      {"instance/network-interfaces/0/access-configs/0/external-ip", "203.0.113.20"},
      {"instance/hostname", "gke-spot-pool-1.us-central1-a.c.example.internal"}};
  if (key == "instance/preempted") return gcp_preempted_ ? "TRUE" : "FALSE";
  if (key == "instance/maintenance-event") return gcp_maintenance_;
  if (key == "instance/scheduling/instance-termination-action") return gcp_termination_action_;
  auto f = kFacts.find(key);
  return f == kFacts.end() ? "" : f->second;
}

MetadataSimulator::Reply MetadataSimulator::Gcp(const std::string& path, const std::string& query,
                                                mg_connection* conn) {
  const std::string prefix = "/computeMetadata/v1/";
  if (Header(conn, "Metadata-Flavor") != "Google") {
    return {403, "Missing Metadata-Flavor:Google header.", {}};
  }
  if (path.rfind(prefix, 0) != 0) return {404, "Not Found", {}};
  std::string key = path.substr(prefix.size());
  std::map<std::string, std::string> params;
  for (absl::string_view kv : absl::StrSplit(query, '&', absl::SkipEmpty())) {
    std::pair<std::string, std::string> p = absl::StrSplit(kv, absl::MaxSplits('=', 1));
    params[p.first] = p.second;
  }
  std::unique_lock<std::mutex> lock(mu_);
  std::string value = GcpValue(key);
  if (value.empty()) return {404, "Not Found", {}};
  if (params["wait_for_change"] == "true") {
    int64_t timeout_sec = 300;
    (void)absl::SimpleAtoi(params["timeout_sec"], &timeout_sec);
    const std::string last = params["last_etag"];
    changed_cv_.wait_for(lock, std::chrono::seconds(timeout_sec),
                         [&] { return stopping_ || EtagOf(GcpValue(key)) != last; });
    value = GcpValue(key);
  }
  return {200,
          value,
          {{"Metadata-Flavor", "Google"},
           {"ETag", EtagOf(value)},
           {"Content-Type", "application/text"}}};
}

MetadataSimulator::Reply MetadataSimulator::Azure(const std::string& method,
                                                  const std::string& path_and_query,
                                                  const std::string& body, mg_connection* conn) {
  if (Header(conn, "Metadata") != "true") {
    return {400, "{\"error\": \"Bad request. Required metadata header not specified\"}", {}};
  }
  std::string path = path_and_query.substr(0, path_and_query.find('?'));
  std::lock_guard<std::mutex> lock(mu_);
  if (path == "/metadata/instance") {
    nlohmann::json j = {
        {"compute",
         {{"vmId", "02aab8a4-74ef-476e-8182-f6d2ba4166a6"},
          {"name", options_.azure_vm_name},
          {"vmSize", "Standard_D4s_v5"},
          {"location", "westeurope"},
          {"zone", "2"},
          {"priority", "Spot"}}},
        {"network",
         {{"interface",
           {{{"ipv4",
              {{"ipAddress",
                {{{"privateIpAddress", "10.240.0.7"}, {"publicIpAddress", ""}}}}}}}}}}}};
    return {200, j.dump(), {{"Content-Type", "application/json"}}};
  }
  if (path != "/metadata/scheduledevents") return {404, "Not Found", {}};
  if (method == "POST") {
    auto j = nlohmann::json::parse(body, nullptr, false);
    if (!j.is_object() || !j.contains("StartRequests") || !j["StartRequests"].is_array()) {
      return {400, "", {}};
    }
    for (const auto& r : j["StartRequests"]) {
      if (r.is_object() && r.contains("EventId") && r["EventId"].is_string()) {
        azure_start_requests_.push_back(r["EventId"]);
      }
    }
    return {200, "", {}};
  }
  nlohmann::json events = nlohmann::json::array();
  for (const auto& [id, e] : azure_events_) {
    events.push_back(
        {{"EventId", id},
         {"EventStatus", e.status},
         {"EventType", e.type},
         {"ResourceType", "VirtualMachine"},
         {"Resources", e.resources},
         {"NotBefore", e.status == "Started" ? "" : Rfc1123(e.not_before)},
         {"Description", e.type == "Preempt" ? "The Spot Virtual Machine is being deleted."
                                             : "Scheduled maintenance."},
         {"EventSource", "Platform"},
         {"DurationInSeconds", e.type == "Freeze" ? 5 : -1}});
  }
  nlohmann::json doc = {{"DocumentIncarnation", azure_incarnation_}, {"Events", events}};
  return {200, doc.dump(), {{"Content-Type", "application/json"}}};
}

MetadataSimulator::Reply MetadataSimulator::DigitalOcean(const std::string& path) {
  if (path == "/metadata/v1/id") return {200, "318240117", {}};
  if (path == "/metadata/v1.json") {
    nlohmann::json j = {{"droplet_id", 318240117},
                        {"hostname", "pool-s2vcpu4gb-x1y2z"},
                        {"region", "fra1"},
                        {"interfaces",
                         {{"public", {{{"ipv4", {{"ip_address", "203.0.113.30"}}}}}},
                          {"private", {{{"ipv4", {{"ip_address", "10.114.0.2"}}}}}}}}};
    return {200, j.dump(), {{"Content-Type", "application/json"}}};
  }
  return {404, "Not Found", {}};
}

MetadataSimulator::Reply MetadataSimulator::Control(
    const std::string& command, const std::map<std::string, std::string>& params) {
  auto get = [&](const std::string& k, const std::string& d = "") {
    auto it = params.find(k);
    return it == params.end() ? d : it->second;
  };
  auto num = [&](const std::string& k, int64_t d) {
    int64_t v = 0;
    return absl::SimpleAtoi(get(k), &v) ? v : d;  // SimpleAtoi zeroes `v` when it fails
  };
  const int64_t now = NowMs();
  if (command == "aws/spot") {
    ArmAwsSpot(get("action", "terminate"), num("at_ms", now), num("window_ms", 120'000));
  } else if (command == "aws/rebalance") {
    ArmAwsRebalance(num("at_ms", now));
  } else if (command == "aws/scheduled") {
    SetAwsScheduledEvent(get("id", "instance-event-0d59937288b749b32"),
                         get("code", "system-reboot"), get("state", "active"),
                         num("not_before_ms", now + 3'600'000), num("not_after_ms", 0));
  } else if (command == "aws/expire-tokens") {
    ExpireAwsTokens();
  } else if (command == "gcp/preempted") {
    SetGcpPreempted(get("value", "TRUE") == "TRUE");
  } else if (command == "gcp/maintenance") {
    SetGcpMaintenance(get("value", "TERMINATE_ON_HOST_MAINTENANCE"));
  } else if (command == "azure/event") {
    std::vector<std::string> resources =
        absl::StrSplit(get("resources", options_.azure_vm_name), ',', absl::SkipEmpty());
    AddAzureEvent(get("id", "C7061BAC-AFDC-4513-B24B-AA5F13A16123"), get("type", "Preempt"),
                  resources, num("not_before_ms", now + 30'000), get("status", "Scheduled"));
  } else if (command == "azure/remove") {
    RemoveAzureEvent(get("id"));
  } else if (command == "fault") {
    static const std::map<std::string, Fault> kFaults = {{"401", Fault::k401},
                                                         {"500", Fault::k500},
                                                         {"slow", Fault::kSlow},
                                                         {"malformed", Fault::kMalformed},
                                                         {"cut", Fault::kCut}};
    auto f = kFaults.find(get("kind"));
    if (f == kFaults.end()) return {400, "kind must be 401|500|slow|malformed|cut\n", {}};
    InjectFault(get("path", "/"), f->second, static_cast<int>(num("count", 1)));
  } else if (command == "clear") {
    Clear();
  } else if (command == "state") {
    std::lock_guard<std::mutex> lock(mu_);
    nlohmann::json j = {{"cloud", options_.cloud},
                        {"requests", requests_.load()},
                        {"last_visible_ms", last_visible_ms_},
                        {"azure_start_requests", azure_start_requests_}};
    return {200, j.dump() + "\n", {{"Content-Type", "application/json"}}};
  } else {
    return {404, "unknown control command\n", {}};
  }
  return {200, "ok\n", {}};
}

void MetadataSimulator::ArmAwsSpot(const std::string& action, int64_t visible_at_ms,
                                   int64_t window_ms) {
  std::lock_guard<std::mutex> lock(mu_);
  aws_spot_action_ = action;
  aws_spot_window_ms_ = window_ms;
  aws_spot_visible_ms_ = visible_at_ms > 0 ? visible_at_ms : NowMs();
  last_visible_ms_ = aws_spot_visible_ms_;
}

void MetadataSimulator::ArmAwsRebalance(int64_t visible_at_ms) {
  std::lock_guard<std::mutex> lock(mu_);
  aws_rebalance_visible_ms_ = visible_at_ms > 0 ? visible_at_ms : NowMs();
  last_visible_ms_ = aws_rebalance_visible_ms_;
}

void MetadataSimulator::SetAwsScheduledEvent(const std::string& id, const std::string& code,
                                             const std::string& state, int64_t not_before_ms,
                                             int64_t not_after_ms) {
  std::lock_guard<std::mutex> lock(mu_);
  aws_events_[id] = {code, state, not_before_ms, not_after_ms};
  last_visible_ms_ = NowMs();
}

void MetadataSimulator::SetAwsTokenMaxTtl(int seconds) {
  std::lock_guard<std::mutex> lock(mu_);
  aws_token_max_ttl_ = seconds;
}

void MetadataSimulator::ExpireAwsTokens() {
  std::lock_guard<std::mutex> lock(mu_);
  aws_tokens_.clear();
}

void MetadataSimulator::SetGcpPreempted(bool preempted) {
  std::lock_guard<std::mutex> lock(mu_);
  gcp_preempted_ = preempted;
  last_visible_ms_ = NowMs();
  Changed();
}

void MetadataSimulator::SetGcpMaintenance(const std::string& value) {
  std::lock_guard<std::mutex> lock(mu_);
  gcp_maintenance_ = value;
  last_visible_ms_ = NowMs();
  Changed();
}

void MetadataSimulator::SetGcpTerminationAction(const std::string& action) {
  std::lock_guard<std::mutex> lock(mu_);
  gcp_termination_action_ = action;
}

void MetadataSimulator::AddAzureEvent(const std::string& id, const std::string& type,
                                      const std::vector<std::string>& resources,
                                      int64_t not_before_ms, const std::string& status) {
  std::lock_guard<std::mutex> lock(mu_);
  azure_events_[id] = {type, status, resources, not_before_ms};
  last_visible_ms_ = NowMs();
  Changed();
}

void MetadataSimulator::RemoveAzureEvent(const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  azure_events_.erase(id);
  Changed();
}

std::vector<std::string> MetadataSimulator::AzureStartRequests() {
  std::lock_guard<std::mutex> lock(mu_);
  return azure_start_requests_;
}

void MetadataSimulator::SetAwsInstanceId(const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  aws_instance_id_ = id;
}

void MetadataSimulator::Clear() {
  std::lock_guard<std::mutex> lock(mu_);
  aws_spot_action_.clear();
  aws_rebalance_visible_ms_ = -1;
  aws_events_.clear();
  gcp_preempted_ = false;
  gcp_maintenance_ = "NONE";
  azure_events_.clear();
  faults_.clear();
  Changed();
}

void MetadataSimulator::InjectFault(const std::string& path_prefix, Fault fault, int count) {
  std::lock_guard<std::mutex> lock(mu_);
  faults_.emplace_back(path_prefix, fault, count);
}

int64_t MetadataSimulator::last_visible_ms() {
  std::lock_guard<std::mutex> lock(mu_);
  return last_visible_ms_;
}

}  // namespace nodewatch::testing
