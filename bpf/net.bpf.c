// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* nodewatch network signals.
 *
 * - cgroup_skb ingress/egress (attached to the pods' cgroup root, or the cgroup v2 root): bytes and
 *   packets per (socket cgroup, remote address, direction), read out of the per-CPU hash `flows`.
 * - What a counted byte is, on every path: a byte of an IP packet as it crosses the wire, IP and
 *   transport headers included, each segment of a GSO/TSO (or GRO) super-packet with its own
 *   headers (the kernel hands one skb with one header to IP and to these programs; the wire, and
 *   the bill, carry one per segment), every retransmission as often as it is sent, IPv4 and IPv6
 *   alike. Packets: wire segments. See packet_wire_bytes() and docs/ebpf.md.
 * - TCP connections and busy UDP sockets are counted in their socket's storage entry where the
 *   kernel can (the "socket" path): a connection's first packet gives its socket an entry keyed
 *   like its flow, and every later packet adds its wire bytes there (one socket-storage lookup
 *   and two adds; no hash lookup). A UDP socket earns its entry when its packets keep coming (see
 *   NW_UDP_PROMOTE_SHIFT) and keeps one remote address there; packets of its other remote
 *   addresses take the per-packet path. Entries are folded into `flows` by an iterator over the
 *   storage that the agent runs before each read (iter/bpf_sk_storage_map), and at close: TCP's
 *   when the connection reaches CLOSE (tp_btf/inet_sock_set_state), UDP's in cgroup/sock_release.
 *   Where the kernel cannot run those (no iterator, no tracing programs, no 5.12 atomics) every
 *   packet takes the "packet" path, through `flows`. Both paths add the same packet_wire_bytes().
 *   Everything else (ICMP, TCP packets without a full socket: SYN-ACKs of request sockets,
 *   TIME_WAIT ACKs, resets) is counted per packet in `flows`.
 * - tp_btf TCP tracepoints: retransmitted segments, active connects (latency histogram, failures)
 *   and resets, in per-CPU arrays; retransmits, failed and slow connects and resets also on the
 *   connection's flow (so per pod and remote address), on both paths.
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
#include <bpf/bpf_core_read.h> /* bpf_core_field_exists only: a compile-time relocation, no helper */

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
  /* Wire bytes and segments to and from key.remote, added per packet (packet_wire_bytes()). */
  __u64 counted[NW_SOCKET_COUNTERS];
  /* How much of `counted` has been folded into `flows` already. */
  __u64 folded[NW_SOCKET_COUNTERS];
  /* Folded for the last time: later packets are counted per packet. Set with an atomic exchange
   * (a full barrier) before that fold reads the counters. */
  __u32 closed;
  __u8 kind; /* enum nw_socket_kind */
  __u8 pad[3];
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

/* On the packet path: a TCP connection's egress flow key built from its socket the way the
 * cgroup_skb programs key its packets (the socket's cgroup, its peer; an IPv4 peer of an IPv6
 * socket as IPv4), if `flows` has that flow, i.e. the socket is in the counted cgroup and its
 * packets were counted. Direct BTF reads (lockdown-safe); false on kernels whose sock_cgroup_data
 * has no cgroup pointer (before 5.15): there the node totals remain. */
static __always_inline bool tcp_packet_flow(const struct sock *sk, struct nw_flow_key *key) {
  if (!bpf_core_field_exists(sk->sk_cgrp_data.cgroup)) return false;
  const struct cgroup *cgroup = sk->sk_cgrp_data.cgroup;
  if (!cgroup) return false;
  __builtin_memset(key, 0, sizeof(*key));
  key->cgroup_id = cgroup->kn->id;
  key->direction = NW_EGRESS;
  const __u16 family = sk->__sk_common.skc_family;
  if (family == NW_AF_INET) {
    __u32 remote = sk->__sk_common.skc_daddr;
    __builtin_memcpy(key->remote, &remote, 4);
    key->family = 4;
  } else if (family == NW_AF_INET6 && bpf_core_field_exists(sk->__sk_common.skc_v6_daddr)) {
    __u32 remote[4];
    for (int i = 0; i < 4; i++) remote[i] = sk->__sk_common.skc_v6_daddr.in6_u.u6_addr32[i];
    if (remote[0] == 0 && remote[1] == 0 && remote[2] == bpf_htonl(0xffff)) {
      __builtin_memcpy(key->remote, &remote[3], 4);
      key->family = 4;
    } else {
      __builtin_memcpy(key->remote, remote, 16);
      key->family = 6;
    }
  } else {
    return false;
  }
  return bpf_map_lookup_elem(&flows, key) != 0;
}

/* The egress flow of a TCP connection of the counted cgroup, for its trouble counters (on either
 * path, so that both report the same per-pod trouble); false if it is not one. */
static __always_inline bool tcp_socket_flow(const struct sock *sk, struct nw_flow_key *key) {
  if (!sk) return false;
  if (!tcp_from_sockets) return tcp_packet_flow(sk, key);
  struct nw_counted_socket *state = bpf_sk_storage_get(&counted_sockets, (struct sock *)sk, 0, 0);
  if (!state) return false;
  *key = state->key;
  key->direction = NW_EGRESS;
  return true;
}

/* Takes the part of a socket counter not folded yet: `folded` only moves forward, and two folds of
 * the same socket at once (the iterator and the close) each take a disjoint part. The counters are
 * cumulative, so what a fold leaves (a lost race) is taken by the next one. */
static __always_inline __u64 take_unfolded(__u64 *folded, __u64 now) {
  for (int attempt = 0; attempt < 4; attempt++) {
    __u64 before = *(volatile __u64 *)folded;
    __u64 delta = now - before;
    if (delta == 0 || (__s64)delta < 0) return 0;
    if (__sync_val_compare_and_swap(folded, before, now) == before) return delta;
  }
  return 0;
}

/* Moves what a socket's entry counted since the last fold into `flows` (TCP and UDP alike). */
static __always_inline void fold_socket(struct nw_counted_socket *state) {
  struct nw_flow_key key = state->key;
  volatile __u64 *counted = state->counted;
  __u64 packets = take_unfolded(&state->folded[NW_OUT_PACKETS], counted[NW_OUT_PACKETS]);
  __u64 bytes = take_unfolded(&state->folded[NW_OUT_BYTES], counted[NW_OUT_BYTES]);
  if (packets || bytes) {
    key.direction = NW_EGRESS;
    add_to_flow(&key, bytes, packets);
  }
  packets = take_unfolded(&state->folded[NW_IN_PACKETS], counted[NW_IN_PACKETS]);
  bytes = take_unfolded(&state->folded[NW_IN_BYTES], counted[NW_IN_BYTES]);
  if (packets || bytes) {
    key.direction = NW_INGRESS;
    add_to_flow(&key, bytes, packets);
  }
}

/* The header bytes each further segment of a GSO/GRO packet carries on the wire: the IP header
 * (IPv4 with its options; IPv6's fixed 40) and the TCP header with its options (data offset) or
 * UDP's 8 (UDP_SEGMENT). Read with bpf_skb_load_bytes: only super-packets come here, and they carry
 * many segments, so the helper call is paid once for all of them. 0 if unreadable or another
 * protocol (then only the IP bytes handed down are counted). */
static __always_inline __u32 segment_header_bytes(struct __sk_buff *skb) {
  __u32 ip_header = 0;
  __u8 protocol = 0;
  if (skb->protocol == bpf_htons(NW_ETH_P_IP)) {
    __u8 first[10];
    if (bpf_skb_load_bytes(skb, 0, first, sizeof(first))) return 0;
    ip_header = (first[0] & 0xf) * 4;
    protocol = first[9];
  } else if (skb->protocol == bpf_htons(NW_ETH_P_IPV6)) {
    __u8 first[7];
    if (bpf_skb_load_bytes(skb, 0, first, sizeof(first))) return 0;
    ip_header = 40;
    protocol = first[6];
  } else {
    return 0;
  }
  if (protocol == NW_IPPROTO_UDP) return ip_header + 8;
  if (protocol != NW_IPPROTO_TCP || ip_header < 20 || ip_header > 60) return 0;
  __u8 data_offset = 0;
  if (bpf_skb_load_bytes(skb, ip_header + 12, &data_offset, 1)) return 0;
  return ip_header + (data_offset >> 4) * 4;
}

/* What a counted byte is, on every path (see the top of this file): the packet's IP bytes, plus
 * the headers of each segment after the first of a GSO/GRO packet. */
static __always_inline __u64 packet_wire_bytes(struct __sk_buff *skb, __u32 segments) {
  __u64 bytes = skb->len;
  if (segments > 1) bytes += (__u64)(segments - 1) * segment_header_bytes(skb);
  return bytes;
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
  const __u32 segments = skb->gso_segs > 1 ? skb->gso_segs : 1;
  struct bpf_sock *sk = skb->sk;
  struct nw_counted_socket *counted = 0;
  struct bpf_sock *uncounted_udp = 0; /* a UDP socket without an entry yet */
  struct bpf_sock *uncounted_tcp = 0; /* a TCP connection without an entry yet */
  if ((tcp_from_sockets || udp_from_sockets) && sk) {
    /* The common case, one helper call: a TCP connection counted from its socket. */
    counted = bpf_sk_storage_get(&counted_sockets, sk, 0, 0);
    if (counted && counted->kind == NW_SOCKET_TCP) {
      if (!counted->closed) {
        add_to_socket(counted, direction, packet_wire_bytes(skb, segments), segments);
        return;
      }
      counted = 0;
    } else if (!counted) {
      struct bpf_sock *full = bpf_sk_fullsock(sk);
      if (full && full->protocol == NW_IPPROTO_TCP) {
        /* Not listeners (their SYNs) nor closed sockets (a reset after close): per packet. */
        if (tcp_from_sockets && full->state != NW_TCP_CLOSE && full->state != NW_TCP_LISTEN)
          uncounted_tcp = full;
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
  const __u64 bytes = packet_wire_bytes(skb, segments);
  if (counted && !counted->closed && same_remote(&counted->key, &key)) {
    /* A UDP socket's entry: its remote address is counted there. */
    add_to_socket(counted, direction, bytes, segments);
    return;
  }
  key.cgroup_id = bpf_skb_cgroup_id(skb);
  if (uncounted_tcp) {
    /* The connection's first packet seen: its socket gets an entry keyed by the packet's flow
     * (an IPv4 peer of an IPv6 socket is keyed as IPv4, as its packets are), and this packet and
     * the following ones are counted there. Without memory for it, per packet. */
    struct nw_counted_socket fresh = {.kind = NW_SOCKET_TCP, .key = key};
    fresh.key.direction = NW_EGRESS;
    struct nw_counted_socket *state =
        bpf_sk_storage_get(&counted_sockets, uncounted_tcp, &fresh, BPF_SK_STORAGE_GET_F_CREATE);
    if (state) {
      add_to_socket(state, direction, bytes, segments);
      return;
    }
  }
  const __u64 before = add_to_flow(&key, bytes, segments);
  if (uncounted_udp &&
      (before >> NW_UDP_PROMOTE_SHIFT) != ((before + segments) >> NW_UDP_PROMOTE_SHIFT)) {
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
      fold_socket(state);
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
    fold_socket(state);
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
  fold_socket(state);
  return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
