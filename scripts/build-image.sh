#!/usr/bin/env bash
# `make image`: the aggregator's OCI image, without a container daemon.
#
#   scripts/build-image.sh AGGREGATOR_BINARY OUT_DIR [VERSION]
#
# OUT_DIR/rootfs    the image's filesystem: the aggregator, the `nodewatch` CLI, every shared
#                   library they load and the dynamic loader, a passwd entry for the non-root
#                   user 65532 and the CA bundle; nothing else
# OUT_DIR/oci       the OCI image layout (user 65532:65532, entrypoint the aggregator)
# OUT_DIR/nodewatch-aggregator-<version>.oci.tar    the same as one OCI archive
# Push with e.g. `skopeo copy oci:OUT_DIR/oci:<version> docker://ghcr.io/nodewatch/aggregator:<version>`.
set -euo pipefail
AGG=$(realpath "$1")
OUT=$2
SRC=$(cd "$(dirname "$0")/.." && pwd)
VERSION=${3:-$("$AGG" --version 2>/dev/null | awk '{print $2}')}
VERSION=${VERSION:-0.0.0}
ARCH=$(dpkg --print-architecture 2>/dev/null || echo amd64)
CLI="$(dirname "$AGG")/nodewatch"

rm -rf "$OUT/rootfs" "$OUT/oci"
ROOT="$OUT/rootfs"
mkdir -p "$ROOT/usr/local/bin" "$ROOT/etc/ssl/certs" "$ROOT/var/lib/nodewatch" "$ROOT/tmp"
install -m 0755 "$AGG" "$ROOT/usr/local/bin/nodewatch-aggregator"
[ -x "$CLI" ] && install -m 0755 "$CLI" "$ROOT/usr/local/bin/nodewatch"
strip --strip-debug "$ROOT"/usr/local/bin/* 2>/dev/null || true
for bin in "$ROOT"/usr/local/bin/*; do
  ldd "$bin" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\/.*ld-linux/ {print $1}'
done | sort -u | while read -r lib; do
  mkdir -p "$ROOT$(dirname "$lib")"
  cp -L "$lib" "$ROOT$lib"
  chmod 0755 "$ROOT$lib"
done
printf 'root:x:0:0:root:/:/sbin/nologin\nnodewatch:x:65532:65532:nodewatch:/var/lib/nodewatch:/sbin/nologin\n' >"$ROOT/etc/passwd"
printf 'root:x:0:\nnodewatch:x:65532:\n' >"$ROOT/etc/group"
# The webhook and a kubeconfig server may need public roots.
[ -f /etc/ssl/certs/ca-certificates.crt ] && cp /etc/ssl/certs/ca-certificates.crt "$ROOT/etc/ssl/certs/"
find "$ROOT" -type d -exec chmod 0755 {} +

SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-0} python3 "$SRC/scripts/oci_image.py" --tree "$ROOT" \
  --out "$OUT/oci" --tag "$VERSION" --arch "$ARCH" \
  --archive "$OUT/nodewatch-aggregator-$VERSION.oci.tar" \
  --entrypoint /usr/local/bin/nodewatch-aggregator --user 65532:65532 \
  --label "org.opencontainers.image.title=nodewatch-aggregator" \
  --label "org.opencontainers.image.version=$VERSION"
