#!/usr/bin/env bash
# `make talos-extension`: the nodewatch agent as a Talos system extension image, without a
# container daemon (reference/packaging.md sections 1 and 2).
#
#   scripts/build-talos-extension.sh AGENT_BINARY OUT_DIR [VERSION]
#
# OUT_DIR/ext       the flattened extension: manifest.yaml + rootfs/ (what Talos loads)
# OUT_DIR/oci       the OCI image layout (index.json with platform linux/<arch>)
# OUT_DIR/nodewatch-agent-extension-<version>.oci.tar   the same as one OCI archive
#
# The container rootfs holds the agent, every shared library it loads and the dynamic loader, at
# their usual paths, and nothing else: the service sees no host library. Same inputs give the same
# image digest (sorted tar entries, fixed owners and times, gzip without a timestamp).
set -euo pipefail
AGENT=$(realpath "$1")
OUT=$2
SRC=$(cd "$(dirname "$0")/.." && pwd)
VERSION=${3:-$("$AGENT" --version | awk '{print $2}')}
ARCH=$(dpkg --print-architecture 2>/dev/null || echo amd64)
NAME=nodewatch-agent

rm -rf "$OUT/ext" "$OUT/oci"
mkdir -p "$OUT/ext/rootfs/usr/local/etc/containers"
CROOT="$OUT/ext/rootfs/usr/local/lib/containers/$NAME"
mkdir -p "$CROOT/usr/local/bin"

sed "s/@VERSION@/$VERSION/" "$SRC/talos-extension/manifest.yaml.in" >"$OUT/ext/manifest.yaml"
install -m 0644 "$SRC/talos-extension/$NAME.yaml" "$OUT/ext/rootfs/usr/local/etc/containers/$NAME.yaml"
install -m 0755 "$AGENT" "$CROOT/usr/local/bin/$NAME"
strip --strip-debug "$CROOT/usr/local/bin/$NAME" 2>/dev/null || true

# Every library the loader resolves, and the loader itself, copied to the same path (symlinks
# resolved, so the tree has regular files only).
ldd "$AGENT" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\/.*ld-linux/ {print $1}' | sort -u | while read -r lib; do
  dest="$CROOT$lib"
  mkdir -p "$(dirname "$dest")"
  cp -L "$lib" "$dest"
  chmod 0755 "$dest"
done
# Mount points of the service spec, so the read-only rootfs has them.
for d in sys/fs/bpf sys/kernel/tracing sys/fs/cgroup sys/kernel/btf host/proc var/lib/nodewatch \
  var/lib/kubelet/pki usr/local/etc/nodewatch proc dev tmp; do
  mkdir -p "$CROOT/$d"
done
find "$OUT/ext" -type d -exec chmod 0755 {} +

SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-0} python3 "$SRC/scripts/oci_image.py" --tree "$OUT/ext" \
  --out "$OUT/oci" --tag "$VERSION" --arch "$ARCH" \
  --archive "$OUT/$NAME-extension-$VERSION.oci.tar" \
  --label "org.opencontainers.image.title=$NAME" --label "org.opencontainers.image.version=$VERSION"
