#!/usr/bin/env bash
# `make demo`: a simulated AWS instance metadata service, an aggregator with its RocksDB, one agent,
# real mTLS with a demo CA. The aggregator is killed with SIGKILL; while it is down the cloud
# announces a spot interruption; the agent detects it within a second, fsyncs it to its spool, and
# delivers it when the aggregator is back. The aggregator, holding the Lease, then cordons, taints and
# drains the node through a (fake, local) Kubernetes API server before the 2-minute deadline. The
# instance is a persistent spot request that stops: it stops (the agent dies with it) and boots
# again with a new boot id, and the aggregator gives the node back (uncordon, taint and label off).
# The node's history, notice, remediation steps and lives, is read back through the CLI.
set -euo pipefail
BUILD_DIR=${1:-build}
BIN=$(cd "$BUILD_DIR/bin" && pwd)
DEMO=${DEMO_DIR:-$PWD/demo-data}
NODE=demo-node-1
INGEST=127.0.0.1:${DEMO_INGEST_PORT:-17443}
QUERY=127.0.0.1:${DEMO_QUERY_PORT:-17444}
METRICS=127.0.0.1:${DEMO_METRICS_PORT:-19464}
HTTP=127.0.0.1:${DEMO_HTTP_PORT:-17445}
SIM_PORT=${DEMO_SIM_PORT:-17480}
SIM=http://127.0.0.1:$SIM_PORT
KUBE_PORT=${DEMO_KUBE_PORT:-17490}
KUBE=http://127.0.0.1:$KUBE_PORT

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

rm -rf "$DEMO"
mkdir -p "$DEMO/pki"
say "Demo CA and certificates (openssl, ECDSA P-256) in $DEMO/pki"
cd "$DEMO/pki"
openssl ecparam -name prime256v1 -genkey -noout -out ca.key
openssl req -x509 -new -key ca.key -days 2 -subj "/O=nodewatch demo/CN=nodewatch-demo-ca" -out ca.crt
issue() {  # name subject [san]
  openssl ecparam -name prime256v1 -genkey -noout -out "$1.key"
  openssl req -new -key "$1.key" -subj "$2" -out "$1.csr"
  printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\n%s\n' \
    "${3:+subjectAltName=$3}" > "$1.ext"
  openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 \
    -extfile "$1.ext" -out "$1.crt" 2>/dev/null
}
issue aggregator "/CN=nodewatch-aggregator" "DNS:localhost,IP:127.0.0.1"
issue node "/O=system:nodes/CN=system:node:$NODE"          # the kubelet's convention
issue operator "/O=nodewatch:operators/CN=demo-operator"
ls -1 "$DEMO/pki"/*.crt
cd - >/dev/null

start_aggregator() {
  "$BIN/nodewatch-aggregator" --listen "$INGEST" --query-listen "$QUERY" --metrics-listen "$METRICS" \
    --http-listen "$HTTP" --cluster demo --environment dev --monthly-budget 0.01 --cost-interval 1s \
    --data-dir "$DEMO/aggregator" --tls-ca "$DEMO/pki/ca.crt" --tls-cert "$DEMO/pki/aggregator.crt" \
    --tls-key "$DEMO/pki/aggregator.key" --remediation on --kube-api-server "$KUBE" \
    --lease-namespace nodewatch --identity demo-aggregator >>"$DEMO/aggregator.log" 2>&1 &
  AGG_PID=$!
  pids+=("$AGG_PID")
}
cli() {
  "$BIN/nodewatch" --server "$QUERY" --tls-ca "$DEMO/pki/ca.crt" --tls-cert "$DEMO/pki/operator.crt" \
    --tls-key "$DEMO/pki/operator.key" "$@"
}
wait_for_step() {  # tries pattern: until the node's remediation history has a matching step
  for _ in $(seq "$1"); do
    cli history "$NODE" --kind remediation 2>/dev/null | grep -qE "$2" && return 0
    sleep 0.5
  done
}
wait_ready() { for _ in $(seq 50); do cli nodes >/dev/null 2>&1 && return 0; sleep 0.2; done; echo "aggregator did not start:"; cat "$DEMO/aggregator.log"; exit 1; }

say "Starting the cloud metadata simulator (AWS IMDSv2) on $SIM"
"$BIN/nodewatch-metadata-sim" --cloud aws --port "$SIM_PORT" >>"$DEMO/metadata-sim.log" 2>&1 &
pids+=("$!")
for _ in $(seq 50); do curl -sf "$SIM/_sim/state" >/dev/null && break; sleep 0.1; done

say "Starting a local Kubernetes API server (test fake) with node $NODE and 12 pods on $KUBE"
"$BIN/nodewatch-fake-kube-api" --port "$KUBE_PORT" --node "$NODE" --pods-per-node 12 \
  --max-termination-ms 1500 >>"$DEMO/kube-api.log" 2>&1 &
pids+=("$!")
for _ in $(seq 50); do curl -sf "$KUBE/api/v1/nodes/$NODE" >/dev/null && break; sleep 0.1; done
curl -sf "$KUBE/api/v1/pods?fieldSelector=spec.nodeName%3D$NODE" |
  python3 -c 'import json,sys; [print("  ", p["metadata"]["namespace"] + "/" + p["metadata"]["name"]) for p in json.load(sys.stdin)["items"]]'

say "Starting nodewatch-aggregator (RocksDB in $DEMO/aggregator/db; log $DEMO/aggregator.log)"
start_aggregator
wait_ready

start_agent() {  # [proc-root]
  "$BIN/nodewatch-agent" --node-name "$NODE" --aggregator "$INGEST" --spool-dir "$DEMO/spool" \
    --interval 1s --cloud aws --metadata-endpoint "$SIM" --tls-ca "$DEMO/pki/ca.crt" --tls-cert "$DEMO/pki/node.crt" \
    --tls-key "$DEMO/pki/node.key" ${1:+--proc-root "$1"} >>"$DEMO/agent.log" 2>&1 &
  AGENT_PID=$!
  pids+=("$AGENT_PID")
}
say "Starting nodewatch-agent for node $NODE (spool in $DEMO/spool; heartbeat every second)"
start_agent
sleep 3

say "nodewatch nodes"
cli nodes

say "Killing the aggregator with SIGKILL: the agent keeps spooling to disk"
{ kill -9 "$AGG_PID"; wait "$AGG_PID"; } 2>/dev/null || true
sleep 1
say "The cloud announces a spot interruption; the request stops the instance (curl -X POST $SIM/_sim/aws/spot?action=stop)"
curl -sf -X POST "$SIM/_sim/aws/spot?action=stop" >/dev/null
sleep 2
grep "interruption notice" "$DEMO/agent.log" || true
ls -l "$DEMO/spool"
say "Restarting the aggregator; the agent reconnects (jittered backoff) and resumes from the last ack"
start_aggregator
wait_ready
for _ in $(seq 100); do
  cli node "$NODE" -o json 2>/dev/null | grep -q '"connected":true' && break
  sleep 0.3
done
sleep 1
cli nodes

say "The aggregator (same --identity, so it takes its Lease back at once) cordons, taints and drains $NODE"
wait_for_step 120 'drained|drain-incomplete'
echo "Kubernetes API traffic from the aggregator (cordon, taint, label, evictions):"
grep -E 'PATCH|POST .*eviction|DELETE' "$DEMO/kube-api.log" | head -30 || true
echo "Pods left on $NODE (DaemonSet and mirror pods stay):"
curl -sf "$KUBE/api/v1/pods?fieldSelector=spec.nodeName%3D$NODE" |
  python3 -c 'import json,sys; [print("  ", p["metadata"]["namespace"] + "/" + p["metadata"]["name"]) for p in json.load(sys.stdin)["items"]]'
echo "Node taints:"
curl -sf "$KUBE/api/v1/nodes/$NODE" | python3 -c 'import json,sys; print("  ", json.load(sys.stdin)["spec"].get("taints"))'

say "The instance stops (the agent dies with it); the spot request is fulfilled again and it boots: same instance, new boot id"
{ kill -9 "$AGENT_PID"; wait "$AGENT_PID"; } 2>/dev/null || true
curl -sf -X POST "$SIM/_sim/clear" >/dev/null  # the instance-action is gone after the restart
# The new boot's /proc: the host's, with another boot id (what --proc-root is for in tests).
mkdir -p "$DEMO/proc/sys/kernel/random"
for f in uptime loadavg meminfo diskstats net self; do ln -sfn "/proc/$f" "$DEMO/proc/$f"; done
ln -sfn /proc/self "$DEMO/proc/1"
python3 -c 'import uuid; print(uuid.uuid4())' >"$DEMO/proc/sys/kernel/random/boot_id"
sleep 3
start_agent "$DEMO/proc"
wait_for_step 60 'returned|replaced'
echo "The node, given back (schedulable again; taints: the operator's only; the InterruptionNotice condition):"
curl -sf "$KUBE/api/v1/nodes/$NODE" | python3 -c '
import json, sys
n = json.load(sys.stdin)
print("   unschedulable:", n["spec"].get("unschedulable", False))
print("   taints:", n["spec"].get("taints"))
for c in n["status"].get("conditions", []):
    if c["type"] == "InterruptionNotice":
        print("   condition:", c["type"], c["status"], c["reason"], "-", c.get("message", ""))'

say "nodewatch history $NODE --kind interruption --kind remediation   (the timeline: notice, drain, return)"
cli history "$NODE" --kind interruption --kind remediation

say "nodewatch node $NODE   (its lives: the stop ended the first, the restart began the second)"
cli node "$NODE"

say "nodewatch history $NODE --since 10m   (no gap in seq: nothing was lost while the aggregator was down)"
cli history "$NODE" --since 10m

say "nodewatch interruptions --since 1h"
cli interruptions --since 1h

say "nodewatch cost --nodes   (built-in list prices; the demo node is an AWS m5.large spot instance)"
sleep 2
cli cost --nodes

say "nodewatch alerts   (the demo's monthly budget is \$0.01, so the budget-forecast alert fires)"
cli alerts

say "nodewatch history $NODE --kind network --kind disk --limit 8   (eBPF: bytes per pod and remote address, TCP health, block I/O latency; filesystems)"
if grep -q "eBPF .* signals off" "$DEMO/agent.log"; then
  echo "(eBPF is off in this run, the agent log says why; run make demo as root to see it.)"
  grep "eBPF .* signals off" "$DEMO/agent.log" || true
fi
cli history "$NODE" --kind network --kind disk --limit 8

say "The same over HTTPS as JSON: curl --cert operator.crt https://$HTTP/api/v1/interruptions?since=1h"
curl -sf --cacert "$DEMO/pki/ca.crt" --cert "$DEMO/pki/operator.crt" --key "$DEMO/pki/operator.key" \
  "https://$HTTP/api/v1/interruptions?since=1h" | python3 -m json.tool

say "nodewatch history $NODE --kind interruption -o json"
cli history "$NODE" --kind interruption -o json

say "Aggregator metrics (curl http://$METRICS/metrics)"
curl -sf "http://$METRICS/metrics" | grep -E '^nodewatch_(agents_connected|ingest_records_total|ingest_duplicate_records_total|ingest_lost_records_total|ingest_commits_total|remediation_leader|remediation_pods_evicted_total|remediation_pods_force_deleted_total|remediation_notice_to_cordon_seconds_sum|remediation_notice_to_cordon_seconds_count|cost_hourly_dollars|cost_total_month_to_date_dollars|alerts)[ {]' || true

say "Agent log"
cat "$DEMO/agent.log"
say "Done. Everything is under $DEMO."
