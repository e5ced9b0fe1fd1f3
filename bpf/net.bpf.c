// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* nodewatch network signals.
 *
 * - cgroup_skb ingress/egress (attached to the pods' cgroup root, or the cgroup v2 root): bytes and
 *   packets per (socket cgroup, remote address, direction), read out of the per-CPU hash `flows`.
 * - TCP connections are not counted per packet. The kernel already counts every connection's
 *   payload and segments in its tcp_sock (bytes_acked, bytes_received, segs_out, segs_in); the
 *   first packet of a connection gives the socket a small storage entry (its flow key and the
 *   counters already taken), after which each packet costs one socket-storage lookup. The counters
 *   are folded into `flows` when the connection closes (tp_btf/inet_sock_set_state) and, for live
 *   connections, by an iterator over the storage that the agent runs before each read
 *   (iter/bpf_sk_storage_map). Bytes are IP bytes, as for every other packet: payload plus
 *   segments x (IP header + the connection's TCP header length).
 * - Busy UDP sockets keep one remote address's counts in their own storage entry: a socket whose
 *   packets keep coming is given an entry for one packet's remote address (see
 *   NW_UDP_PROMOTE_SHIFT), and every later packet to or from the same address is added there (a
 *   header read and two adds on the socket's entry, no hash lookup). Packets of other remote
 *   addresses (a server's other clients, sendto elsewhere, a re-connected socket) and of sockets
 *   without an entry take the per-packet path. The entries are folded into `flows` by the same
 *   iterator and, when the socket is closed, by cgroup/sock_release.
 *   Everything else (ICMP, TCP packets without a full socket: SYN-ACKs of request sockets,
 *   TIME_WAIT ACKs, resets) is counted per packet in `flows` with its IP datagram length.
 * - tp_btf TCP tracepoints: retransmitted segments, active connects (latency histogram, failures)
 *   and resets, in per-CPU arrays; retransmits, failed and slow connects and resets also on the
 *   connection's flow when it is counted from its socket (so per pod and remote address).
 *
 * Nothing goes through a ring buffer: every signal is a counter read out by the agent each
 * interval. A full map is counted (NW_FLOW_MAP_FULL, NW_CONNECT_MAP_FULL, NW_TROUBLE_MAP_FULL),
 * never silent.
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
#define NW_AF_INET 2
#define NW_AF_INET6 10
#define NW_IPPROTO_TCP 6
#define NW_IPPROTO_UDP 17
#define NW_TCP_ESTABLISHED 1
#define NW_TCP_SYN_SENT 2
#define NW_TCP_CLOSE 7
#define NW_TCP_LISTEN 10

/* Set by the loader before load, from the kernel's BTF: whether its tcp_retransmit_skb tracepoint
 * carries an `err` argument (newer kernels fire it for failed attempts too; only successful ones
 * are retransmits). */
const volatile bool retransmit_has_err = false;

/* Set by the loader when TCP connections / UDP sockets can be counted from their sockets (the
 * fold programs below load and attach); otherwise they are counted per packet like everything
 * else. */
const volatile bool tcp_from_sockets = false;
const volatile bool udp_from_sockets = false;

/* A UDP socket gets its entry from the packet that takes its flow's packet count on a CPU past a
 * multiple of 2^NW_UDP_PROMOTE_SHIFT (the flows map counts it; the entry starts empty). */
#define NW_UDP_PROMOTE_SHIFT 8

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
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, 4096);
  __type(key, struct nw_flow_key);
  __type(value, struct nw_tcp_trouble);
} tcp_trouble SEC(".maps");

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

/* A socket being counted from its storage entry. Created by the cgroup_skb programs (so only
 * sockets of the attached cgroup have one): by a TCP connection's first packet, by a busy UDP
 * socket's (NW_UDP_PROMOTE_SHIFT); freed with the socket. Not preallocated: costs memory per
 * counted socket, about 110 bytes. */
enum nw_socket_kind { NW_SOCKET_TCP = 1, NW_SOCKET_UDP = 2 };
/* Indexes of `folded` and `counted`. */
enum { NW_OUT_BYTES = 0, NW_OUT_PACKETS, NW_IN_BYTES, NW_IN_PACKETS, NW_SOCKET_COUNTERS };
struct nw_counted_socket {
  /* The egress flow key: for TCP the connection's peer, for UDP the one remote address whose
   * packets are counted here. */
  struct nw_flow_key key;
  /* How much has been folded into `flows` already. TCP: of the tcp_sock's bytes_acked, segs_out
   * (32-bit, wraps), bytes_received, segs_in (32-bit, wraps); UDP: of `counted`. */
  __u64 folded[NW_SOCKET_COUNTERS];
  /* UDP only: IP bytes and packets to and from key.remote, added per packet. */
  __u64 counted[NW_SOCKET_COUNTERS];
  __u32 ip_header; /* TCP: 20 or 40 */
  /* Folded for the last time: later packets are counted per packet. Set with an atomic exchange
   * (a full barrier) before that fold reads the counters. */
  __u32 closed;
  __u8 kind; /* enum nw_socket_kind */
  __u8 pad[7];
};

struct {
  __uint(type, BPF_MAP_TYPE_SK_STORAGE);
  __uint(map_flags, BPF_F_NO_PREALLOC);
  __type(key, int);
  __type(value, struct nw_counted_socket);
} counted_sockets SEC(".maps");

/* Active opens in flight: socket address -> SYN_SENT time (ns). */
struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, 8192);
  __type(key, __u64);
  __type(value, __u64);
} connect_start SEC(".maps");

/* Adds to a flow's counters; returns the flow's packets on this CPU before the add (0 for a new
 * entry or when the map is full). The count is read before the add, not fetched by it: an atomic
 * fetch-add is a 5.12+ instruction, and these programs must load on older kernels (where the
 * verifier refuses it even in code a flag makes dead). A softirq add in between is missed by the
 * read, which only decides when a UDP socket gets its entry. */
static __always_inline __u64 add_to_flow(struct nw_flow_key *key, __u64 bytes, __u64 packets) {
  struct nw_flow_value *value = bpf_map_lookup_elem(&flows, key);
  if (!value) {
    struct nw_flow_value fresh = {.bytes = bytes, .packets = packets};
    if (bpf_map_update_elem(&flows, key, &fresh, BPF_NOEXIST) == 0) return 0;
    /* Another CPU may have inserted the key in between: then add to ours. */
    value = bpf_map_lookup_elem(&flows, key);
    if (!value) {
      nw_count(&net_counters, NW_FLOW_MAP_FULL, packets);
      return 0;
    }
  }
  const __u64 before = *(volatile __u64 *)&value->packets;
  __sync_fetch_and_add(&value->bytes, bytes);
  __sync_fetch_and_add(&value->packets, packets);
  return before;
}

/* Adds to the trouble counters of a connection's flow; zero arguments are compiled out where
 * they are constants. */
static __always_inline void add_trouble(struct nw_flow_key *key, __u64 retransmits,
                                        __u64 failed_connects, __u64 resets, __u64 slow_connects) {
  struct nw_tcp_trouble *value = bpf_map_lookup_elem(&tcp_trouble, key);
  if (!value) {
    struct nw_tcp_trouble fresh = {};
    bpf_map_update_elem(&tcp_trouble, key, &fresh, BPF_NOEXIST);
    value = bpf_map_lookup_elem(&tcp_trouble, key);
    if (!value) {
      nw_count(&net_counters, NW_TROUBLE_MAP_FULL, 1);
      return;
    }
  }
  if (retransmits) __sync_fetch_and_add(&value->retransmits, retransmits);
  if (failed_connects) __sync_fetch_and_add(&value->failed_connects, failed_connects);
  if (resets) __sync_fetch_and_add(&value->resets, resets);
  if (slow_connects) __sync_fetch_and_add(&value->slow_connects, slow_connects);
}

/* The egress flow of a TCP connection counted from its socket, for its trouble counters; false if
 * it is not one. */
static __always_inline bool tcp_socket_flow(const struct sock *sk, struct nw_flow_key *key) {
  if (!tcp_from_sockets || !sk) return false;
  struct nw_counted_socket *state = bpf_sk_storage_get(&counted_sockets, (struct sock *)sk, 0, 0);
  if (!state) return false;
  *key = state->key;
  key->direction = NW_EGRESS;
  return true;
}

/* Takes the part of a socket counter not folded yet: `folded` only moves forward, and two folds of
 * the same socket at once (the iterator and the close) each take a disjoint part. The counters are
 * cumulative, so what a fold leaves (a lost race) is taken by the next one. */
static __always_inline __u64 take_unfolded(__u64 *folded, __u64 now, bool wraps32) {
  for (int attempt = 0; attempt < 4; attempt++) {
    __u64 before = *(volatile __u64 *)folded;
    __u64 delta = wraps32 ? (__u32)((__u32)now - (__u32)before) : now - before;
    if (delta == 0 || (wraps32 ? (__s32)delta < 0 : (__s64)delta < 0)) return 0;
    if (__sync_val_compare_and_swap(folded, before, now) == before) return delta;
  }
  return 0;
}

static __always_inline void fold_tcp_socket(struct sock *sk, struct nw_counted_socket *state) {
  struct tcp_sock *tp = bpf_skc_to_tcp_sock(sk);
  if (!tp) return;
  const __u64 header = state->ip_header + tp->tcp_header_len;
  struct nw_flow_key key = state->key;
  __u64 segs = take_unfolded(&state->folded[NW_OUT_PACKETS], tp->segs_out, true);
  __u64 payload = take_unfolded(&state->folded[NW_OUT_BYTES], tp->bytes_acked, false);
  if (segs || payload) {
    key.direction = NW_EGRESS;
    add_to_flow(&key, payload + segs * header, segs);
  }
  segs = take_unfolded(&state->folded[NW_IN_PACKETS], tp->segs_in, true);
  payload = take_unfolded(&state->folded[NW_IN_BYTES], tp->bytes_received, false);
  if (segs || payload) {
    key.direction = NW_INGRESS;
    add_to_flow(&key, payload + segs * header, segs);
  }
}

static __always_inline void fold_udp_socket(struct nw_counted_socket *state) {
  struct nw_flow_key key = state->key;
  volatile __u64 *counted = state->counted;
  __u64 packets = take_unfolded(&state->folded[NW_OUT_PACKETS], counted[NW_OUT_PACKETS], false);
  __u64 bytes = take_unfolded(&state->folded[NW_OUT_BYTES], counted[NW_OUT_BYTES], false);
  if (packets || bytes) {
    key.direction = NW_EGRESS;
    add_to_flow(&key, bytes, packets);
  }
  packets = take_unfolded(&state->folded[NW_IN_PACKETS], counted[NW_IN_PACKETS], false);
  bytes = take_unfolded(&state->folded[NW_IN_BYTES], counted[NW_IN_BYTES], false);
  if (packets || bytes) {
    key.direction = NW_INGRESS;
    add_to_flow(&key, bytes, packets);
  }
}

/* Gives a TCP connection a storage entry, from its current counters, so that this packet and the
 * following ones are counted from the socket; false if it cannot be (listeners: SYNs; closed
 * sockets: a reset after close; no memory), and the packet is counted per packet. */
static __always_inline bool start_counting_tcp(struct __sk_buff *skb, struct bpf_sock *sk,
                                               __u8 direction) {
  if (sk->state == NW_TCP_CLOSE || sk->state == NW_TCP_LISTEN) return false;
  struct bpf_tcp_sock *tp = bpf_tcp_sock(sk);
  if (!tp) return false;
  struct nw_counted_socket fresh = {.kind = NW_SOCKET_TCP};
  fresh.key.cgroup_id = bpf_skb_cgroup_id(skb);
  if (sk->family == NW_AF_INET) {
    __u32 remote = sk->dst_ip4;
    __builtin_memcpy(fresh.key.remote, &remote, 4);
    fresh.key.family = 4;
    fresh.ip_header = 20;
  } else if (sk->family == NW_AF_INET6) {
    __u32 remote[4] = {sk->dst_ip6[0], sk->dst_ip6[1], sk->dst_ip6[2], sk->dst_ip6[3]};
    if (remote[0] == 0 && remote[1] == 0 && remote[2] == bpf_htonl(0xffff)) {
      /* An IPv4 peer of an IPv6 socket: keyed and sized as IPv4, as its packets are. */
      __builtin_memcpy(fresh.key.remote, &remote[3], 4);
      fresh.key.family = 4;
      fresh.ip_header = 20;
    } else {
      __builtin_memcpy(fresh.key.remote, remote, 16);
      fresh.key.family = 6;
      fresh.ip_header = 40;
    }
  } else {
    return false;
  }
  /* Counted from here on. An egress segment is already in segs_out (TCP counts it before handing
   * it to IP), an ingress one not yet in segs_in (counted after this filter): take the egress one
   * out of the baseline so the fold counts this packet either way. Payload is counted when
   * acknowledged (sent) or received in order, so this packet's is not in the baseline. */
  fresh.folded[NW_OUT_BYTES] = tp->bytes_acked;
  fresh.folded[NW_IN_BYTES] = tp->bytes_received;
  fresh.folded[NW_IN_PACKETS] = tp->segs_in;
  __u32 segs = skb->gso_segs > 1 ? skb->gso_segs : 1;
  fresh.folded[NW_OUT_PACKETS] =
      direction == NW_EGRESS ? (__u32)(tp->segs_out - segs) : tp->segs_out;
  return bpf_sk_storage_get(&counted_sockets, sk, &fresh, BPF_SK_STORAGE_GET_F_CREATE) != 0;
}

static __always_inline bool same_remote(const struct nw_flow_key *a, const struct nw_flow_key *b) {
  const __u32 *x = (const __u32 *)a->remote, *y = (const __u32 *)b->remote;
  if (a->family != b->family || x[0] != y[0]) return false;
  return a->family == 4 || (x[1] == y[1] && x[2] == y[2] && x[3] == y[3]);
}

static __always_inline void add_to_socket(struct nw_counted_socket *counted, __u8 direction,
                                          __u64 bytes, __u64 packets) {
  const int base = direction == NW_EGRESS ? NW_OUT_BYTES : NW_IN_BYTES;
  /* Not per CPU: the socket's sender and its softirq receive path can run on different CPUs. */
  __sync_fetch_and_add(&counted->counted[base], bytes);
  __sync_fetch_and_add(&counted->counted[base + 1], packets);
}

static __always_inline void count_flow(struct __sk_buff *skb, __u8 direction) {
  if (calibrate_empty) return;
  struct bpf_sock *sk = skb->sk;
  struct nw_counted_socket *counted = 0;
  struct bpf_sock *uncounted_udp = 0; /* a UDP socket without an entry yet */
  if ((tcp_from_sockets || udp_from_sockets) && sk) {
    /* The common case, one helper call: a TCP connection counted from its socket is done. */
    counted = bpf_sk_storage_get(&counted_sockets, sk, 0, 0);
    if (counted && counted->kind == NW_SOCKET_TCP) {
      if (!counted->closed) return;
      counted = 0;
    } else if (!counted) {
      struct bpf_sock *full = bpf_sk_fullsock(sk);
      if (full && full->protocol == NW_IPPROTO_TCP) {
        if (tcp_from_sockets && start_counting_tcp(skb, full, direction)) return;
      } else if (full && full->protocol == NW_IPPROTO_UDP && udp_from_sockets) {
        uncounted_udp = full;
      }
    }
  }
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
  const __u64 bytes = skb->len, packets = skb->gso_segs > 1 ? skb->gso_segs : 1;
  if (counted && !counted->closed && same_remote(&counted->key, &key)) {
    /* A UDP socket's entry: its remote address is counted there. */
    add_to_socket(counted, direction, bytes, packets);
    return;
  }
  key.cgroup_id = bpf_skb_cgroup_id(skb);
  const __u64 before = add_to_flow(&key, bytes, packets);
  if (uncounted_udp &&
      (before >> NW_UDP_PROMOTE_SHIFT) != ((before + packets) >> NW_UDP_PROMOTE_SHIFT)) {
    /* This packet took its flow's count on this CPU past a multiple of 2^NW_UDP_PROMOTE_SHIFT: its
     * socket gets an entry, and its later packets of this remote address are counted there. A busy
     * socket is soon picked; a short-lived one (a DNS lookup's) rarely pays for an entry (~1.7 us
     * to create, ~0.5 us to fold at close, measured) that it would not use. */
    struct nw_counted_socket fresh = {.kind = NW_SOCKET_UDP, .key = key};
    fresh.key.direction = NW_EGRESS;
    bpf_sk_storage_get(&counted_sockets, uncounted_udp, &fresh, BPF_SK_STORAGE_GET_F_CREATE);
  }
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
  struct nw_flow_key key;
  if (tcp_socket_flow(sk, &key)) add_trouble(&key, segs > 1 ? segs : 1, 0, 0, 0);
  return 0;
}

/* Active opens: SYN_SENT -> ESTABLISHED (latency) or CLOSE (failed). */
static __always_inline void on_tcp_state(const struct sock *sk, int oldstate, int newstate) {
  __u64 key = (__u64)sk;
  if (newstate == NW_TCP_SYN_SENT) {
    __u64 now = bpf_ktime_get_ns();
    if (bpf_map_update_elem(&connect_start, &key, &now, BPF_ANY))
      nw_count(&net_counters, NW_CONNECT_MAP_FULL, 1);
    return;
  }
  if (oldstate != NW_TCP_SYN_SENT) return;
  if (newstate == NW_TCP_ESTABLISHED) {
    nw_count(&net_counters, NW_TCP_CONNECTS, 1);
    __u64 *start = bpf_map_lookup_elem(&connect_start, &key);
    if (start) {
      __u64 us = (bpf_ktime_get_ns() - *start) / 1000;
      nw_count(&connect_latency, nw_log2_slot(us), 1);
      struct nw_flow_key flow;
      if (us >= NW_SLOW_CONNECT_US && tcp_socket_flow(sk, &flow)) add_trouble(&flow, 0, 0, 0, 1);
    }
  } else if (newstate == NW_TCP_CLOSE) {
    nw_count(&net_counters, NW_TCP_FAILED_CONNECTS, 1);
    struct nw_flow_key flow;
    if (tcp_socket_flow(sk, &flow)) add_trouble(&flow, 0, 1, 0, 0);
  }
  bpf_map_delete_elem(&connect_start, &key);
}

/* Loaded when TCP is counted per packet; otherwise nw_fold_tcp_state (below) does the same and
 * folds closing connections, in one run per state change. */
SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(nw_tcp_state, const struct sock *sk, int oldstate, int newstate) {
  if (sk->sk_protocol != NW_IPPROTO_TCP) return 0;
  on_tcp_state(sk, oldstate, newstate);
  return 0;
}

/* sk is NULL for a reset sent without a socket (6.10+). */
SEC("tp_btf/tcp_send_reset")
int BPF_PROG(nw_tcp_send_reset, const struct sock *sk) {
  nw_count(&net_counters, NW_TCP_RESETS_SENT, 1);
  struct nw_flow_key flow;
  if (tcp_socket_flow(sk, &flow)) add_trouble(&flow, 0, 0, 1, 0);
  return 0;
}

SEC("tp_btf/tcp_receive_reset")
int BPF_PROG(nw_tcp_receive_reset, const struct sock *sk) {
  nw_count(&net_counters, NW_TCP_RESETS_RECEIVED, 1);
  struct nw_flow_key flow;
  if (tcp_socket_flow(sk, &flow)) add_trouble(&flow, 0, 0, 1, 0);
  return 0;
}

/* The folds are programs of their own: they use compare-and-exchange (5.12+), which older
 * kernels refuse even in code a flag makes dead; without them the rest of the programs load. */

/* nw_tcp_state and, when a connection closes (after CLOSE its counters no longer move), its last
 * counts: one program, so that a state change costs one run. Loaded instead of nw_tcp_state when
 * TCP is counted from its sockets. */
SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(nw_fold_tcp_state, struct sock *sk, int oldstate, int newstate) {
  if (sk->sk_protocol != NW_IPPROTO_TCP) return 0;
  if (newstate == NW_TCP_CLOSE) {
    struct nw_counted_socket *state = bpf_sk_storage_get(&counted_sockets, sk, 0, 0);
    if (state) {
      __sync_lock_test_and_set(&state->closed, 1);
      fold_tcp_socket(sk, state);
    }
  }
  on_tcp_state(sk, oldstate, newstate);
  return 0;
}

/* A UDP socket's last counts, when it is closed (its packets in flight on other CPUs at that
 * moment may still be added, and are folded if the socket outlives the next iterator run). */
SEC("cgroup/sock_release")
int nw_fold_udp_release(struct bpf_sock *ctx) {
  /* Every socket of the cgroup comes here; only UDP ones can have a UDP entry (no helper call for
   * the others). */
  if (ctx->protocol != NW_IPPROTO_UDP) return 1;
  struct nw_counted_socket *state = bpf_sk_storage_get(&counted_sockets, ctx, 0, 0);
  if (state && state->kind == NW_SOCKET_UDP) {
    __sync_lock_test_and_set(&state->closed, 1);
    fold_udp_socket(state);
  }
  return 1;
}

/* Run by the agent before each read of `flows` (a read of an iterator made from this program's
 * link): folds every live counted socket. */
SEC("iter/bpf_sk_storage_map")
int nw_fold_sockets(struct bpf_iter__bpf_sk_storage_map *ctx) {
  struct sock *sk = ctx->sk;
  if (!sk) return 0;
  struct nw_counted_socket *state = bpf_sk_storage_get(&counted_sockets, sk, 0, 0);
  if (!state) return 0;
  if (state->kind == NW_SOCKET_TCP)
    fold_tcp_socket(sk, state);
  else
    fold_udp_socket(state);
  return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
