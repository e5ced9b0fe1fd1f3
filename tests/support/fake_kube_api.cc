#include "tests/support/fake_kube_api.h"

#include <arpa/inet.h>
#include <civetweb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <limits>
#include <random>
#include <regex>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"

namespace nodewatch::testing {
namespace {

using json = nlohmann::json;
// Status bodies keep the API server's field order (kind, apiVersion, metadata, status, message,
// reason, details, code) so that logs and golden comparisons read like the real thing.
using ordered_json = nlohmann::ordered_json;

constexpr int64_t kNever = std::numeric_limits<int64_t>::max();
constexpr char kUnschedulableTaint[] = "node.kubernetes.io/unschedulable";
constexpr char kOptimisticLock[] =
    "the object has been modified; please apply your changes to the latest version and try again";

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string Rfc3339(int64_t ms) {
  time_t s = static_cast<time_t>(ms / 1000);
  tm t{};
  gmtime_r(&s, &t);
  char buf[32];
  strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &t);
  return buf;
}

std::string NewUid() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  const uint64_t hi = (rng() & 0xffffffffffff0fffULL) | 0x4000ULL;              // version 4
  const uint64_t lo = (rng() & 0x3fffffffffffffffULL) | 0x8000000000000000ULL;  // RFC 4122 variant
  char buf[40];
  std::snprintf(buf, sizeof buf, "%08x-%04x-%04x-%04x-%012llx", static_cast<unsigned>(hi >> 32),
                static_cast<unsigned>((hi >> 16) & 0xffff), static_cast<unsigned>(hi & 0xffff),
                static_cast<unsigned>(lo >> 48),
                static_cast<unsigned long long>(lo & 0xffffffffffffULL));
  return buf;
}

// ---- JSON access that never throws on a missing or mistyped field. ----

std::string StrAt(const json& j, const char* pointer) {
  json::json_pointer p(pointer);
  if (!j.contains(p)) return "";
  const json& v = j.at(p);
  return v.is_string() ? v.get<std::string>() : "";
}

int64_t IntAt(const json& j, const char* pointer, int64_t fallback) {
  json::json_pointer p(pointer);
  if (!j.contains(p) || !j.at(p).is_number_integer()) return fallback;
  return j.at(p).get<int64_t>();
}

bool Has(const json& j, const char* pointer) {
  json::json_pointer p(pointer);
  return j.contains(p) && !j.at(p).is_null();
}

std::string Key(const std::string& ns, const std::string& name) { return ns + "/" + name; }

// ---- Replies and metav1.Status bodies (reference §9). ----

struct Reply {
  int status = 200;
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
};

Reply JsonReply(int status, const json& body) { return {status, body.dump(), {}}; }

// A resource as the API server names it in messages: `{plural}[.{group}]`.
struct Resource {
  std::string plural;
  std::string group;
  std::string Qualified() const { return group.empty() ? plural : plural + "." + group; }
};
const Resource kNodes{"nodes", ""};
const Resource kPods{"pods", ""};
const Resource kEvents{"events", ""};
const Resource kLeases{"leases", "coordination.k8s.io"};
const Resource kDaemonSets{"daemonsets", "apps"};
// Delete preconditions name the kind, not the resource (generic registry BeforeDelete).
const Resource kPodKind{"Pod", ""};

ordered_json Details(const std::string& name, const std::string& group, const std::string& kind) {
  ordered_json d = ordered_json::object();
  if (!name.empty()) d["name"] = name;
  if (!group.empty()) d["group"] = group;
  if (!kind.empty()) d["kind"] = kind;
  return d;
}

// A Failure Status. `Retry-After` is sent only when details.retryAfterSeconds > 0, as
// responsewriters.ErrorNegotiated does.
Reply StatusReply(int code, const std::string& reason, const std::string& message,
                  const ordered_json& details = nullptr) {
  ordered_json s = {{"kind", "Status"},
                    {"apiVersion", "v1"},
                    {"metadata", ordered_json::object()},
                    {"status", "Failure"},
                    {"message", message}};
  if (!reason.empty()) s["reason"] = reason;
  if (!details.is_null()) s["details"] = details;
  s["code"] = code;
  Reply reply{code, s.dump(), {}};
  if (details.is_object() && details.contains("retryAfterSeconds") &&
      details["retryAfterSeconds"].get<int>() > 0) {
    reply.headers.emplace_back("Retry-After",
                               std::to_string(details["retryAfterSeconds"].get<int>()));
  }
  return reply;
}

Reply NotFound(const Resource& r, const std::string& name) {
  return StatusReply(404, "NotFound", absl::StrCat(r.Qualified(), " \"", name, "\" not found"),
                     Details(name, r.group, r.plural));
}

Reply NoSuchResource() {
  return StatusReply(404, "NotFound", "the server could not find the requested resource",
                     ordered_json::object());
}

Reply MethodNotAllowed() {
  return StatusReply(405, "MethodNotAllowed",
                     "the server does not allow this method on the requested resource",
                     ordered_json::object());
}

Reply Conflict(const Resource& r, const std::string& name, const std::string& why) {
  return StatusReply(
      409, "Conflict",
      absl::StrCat("Operation cannot be fulfilled on ", r.Qualified(), " \"", name, "\": ", why),
      Details(name, r.group, r.plural));
}

Reply AlreadyExists(const Resource& r, const std::string& name) {
  return StatusReply(409, "AlreadyExists",
                     absl::StrCat(r.Qualified(), " \"", name, "\" already exists"),
                     Details(name, r.group, r.plural));
}

Reply BadRequest(const std::string& message) { return StatusReply(400, "BadRequest", message); }

Reply Unauthorized() { return StatusReply(401, "Unauthorized", "Unauthorized"); }

// One field error of an Invalid (422) Status: `cause_reason` is the field.ErrorType
// (FieldValueInvalid, FieldValueRequired, ...), `body` its rendering ("Invalid value: 0: ...").
struct FieldError {
  std::string cause_reason;
  std::string field;
  std::string body;
};

// apierrors.NewInvalid(GroupKind{group, kind}, name, {error}).
Reply Invalid(const std::string& kind, const std::string& group, const std::string& name,
              const FieldError& e) {
  ordered_json details = Details(name, group, kind);
  details["causes"] =
      ordered_json::array({{{"reason", e.cause_reason}, {"message", e.body}, {"field", e.field}}});
  const std::string qualified = group.empty() ? kind : kind + "." + group;
  return StatusReply(422, "Invalid",
                     absl::StrCat(qualified, " \"", name, "\" is invalid: ", e.field, ": ", e.body),
                     details);
}

Reply Undecodable(const std::string& kind) {
  return BadRequest(absl::StrCat("the object provided is unrecognized (must be of type ", kind,
                                 "): couldn't get version/kind; json parse error"));
}

// The eviction refusals of pkg/registry/core/pod/storage/eviction.go.
Reply PdbTooManyRequests(const std::string& cause, int retry_after_seconds) {
  ordered_json details = ordered_json::object();
  details["causes"] = ordered_json::array({{{"reason", "DisruptionBudget"}, {"message", cause}}});
  if (retry_after_seconds > 0) details["retryAfterSeconds"] = retry_after_seconds;
  return StatusReply(429, "TooManyRequests",
                     "Cannot evict pod as it would violate the pod's disruption budget.", details);
}

Reply EvictionCreated() {
  ordered_json s = {{"kind", "Status"},
                    {"apiVersion", "v1"},
                    {"metadata", ordered_json::object()},
                    {"status", "Success"},
                    {"code", 201}};
  return {201, s.dump(), {}};
}

// What a fault without a body answers: the messages client-go's NewGenericServerResponse uses.
Reply FaultReply(const FakeKubeApi::Fault& fault) {
  if (!fault.body.empty()) {
    Reply reply{fault.status, fault.body, {}};
    if (fault.retry_after_seconds > 0) {
      reply.headers.emplace_back("Retry-After", std::to_string(fault.retry_after_seconds));
    }
    return reply;
  }
  static const std::map<int, std::pair<const char*, const char*>> kGeneric = {
      {400, {"BadRequest", "the server rejected our request for an unknown reason"}},
      {401, {"Unauthorized", "Unauthorized"}},
      {403, {"Forbidden", "forbidden: injected fault"}},
      {404, {"NotFound", "the server could not find the requested resource"}},
      {409, {"Conflict", "the server reported a conflict"}},
      {410, {"Expired", "the resource has expired"}},
      {422, {"Invalid", "the server rejected our request due to an error in our request"}},
      {429,
       {"TooManyRequests",
        "the server has received too many requests and has asked us to try again later"}},
      {503, {"ServiceUnavailable", "the server is currently unable to handle the request"}},
      {504,
       {"Timeout",
        "the server was unable to return a response in the time allotted, but may still be "
        "processing the request"}}};
  std::string reason = "InternalError";
  std::string message =
      "an error on the server (\"injected fault\") has prevented the request from succeeding";
  if (auto it = kGeneric.find(fault.status); it != kGeneric.end()) {
    reason = it->second.first;
    message = it->second.second;
  }
  ordered_json details = ordered_json::object();
  if (fault.retry_after_seconds > 0) details["retryAfterSeconds"] = fault.retry_after_seconds;
  return StatusReply(fault.status, reason, message, details);
}

// ---- Patches (apiserver handlers/patch.go). ----

constexpr char kStrategicMerge[] = "application/strategic-merge-patch+json";
constexpr char kMergePatch[] = "application/merge-patch+json";
constexpr char kJsonPatch[] = "application/json-patch+json";

std::string MediaType(const std::string& content_type) {
  std::string media = content_type.substr(0, content_type.find(';'));
  return absl::AsciiStrToLower(absl::StripAsciiWhitespace(media));
}

// Lists that a strategic merge patch merges element by element (patchStrategy=merge), keyed by
// patchMergeKey; "" merges a list of scalars as a set. Every other list is replaced whole, which
// is what makes `spec.taints` (+listType=atomic, no merge key) lose concurrent additions.
const std::map<std::string, std::string>& MergeLists() {
  static const auto* lists =
      new std::map<std::string, std::string>{{"metadata.finalizers", ""},
                                             {"metadata.ownerReferences", "uid"},
                                             {"spec.podCIDRs", ""},
                                             {"status.addresses", "type"},
                                             {"status.conditions", "type"}};
  return *lists;
}

json StrategicMerge(json original, const json& patch, const std::string& path);

json MergeList(json original, const json& patch, const std::string& merge_key,
               const std::string& path) {
  if (!original.is_array()) original = json::array();
  if (merge_key.empty()) {
    for (const json& v : patch) {
      if (std::find(original.begin(), original.end(), v) == original.end()) original.push_back(v);
    }
    return original;
  }
  for (const json& item : patch) {
    if (!item.is_object()) continue;
    if (item.value("$patch", "") == "replace") {  // the rest of the patch list is the new list
      json replaced = json::array();
      for (const json& other : patch) {
        if (other.is_object() && !other.contains("$patch")) replaced.push_back(other);
      }
      return replaced;
    }
  }
  for (const json& item : patch) {
    if (!item.is_object() || !item.contains(merge_key)) continue;
    auto same = std::find_if(original.begin(), original.end(), [&](const json& e) {
      return e.is_object() && e.contains(merge_key) && e[merge_key] == item[merge_key];
    });
    if (item.value("$patch", "") == "delete") {
      if (same != original.end()) original.erase(same);
    } else if (same != original.end()) {
      *same = StrategicMerge(*same, item, path);
    } else {
      original.push_back(StrategicMerge(json::object(), item, path));
    }
  }
  return original;
}

// Strategic merge patch for the core types this fake serves (Node, Event): maps merge, null
// deletes, `$patch: replace|delete`, `$retainKeys`, `$deleteFromPrimitiveList/<field>`;
// `$setElementOrder/<field>` only orders, and is ignored.
json StrategicMerge(json original, const json& patch, const std::string& path) {
  if (!patch.is_object()) return patch;
  if (patch.value("$patch", "") == "replace") {
    json replaced = patch;
    replaced.erase("$patch");
    return replaced;
  }
  if (!original.is_object()) original = json::object();
  if (patch.contains("$retainKeys") && patch["$retainKeys"].is_array()) {
    const json& keep = patch["$retainKeys"];
    for (auto it = original.begin(); it != original.end();) {
      it = std::find(keep.begin(), keep.end(), it.key()) == keep.end() ? original.erase(it)
                                                                       : std::next(it);
    }
  }
  for (const auto& [key, value] : patch.items()) {
    if (key == "$patch" || key == "$retainKeys" || absl::StartsWith(key, "$setElementOrder/")) {
      continue;
    }
    if (absl::StartsWith(key, "$deleteFromPrimitiveList/")) {
      const std::string field = key.substr(key.find('/') + 1);
      if (original.contains(field) && original[field].is_array() && value.is_array()) {
        json& list = original[field];
        for (const json& gone : value) {
          list.erase(std::remove(list.begin(), list.end(), gone), list.end());
        }
      }
      continue;
    }
    const std::string child = path.empty() ? key : path + "." + key;
    if (value.is_null() || (value.is_object() && value.value("$patch", "") == "delete")) {
      original.erase(key);
    } else if (value.is_object()) {
      original[key] =
          StrategicMerge(original.contains(key) ? original[key] : json::object(), value, child);
    } else if (auto list = MergeLists().find(child);
               value.is_array() && list != MergeLists().end()) {
      original[key] = MergeList(original.contains(key) ? original[key] : json::array(), value,
                                list->second, child);
    } else {
      original[key] = value;
    }
  }
  return original;
}

// Applies a PATCH body to `object`; returns the error Status, if any.
std::optional<Reply> ApplyPatch(const std::string& content_type, const std::string& body,
                                json* object) {
  const std::string media = MediaType(content_type);
  if (media != kStrategicMerge && media != kMergePatch && media != kJsonPatch) {
    return StatusReply(415, "UnsupportedMediaType",
                       absl::StrCat("the body of the request was in an unknown format - accepted "
                                    "media types include: ",
                                    kJsonPatch, ", ", kMergePatch, ", ",
                                    "application/apply-patch+yaml, ", kStrategicMerge));
  }
  json patch = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (patch.is_discarded()) return BadRequest("error decoding patch: invalid JSON");
  if (media == kJsonPatch) {
    if (!patch.is_array()) {
      return BadRequest("json: cannot unmarshal object into Go value of type jsonpatch.Patch");
    }
    try {
      *object = object->patch(patch);
    } catch (const json::exception&) {
      // jsonpatch Apply errors, a failed `test` included: NewGenericServerResponse(422, ...).
      return StatusReply(422, "Invalid",
                         "the server rejected our request due to an error in our request",
                         ordered_json::object());
    }
  } else if (media == kMergePatch) {
    object->merge_patch(patch);
  } else {
    if (!patch.is_object()) return BadRequest("unable to find api field in struct for the patch");
    *object = StrategicMerge(*object, patch, "");
  }
  if (!object->is_object() ||
      (object->contains("metadata") && !(*object)["metadata"].is_object())) {
    return StatusReply(422, "Invalid",
                       "the server rejected our request due to an error in our request",
                       ordered_json::object());
  }
  return std::nullopt;
}

// Keeps what a client cannot change through a write (identity and bookkeeping).
void KeepSystemFields(const json& current, json* updated) {
  for (const char* field : {"kind", "apiVersion"}) {
    if (current.contains(field)) (*updated)[field] = current.at(field);
  }
  const json& old_meta = current.at("metadata");
  json& meta = (*updated)["metadata"];
  for (const char* field : {"name", "namespace", "uid", "creationTimestamp", "resourceVersion",
                            "deletionTimestamp", "deletionGracePeriodSeconds"}) {
    if (old_meta.contains(field)) {
      meta[field] = old_meta.at(field);
    } else if (meta.is_object()) {
      meta.erase(field);
    }
  }
}

// ---- Label and field selectors. ----

struct LabelRequirement {
  enum class Op { kEquals, kNotEquals, kIn, kNotIn, kExists, kDoesNotExist };
  std::string key;
  Op op = Op::kExists;
  std::set<std::string> values;

  bool Matches(const json& labels) const {
    const bool has = labels.is_object() && labels.contains(key) && labels[key].is_string();
    const std::string value = has ? labels[key].get<std::string>() : "";
    switch (op) {
      case Op::kEquals:
      case Op::kIn:
        return has && values.count(value) > 0;
      case Op::kNotEquals:
      case Op::kNotIn:
        return !has || values.count(value) == 0;
      case Op::kExists:
        return has;
      case Op::kDoesNotExist:
        return !has;
    }
    return false;
  }
};

// Splits on commas outside parentheses: "a in (x,y),b" -> {"a in (x,y)", "b"}.
std::vector<std::string> SplitTerms(absl::string_view text) {
  std::vector<std::string> terms;
  std::string current;
  int depth = 0;
  for (char ch : text) {
    if (ch == '(') ++depth;
    if (ch == ')') --depth;
    if (ch == ',' && depth == 0) {
      terms.push_back(current);
      current.clear();
    } else {
      current += ch;
    }
  }
  if (!current.empty() || !terms.empty()) terms.push_back(current);
  return terms;
}

std::optional<LabelRequirement> ParseLabelTerm(absl::string_view term) {
  using Op = LabelRequirement::Op;
  term = absl::StripAsciiWhitespace(term);
  LabelRequirement r;
  auto set_values = [&](absl::string_view list) {
    list = absl::StripAsciiWhitespace(list);
    if (list.size() < 2 || list.front() != '(' || list.back() != ')') return false;
    for (absl::string_view v : absl::StrSplit(list.substr(1, list.size() - 2), ',')) {
      r.values.insert(std::string(absl::StripAsciiWhitespace(v)));
    }
    return true;
  };
  size_t pos;
  bool ok = true;
  if (!term.empty() && term[0] == '!') {
    r.op = Op::kDoesNotExist;
    r.key = std::string(absl::StripAsciiWhitespace(term.substr(1)));
  } else if ((pos = term.find(" notin ")) != term.npos) {
    r.op = Op::kNotIn;
    r.key = std::string(term.substr(0, pos));
    ok = set_values(term.substr(pos + 7));
  } else if ((pos = term.find(" in ")) != term.npos) {
    r.op = Op::kIn;
    r.key = std::string(term.substr(0, pos));
    ok = set_values(term.substr(pos + 4));
  } else if ((pos = term.find("!=")) != term.npos) {
    r.op = Op::kNotEquals;
    r.key = std::string(term.substr(0, pos));
    r.values.insert(std::string(absl::StripAsciiWhitespace(term.substr(pos + 2))));
  } else if ((pos = term.find('=')) != term.npos) {
    r.op = Op::kEquals;
    r.key = std::string(term.substr(0, pos));
    const size_t value_at = term.substr(pos + 1, 1) == "=" ? pos + 2 : pos + 1;
    r.values.insert(std::string(absl::StripAsciiWhitespace(term.substr(value_at))));
  } else {
    r.key = std::string(term);
  }
  r.key = std::string(absl::StripAsciiWhitespace(r.key));
  if (!ok || r.key.empty() || absl::StrContains(r.key, ' ')) return std::nullopt;
  return r;
}

struct FieldRequirement {
  std::string pointer;  // JSON pointer of the field in the object
  std::string value;
  bool negate = false;
};

// A parsed `?labelSelector=&fieldSelector=` pair; `error` is set when either did not parse.
struct Selectors {
  std::vector<LabelRequirement> labels;
  std::vector<FieldRequirement> fields;
  std::optional<Reply> error;

  bool Matches(const json& object) const {
    const json labels_json =
        Has(object, "/metadata/labels") ? object["metadata"]["labels"] : json();
    for (const LabelRequirement& r : labels) {
      if (!r.Matches(labels_json)) return false;
    }
    for (const FieldRequirement& f : fields) {
      if ((StrAt(object, f.pointer.c_str()) == f.value) == f.negate) return false;
    }
    return true;
  }
};

Selectors ParseSelectors(const std::map<std::string, std::string>& query,
                         const std::map<std::string, std::string>& supported_fields) {
  Selectors s;
  if (auto it = query.find("labelSelector"); it != query.end()) {
    for (const std::string& term : SplitTerms(it->second)) {
      std::optional<LabelRequirement> r = ParseLabelTerm(term);
      if (!r) {
        s.error = BadRequest(absl::StrCat("unable to parse requirement: ", term));
        return s;
      }
      s.labels.push_back(*r);
    }
  }
  if (auto it = query.find("fieldSelector"); it != query.end()) {
    for (const std::string& term : SplitTerms(it->second)) {
      const size_t eq = term.find('=');
      if (eq == std::string::npos || eq == 0) {
        s.error = BadRequest(
            absl::StrCat("invalid selector: '", term, "'; can't understand '", term, "'"));
        return s;
      }
      const bool negate = term[eq - 1] == '!';
      const std::string label(absl::StripAsciiWhitespace(term.substr(0, negate ? eq - 1 : eq)));
      const size_t value_at = term.compare(eq, 2, "==") == 0 ? eq + 2 : eq + 1;
      auto field = supported_fields.find(label);
      if (field == supported_fields.end()) {
        s.error = BadRequest(absl::StrCat("field label not supported: ", label));
        return s;
      }
      s.fields.push_back({field->second, term.substr(value_at), negate});
    }
  }
  return s;
}

// ---- DeleteOptions, JSON or protobuf. ----

struct DeleteOptions {
  std::optional<int64_t> grace_seconds;
  std::string precondition_uid;
  std::string precondition_rv;
  bool dry_run = false;
};

bool ParseDeleteOptionsJson(const json& j, DeleteOptions* out) {
  if (j.is_null()) return true;
  if (!j.is_object()) return false;
  if (j.contains("gracePeriodSeconds") && j["gracePeriodSeconds"].is_number_integer()) {
    out->grace_seconds = j["gracePeriodSeconds"].get<int64_t>();
  }
  out->precondition_uid = StrAt(j, "/preconditions/uid");
  out->precondition_rv = StrAt(j, "/preconditions/resourceVersion");
  if (j.contains("dryRun") && j["dryRun"].is_array()) {
    out->dry_run = std::find(j["dryRun"].begin(), j["dryRun"].end(), "All") != j["dryRun"].end();
  }
  return true;
}

// Protobuf wire-format reader, just enough for the `k8s\0` envelope (runtime.Unknown) that
// modern kubectl sends as a DELETE body.
class ProtoReader {
 public:
  explicit ProtoReader(absl::string_view data) : data_(data) {}
  bool done() const { return pos_ >= data_.size(); }
  // Reads the next field; a varint field sets `varint`, a length-delimited one `bytes`.
  bool Next(uint64_t* field, uint64_t* varint, absl::string_view* bytes) {
    uint64_t tag;
    if (!Varint(&tag)) return false;
    *field = tag >> 3;
    switch (tag & 7) {
      case 0:
        return Varint(varint);
      case 1:
      case 5: {
        const size_t width = (tag & 7) == 1 ? 8 : 4;
        if (data_.size() - pos_ < width) return false;
        pos_ += width;
        return true;
      }
      case 2: {
        uint64_t size;
        if (!Varint(&size) || size > data_.size() - pos_) return false;
        *bytes = data_.substr(pos_, size);
        pos_ += size;
        return true;
      }
      default:
        return false;
    }
  }

 private:
  bool Varint(uint64_t* value) {
    *value = 0;
    for (int shift = 0; shift < 64 && pos_ < data_.size(); shift += 7) {
      const auto byte = static_cast<uint8_t>(data_[pos_++]);
      *value |= static_cast<uint64_t>(byte & 0x7f) << shift;
      if ((byte & 0x80) == 0) return true;
    }
    return false;
  }
  absl::string_view data_;
  size_t pos_ = 0;
};

// DeleteOptions fields: 1 gracePeriodSeconds, 2 preconditions{1 uid, 2 resourceVersion},
// 5 dryRun (repeated). runtime.Unknown: 1 typeMeta, 2 raw.
bool ParseDeleteOptionsProto(absl::string_view body, DeleteOptions* out) {
  constexpr absl::string_view kMagic("k8s\0", 4);
  if (!absl::StartsWith(body, kMagic)) return false;
  ProtoReader envelope(body.substr(kMagic.size()));
  absl::string_view raw;
  while (!envelope.done()) {
    uint64_t field = 0, varint = 0;
    absl::string_view bytes;
    if (!envelope.Next(&field, &varint, &bytes)) return false;
    if (field == 2) raw = bytes;
  }
  ProtoReader options(raw);
  while (!options.done()) {
    uint64_t field = 0, varint = 0;
    absl::string_view bytes;
    if (!options.Next(&field, &varint, &bytes)) return false;
    if (field == 1) out->grace_seconds = static_cast<int64_t>(varint);
    if (field == 5 && bytes == "All") out->dry_run = true;
    if (field == 2) {
      ProtoReader preconditions(bytes);
      while (!preconditions.done()) {
        uint64_t inner = 0, unused = 0;
        absl::string_view text;
        if (!preconditions.Next(&inner, &unused, &text)) return false;
        if (inner == 1) out->precondition_uid = std::string(text);
        if (inner == 2) out->precondition_rv = std::string(text);
      }
    }
  }
  return true;
}

// ---- Pods. ----

bool IsTerminal(const json& pod) {
  const std::string phase = StrAt(pod, "/status/phase");
  return phase == "Succeeded" || phase == "Failed";
}

bool IsReady(const json& pod) {
  if (!Has(pod, "/status/conditions") || !pod["status"]["conditions"].is_array()) return false;
  for (const json& c : pod["status"]["conditions"]) {
    if (StrAt(c, "/type") == "Ready") return StrAt(c, "/status") == "True";
  }
  return false;
}

json WithoutTypeMeta(json item) {
  item.erase("kind");
  item.erase("apiVersion");
  return item;
}

bool Unschedulable(const json& node) {
  json::json_pointer p("/spec/unschedulable");
  return node.contains(p) && node.at(p).is_boolean() && node.at(p).get<bool>();
}

const std::map<std::string, std::string>& PodFields() {
  static const auto* fields = new std::map<std::string, std::string>{
      {"metadata.name", "/metadata/name"},
      {"metadata.namespace", "/metadata/namespace"},
      {"spec.nodeName", "/spec/nodeName"},
      {"spec.restartPolicy", "/spec/restartPolicy"},
      {"spec.schedulerName", "/spec/schedulerName"},
      {"spec.serviceAccountName", "/spec/serviceAccountName"},
      {"status.phase", "/status/phase"},
      {"status.podIP", "/status/podIP"},
      {"status.nominatedNodeName", "/status/nominatedNodeName"}};
  return *fields;
}

std::string OwnerApiVersion(const std::string& kind) {
  if (kind == "ReplicaSet" || kind == "DaemonSet" || kind == "StatefulSet" ||
      kind == "Deployment") {
    return "apps/v1";
  }
  if (kind == "Job" || kind == "CronJob") return "batch/v1";
  return "v1";
}

// ---- Discovery documents (legacy, non-aggregated: what kubectl falls back to). ----

json ResourceEntry(const std::string& name, const std::string& kind, bool namespaced,
                   std::vector<std::string> verbs) {
  const bool subresource = absl::StrContains(name, '/');
  return {{"name", name},
          {"singularName", subresource ? "" : absl::AsciiStrToLower(kind)},
          {"namespaced", namespaced},
          {"kind", kind},
          {"verbs", verbs}};
}

const std::vector<std::string> kAllVerbs = {"create", "delete", "deletecollection", "get",
                                            "list",   "patch",  "update",           "watch"};

std::optional<json> GroupResources(const std::string& group_version, bool eviction_supported) {
  json resources = json::array();
  if (group_version == "v1") {
    resources.push_back(ResourceEntry("events", "Event", true, kAllVerbs));
    resources.push_back(ResourceEntry("nodes", "Node", false, kAllVerbs));
    resources.push_back(ResourceEntry("nodes/status", "Node", false, {"get", "patch", "update"}));
    resources.push_back(ResourceEntry("pods", "Pod", true, kAllVerbs));
    if (eviction_supported) {
      json eviction = ResourceEntry("pods/eviction", "Eviction", true, {"create"});
      eviction["group"] = "policy";
      eviction["version"] = "v1";
      resources.push_back(eviction);
    }
    resources.push_back(ResourceEntry("pods/status", "Pod", true, {"get", "patch", "update"}));
  } else if (group_version == "apps/v1") {
    resources.push_back(ResourceEntry("daemonsets", "DaemonSet", true, kAllVerbs));
  } else if (group_version == "policy/v1" || group_version == "policy/v1beta1") {
    resources.push_back(
        ResourceEntry("poddisruptionbudgets", "PodDisruptionBudget", true, kAllVerbs));
  } else if (group_version == "coordination.k8s.io/v1") {
    resources.push_back(ResourceEntry("leases", "Lease", true, kAllVerbs));
  } else if (group_version == "events.k8s.io/v1") {
    resources.push_back(ResourceEntry("events", "Event", true, kAllVerbs));
  } else {
    return std::nullopt;
  }
  return json{{"kind", "APIResourceList"},
              {"apiVersion", "v1"},
              {"groupVersion", group_version},
              {"resources", resources}};
}

json GroupList() {
  json groups = json::array();
  const std::vector<std::pair<std::string, std::vector<std::string>>> kGroups = {
      {"apps", {"v1"}},
      {"events.k8s.io", {"v1"}},
      {"policy", {"v1", "v1beta1"}},
      {"coordination.k8s.io", {"v1"}}};
  for (const auto& [name, versions] : kGroups) {
    json list = json::array();
    for (const std::string& v : versions) {
      list.push_back({{"groupVersion", name + "/" + v}, {"version", v}});
    }
    groups.push_back({{"name", name}, {"versions", list}, {"preferredVersion", list[0]}});
  }
  return {{"kind", "APIGroupList"}, {"apiVersion", "v1"}, {"groups", groups}};
}

// civetweb's master thread sees mg_stop() only when its poll() of the listening socket returns,
// which takes up to 2 s on an idle server; connecting wakes it, so Stop() takes milliseconds.
void KnockUntil(int port, const std::atomic<bool>& done) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  while (!done.load()) {
    const int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd >= 0) {
      (void)connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr);
      close(fd);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

std::string Header(mg_connection* conn, const char* name) {
  const char* v = mg_get_header(conn, name);
  return v != nullptr ? v : "";
}

std::map<std::string, std::string> ParseQuery(const std::string& query) {
  std::map<std::string, std::string> params;
  for (absl::string_view kv : absl::StrSplit(query, '&', absl::SkipEmpty())) {
    std::pair<std::string, std::string> p = absl::StrSplit(kv, absl::MaxSplits('=', 1));
    std::string decoded(p.second.size() + 1, '\0');
    const int n = mg_url_decode(p.second.c_str(), static_cast<int>(p.second.size()), decoded.data(),
                                static_cast<int>(decoded.size()), 1);
    decoded.resize(n > 0 ? static_cast<size_t>(n) : 0);
    params[p.first] = decoded;
  }
  return params;
}

// One HTTP call, parsed.
struct Call {
  std::string method;
  std::string content_type;
  const std::string* body = nullptr;
  std::map<std::string, std::string> query;
  std::vector<std::string> segments;  // the path split at '/'

  bool DryRun() const {
    auto it = query.find("dryRun");
    return it != query.end() && it->second == "All";
  }
  bool Watch() const {
    auto it = query.find("watch");
    return it != query.end() && (it->second == "true" || it->second == "1");
  }
};

}  // namespace

// ---- The state behind the server: one mutex over everything. ----

struct FakeKubeApi::State {
  explicit State(const Options& o) : options(o), valid_tokens(o.valid_tokens) {}

  struct Termination {  // a graceful delete the kubelet simulator will complete
    std::string uid;
    int64_t started_ms = 0;
    int64_t due_ms = kNever;
  };
  struct NodeWriteHook {
    std::function<void(json&)> mutate;
    bool get_served = false;
  };
  struct ArmedFault {
    Fault fault;
    std::regex path;
  };

  const Options& options;
  std::mutex mu;
  std::condition_variable journal_cv;  // a request was journaled
  std::condition_variable timer_cv;    // new simulator work, or stopping
  bool stopping = false;
  std::thread simulator;

  int64_t resource_version = 1000;
  std::map<std::string, json> nodes;
  std::map<std::string, json> pods;  // by namespace/name
  std::map<std::string, PodBehaviour> behaviours;
  std::map<std::string, Termination> terminations;
  std::map<std::string, int64_t> lifecycle_due;  // node -> when the controller reconciles it
  std::map<std::string, json> daemonsets;
  std::map<std::string, json> leases;
  std::vector<json> events;  // in creation order
  std::map<std::string, Pdb> pdbs;
  std::set<std::string> terminating_namespaces;
  std::set<std::string> valid_tokens;
  std::map<std::string, NodeWriteHook> node_write_hooks;
  bool eviction_supported = true;
  std::vector<ArmedFault> faults;
  std::vector<Request> journal;

  std::string NextRv() { return std::to_string(++resource_version); }

  void Stamp(json* object) {
    json& meta = (*object)["metadata"];
    if (!meta.contains("uid")) meta["uid"] = NewUid();
    if (!meta.contains("creationTimestamp")) meta["creationTimestamp"] = Rfc3339(NowMs());
    meta["resourceVersion"] = NextRv();
  }

  // ---- Simulators. ----

  int64_t KubeletDelayMs(const std::string& key, int64_t grace_seconds) const {
    auto b = behaviours.find(key);
    const PodBehaviour behaviour = b != behaviours.end() ? b->second : PodBehaviour{};
    if (behaviour.stuck) return kNever;
    // The kubelet kills the containers when the grace period ends, whatever they were doing.
    const int64_t work =
        behaviour.termination_ms >= 0 ? behaviour.termination_ms : options.max_termination_ms;
    return std::min(grace_seconds * 1000, work);
  }

  void ScheduleTermination(const std::string& key, const json& pod, int64_t started_ms,
                           int64_t grace_seconds) {
    const int64_t delay = KubeletDelayMs(key, grace_seconds);
    const int64_t due = delay == kNever ? kNever : started_ms + delay;
    auto [it, fresh] =
        terminations.try_emplace(key, Termination{StrAt(pod, "/metadata/uid"), started_ms, due});
    if (!fresh) it->second.due_ms = std::min(it->second.due_ms, due);
    timer_cv.notify_all();
  }

  // Removes a pod from storage; a `recreate_same_name` pod comes back at once with a new uid,
  // the way a StatefulSet controller recreates it.
  void RemovePod(const std::string& key) {
    auto it = pods.find(key);
    if (it == pods.end()) return;
    json gone = std::move(it->second);
    pods.erase(it);
    terminations.erase(key);
    ++resource_version;
    auto b = behaviours.find(key);
    if (b == behaviours.end() || !b->second.recreate_same_name) return;
    json& meta = gone["metadata"];
    for (const char* field :
         {"deletionTimestamp", "deletionGracePeriodSeconds", "uid", "creationTimestamp"}) {
      meta.erase(field);
    }
    meta["generation"] = 1;
    if (Has(gone, "/status/conditions")) {
      json& conditions = gone["status"]["conditions"];
      conditions.erase(
          std::remove_if(conditions.begin(), conditions.end(),
                         [](const json& c) { return StrAt(c, "/type") == "DisruptionTarget"; }),
          conditions.end());
    }
    Stamp(&gone);
    pods[key] = std::move(gone);
  }

  void ScheduleLifecycle(const std::string& node) {
    if (!options.node_lifecycle_controller) return;
    lifecycle_due[node] = NowMs() + options.node_lifecycle_delay_ms;
    timer_cv.notify_all();
  }

  // What the node lifecycle controller does: the unschedulable taint follows spec.unschedulable.
  void ReconcileUnschedulableTaint(const std::string& name, int64_t now) {
    auto it = nodes.find(name);
    if (it == nodes.end()) return;
    json& node = it->second;
    json taints = Has(node, "/spec/taints") ? node["spec"]["taints"] : json::array();
    auto tainted = [](const json& t) { return StrAt(t, "/key") == kUnschedulableTaint; };
    const bool has_taint = std::any_of(taints.begin(), taints.end(), tainted);
    if (Unschedulable(node) == has_taint) return;
    if (has_taint) {
      taints.erase(std::remove_if(taints.begin(), taints.end(), tainted), taints.end());
    } else {
      taints.push_back(
          {{"key", kUnschedulableTaint}, {"effect", "NoSchedule"}, {"timeAdded", Rfc3339(now)}});
    }
    if (taints.empty()) {
      node["spec"].erase("taints");
    } else {
      node["spec"]["taints"] = taints;
    }
    node["metadata"]["resourceVersion"] = NextRv();
  }

  // Completes what is due; called by the simulator thread and before serving anything, so the
  // state a client sees never lags behind the clock.
  void RunDueWork() {
    const int64_t now = NowMs();
    for (auto it = terminations.begin(); it != terminations.end();) {
      if (it->second.due_ms > now) {
        ++it;
        continue;
      }
      const std::string key = it->first, uid = it->second.uid;
      it = terminations.erase(it);
      auto pod = pods.find(key);
      if (pod != pods.end() && StrAt(pod->second, "/metadata/uid") == uid) RemovePod(key);
    }
    for (auto it = lifecycle_due.begin(); it != lifecycle_due.end();) {
      if (it->second > now) {
        ++it;
        continue;
      }
      ReconcileUnschedulableTaint(it->first, now);
      it = lifecycle_due.erase(it);
    }
  }

  int64_t NextDueMs() const {
    int64_t next = kNever;
    for (const auto& [key, t] : terminations) next = std::min(next, t.due_ms);
    for (const auto& [node, due] : lifecycle_due) next = std::min(next, due);
    return next;
  }

  void SimulatorLoop() {
    std::unique_lock<std::mutex> lock(mu);
    while (!stopping) {
      RunDueWork();
      const int64_t next = NextDueMs();
      if (next == kNever) {
        timer_cv.wait(lock);
      } else {
        timer_cv.wait_for(lock, std::chrono::milliseconds(std::max<int64_t>(1, next - NowMs())));
      }
    }
  }

  // ---- Faults, auth, journal. ----

  std::optional<Fault> TakeFault(const std::string& method, const std::string& path) {
    std::lock_guard<std::mutex> lock(mu);
    for (ArmedFault& armed : faults) {
      if (armed.fault.count <= 0) continue;
      if (!armed.fault.method.empty() && armed.fault.method != method) continue;
      if (!std::regex_search(path, armed.path)) continue;
      --armed.fault.count;
      return armed.fault;
    }
    return std::nullopt;
  }

  bool Authorized(const std::string& authorization) const {
    if (valid_tokens.empty()) return true;
    constexpr absl::string_view kBearer = "Bearer ";
    return absl::StartsWith(authorization, kBearer) &&
           valid_tokens.count(authorization.substr(kBearer.size())) > 0;
  }

  static bool Matches(const Request& r, const std::string& method, const std::regex& path) {
    return (method.empty() || r.method == method) && std::regex_search(r.path, path);
  }

  // ---- Serving. ----

  Reply Serve(const Request& request) {
    std::lock_guard<std::mutex> lock(mu);
    if (!Authorized(request.authorization)) return Unauthorized();
    RunDueWork();
    std::vector<std::string> segments = absl::StrSplit(request.path, '/', absl::SkipEmpty());
    Call call{request.method, request.content_type, &request.body, ParseQuery(request.query),
              std::move(segments)};
    return Route(call);
  }

  Reply Route(const Call& c) {
    const std::vector<std::string>& s = c.segments;
    const std::string& m = c.method;
    if (s.empty()) return NoSuchResource();
    if (s.size() == 1 && s[0] == "version") {
      if (m != "GET") return MethodNotAllowed();
      return JsonReply(200, {{"major", "1"},
                             {"minor", "30"},
                             {"gitVersion", "v1.30.0"},
                             {"gitTreeState", "clean"},
                             {"goVersion", "go1.22.2"},
                             {"compiler", "gc"},
                             {"platform", "linux/amd64"}});
    }
    if (s.size() == 1 && s[0] == "api") {
      if (m != "GET") return MethodNotAllowed();
      return JsonReply(200, {{"kind", "APIVersions"}, {"versions", json::array({"v1"})}});
    }
    if (s.size() == 1 && s[0] == "apis") {
      return m == "GET" ? JsonReply(200, GroupList()) : MethodNotAllowed();
    }
    if (s[0] == "api" && s.size() >= 2 && s[1] == "v1") return RouteCore(c);
    if (s[0] == "apis" && s.size() == 3) {
      std::optional<json> list = GroupResources(s[1] + "/" + s[2], eviction_supported);
      if (!list) return NoSuchResource();
      return m == "GET" ? JsonReply(200, *list) : MethodNotAllowed();
    }
    if (s[0] == "apis" && s.size() >= 6 && s[3] == "namespaces") {
      const std::string group_version = s[1] + "/" + s[2];
      const std::string& ns = s[4];
      if (group_version == "apps/v1" && s[5] == "daemonsets" && s.size() == 7) {
        if (m != "GET") return MethodNotAllowed();
        auto it = daemonsets.find(Key(ns, s[6]));
        return it == daemonsets.end() ? NotFound(kDaemonSets, s[6]) : JsonReply(200, it->second);
      }
      if (group_version == "coordination.k8s.io/v1" && s[5] == "leases") {
        if (s.size() == 6) return m == "POST" ? CreateLease(c, ns) : MethodNotAllowed();
        if (s.size() == 7 && m == "GET") {
          auto it = leases.find(Key(ns, s[6]));
          return it == leases.end() ? NotFound(kLeases, s[6]) : JsonReply(200, it->second);
        }
        if (s.size() == 7) return m == "PUT" ? UpdateLease(c, ns, s[6]) : MethodNotAllowed();
      }
    }
    return NoSuchResource();
  }

  Reply RouteCore(const Call& c) {
    const std::vector<std::string>& s = c.segments;
    const std::string& m = c.method;
    if (s.size() == 2) {
      return m == "GET" ? JsonReply(200, *GroupResources("v1", eviction_supported))
                        : MethodNotAllowed();
    }
    if (s[2] == "nodes") {
      if (s.size() == 3) return m == "GET" ? ListNodes(c) : MethodNotAllowed();
      const bool status = s.size() == 5 && s[4] == "status";
      if (s.size() == 4 || status) {
        if (m == "GET") return GetNode(s[3]);
        if (m == "PATCH") return PatchNode(c, s[3], status);
        if (m == "PUT") return PutNode(c, s[3], status);
        return MethodNotAllowed();
      }
      return NoSuchResource();
    }
    if (s[2] == "pods" && s.size() == 3) return m == "GET" ? ListPods(c, "") : MethodNotAllowed();
    if (s[2] != "namespaces" || s.size() < 5) return NoSuchResource();
    const std::string& ns = s[3];
    if (s[4] == "pods") {
      if (s.size() == 5) return m == "GET" ? ListPods(c, ns) : MethodNotAllowed();
      if (s.size() == 6 && m == "GET") {
        auto it = pods.find(Key(ns, s[5]));
        return it == pods.end() ? NotFound(kPods, s[5]) : JsonReply(200, it->second);
      }
      if (s.size() == 6) return m == "DELETE" ? DeletePodCall(c, ns, s[5]) : MethodNotAllowed();
      if (s.size() == 7 && s[6] == "eviction") {
        return m == "POST" ? Evict(c, ns, s[5]) : MethodNotAllowed();
      }
    }
    if (s[4] == "events") {
      if (s.size() == 5) return m == "POST" ? CreateEvent(c, ns) : MethodNotAllowed();
      if (s.size() == 6 && m == "GET") {
        const json* event = FindEvent(ns, s[5]);
        return event == nullptr ? NotFound(kEvents, s[5]) : JsonReply(200, *event);
      }
      if (s.size() == 6) return m == "PATCH" ? PatchEvent(c, ns, s[5]) : MethodNotAllowed();
    }
    return NoSuchResource();
  }

  // A list answer with `limit`/`continue` paging; `items` are (sort key, object) in key order.
  Reply ListReply(const Call& c, const std::string& list_kind,
                  const std::vector<std::pair<std::string, const json*>>& items) {
    if (c.Watch()) return BadRequest("watch is not supported by this fake API server");
    int64_t limit = 0;
    if (auto it = c.query.find("limit"); it != c.query.end()) {
      (void)absl::SimpleAtoi(it->second, &limit);
    }
    std::string after;
    if (auto it = c.query.find("continue"); it != c.query.end() && !it->second.empty()) {
      if (!absl::WebSafeBase64Unescape(it->second, &after) || after.empty()) {
        return BadRequest("continue key is not valid: illegal base64 data");
      }
    }
    json out = json::array();
    std::string last;
    bool more = false;
    for (const auto& [key, object] : items) {
      if (!after.empty() && key <= after) continue;
      if (limit > 0 && static_cast<int64_t>(out.size()) == limit) {
        more = true;
        break;
      }
      out.push_back(WithoutTypeMeta(*object));
      last = key;
    }
    json metadata = {{"resourceVersion", std::to_string(resource_version)}};
    if (more) metadata["continue"] = absl::WebSafeBase64Escape(last);
    return JsonReply(
        200, {{"kind", list_kind}, {"apiVersion", "v1"}, {"metadata", metadata}, {"items", out}});
  }

  // ---- Nodes. ----

  Reply ListNodes(const Call& c) {
    Selectors selectors = ParseSelectors(c.query, {{"metadata.name", "/metadata/name"}});
    if (selectors.error) return *selectors.error;
    std::vector<std::pair<std::string, const json*>> items;
    for (const auto& [name, node] : nodes) {
      if (selectors.Matches(node)) items.emplace_back(name, &node);
    }
    return ListReply(c, "NodeList", items);
  }

  Reply GetNode(const std::string& name) {
    auto it = nodes.find(name);
    if (it == nodes.end()) return NotFound(kNodes, name);
    if (auto hook = node_write_hooks.find(name); hook != node_write_hooks.end()) {
      hook->second.get_served = true;
    }
    return JsonReply(200, it->second);
  }

  // Plays the concurrent writer armed by OnNextNodeWrite, if its moment has come.
  void RunNodeWriteHook(const std::string& name) {
    auto hook = node_write_hooks.find(name);
    if (hook == node_write_hooks.end() || !hook->second.get_served) return;
    json& node = nodes[name];
    const bool was_unschedulable = Unschedulable(node);
    hook->second.mutate(node);
    node_write_hooks.erase(hook);
    node["metadata"]["resourceVersion"] = NextRv();
    if (Unschedulable(node) != was_unschedulable) ScheduleLifecycle(name);
  }

  Reply PatchNode(const Call& c, const std::string& name, bool status_subresource) {
    if (nodes.find(name) == nodes.end()) return NotFound(kNodes, name);
    RunNodeWriteHook(name);
    json patched = nodes[name];
    if (std::optional<Reply> error = ApplyPatch(c.content_type, *c.body, &patched)) return *error;
    return CommitNodeWrite(name, std::move(patched), status_subresource, c.DryRun());
  }

  Reply PutNode(const Call& c, const std::string& name, bool status_subresource) {
    json body = json::parse(*c.body, nullptr, false);
    if (body.is_discarded() || !body.is_object()) return Undecodable("Node");
    if (StrAt(body, "/metadata/name") != name) {
      return BadRequest(absl::StrCat("the name of the object (", StrAt(body, "/metadata/name"),
                                     ") does not match the name on the URL (", name, ")"));
    }
    if (nodes.find(name) == nodes.end()) return NotFound(kNodes, name);  // no create-on-update
    RunNodeWriteHook(name);
    // Nodes allow unconditional updates: a PUT without resourceVersion overwrites.
    if (StrAt(body, "/metadata/resourceVersion").empty()) {
      body["metadata"]["resourceVersion"] = nodes[name]["metadata"]["resourceVersion"];
    }
    return CommitNodeWrite(name, std::move(body), status_subresource, c.DryRun());
  }

  // The optimistic-lock check, then the write. The main resource ignores status changes and the
  // status subresource ignores everything else, as the node registry strategies do.
  Reply CommitNodeWrite(const std::string& name, json updated, bool status_subresource,
                        bool dry_run) {
    const json& current = nodes[name];
    const std::string rv = StrAt(updated, "/metadata/resourceVersion");
    if (!rv.empty() && rv != StrAt(current, "/metadata/resourceVersion")) {
      return Conflict(kNodes, name, kOptimisticLock);
    }
    if (status_subresource) {
      json status = updated.contains("status") ? updated["status"] : json();
      updated = current;
      if (status.is_null()) {
        updated.erase("status");
      } else {
        updated["status"] = status;
      }
    } else if (current.contains("status")) {
      updated["status"] = current["status"];
    } else {
      updated.erase("status");
    }
    KeepSystemFields(current, &updated);
    if (updated == current || dry_run) return JsonReply(200, updated);  // nothing to write
    updated["metadata"]["resourceVersion"] = NextRv();
    const bool unschedulable_changed = Unschedulable(updated) != Unschedulable(current);
    nodes[name] = updated;
    if (unschedulable_changed) ScheduleLifecycle(name);
    return JsonReply(200, updated);
  }

  // ---- Pods. ----

  Reply ListPods(const Call& c, const std::string& ns) {
    Selectors selectors = ParseSelectors(c.query, PodFields());
    if (selectors.error) return *selectors.error;
    std::vector<std::pair<std::string, const json*>> items;
    for (const auto& [key, pod] : pods) {
      if ((ns.empty() || StrAt(pod, "/metadata/namespace") == ns) && selectors.Matches(pod)) {
        items.emplace_back(key, &pod);
      }
    }
    return ListReply(c, "PodList", items);
  }

  Reply DeletePodCall(const Call& c, const std::string& ns, const std::string& name) {
    DeleteOptions options;
    if (MediaType(c.content_type) == "application/vnd.kubernetes.protobuf") {
      if (!c.body->empty() && !ParseDeleteOptionsProto(*c.body, &options)) {
        return BadRequest("the body of the request was in an unknown format: invalid protobuf");
      }
    } else if (!c.body->empty()) {
      json body = json::parse(*c.body, nullptr, false);
      if (body.is_discarded() || !ParseDeleteOptionsJson(body, &options)) {
        return Undecodable("DeleteOptions");
      }
    }
    if (auto it = c.query.find("gracePeriodSeconds"); it != c.query.end()) {
      int64_t grace = 0;
      if (absl::SimpleAtoi(it->second, &grace)) options.grace_seconds = grace;
    }
    options.dry_run = options.dry_run || c.DryRun();
    return DeletePod(ns, name, options, /*evicting=*/false);
  }

  // pkg/registry/core/pod/strategy.go CheckGracefulDelete plus the generic registry's
  // BeforeDelete: preconditions, grace resolution, and "only a shorter grace period may be
  // applied to a pod that is already terminating".
  Reply DeletePod(const std::string& ns, const std::string& name, const DeleteOptions& options,
                  bool evicting) {
    const std::string key = Key(ns, name);
    auto it = pods.find(key);
    if (it == pods.end()) return NotFound(kPods, name);
    json pod = it->second;
    const std::string uid = StrAt(pod, "/metadata/uid");
    const std::string rv = StrAt(pod, "/metadata/resourceVersion");
    if (!options.precondition_uid.empty() && options.precondition_uid != uid) {
      return Conflict(kPodKind, name,
                      absl::StrCat("the UID in the precondition (", options.precondition_uid,
                                   ") does not match the UID in record (", uid,
                                   "). The object might have been deleted and then recreated"));
    }
    if (!options.precondition_rv.empty() && options.precondition_rv != rv) {
      return Conflict(
          kPodKind, name,
          absl::StrCat("the ResourceVersion in the precondition (", options.precondition_rv,
                       ") does not match the ResourceVersion in record (", rv,
                       "). The object might have been modified"));
    }
    std::optional<int64_t> requested = options.grace_seconds;
    if (requested && *requested < 0) requested = 1;
    const int64_t now = NowMs();
    if (Has(pod, "/metadata/deletionTimestamp")) {
      const int64_t current = IntAt(pod, "/metadata/deletionGracePeriodSeconds", 0);
      if (!requested || *requested >= current || options.dry_run) return JsonReply(200, pod);
      // The shorter period counts from when the first deletion started.
      auto t = terminations.find(key);
      const int64_t started = t != terminations.end() ? t->second.started_ms : now;
      pod["metadata"]["deletionTimestamp"] = Rfc3339(started + *requested * 1000);
      pod["metadata"]["deletionGracePeriodSeconds"] = *requested;
      if (*requested == 0) {
        RemovePod(key);
        return JsonReply(200, pod);
      }
      pod["metadata"]["resourceVersion"] = NextRv();
      pods[key] = pod;
      ScheduleTermination(key, pod, started, *requested);
      return JsonReply(200, pod);
    }
    int64_t grace = requested.value_or(IntAt(pod, "/spec/terminationGracePeriodSeconds", 0));
    if (StrAt(pod, "/spec/nodeName").empty() || IsTerminal(pod)) grace = 0;
    if (grace < 0) grace = 1;
    if (evicting && !options.dry_run) AddDisruptionTarget(&pod, now);
    if (grace > 0) {
      pod["metadata"]["deletionTimestamp"] = Rfc3339(now + grace * 1000);
      pod["metadata"]["deletionGracePeriodSeconds"] = grace;
      pod["metadata"]["generation"] = IntAt(pod, "/metadata/generation", 0) + 1;
    }
    if (options.dry_run) return JsonReply(200, pod);
    if (grace == 0) {
      RemovePod(key);
      return JsonReply(200, pod);
    }
    pod["metadata"]["resourceVersion"] = NextRv();
    pods[key] = pod;
    ScheduleTermination(key, pod, now, grace);
    return JsonReply(200, pod);
  }

  // The PodDisruptionConditions feature: an evicted pod is marked before it is deleted.
  static void AddDisruptionTarget(json* pod, int64_t now) {
    json& conditions = (*pod)["status"]["conditions"];
    if (!conditions.is_array()) conditions = json::array();
    conditions.erase(
        std::remove_if(conditions.begin(), conditions.end(),
                       [](const json& c) { return StrAt(c, "/type") == "DisruptionTarget"; }),
        conditions.end());
    conditions.push_back({{"type", "DisruptionTarget"},
                          {"status", "True"},
                          {"lastTransitionTime", Rfc3339(now)},
                          {"reason", "EvictionByEvictionAPI"},
                          {"message", "Eviction API: evicting"}});
  }

  // ---- Eviction (pkg/registry/core/pod/storage/eviction.go, reference §2.9). ----

  Reply Evict(const Call& c, const std::string& ns, const std::string& name) {
    json body = json::parse(*c.body, nullptr, false);
    if (body.is_discarded() || !body.is_object()) return Undecodable("Eviction");
    const std::string api_version = StrAt(body, "/apiVersion");
    if ((!api_version.empty() && api_version != "policy/v1" && api_version != "policy/v1beta1") ||
        (Has(body, "/kind") && StrAt(body, "/kind") != "Eviction")) {
      return Undecodable("Eviction");
    }
    // NamespaceLifecycle admission runs before the eviction handler.
    if (terminating_namespaces.count(ns) > 0) {
      ordered_json details = Details(name, "", kPods.plural);
      details["causes"] =
          ordered_json::array({{{"reason", "NamespaceTerminating"},
                                {"message", absl::StrCat("namespace ", ns, " is being terminated")},
                                {"field", "metadata.namespace"}}});
      return StatusReply(403, "Forbidden",
                         absl::StrCat("pods \"", name,
                                      "\" is forbidden: unable to create new content in namespace ",
                                      ns, " because it is being terminated"),
                         details);
    }
    if (StrAt(body, "/metadata/name") != name) {
      return BadRequest("name in URL does not match name in Eviction object");
    }
    DeleteOptions options;
    if (body.contains("deleteOptions") &&
        !ParseDeleteOptionsJson(body["deleteOptions"], &options)) {
      return Undecodable("Eviction");
    }
    options.dry_run = options.dry_run || c.DryRun();
    auto it = pods.find(Key(ns, name));
    if (it == pods.end()) return NotFound(kPods, name);
    const json& pod = it->second;
    // canIgnorePDB: a pod that is not running, or already terminating, has disrupted nothing.
    const std::string phase = StrAt(pod, "/status/phase");
    if (IsTerminal(pod) || phase == "Pending" || Has(pod, "/metadata/deletionTimestamp")) {
      return EvictionDelete(ns, name, options);
    }
    std::vector<Pdb*> matching;
    for (auto& [key, pdb] : pdbs) {
      if (pdb.ns == ns && SelectsPod(pdb, pod)) matching.push_back(&pdb);
    }
    if (matching.size() > 1) {
      // The handler returns this Status as an object; only finisher.Return() turns it into an
      // HTTP 500. It has no reason.
      return StatusReply(500, "",
                         "This pod has more than one PodDisruptionBudget, which the eviction "
                         "subresource does not support.");
    }
    if (matching.size() == 1) {
      Pdb& pdb = *matching[0];
      // An unready pod does not count as healthy, so deleting it disrupts nothing new.
      const bool unhealthy_may_go =
          !IsReady(pod) &&
          (pdb.always_allow_unhealthy ||
           (pdb.current_healthy >= pdb.desired_healthy && pdb.desired_healthy > 0));
      if (!unhealthy_may_go) {
        if (std::optional<Reply> refusal = CheckAndDecrement(&pdb, options.dry_run)) {
          return *refusal;
        }
      }
    }
    return EvictionDelete(ns, name, options);
  }

  static bool SelectsPod(const Pdb& pdb, const json& pod) {
    if (pdb.selector.empty()) return false;  // an empty selector matches nothing here
    if (!Has(pod, "/metadata/labels")) return false;
    const json& labels = pod.at("metadata").at("labels");
    for (const auto& [k, v] : pdb.selector) {
      auto label = labels.find(k);
      if (label == labels.end() || *label != v) return false;
    }
    return true;
  }

  static std::optional<Reply> CheckAndDecrement(Pdb* pdb, bool dry_run) {
    if (pdb->observed_generation < pdb->generation) {
      return PdbTooManyRequests(absl::StrCat("The disruption budget ", pdb->name,
                                             " is still being processed by the server."),
                                10);
    }
    if (pdb->disruptions_allowed < 0) {
      return StatusReply(403, "Forbidden",
                         absl::StrCat("poddisruptionbudget.policy \"", pdb->name,
                                      "\" is forbidden: pdb disruptions allowed is negative"),
                         Details(pdb->name, "policy", "poddisruptionbudget"));
    }
    if (pdb->disruptions_allowed == 0) {
      return PdbTooManyRequests(
          absl::StrCat("The disruption budget ", pdb->name, " needs ", pdb->desired_healthy,
                       " healthy pods and has ", pdb->current_healthy, " currently"),
          0);
    }
    if (!dry_run) --pdb->disruptions_allowed;
    return std::nullopt;
  }

  Reply EvictionDelete(const std::string& ns, const std::string& name,
                       const DeleteOptions& options) {
    Reply deleted = DeletePod(ns, name, options, /*evicting=*/true);
    return deleted.status == 200 ? EvictionCreated() : deleted;
  }

  // ---- Leases (pkg/registry/coordination/lease: create-on-update, no unconditional update). ----

  static std::optional<Reply> ValidateLease(const json& lease, const std::string& name) {
    const int64_t duration = IntAt(lease, "/spec/leaseDurationSeconds", 1);
    if (duration <= 0) {
      return Invalid("Lease", "coordination.k8s.io", name,
                     {"FieldValueInvalid", "spec.leaseDurationSeconds",
                      absl::StrCat("Invalid value: ", duration, ": must be greater than 0")});
    }
    const int64_t transitions = IntAt(lease, "/spec/leaseTransitions", 0);
    if (transitions < 0) {
      return Invalid(
          "Lease", "coordination.k8s.io", name,
          {"FieldValueInvalid", "spec.leaseTransitions",
           absl::StrCat("Invalid value: ", transitions, ": must be greater than or equal to 0")});
    }
    return std::nullopt;
  }

  // Parses a namespaced object body; an error reply when it is not one of `kind` for `ns`.
  static std::optional<Reply> DecodeNamespaced(const std::string& body, const std::string& kind,
                                               const std::string& ns, json* object) {
    *object = json::parse(body, nullptr, false);
    if (object->is_discarded() || !object->is_object()) return Undecodable(kind);
    if (!(*object)["metadata"].is_object()) (*object)["metadata"] = json::object();
    const std::string object_ns = StrAt(*object, "/metadata/namespace");
    if (!object_ns.empty() && object_ns != ns) {
      return BadRequest(
          "the namespace of the provided object does not match the namespace sent on the request");
    }
    (*object)["metadata"]["namespace"] = ns;
    return std::nullopt;
  }

  Reply StoreNewLease(const std::string& ns, json lease) {
    const std::string name = StrAt(lease, "/metadata/name");
    if (std::optional<Reply> invalid = ValidateLease(lease, name)) return *invalid;
    lease["kind"] = "Lease";
    lease["apiVersion"] = "coordination.k8s.io/v1";
    lease["metadata"].erase("uid");
    lease["metadata"].erase("creationTimestamp");
    Stamp(&lease);
    leases[Key(ns, name)] = lease;
    return JsonReply(201, lease);
  }

  Reply CreateLease(const Call& c, const std::string& ns) {
    json lease;
    if (std::optional<Reply> error = DecodeNamespaced(*c.body, "Lease", ns, &lease)) return *error;
    const std::string name = StrAt(lease, "/metadata/name");
    if (name.empty()) {
      return Invalid("Lease", "coordination.k8s.io", "",
                     {"FieldValueRequired", "metadata.name",
                      "Required value: name or generateName is required"});
    }
    if (leases.count(Key(ns, name)) > 0) return AlreadyExists(kLeases, name);
    return c.DryRun() ? JsonReply(201, lease) : StoreNewLease(ns, std::move(lease));
  }

  Reply UpdateLease(const Call& c, const std::string& ns, const std::string& name) {
    json lease;
    if (std::optional<Reply> error = DecodeNamespaced(*c.body, "Lease", ns, &lease)) return *error;
    if (StrAt(lease, "/metadata/name") != name) {
      return BadRequest(absl::StrCat("the name of the object (", StrAt(lease, "/metadata/name"),
                                     ") does not match the name on the URL (", name, ")"));
    }
    auto it = leases.find(Key(ns, name));
    if (it == leases.end()) return c.DryRun() ? JsonReply(201, lease) : StoreNewLease(ns, lease);
    const std::string rv = StrAt(lease, "/metadata/resourceVersion");
    if (rv.empty()) {
      // Store.Update names the resource where the kind would go (see #18526 upstream).
      return Invalid("leases", "coordination.k8s.io", name,
                     {"FieldValueInvalid", "metadata.resourceVersion",
                      "Invalid value: 0x0: must be specified for an update"});
    }
    if (rv != StrAt(it->second, "/metadata/resourceVersion")) {
      return Conflict(kLeases, name, kOptimisticLock);
    }
    if (std::optional<Reply> invalid = ValidateLease(lease, name)) return *invalid;
    KeepSystemFields(it->second, &lease);
    if (lease == it->second || c.DryRun()) return JsonReply(200, lease);
    lease["metadata"]["resourceVersion"] = NextRv();
    it->second = lease;
    return JsonReply(200, lease);
  }

  // ---- core/v1 Events (legacyValidateEvent). ----

  json* FindEvent(const std::string& ns, const std::string& name) {
    for (json& e : events) {
      if (StrAt(e, "/metadata/namespace") == ns && StrAt(e, "/metadata/name") == name) return &e;
    }
    return nullptr;
  }

  static std::optional<Reply> ValidateEvent(const json& event) {
    const std::string name = StrAt(event, "/metadata/name");
    const std::string type = StrAt(event, "/type");
    if (type != "Normal" && type != "Warning") {
      return Invalid("Event", "", name,
                     {"FieldValueNotSupported", "type",
                      absl::StrCat("Unsupported value: ", json(type).dump(),
                                   ": supported values: \"Normal\", \"Warning\"")});
    }
    if (!Has(event, "/eventTime")) {
      const std::string ns = StrAt(event, "/metadata/namespace");
      const std::string involved_ns = StrAt(event, "/involvedObject/namespace");
      const bool ok = involved_ns.empty() ? (ns.empty() || ns == "default") : ns == involved_ns;
      if (!ok) {
        return Invalid("Event", "", name,
                       {"FieldValueInvalid", "involvedObject.namespace",
                        absl::StrCat("Invalid value: ", json(involved_ns).dump(),
                                     ": does not match event.namespace")});
      }
    }
    return std::nullopt;
  }

  Reply CreateEvent(const Call& c, const std::string& ns) {
    json event;
    if (std::optional<Reply> error = DecodeNamespaced(*c.body, "Event", ns, &event)) return *error;
    std::string name = StrAt(event, "/metadata/name");
    if (name.empty() && !StrAt(event, "/metadata/generateName").empty()) {
      name = StrAt(event, "/metadata/generateName") + NewUid().substr(0, 5);
      event["metadata"]["name"] = name;
    }
    if (name.empty()) {
      return Invalid("Event", "", "",
                     {"FieldValueRequired", "metadata.name",
                      "Required value: name or generateName is required"});
    }
    if (std::optional<Reply> invalid = ValidateEvent(event)) return *invalid;
    if (FindEvent(ns, name) != nullptr) return AlreadyExists(kEvents, name);
    event["kind"] = "Event";
    event["apiVersion"] = "v1";
    if (c.DryRun()) return JsonReply(201, event);
    Stamp(&event);
    events.push_back(event);
    return JsonReply(201, event);
  }

  Reply PatchEvent(const Call& c, const std::string& ns, const std::string& name) {
    json* event = FindEvent(ns, name);
    if (event == nullptr) return NotFound(kEvents, name);
    json patched = *event;
    if (std::optional<Reply> error = ApplyPatch(c.content_type, *c.body, &patched)) return *error;
    const std::string rv = StrAt(patched, "/metadata/resourceVersion");
    if (!rv.empty() && rv != StrAt(*event, "/metadata/resourceVersion")) {
      return Conflict(kEvents, name, kOptimisticLock);
    }
    KeepSystemFields(*event, &patched);
    if (std::optional<Reply> invalid = ValidateEvent(patched)) return *invalid;
    if (patched == *event || c.DryRun()) return JsonReply(200, patched);
    patched["metadata"]["resourceVersion"] = NextRv();
    *event = patched;
    return JsonReply(200, patched);
  }
};

// ---- FakeKubeApi. ----

FakeKubeApi::FakeKubeApi(Options options)
    : options_(std::move(options)), state_(std::make_unique<State>(options_)) {}

FakeKubeApi::~FakeKubeApi() { Stop(); }

bool FakeKubeApi::Start() {
  const std::string ports = "127.0.0.1:" + std::to_string(options_.port);
  const char* opts[] = {
      "listening_ports",    ports.c_str(), "num_threads", "128", "enable_keep_alive", "yes",
      "request_timeout_ms", "60000",       nullptr};
  mg_callbacks callbacks{};
  ctx_ = mg_start(&callbacks, this, opts);
  if (ctx_ == nullptr) return false;
  mg_server_port listening{};
  if (mg_get_server_ports(ctx_, 1, &listening) != 1) {
    mg_stop(ctx_);
    ctx_ = nullptr;
    return false;
  }
  port_ = listening.port;
  mg_set_request_handler(ctx_, "/", &FakeKubeApi::Dispatch, this);
  std::lock_guard<std::mutex> lock(state_->mu);
  state_->stopping = false;
  state_->simulator = std::thread([this] { state_->SimulatorLoop(); });
  return true;
}

void FakeKubeApi::Stop() {
  if (ctx_ == nullptr) return;
  std::atomic<bool> stopped{false};
  std::thread knocker([this, &stopped] { KnockUntil(port_, stopped); });
  mg_stop(ctx_);
  stopped = true;
  knocker.join();
  ctx_ = nullptr;
  {
    std::lock_guard<std::mutex> lock(state_->mu);
    state_->stopping = true;
    state_->timer_cv.notify_all();
  }
  state_->simulator.join();
}

int FakeKubeApi::Dispatch(mg_connection* conn, void* self) {
  return static_cast<FakeKubeApi*>(self)->Handle(conn);
}

int FakeKubeApi::Handle(mg_connection* conn) {
  const mg_request_info* ri = mg_get_request_info(conn);
  Request request;
  request.time_ms = NowMs();
  request.method = ri->request_method;
  request.path = ri->local_uri != nullptr ? ri->local_uri : "/";
  request.query = ri->query_string != nullptr ? ri->query_string : "";
  request.content_type = Header(conn, "Content-Type");
  request.accept = Header(conn, "Accept");
  request.authorization = Header(conn, "Authorization");
  char buf[8192];
  for (int n; (n = mg_read(conn, buf, sizeof buf)) > 0;) {
    request.body.append(buf, static_cast<size_t>(n));
  }

  std::optional<Fault> fault = state_->TakeFault(request.method, request.path);
  if (fault && fault->delay_ms > 0) {
    std::this_thread::sleep_for(std::chrono::milliseconds(fault->delay_ms));
  }
  const bool reset = fault && fault->reset_connection;
  Reply reply;
  if (fault && fault->status != 0 && !reset) {
    reply = FaultReply(*fault);
  } else if (!reset) {
    reply = state_->Serve(request);
  }
  request.status = reset ? 0 : reply.status;
  {
    // Journaled before the answer leaves, so a client that got its answer finds its request.
    std::lock_guard<std::mutex> lock(state_->mu);
    state_->journal.push_back(request);
    state_->journal_cv.notify_all();
  }
  if (reset) {
    mg_disable_connection_keep_alive(conn);  // civetweb closes the socket, nothing written
  } else {
    std::string head =
        absl::StrCat("HTTP/1.1 ", reply.status, " ", mg_get_response_code_text(conn, reply.status),
                     "\r\nContent-Type: application/json\r\nCache-Control: "
                     "no-cache, private\r\nContent-Length: ",
                     reply.body.size(), "\r\n");
    for (const auto& [name, value] : reply.headers) {
      absl::StrAppend(&head, name, ": ", value, "\r\n");
    }
    head += "\r\n";
    mg_write(conn, head.data(), head.size());
    mg_write(conn, reply.body.data(), reply.body.size());
  }
  if (options_.on_request) options_.on_request(request);
  return reset ? 1 : reply.status;
}

json FakeKubeApi::MakeNode(const std::string& name) {
  return {{"kind", "Node"},
          {"apiVersion", "v1"},
          {"metadata",
           {{"name", name},
            {"labels",
             {{"kubernetes.io/hostname", name},
              {"kubernetes.io/os", "linux"},
              {"kubernetes.io/arch", "amd64"},
              {"node.kubernetes.io/instance-type", "m5.large"}}}}},
          {"spec", {{"providerID", "fake:///" + name}}},
          {"status",
           {{"conditions", json::array({{{"type", "Ready"},
                                         {"status", "True"},
                                         {"reason", "KubeletReady"},
                                         {"message", "kubelet is posting ready status"}}})},
            {"addresses", json::array({{{"type", "InternalIP"}, {"address", "10.0.0.10"}},
                                       {{"type", "Hostname"}, {"address", name}}})},
            {"nodeInfo",
             {{"kubeletVersion", "v1.30.0"},
              {"operatingSystem", "linux"},
              {"architecture", "amd64"}}}}}};
}

json FakeKubeApi::MakePod(const std::string& ns, const std::string& name, const std::string& node,
                          const PodSpec& spec) {
  json metadata = {{"name", name}, {"namespace", ns}, {"generation", 1}};
  metadata["labels"] = json::object();
  for (const auto& [k, v] : spec.labels) metadata["labels"][k] = v;
  if (spec.mirror) {
    metadata["annotations"] = {{"kubernetes.io/config.mirror", NewUid()},
                               {"kubernetes.io/config.source", "file"}};
  }
  if (!spec.owner_kind.empty()) {
    metadata["ownerReferences"] =
        json::array({{{"apiVersion", OwnerApiVersion(spec.owner_kind)},
                      {"kind", spec.owner_kind},
                      {"name", spec.owner_name.empty() ? name + "-owner" : spec.owner_name},
                      {"uid", NewUid()},
                      {"controller", true},
                      {"blockOwnerDeletion", true}}});
  }
  json pod_spec = {
      {"terminationGracePeriodSeconds", spec.grace_seconds},
      {"restartPolicy", spec.owner_kind == "Job" ? "Never" : "Always"},
      {"schedulerName", "default-scheduler"},
      {"containers", json::array({{{"name", "main"}, {"image", "registry.k8s.io/pause:3.9"}}})}};
  if (!node.empty()) pod_spec["nodeName"] = node;
  if (spec.empty_dir) {
    pod_spec["volumes"] = json::array({{{"name", "cache"}, {"emptyDir", json::object()}}});
  }
  json status = {{"phase", spec.phase},
                 {"conditions",
                  json::array({{{"type", "Ready"}, {"status", spec.ready ? "True" : "False"}}})}};
  if (spec.phase == "Running") status["podIP"] = "10.244.0.10";
  return {{"kind", "Pod"},
          {"apiVersion", "v1"},
          {"metadata", metadata},
          {"spec", pod_spec},
          {"status", status}};
}

void FakeKubeApi::AddNode(json node) {
  std::lock_guard<std::mutex> lock(state_->mu);
  state_->Stamp(&node);
  const std::string name = StrAt(node, "/metadata/name");
  state_->nodes[name] = std::move(node);
  state_->ScheduleLifecycle(name);  // a node seeded cordoned gets its taint like a real one
}

void FakeKubeApi::RemoveNode(const std::string& name) {
  std::lock_guard<std::mutex> lock(state_->mu);
  state_->nodes.erase(name);
}

void FakeKubeApi::AddPod(json pod) {
  std::lock_guard<std::mutex> lock(state_->mu);
  state_->Stamp(&pod);
  const std::string key = Key(StrAt(pod, "/metadata/namespace"), StrAt(pod, "/metadata/name"));
  if (Has(pod, "/metadata/deletionTimestamp")) {  // seeded already terminating
    state_->ScheduleTermination(key, pod, NowMs(),
                                IntAt(pod, "/metadata/deletionGracePeriodSeconds", 0));
  }
  state_->pods[key] = std::move(pod);
}

void FakeKubeApi::AddDaemonSet(const std::string& ns, const std::string& name) {
  std::lock_guard<std::mutex> lock(state_->mu);
  json ds = {{"kind", "DaemonSet"},
             {"apiVersion", "apps/v1"},
             {"metadata", {{"name", name}, {"namespace", ns}, {"generation", 1}}},
             {"spec", {{"selector", {{"matchLabels", {{"app", name}}}}}}},
             {"status",
              {{"currentNumberScheduled", 1},
               {"desiredNumberScheduled", 1},
               {"numberReady", 1},
               {"numberMisscheduled", 0},
               {"observedGeneration", 1}}}};
  state_->Stamp(&ds);
  state_->daemonsets[Key(ns, name)] = std::move(ds);
}

void FakeKubeApi::AddPdb(const Pdb& pdb) {
  std::lock_guard<std::mutex> lock(state_->mu);
  state_->pdbs[Key(pdb.ns, pdb.name)] = pdb;
}

void FakeKubeApi::SetPdbDisruptionsAllowed(const std::string& ns, const std::string& name,
                                           int allowed) {
  std::lock_guard<std::mutex> lock(state_->mu);
  if (auto it = state_->pdbs.find(Key(ns, name)); it != state_->pdbs.end()) {
    it->second.disruptions_allowed = allowed;
  }
}

void FakeKubeApi::SetPodBehaviour(const std::string& ns, const std::string& name,
                                  PodBehaviour behaviour) {
  std::lock_guard<std::mutex> lock(state_->mu);
  state_->behaviours[Key(ns, name)] = behaviour;
}

void FakeKubeApi::SetNamespaceTerminating(const std::string& ns, bool terminating) {
  std::lock_guard<std::mutex> lock(state_->mu);
  if (terminating) {
    state_->terminating_namespaces.insert(ns);
  } else {
    state_->terminating_namespaces.erase(ns);
  }
}

void FakeKubeApi::SetValidTokens(std::set<std::string> tokens) {
  std::lock_guard<std::mutex> lock(state_->mu);
  state_->valid_tokens = std::move(tokens);
}

void FakeKubeApi::OnNextNodeWrite(const std::string& name,
                                  std::function<void(nlohmann::json& node)> mutate) {
  std::lock_guard<std::mutex> lock(state_->mu);
  state_->node_write_hooks[name] = {std::move(mutate), false};
}

void FakeKubeApi::SetEvictionSupported(bool supported) {
  std::lock_guard<std::mutex> lock(state_->mu);
  state_->eviction_supported = supported;
}

std::optional<json> FakeKubeApi::GetNode(const std::string& name) {
  std::lock_guard<std::mutex> lock(state_->mu);
  state_->RunDueWork();
  auto it = state_->nodes.find(name);
  return it == state_->nodes.end() ? std::nullopt : std::optional<json>(it->second);
}

std::optional<json> FakeKubeApi::GetPod(const std::string& ns, const std::string& name) {
  std::lock_guard<std::mutex> lock(state_->mu);
  state_->RunDueWork();
  auto it = state_->pods.find(Key(ns, name));
  return it == state_->pods.end() ? std::nullopt : std::optional<json>(it->second);
}

std::vector<json> FakeKubeApi::PodsOnNode(const std::string& node) {
  std::lock_guard<std::mutex> lock(state_->mu);
  state_->RunDueWork();
  std::vector<json> on_node;
  for (const auto& [key, pod] : state_->pods) {
    if (StrAt(pod, "/spec/nodeName") == node) on_node.push_back(pod);
  }
  return on_node;
}

std::vector<json> FakeKubeApi::Events() {
  std::lock_guard<std::mutex> lock(state_->mu);
  return state_->events;
}

std::optional<json> FakeKubeApi::GetLease(const std::string& ns, const std::string& name) {
  std::lock_guard<std::mutex> lock(state_->mu);
  auto it = state_->leases.find(Key(ns, name));
  return it == state_->leases.end() ? std::nullopt : std::optional<json>(it->second);
}

void FakeKubeApi::InjectFault(Fault fault) {
  std::lock_guard<std::mutex> lock(state_->mu);
  std::regex path(fault.path_regex, std::regex::ECMAScript);
  state_->faults.push_back({std::move(fault), std::move(path)});
}

void FakeKubeApi::ClearFaults() {
  std::lock_guard<std::mutex> lock(state_->mu);
  state_->faults.clear();
}

std::vector<FakeKubeApi::Request> FakeKubeApi::Journal() {
  std::lock_guard<std::mutex> lock(state_->mu);
  return state_->journal;
}

void FakeKubeApi::ClearJournal() {
  std::lock_guard<std::mutex> lock(state_->mu);
  state_->journal.clear();
}

int FakeKubeApi::CountRequests(const std::string& method, const std::string& path_regex) {
  const std::regex path(path_regex, std::regex::ECMAScript);
  std::lock_guard<std::mutex> lock(state_->mu);
  return static_cast<int>(
      std::count_if(state_->journal.begin(), state_->journal.end(),
                    [&](const Request& r) { return State::Matches(r, method, path); }));
}

bool FakeKubeApi::WaitForRequest(const std::string& method, const std::string& path_regex,
                                 int64_t timeout_ms) {
  const std::regex path(path_regex, std::regex::ECMAScript);
  std::unique_lock<std::mutex> lock(state_->mu);
  return state_->journal_cv.wait_for(lock, std::chrono::milliseconds(timeout_ms), [&] {
    return std::any_of(state_->journal.begin(), state_->journal.end(),
                       [&](const Request& r) { return State::Matches(r, method, path); });
  });
}

}  // namespace nodewatch::testing
