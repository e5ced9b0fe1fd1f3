#!/usr/bin/env bash
# Installs every Debian bookworm package that nodewatch's build, tests, benchmarks and demo need.
# Idempotent and non-interactive: packages already present are not reinstalled, and nothing is
# downloaded from anywhere but the Debian archive.
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build pkg-config ccache clang llvm libclang-rt-14-dev
  libgrpc++-dev libprotobuf-dev protobuf-compiler protobuf-compiler-grpc
  librocksdb-dev libspdlog-dev libfmt-dev libssl-dev openssl libabsl-dev libyaml-cpp-dev
  libgtest-dev libgmock-dev nlohmann-json3-dev libcurl4-openssl-dev prometheus-cpp-dev
  procps iproute2 curl python3 socat
)

missing=()
for pkg in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#PACKAGES[@]} packages present"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
