#!/usr/bin/env bash
# Installs every Debian bookworm package that nodewatch's build, tests, benchmarks and demo need.
# Idempotent and non-interactive: packages already present are not reinstalled, and nothing is
# downloaded from anywhere but the Debian archive.
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build pkg-config ccache clang llvm libclang-rt-14-dev
  libgrpc++-dev libprotobuf-dev protobuf-compiler protobuf-compiler-grpc
  librocksdb-dev libspdlog-dev libfmt-dev libssl-dev openssl libabsl-dev libyaml-cpp-dev
  libgtest-dev libgmock-dev nlohmann-json3-dev libcurl4-openssl-dev prometheus-cpp-dev libcivetweb-dev
  procps iproute2 curl python3 socat unzip prometheus
  # eBPF: libbpf and bpftool build the programs; the kernel tests and bpf_bench drive traffic and
  # I/O with iperf3, nft (loss and SYN drops) and losetup (package mount).
  libbpf-dev bpftool linux-libc-dev iperf3 nftables mount
)

missing=()
for pkg in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
apt_updated=0

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#PACKAGES[@]} packages present"
else
  echo "install-deps: installing ${missing[*]}"
  $SUDO apt-get update -qq
  apt_updated=1
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# node and npm (the Helm chart tests, tests/helm/run.sh) are checked by command, not by package:
# a node from another source (e.g. a nodesource nodejs that bundles npm) must not be replaced, and
# Debian's npm package would conflict with it.
for tool in node:nodejs npm:npm; do
  if ! command -v "${tool%%:*}" >/dev/null 2>&1; then
    echo "install-deps: installing ${tool#*:} (no ${tool%%:*} on PATH)"
    if [ "$apt_updated" -eq 0 ]; then $SUDO apt-get update -qq; apt_updated=1; fi
    $SUDO apt-get install -y -qq --no-install-recommends "${tool#*:}"
  fi
done
