// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* nodewatch network signals.
 *
 * - cgroup_skb ingress/egress (attached to the pods' cgroup root, or the cgroup v2 root): bytes and
 *   packets per (socket cgroup, remote address, direction) in a bounded per-CPU hash. Works under
 *   any CNI (Cilium included) because it sits at the socket, not on tc.
 * - tp_btf TCP tracepoints: retransmitted segments, active connects (latency histogram, failures)
 *   and resets, in per-CPU arrays.
 *
 * Nothing goes through a ring buffer: every signal is a counter read out by the agent each
 * interval. A full map is counted (NW_FLOW_MAP_FULL, NW_CONNECT_MAP_FULL), never silent.
 * Counters are per CPU, but a program in process context can be interrupted on its CPU by a
 * softirq run for the same key (an ACK sent for the same socket), so adds are atomic; on a
 * CPU-local cache line that costs a few ns.
 *
 * Resets: tcp_send_reset fires for resets sent without a full socket (no listener, TIME_WAIT)
 * only since Linux 6.10; before that those are missing from the sent count. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_endian.h>

#include "nodewatch_bpf.h"
#include "nodewatch_common.bpf.h"

#define NW_ETH_P_IP 0x0800
#define NW_ETH_P_IPV6 0x86DD
#define NW_IPPROTO_TCP 6
#define NW_TCP_ESTABLISHED 1
#define NW_TCP_SYN_SENT 2
#define NW_TCP_CLOSE 7

/* Set by the loader before load, from the kernel's BTF: whether its tcp_retransmit_skb tracepoint
 * carries an `err` argument (newer kernels fire it for failed attempts too; only successful ones
 * are retransmits). */
const volatile bool retransmit_has_err = false;

/* Benchmarks only (bench/bpf_bench): the cgroup_skb programs return at once, so that the cost of
 * an empty program on the same traffic can be subtracted. The verifier drops the dead code. */
const volatile bool calibrate_empty = false;

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_HASH);
  __uint(max_entries, 16384); /* the agent sets --bpf-flow-entries before load */
  __type(key, struct nw_flow_key);
  __type(value, struct nw_flow_value);
} flows SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, NW_NET_COUNTER_COUNT);
  __type(key, __u32);
  __type(value, __u64);
} net_counters SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, NW_LOG2_SLOTS);
  __type(key, __u32);
  __type(value, __u64);
} connect_latency SEC(".maps");

/* Active opens in flight: socket address -> SYN_SENT time (ns). */
struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, 8192);
  __type(key, __u64);
  __type(value, __u64);
} connect_start SEC(".maps");

static __always_inline void count_flow(struct __sk_buff *skb, __u8 direction) {
  if (calibrate_empty) return;
  struct nw_flow_key key = {};
  key.direction = direction;
  /* The IP header is read in place (direct packet access: no helper call, no copy); a header not
   * in the linear part falls back to bpf_skb_load_bytes. */
  void *data = (void *)(long)skb->data;
  void *data_end = (void *)(long)skb->data_end;
  if (skb->protocol == bpf_htons(NW_ETH_P_IP)) {
    struct iphdr copy;
    struct iphdr *ip = data;
    if ((void *)(ip + 1) > data_end) {
      if (bpf_skb_load_bytes(skb, 0, &copy, sizeof(copy))) return;
      ip = &copy;
    }
    __u32 remote = direction == NW_EGRESS ? ip->daddr : ip->saddr;
    __builtin_memcpy(key.remote, &remote, 4);
    key.family = 4;
  } else if (skb->protocol == bpf_htons(NW_ETH_P_IPV6)) {
    struct ipv6hdr copy;
    struct ipv6hdr *ip6 = data;
    if ((void *)(ip6 + 1) > data_end) {
      if (bpf_skb_load_bytes(skb, 0, &copy, sizeof(copy))) return;
      ip6 = &copy;
    }
    if (direction == NW_EGRESS)
      __builtin_memcpy(key.remote, &ip6->daddr, 16);
    else
      __builtin_memcpy(key.remote, &ip6->saddr, 16);
    key.family = 6;
  } else {
    return;
  }
  key.cgroup_id = bpf_skb_cgroup_id(skb);
  __u64 packets = skb->gso_segs > 1 ? skb->gso_segs : 1;

  struct nw_flow_value *value = bpf_map_lookup_elem(&flows, &key);
  if (value) {
    __sync_fetch_and_add(&value->bytes, skb->len);
    __sync_fetch_and_add(&value->packets, packets);
    return;
  }
  struct nw_flow_value fresh = {.bytes = skb->len, .packets = packets};
  if (bpf_map_update_elem(&flows, &key, &fresh, BPF_NOEXIST) == 0) return;
  /* Another CPU may have inserted the key in between: then add to ours. */
  value = bpf_map_lookup_elem(&flows, &key);
  if (value) {
    __sync_fetch_and_add(&value->bytes, skb->len);
    __sync_fetch_and_add(&value->packets, packets);
    return;
  }
  nw_count(&net_counters, NW_FLOW_MAP_FULL, packets);
}

SEC("cgroup_skb/egress")
int nw_count_egress(struct __sk_buff *skb) {
  count_flow(skb, NW_EGRESS);
  return 1; /* never drop: we only count */
}

SEC("cgroup_skb/ingress")
int nw_count_ingress(struct __sk_buff *skb) {
  count_flow(skb, NW_INGRESS);
  return 1;
}

SEC("tp_btf/tcp_retransmit_skb")
int BPF_PROG(nw_tcp_retransmit, const struct sock *sk, const struct sk_buff *skb) {
  if (retransmit_has_err && (int)ctx[2] != 0) return 0;
  /* TCP_SKB_CB(skb)->tcp_gso_segs: one retransmitted skb can carry several segments, and
   * /proc/net/snmp RetransSegs counts segments. */
  const struct tcp_skb_cb *cb = (const struct tcp_skb_cb *)skb->cb;
  __u16 segs = cb->tcp_gso_segs;
  nw_count(&net_counters, NW_TCP_RETRANSMITS, segs > 1 ? segs : 1);
  return 0;
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(nw_tcp_state, const struct sock *sk, int oldstate, int newstate) {
  if (sk->sk_protocol != NW_IPPROTO_TCP) return 0;
  __u64 key = (__u64)sk;
  if (newstate == NW_TCP_SYN_SENT) {
    __u64 now = bpf_ktime_get_ns();
    if (bpf_map_update_elem(&connect_start, &key, &now, BPF_ANY))
      nw_count(&net_counters, NW_CONNECT_MAP_FULL, 1);
    return 0;
  }
  if (oldstate != NW_TCP_SYN_SENT) return 0;
  if (newstate == NW_TCP_ESTABLISHED) {
    nw_count(&net_counters, NW_TCP_CONNECTS, 1);
    __u64 *start = bpf_map_lookup_elem(&connect_start, &key);
    if (start) {
      __u64 us = (bpf_ktime_get_ns() - *start) / 1000;
      nw_count(&connect_latency, nw_log2_slot(us), 1);
    }
  } else if (newstate == NW_TCP_CLOSE) {
    nw_count(&net_counters, NW_TCP_FAILED_CONNECTS, 1);
  }
  bpf_map_delete_elem(&connect_start, &key);
  return 0;
}

SEC("tp_btf/tcp_send_reset")
int BPF_PROG(nw_tcp_send_reset) {
  nw_count(&net_counters, NW_TCP_RESETS_SENT, 1);
  return 0;
}

SEC("tp_btf/tcp_receive_reset")
int BPF_PROG(nw_tcp_receive_reset) {
  nw_count(&net_counters, NW_TCP_RESETS_RECEIVED, 1);
  return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
