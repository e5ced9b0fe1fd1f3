// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* nodewatch disk signals: per (device, op) completed requests, bytes, errors and a log2
 * latency histogram, from one BTF tracepoint, block_rq_complete (the request is a BTF pointer read
 * directly: no probe_read helpers).
 *
 * Latency is completion time minus rq->start_time_ns, the time the block layer itself stamps on
 * the request for /proc/diskstats (allocation, so queueing in the I/O scheduler is included: the
 * "await" of iostat). No issue hook and no in-flight map: one program run and one per-CPU map
 * lookup per I/O. Requests without a stamp (a queue with iostats off) are counted as untimed.
 * Counts stay in per-CPU maps; a full map is counted (NW_DISK_MAP_FULL). */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#include "nodewatch_bpf.h"
#include "nodewatch_common.bpf.h"

#define NW_REQ_OP_MASK 0xff /* (1 << REQ_OP_BITS) - 1 */
#define NW_REQ_OP_READ 0
#define NW_REQ_OP_WRITE 1

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_HASH);
  __uint(max_entries, 512); /* devices x 3 ops */
  __type(key, struct nw_disk_key);
  __type(value, struct nw_disk_value);
} disk_io SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, NW_DISK_COUNTER_COUNT);
  __type(key, __u32);
  __type(value, __u64);
} disk_counters SEC(".maps");

SEC("tp_btf/block_rq_complete")
int BPF_PROG(nw_block_complete, struct request *rq, blk_status_t error, unsigned int nr_bytes) {
  struct gendisk *disk = rq->q->disk;
  if (!disk) return 0;
  struct nw_disk_key key = {.major = disk->major, .minor = disk->first_minor};
  __u32 op = rq->cmd_flags & NW_REQ_OP_MASK;
  key.op = op == NW_REQ_OP_READ ? NW_OP_READ : op == NW_REQ_OP_WRITE ? NW_OP_WRITE : NW_OP_OTHER;

  struct nw_disk_value *value = bpf_map_lookup_elem(&disk_io, &key);
  if (!value) {
    struct nw_disk_value fresh = {};
    bpf_map_update_elem(&disk_io, &key, &fresh, BPF_NOEXIST);
    value = bpf_map_lookup_elem(&disk_io, &key);
    if (!value) {
      nw_count(&disk_counters, NW_DISK_MAP_FULL, 1);
      return 0;
    }
  }
  if (error) value->errors += 1;
  if (key.op == NW_OP_OTHER) return 0;
  value->ios += 1;
  value->bytes += nr_bytes;
  __u64 start = rq->start_time_ns;
  __u64 now = bpf_ktime_get_ns();
  if (start != 0 && now >= start)
    value->slots[nw_log2_slot((now - start) / 1000)] += 1;
  else
    value->untimed += 1;
  return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
