// TransferClassifier: tells what a byte sent from a node to a remote address costs, by class:
// same zone, another zone of the region, another region, or the internet. It knows every node's
// addresses, provider, region and zone (from their NodeInfo) and the operator's CIDR overrides for
// what nodewatch cannot see (VPC subnets, peered networks, NAT gateways):
//
//   --transfer-cidr 10.1.0.0/16=us-east-1/us-east-1a   # a subnet in that zone
//   --transfer-cidr 10.2.0.0/16=us-west-2              # a region (zone unknown: cross-zone at
//   best)
//   --transfer-cidr 10.9.0.0/16=same-zone              # or a class outright
//
// Order of decision: the longest matching override; a known node's address; loopback and
// link-local (never billed) as same-zone; other private ranges (RFC 1918, CGNAT, ULA) as
// "unclassified", reported but not priced, since a pod or service address says nothing about
// its zone; everything else is the internet. A node of another provider counts as internet.
//
// Thread-safe: Update swaps in a new address book; Classify reads a snapshot.
#pragma once

#include <array>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "absl/status/statusor.h"
#include "aggregator/cost/price_table.h"
#include "nodewatch/v1/query.pb.h"

namespace nodewatch::aggregator {

struct NodeLocation {
  std::string provider;
  std::string region;
  std::string zone;
};

struct CidrOverride {
  std::array<uint8_t, 16> prefix{};  // IPv4 as ::ffff:a.b.c.d
  int bits = 0;                      // in the 128-bit space
  bool is_class = false;
  TransferClass cls = TransferClass::kUnclassified;
  std::string region;  // when !is_class
  std::string zone;    // may be empty
};

// Parses "CIDR=CLASS" or "CIDR=REGION[/ZONE]"; errors name the config key.
absl::StatusOr<CidrOverride> ParseCidrOverride(const std::string& spec);

class TransferClassifier {
 public:
  explicit TransferClassifier(std::vector<CidrOverride> overrides = {});

  using Book = std::unordered_map<std::string, NodeLocation>;  // 16-byte address -> location

  // A consistent view of the address book for classifying many flows without locking each time.
  class View {
   public:
    // `remote` is 4 or 16 raw bytes; anything else is unclassified.
    TransferClass Classify(const NodeLocation& from, std::string_view remote) const;

   private:
    friend class TransferClassifier;
    View(const TransferClassifier& c, std::shared_ptr<const Book> book)
        : classifier_(c), book_(std::move(book)) {}
    const TransferClassifier& classifier_;
    std::shared_ptr<const Book> book_;
  };

  // Replaces the address book with these nodes' addresses.
  void Update(const std::vector<nodewatch::v1::NodeSummary>& nodes);
  View Snapshot() const;
  TransferClass Classify(const NodeLocation& from, std::string_view remote) const {
    return Snapshot().Classify(from, remote);
  }

 private:
  std::vector<CidrOverride> overrides_;  // longest prefix first
  mutable std::mutex mu_;
  std::shared_ptr<const Book> book_;
};

}  // namespace nodewatch::aggregator
