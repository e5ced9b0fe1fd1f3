/* Types shared by the BPF programs (bpf/<name>.bpf.c) and the agent's loaders
 * (agent/collectors/{net,disk}). Plain C, fixed-width fields, explicit padding: the layouts are
 * the map ABI between kernel and user space. */
#ifndef NODEWATCH_BPF_H_
#define NODEWATCH_BPF_H_

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

/* Bucket i counts [2^i, 2^(i+1)) microseconds, except bucket 0: [0, 2); the last one is open. */
#define NW_LOG2_SLOTS 32

enum nw_direction { NW_INGRESS = 1, NW_EGRESS = 2 };

/* One (cgroup, remote address, direction). v4 addresses use the first 4 bytes of `remote`. */
struct nw_flow_key {
  __u64 cgroup_id;
  __u8 remote[16];
  __u8 family; /* 4 or 6 */
  __u8 direction;
  __u8 pad[6];
};

/* Per CPU. bytes: wire bytes (IP packets as they cross the wire, each GSO segment with its own
 * headers; bpf/net.bpf.c, packet_wire_bytes()); packets: wire segments (max(1, gso_segs)). */
struct nw_flow_value {
  __u64 bytes;
  __u64 packets;
};

/* Not per CPU (rare events: a per-CPU value would multiply the flows map's memory by the CPUs for
 * them), in `tcp_trouble`, keyed by the egress flow key of TCP connections of the counted cgroup:
 * segments retransmitted, active opens that failed, resets sent or received on the connection,
 * active opens that took NW_SLOW_CONNECT_US or longer. */
#define NW_SLOW_CONNECT_US 500000
struct nw_tcp_trouble {
  __u64 retransmits;
  __u64 failed_connects;
  __u64 resets;
  __u64 slow_connects;
};

/* Slots of the per-CPU `net_counters` array. */
enum nw_net_counter {
  NW_TCP_RETRANSMITS = 0,   /* segments retransmitted (TCP_SKB_CB pcount) */
  NW_TCP_CONNECTS,          /* active opens that reached ESTABLISHED */
  NW_TCP_FAILED_CONNECTS,   /* active opens that went SYN_SENT -> CLOSE */
  NW_TCP_RESETS_SENT,
  NW_TCP_RESETS_RECEIVED,
  NW_FLOW_MAP_FULL,         /* packets not counted: the flows map was full */
  NW_CONNECT_MAP_FULL,      /* connects not timed: the pending-connect map was full */
  NW_TROUBLE_MAP_FULL,      /* TCP trouble events not kept per flow: tcp_trouble full */
  NW_NET_COUNTER_COUNT
};

enum nw_disk_op { NW_OP_READ = 0, NW_OP_WRITE = 1, NW_OP_OTHER = 2 };

struct nw_disk_key {
  __u32 major;
  __u32 minor;
  __u32 op; /* enum nw_disk_op */
  __u32 pad;
};

/* Per CPU. ios/bytes: completed requests (reads and writes only, as /proc/diskstats counts
 * them); errors: completions with a non-zero status (any op); slots: completion - the request's
 * start stamp (rq->start_time_ns, as /proc/diskstats times requests). */
struct nw_disk_value {
  __u64 ios;
  __u64 bytes;
  __u64 errors;
  __u64 untimed; /* completed without a start stamp (the queue's iostats are off) */
  __u64 slots[NW_LOG2_SLOTS];
};

/* The per-CPU slot array `disk_slots` (the fast path; `disk_io` takes what does not fit): each
 * CPU's copy of a slot belongs to the (device, op) whose packed key it holds, 0 while free. */
#define NW_DISK_SLOTS 128  /* a power of two */
#define NW_DISK_PROBES 4   /* slots tried per (device, op) before the hash */
#define NW_DISK_SLOT_USED (1ULL << 63)

static inline __u64 nw_disk_pack(__u32 major, __u32 minor, __u32 op) {
  return NW_DISK_SLOT_USED | ((__u64)(major & 0xfffffff) << 34) | ((__u64)minor << 2) | (op & 3);
}

static inline void nw_disk_unpack(__u64 packed, __u32 *major, __u32 *minor, __u32 *op) {
  *major = (__u32)((packed >> 34) & 0xfffffff);
  *minor = (__u32)(packed >> 2);
  *op = (__u32)(packed & 3);
}

struct nw_disk_slot {
  __u64 key; /* nw_disk_pack(), 0 = free */
  struct nw_disk_value value;
};

enum nw_disk_counter {
  NW_DISK_MAP_FULL = 0,   /* completions not counted: the per-device map was full */
  NW_DISK_TEST_SEEN,      /* tests only: completions of the device told to skip some */
  NW_DISK_TEST_SKIPPED,   /* tests only: of those, left uncounted on purpose */
  NW_DISK_COUNTER_COUNT
};

#endif /* NODEWATCH_BPF_H_ */
