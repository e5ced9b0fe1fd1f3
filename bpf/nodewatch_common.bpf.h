/* Helpers shared by the BPF programs. Lockdown-safe by construction: nothing here reads kernel
 * memory through a helper (no bpf_probe_read_*); BTF-typed pointers are dereferenced directly. */
#ifndef NODEWATCH_COMMON_BPF_H_
#define NODEWATCH_COMMON_BPF_H_

/* floor(log2(v)) for v >= 1, 0 for v == 0; branch-light binary search (no loop to unroll). */
static __always_inline __u32 nw_log2_u32(__u32 v) {
  __u32 r = (v > 0xFFFF) << 4;
  v >>= r;
  __u32 shift = (v > 0xFF) << 3;
  v >>= shift;
  r |= shift;
  shift = (v > 0xF) << 2;
  v >>= shift;
  r |= shift;
  shift = (v > 0x3) << 1;
  v >>= shift;
  r |= shift;
  r |= (v >> 1);
  return r;
}

/* Histogram slot of a duration in microseconds: floor(log2(us)), capped at the open last slot. */
static __always_inline __u32 nw_log2_slot(__u64 us) {
  __u32 slot = (us >> 32) ? 32 + nw_log2_u32((__u32)(us >> 32)) : nw_log2_u32((__u32)us);
  return slot < NW_LOG2_SLOTS ? slot : NW_LOG2_SLOTS - 1;
}

static __always_inline void nw_count(void *counters, __u32 index, __u64 delta) {
  __u64 *value = bpf_map_lookup_elem(counters, &index);
  if (value) __sync_fetch_and_add(value, delta); /* same-CPU interruptions: see net.bpf.c */
}

#endif /* NODEWATCH_COMMON_BPF_H_ */
