#include "agent/collectors/net/network_collector.h"

#include <algorithm>
#include <tuple>

#include "common/logging.h"

namespace nodewatch::agent {

NetworkCollector::NetworkCollector(Spool& spool, std::unique_ptr<NetCounterSource> source,
                                   std::unique_ptr<PodResolver> pods, const Clock& clock,
                                   NetworkCollectorOptions options)
    : spool_(spool),
      source_(std::move(source)),
      pods_(std::move(pods)),
      clock_(clock),
      options_(options),
      last_ms_(clock.NowUnixMs()),
      thread_(options.interval_ms, [this] {
        if (auto s = CollectOnce(); !s.ok()) {
          GetLogger("agent.net")->warn("network sample failed: {}", s.status());
        }
      }) {}

NetworkCollector::~NetworkCollector() { Stop(); }

namespace {

void AddTo(nodewatch::v1::NetworkFlow& flow, const FlowTotals& d) {
  flow.set_bytes(flow.bytes() + d.bytes);
  flow.set_packets(flow.packets() + d.packets);
  flow.set_tcp_retransmits(flow.tcp_retransmits() + d.tcp_retransmits);
  flow.set_tcp_failed_connects(flow.tcp_failed_connects() + d.tcp_failed_connects);
  flow.set_tcp_resets(flow.tcp_resets() + d.tcp_resets);
  flow.set_tcp_slow_connects(flow.tcp_slow_connects() + d.tcp_slow_connects);
}

}  // namespace

absl::StatusOr<nodewatch::v1::NetworkSample> NetworkCollector::CollectOnce() {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<std::pair<FlowKey, FlowTotals>> current;
  TcpTotals tcp;
  if (auto s = source_->ReadFlows(current); !s.ok()) {
    ++counters_.read_errors;
    return s;
  }
  if (auto s = source_->ReadTcp(tcp); !s.ok()) {
    ++counters_.read_errors;
    return s;
  }
  // Entries of the flows map; the keys with TCP trouble only (no bytes or packets ever) live in
  // tcp_trouble.
  counters_.flow_entries = std::count_if(current.begin(), current.end(), [](const auto& flow) {
    return flow.second.bytes != 0 || flow.second.packets != 0;
  });

  // Per-flow deltas since the last interval.
  std::map<FlowKey, FlowTotals> deltas;
  std::vector<FlowKey> idle;
  std::map<FlowKey, Entry> next;
  for (auto& [key, totals] : current) {
    Entry entry;
    if (auto it = flows_.find(key); it != flows_.end()) entry = it->second;
    const FlowTotals d = FlowTotals::Delta(totals, entry.last);
    if (d.IsZero()) {
      if (++entry.idle >= options_.idle_intervals) idle.push_back(key);
    } else {
      entry.idle = 0;
      deltas[key] = d;
    }
    entry.last = totals;
    next[key] = entry;
  }
  if (!idle.empty()) {
    std::vector<std::pair<FlowKey, FlowTotals>> taken;
    if (auto s = source_->TakeFlows(idle, taken); !s.ok()) {
      ++counters_.read_errors;
    } else {
      for (auto& [key, final_totals] : taken) {
        const Entry& entry = next[key];
        const FlowTotals d = FlowTotals::Delta(final_totals, entry.last);
        if (!d.IsZero()) deltas[key] += d;
      }
      for (const FlowKey& key : idle) next.erase(key);
      counters_.flows_evicted += taken.size();
    }
  }
  flows_ = std::move(next);

  // Attribute to pods and merge the cgroups of one pod (its containers) per remote address.
  using FlowId = std::tuple<std::string, std::string, bool>;  // pod uid, remote, egress
  std::map<FlowId, nodewatch::v1::NetworkFlow> merged;
  for (const auto& [key, d] : deltas) {
    std::optional<PodRef> pod = pods_->Resolve(key.cgroup_id);
    auto [it, added] = merged.try_emplace({pod ? pod->uid : std::string(), key.remote, key.egress});
    nodewatch::v1::NetworkFlow& flow = it->second;
    if (added) {
      if (pod) {
        flow.set_pod_uid(pod->uid);
        flow.set_pod_namespace(pod->namespace_);
        flow.set_pod_name(pod->name);
      }
      flow.set_remote_address(key.remote);
      flow.set_direction(key.egress ? nodewatch::v1::DIRECTION_EGRESS
                                    : nodewatch::v1::DIRECTION_INGRESS);
    }
    AddTo(flow, d);
  }
  std::vector<nodewatch::v1::NetworkFlow> flows;
  flows.reserve(merged.size());
  for (auto& [id, flow] : merged) flows.push_back(std::move(flow));
  if (flows.size() > options_.max_flows) {
    std::stable_sort(flows.begin(), flows.end(),
                     [](const auto& a, const auto& b) { return a.bytes() > b.bytes(); });
    std::map<std::pair<std::string, int>, nodewatch::v1::NetworkFlow> folded;
    for (size_t i = options_.max_flows; i < flows.size(); ++i) {
      auto [it, added] = folded.try_emplace({flows[i].pod_uid(), flows[i].direction()}, flows[i]);
      nodewatch::v1::NetworkFlow& f = it->second;
      if (added) {
        f.clear_remote_address();
      } else {
        AddTo(f, {flows[i].bytes(), flows[i].packets(), flows[i].tcp_retransmits(),
                  flows[i].tcp_failed_connects(), flows[i].tcp_resets(),
                  flows[i].tcp_slow_connects()});
      }
    }
    counters_.flows_folded += flows.size() - options_.max_flows;
    flows.resize(options_.max_flows);
    for (auto& [id, f] : folded) flows.push_back(std::move(f));
  }

  const int64_t now_ms = clock_.NowUnixMs();
  nodewatch::v1::NetworkSample sample;
  sample.set_interval_ms(static_cast<uint64_t>(std::max<int64_t>(0, now_ms - last_ms_)));
  last_ms_ = now_ms;
  for (auto& f : flows) *sample.add_flows() = std::move(f);
  sample.set_tcp_retransmits(CounterDelta(tcp.retransmits, last_tcp_.retransmits));
  sample.set_tcp_connects(CounterDelta(tcp.connects, last_tcp_.connects));
  sample.set_tcp_failed_connects(CounterDelta(tcp.failed_connects, last_tcp_.failed_connects));
  sample.set_tcp_resets(CounterDelta(tcp.resets_sent, last_tcp_.resets_sent) +
                        CounterDelta(tcp.resets_received, last_tcp_.resets_received));
  bool any_latency = false;
  std::array<uint64_t, kLog2Slots> latency{};
  for (int i = 0; i < kLog2Slots; ++i) {
    latency[i] = CounterDelta(tcp.connect_latency_log2_us[i], last_tcp_.connect_latency_log2_us[i]);
    any_latency |= latency[i] != 0;
  }
  if (any_latency) {
    int last = kLog2Slots - 1;
    while (last > 0 && latency[last] == 0) --last;
    for (int i = 0; i <= last; ++i) sample.add_connect_latency_log2_us(latency[i]);
  }
  sample.set_dropped_flows(CounterDelta(tcp.flow_map_full, last_tcp_.flow_map_full));
  counters_.flow_map_full = tcp.flow_map_full;
  counters_.connect_map_full = tcp.connect_map_full;
  counters_.trouble_map_full = tcp.trouble_map_full;
  last_tcp_ = tcp;

  const bool empty = sample.flows_size() == 0 && sample.tcp_retransmits() == 0 &&
                     sample.tcp_connects() == 0 && sample.tcp_failed_connects() == 0 &&
                     sample.tcp_resets() == 0 && sample.dropped_flows() == 0;
  if (!empty) {
    auto appended = spool_.AppendSample(
        now_ms, [&](nodewatch::v1::Record& r) { *r.mutable_network() = sample; });
    if (!appended.ok()) {
      ++counters_.spool_errors;
      return appended.status();
    }
    ++counters_.samples;
  }
  return sample;
}

}  // namespace nodewatch::agent
