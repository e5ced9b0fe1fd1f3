#!/usr/bin/env bash
# Proves at build time that a BPF object runs under Talos SecureBoot's lockdown=confidentiality:
#   - no program section is a kprobe/kretprobe/uprobe/fentry/fexit/fmod_ret/lsm attach (kprobes
#     are refused under lockdown; fentry needs kernel text we do not rely on);
#   - no instruction calls a helper that reads or writes arbitrary kernel or user memory
#     (bpf_probe_read*, bpf_probe_write_user, bpf_override_return): lockdown=confidentiality
#     denies them at load time, which would turn every CO-RE BPF_CORE_READ into a load failure.
# And that only the socket folds (programs named nw_fold_*, switched off on older kernels) use the
# atomic instructions of Linux 5.12 (fetch-add, exchange, compare-and-exchange, and/or/xor): the
# counting programs must load on 5.10, whose verifier refuses them even in dead code.
# Writes the sections and the helpers each object calls to OUT (a build artifact, for review).
# Usage: check_lockdown_safe.sh OBJECT HELPER_DEFS_H OUT
set -euo pipefail
obj="$1" defs="$2" out="$3"
objdump="${LLVM_OBJDUMP:-llvm-objdump}"

sections=$("$objdump" -h "$obj" | awk 'NR > 5 && $2 != "" {print $2}' |
  grep -Ev '^[.]|^license$|^[0-9]*$' || true)
bad_sections=$(printf '%s\n' "$sections" |
  grep -E '^(kprobe|kretprobe|uprobe|uretprobe|ksyscall|kretsyscall|fentry|fexit|fmod_ret|lsm|kprobe\.multi|kretprobe\.multi)(/|$|\.)' || true)

# Helper ids as libbpf's bpf_helper_defs.h numbers them: "... (*bpf_name)(...) = (void *) N;"
declare -A helper_name
while read -r id name; do helper_name[$id]=$name; done < <(
  sed -n 's/.*(\*\(bpf_[a-z0-9_]*\))(.*= (void \*) \([0-9]*\);.*/\2 \1/p' "$defs")

ids=$("$objdump" -d "$obj" | grep -oE 'call [0-9]+$' | awk '{print $2}' | sort -n | uniq)
helpers=()
bad_helpers=()
for id in $ids; do
  name="${helper_name[$id]:-helper_$id}"
  helpers+=("$name")
  case "$name" in
    bpf_probe_read*|bpf_probe_write_user|bpf_override_return|helper_*) bad_helpers+=("$name") ;;
  esac
done

{
  echo "object: $(basename "$obj")"
  echo "sections: $(echo $sections)"
  echo "helpers: ${helpers[*]}"
} > "$out"

# Functions ("<name>:" lines of the disassembly) other than nw_fold_* with a 5.12+ atomic (or an
# instruction this llvm-objdump cannot print: 32-bit exchanges show as <unknown>).
new_atomics=$("$objdump" -d "$obj" | awk '
  /^[0-9a-f]+ <[A-Za-z_0-9]+>:$/ && !/<LBB/ { fn = $2; gsub(/[<>:]/, "", fn); next }
  fn !~ /^nw_fold_/ && (/atomic_fetch|cmpxchg|xchg|<unknown>/ || /lock .*[&|^]= /) { print fn }' |
  sort -u)

if [ -n "$bad_sections" ] || [ ${#bad_helpers[@]} -gt 0 ] || [ -n "$new_atomics" ]; then
  echo "check_lockdown_safe: $(basename "$obj") is not lockdown-safe or not 5.10-safe:" >&2
  [ -n "$bad_sections" ] && echo "  forbidden program types: $(echo $bad_sections)" >&2
  [ ${#bad_helpers[@]} -gt 0 ] && echo "  forbidden or unknown helpers: ${bad_helpers[*]}" >&2
  [ -n "$new_atomics" ] && echo "  5.12+ atomics outside the nw_fold_* programs: $(echo $new_atomics)" >&2
  exit 1
fi
echo "check_lockdown_safe: $(basename "$obj"): helpers ${helpers[*]}"
