#include "aggregator/cost/transfer_classifier.h"

#include <arpa/inet.h>

#include <algorithm>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace nodewatch::aggregator {
namespace {

using Address = std::array<uint8_t, 16>;

// 4 or 16 raw bytes to the 16-byte form (IPv4 mapped into ::ffff:0:0/96).
bool Normalize(std::string_view raw, Address* out) {
  out->fill(0);
  if (raw.size() == 4) {
    (*out)[10] = 0xFF;
    (*out)[11] = 0xFF;
    std::copy(raw.begin(), raw.end(), out->begin() + 12);
    return true;
  }
  if (raw.size() == 16) {
    std::copy(raw.begin(), raw.end(), out->begin());
    return true;
  }
  return false;
}

bool ParseAddress(const std::string& text, Address* out) {
  uint8_t buf[16];
  if (inet_pton(AF_INET, text.c_str(), buf) == 1) {
    return Normalize(std::string_view(reinterpret_cast<char*>(buf), 4), out);
  }
  if (inet_pton(AF_INET6, text.c_str(), buf) == 1) {
    return Normalize(std::string_view(reinterpret_cast<char*>(buf), 16), out);
  }
  return false;
}

bool InPrefix(const Address& a, const Address& prefix, int bits) {
  for (int i = 0; i < bits / 8; ++i) {
    if (a[static_cast<size_t>(i)] != prefix[static_cast<size_t>(i)]) return false;
  }
  if (bits % 8 == 0) return true;
  const auto mask = static_cast<uint8_t>(0xFF << (8 - bits % 8));
  return (a[static_cast<size_t>(bits / 8)] & mask) ==
         (prefix[static_cast<size_t>(bits / 8)] & mask);
}

struct Range {
  const char* cidr;
  TransferClass cls;
};

// Fixed ranges, checked after overrides and known nodes.
const std::vector<CidrOverride>& FixedRanges() {
  static const auto* ranges = [] {
    auto* out = new std::vector<CidrOverride>();
    for (const Range& r : {Range{"127.0.0.0/8=same-zone", TransferClass::kSameZone},
                           Range{"169.254.0.0/16=same-zone", TransferClass::kSameZone},
                           Range{"::1/128=same-zone", TransferClass::kSameZone},
                           Range{"fe80::/10=same-zone", TransferClass::kSameZone},
                           Range{"10.0.0.0/8=unclassified", TransferClass::kUnclassified},
                           Range{"172.16.0.0/12=unclassified", TransferClass::kUnclassified},
                           Range{"192.168.0.0/16=unclassified", TransferClass::kUnclassified},
                           Range{"100.64.0.0/10=unclassified", TransferClass::kUnclassified},
                           Range{"fc00::/7=unclassified", TransferClass::kUnclassified}}) {
      out->push_back(*ParseCidrOverride(r.cidr));
    }
    return out;
  }();
  return *ranges;
}

TransferClass Compare(const NodeLocation& from, const std::string& provider,
                      const std::string& region, const std::string& zone) {
  if (!provider.empty() && !from.provider.empty() && provider != from.provider) {
    return TransferClass::kInternet;
  }
  if (region != from.region) return TransferClass::kCrossRegion;
  if (!zone.empty() && zone == from.zone) return TransferClass::kSameZone;
  return TransferClass::kCrossZone;
}

}  // namespace

absl::StatusOr<CidrOverride> ParseCidrOverride(const std::string& spec) {
  auto bad = [&](const std::string& why) {
    return absl::InvalidArgumentError(
        absl::StrCat("config key 'transfer-cidr': '", spec, "': ", why));
  };
  std::vector<std::string> parts = absl::StrSplit(spec, absl::MaxSplits('=', 1));
  if (parts.size() != 2 || parts[1].empty()) return bad("want CIDR=CLASS or CIDR=REGION[/ZONE]");
  std::vector<std::string> cidr = absl::StrSplit(parts[0], absl::MaxSplits('/', 1));
  CidrOverride o;
  if (cidr.size() != 2 || !ParseAddress(cidr[0], &o.prefix)) return bad("not an address/length");
  const bool v4 = cidr[0].find(':') == std::string::npos;
  int len = 0;
  if (!absl::SimpleAtoi(cidr[1], &len) || len < 0 || len > (v4 ? 32 : 128)) {
    return bad("bad prefix length");
  }
  o.bits = v4 ? 96 + len : len;
  const std::string& target = parts[1];
  for (int c = 0; c < kTransferClasses; ++c) {
    if (target == TransferClassName(static_cast<TransferClass>(c))) {
      o.is_class = true;
      o.cls = static_cast<TransferClass>(c);
      return o;
    }
  }
  std::vector<std::string> where = absl::StrSplit(target, absl::MaxSplits('/', 1));
  o.region = where[0];
  if (where.size() == 2) o.zone = where[1];
  if (o.region.empty()) return bad("empty region");
  return o;
}

TransferClassifier::TransferClassifier(std::vector<CidrOverride> overrides)
    : overrides_(std::move(overrides)), book_(std::make_shared<Book>()) {
  std::stable_sort(overrides_.begin(), overrides_.end(),
                   [](const CidrOverride& a, const CidrOverride& b) { return a.bits > b.bits; });
}

void TransferClassifier::Update(const std::vector<nodewatch::v1::NodeSummary>& nodes) {
  auto book = std::make_shared<Book>();
  for (const auto& n : nodes) {
    const auto& info = n.info();
    for (const auto& a : info.addresses()) {
      Address addr;
      if (!ParseAddress(a.address(), &addr)) continue;
      (*book)[std::string(addr.begin(), addr.end())] = {info.provider(), info.region(),
                                                        info.zone()};
    }
  }
  std::lock_guard<std::mutex> lock(mu_);
  book_ = std::move(book);
}

TransferClassifier::View TransferClassifier::Snapshot() const {
  std::lock_guard<std::mutex> lock(mu_);
  return View(*this, book_);
}

TransferClass TransferClassifier::View::Classify(const NodeLocation& from,
                                                 std::string_view remote) const {
  Address addr;
  if (!Normalize(remote, &addr)) return TransferClass::kUnclassified;
  for (const auto& o : classifier_.overrides_) {
    if (!InPrefix(addr, o.prefix, o.bits)) continue;
    return o.is_class ? o.cls : Compare(from, "", o.region, o.zone);
  }
  const auto& book = book_;
  if (auto it = book->find(std::string(addr.begin(), addr.end())); it != book->end()) {
    return Compare(from, it->second.provider, it->second.region, it->second.zone);
  }
  for (const auto& r : FixedRanges()) {
    if (InPrefix(addr, r.prefix, r.bits)) return r.cls;
  }
  return TransferClass::kInternet;
}

}  // namespace nodewatch::aggregator
