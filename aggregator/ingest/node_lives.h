// Node lives: where one life of a node (one instance, one boot) ends and the next begins, and
// what the life's interruption notices said would happen to its instance. Pure functions over the
// stored node, applied by the ingest writer in the same commit as the Hello or notice; the cost
// model prices each life by its own instance type and lifecycle and bills its away time by how it
// ended.
//
//   ApplyHelloToLives(stored, hello, now_ms);       // first life, a new life, or facts updated
//   ApplyNoticeToLives(stored, notice);             // "stop", "reboot", "terminate" noted
//   TouchCurrentLife(stored, now_ms);               // any other message of the current life
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "nodewatch/internal/store.pb.h"
#include "nodewatch/v1/agent.pb.h"

namespace nodewatch::aggregator {

// Lives kept per node; the oldest go first (their history records stay).
inline constexpr int kMaxLivesPerNode = 128;

// What an interruption notice says will happen to the instance: "stop" (stopped or hibernated,
// disks kept), "reboot" (restarted in place, billed through), "terminate", or "" (nothing is
// taken away: a rebalance, a live migration, a freeze, a canceled event). nullopt: the notice
// changes nothing about the life (a COMPLETED event comes after the fact, often in the next one).
std::optional<std::string> NoticedEnd(const nodewatch::v1::InterruptionNotice& notice);

// How a life ended when the next one began, from what its notices said: "replaced" (another
// instance), "stopped", "rebooted", or "restarted" (no notice announced it).
std::string EndedHow(const nodewatch::v1::NodeLife& life, const std::string& next_instance_id);

// Applies a committed Hello. A node with no lives gets its first one (from first_seen, so a node
// stored before lives were kept is not priced from its upgrade). A boot id or instance id other
// than the current life's ends it (last seen where the node was last heard from) and begins a new
// one at `now_ms`; otherwise the current life's facts (type, lifecycle, zone, disks) are refreshed.
void ApplyHelloToLives(nodewatch::internal::StoredNode& node, const nodewatch::v1::Hello& hello,
                       int64_t now_ms);

// Notes a stored notice on the current life (its noticed end and kind).
void ApplyNoticeToLives(nodewatch::internal::StoredNode& node,
                        const nodewatch::v1::InterruptionNotice& notice);

// The current life was heard from at `now_ms`.
void TouchCurrentLife(nodewatch::internal::StoredNode& node, int64_t now_ms);

// A life of `info`'s instance and `boot_id` from `start_ms` until `last_seen_ms`, not ended.
nodewatch::v1::NodeLife OneLife(const nodewatch::v1::NodeInfo& info, const std::string& boot_id,
                                int64_t start_ms, int64_t last_seen_ms);

// The node's lives as the query API shows them; a node stored before lives were kept gets one
// life from its first to its last message, described by its NodeInfo.
google::protobuf::RepeatedPtrField<nodewatch::v1::NodeLife> LivesOf(
    const nodewatch::internal::StoredNode& node);

}  // namespace nodewatch::aggregator
