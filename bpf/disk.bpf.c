// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* nodewatch disk signals: per (device, op) completed requests, bytes, errors and a log2
 * latency histogram, from one BTF tracepoint, block_rq_complete (the request is a BTF pointer read
 * directly: no probe_read helpers).
 *
 * Latency is completion time minus rq->start_time_ns, the time the block layer itself stamps on
 * the request for /proc/diskstats (allocation, so queueing in the I/O scheduler is included: the
 * "await" of iostat). No issue hook and no in-flight map: one program run per I/O. Requests
 * without a stamp (a queue with iostats off) are counted as untimed.
 *
 * Counts stay per CPU in an array of slots, each claimed by the first (device, op) that hashes
 * to it on that CPU (an array lookup is a few instructions; a hash lookup cost ~150 ns per I/O on
 * the development VM). A (device, op) that finds its slots taken goes to the per-CPU hash
 * `disk_io`; a full hash is counted (NW_DISK_MAP_FULL). */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h> /* bpf_core_field_exists only: a compile-time relocation, no helper */

#include "nodewatch_bpf.h"
#include "nodewatch_common.bpf.h"

#define NW_REQ_OP_MASK 0xff /* (1 << REQ_OP_BITS) - 1 */
#define NW_REQ_OP_FLUSH 2
#define NW_REQ_OP_DISCARD 3
#define NW_REQ_OP_PASSTHROUGH 32 /* from here on: SCSI_IN/OUT (older kernels), DRV_IN/OUT */

/* Reads and writes as /proc/diskstats counts them, so that the collector can check the counts
 * against it. A request the kernel accounts in diskstats (RQF_IO_STAT) is classed as the kernel's
 * op_stat_group() classes it: a discard is neither, an odd op writes (write, write-zeroes, secure
 * erase, zone append, ...), an even one reads (including the flush a request-based dm device
 * clones onto its paths). Requests it does not account (a queue with iostats off, passthrough
 * commands) are classed the same way, except that flushes and passthrough commands are neither. */
static __always_inline __u32 diskstats_op(__u32 op, bool accounted) {
  if (op == NW_REQ_OP_DISCARD) return NW_OP_OTHER;
  if (!accounted && (op == NW_REQ_OP_FLUSH || op >= NW_REQ_OP_PASSTHROUGH)) return NW_OP_OTHER;
  return (op & 1) ? NW_OP_WRITE : NW_OP_READ;
}

/* Bit `flag` of enum rqf_flags (recent 6.x kernels name the request flags there), 0 on a kernel
 * without it: there neither flush sequences nor accounting are told apart (a write with FUA or
 * PREFLUSH on a device with a write cache is then counted twice, as below). */
#define NW_RQF(flag)                                     \
  (bpf_core_enum_value_exists(enum rqf_flags, flag)      \
       ? 1u << bpf_core_enum_value(enum rqf_flags, flag) \
       : 0)

/* Kernels before 5.17 keep the disk in the request itself (rq->rq_disk); newer ones only in its
 * queue (rq->q->disk, 5.15+). CO-RE picks whichever the running kernel has. */
struct request___with_rq_disk {
  struct gendisk *rq_disk;
} __attribute__((preserve_access_index));

static __always_inline struct gendisk *request_disk(struct request *rq) {
  struct request___with_rq_disk *old = (void *)rq;
  if (bpf_core_field_exists(old->rq_disk)) return old->rq_disk;
  return rq->q->disk;
}

/* Tests only: false sends every device to the hash, the path of a node with more devices than
 * slots. */
const volatile bool use_slots = true;
/* Tests only: every test_skip_every-th read or write completion of device (test_skip_major,
 * test_skip_minor) on a CPU is left uncounted, as if the kernel had not run the program, so that
 * the collector's check against diskstats can be shown to find exactly those. 0: never (the
 * verifier then removes the branch). */
const volatile __u32 test_skip_every = 0;
const volatile __u32 test_skip_major = 0;
const volatile __u32 test_skip_minor = 0;
/* Benchmarks only: return at once, to measure what the tracepoint and bpf_stats cost by
 * themselves. */
const volatile bool calibrate_empty = false;

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_HASH);
  /* Entries appear once per device and op, so they are allocated on insert (no prealloc): the
   * map costs memory for the devices a node has, not 512 x CPUs values. */
  __uint(map_flags, BPF_F_NO_PREALLOC);
  __uint(max_entries, 512); /* (device, op)s beyond the slots */
  __type(key, struct nw_disk_key);
  __type(value, struct nw_disk_value);
} disk_io SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, NW_DISK_SLOTS);
  __type(key, __u32);
  __type(value, struct nw_disk_slot);
} disk_slots SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, NW_DISK_COUNTER_COUNT);
  __type(key, __u32);
  __type(value, __u64);
} disk_counters SEC(".maps");

/* This CPU's counters for `key`: its slot (claimed if free), else its hash entry (inserted if
 * new), else NULL (all full: counted). The claim is a plain store, then a check: a
 * compare-and-exchange would need Linux 5.12. What it gives up, on kernels that run a tracing
 * program nested in itself (newer ones skip the nested run and count it as missed): a completion
 * interrupting another on the same CPU, both the first I/O of their (device, op) on that CPU
 * since load and both hashing to the same free slot, could leave the interrupted one's counts in
 * the other's slot. */
static __always_inline struct nw_disk_value *device_counters(struct nw_disk_key *key) {
  const __u64 packed = nw_disk_pack(key->major, key->minor, key->op);
  const __u32 first = (key->major * 257 + key->minor) * 3 + key->op;
  for (__u32 probe = 0; use_slots && probe < NW_DISK_PROBES; probe++) {
    __u32 index = (first + probe) & (NW_DISK_SLOTS - 1);
    struct nw_disk_slot *slot = bpf_map_lookup_elem(&disk_slots, &index);
    if (!slot) break;
    if (slot->key == 0) slot->key = packed;
    if (slot->key == packed) return &slot->value;
  }
  struct nw_disk_value *value = bpf_map_lookup_elem(&disk_io, key);
  if (value) return value;
  struct nw_disk_value fresh = {};
  bpf_map_update_elem(&disk_io, key, &fresh, BPF_NOEXIST);
  value = bpf_map_lookup_elem(&disk_io, key);
  if (!value) nw_count(&disk_counters, NW_DISK_MAP_FULL, 1);
  return value;
}

SEC("tp_btf/block_rq_complete")
int BPF_PROG(nw_block_complete, struct request *rq, blk_status_t error, unsigned int nr_bytes) {
  if (calibrate_empty) return 0;
  struct gendisk *disk = request_disk(rq);
  if (!disk) return 0;
  /* A write with PREFLUSH or FUA on a device with a write cache completes twice: its data part
   * (flagged FLUSH_SEQ: its bytes), then, after the flushes, the whole request (no flag, no bytes
   * left, an error again if there was one). diskstats accounts the second; so do we: one I/O,
   * one error. The flush machinery's own flush requests are flagged too. */
  const __u32 flags = rq->rq_flags;
  const bool sequenced = flags & NW_RQF(__RQF_FLUSH_SEQ);
  const bool accounted = !sequenced && (flags & NW_RQF(__RQF_IO_STAT));
  struct nw_disk_key key = {.major = disk->major, .minor = disk->first_minor};
  key.op = diskstats_op(rq->cmd_flags & NW_REQ_OP_MASK, accounted);

  if (test_skip_every && !sequenced && key.op != NW_OP_OTHER && key.major == test_skip_major &&
      key.minor == test_skip_minor) {
    __u32 seen_index = NW_DISK_TEST_SEEN;
    __u64 *seen = bpf_map_lookup_elem(&disk_counters, &seen_index);
    if (seen && ++*seen % test_skip_every == 0) {
      nw_count(&disk_counters, NW_DISK_TEST_SKIPPED, 1);
      return 0;
    }
  }
  struct nw_disk_value *value = device_counters(&key);
  if (!value) return 0;
  /* Atomic adds: a completion in task context (loop, polled queues) can be interrupted on the same
   * CPU by one in interrupt context for the same device. */
  if (error && !sequenced) __sync_fetch_and_add(&value->errors, 1);
  if (key.op == NW_OP_OTHER) return 0;
  if (nr_bytes) __sync_fetch_and_add(&value->bytes, nr_bytes);
  if (sequenced) return 0;
  __sync_fetch_and_add(&value->ios, 1);
  __u64 start = rq->start_time_ns;
  __u64 now = bpf_ktime_get_ns();
  if (start != 0 && now >= start)
    __sync_fetch_and_add(&value->slots[nw_log2_slot((now - start) / 1000)], 1);
  else
    __sync_fetch_and_add(&value->untimed, 1);
  return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
