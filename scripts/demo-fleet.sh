#!/usr/bin/env bash
# The demo behind `make demo-fleet` (as root): a fleet on this machine. Four hosts are
# Linux network namespaces on a bridge, each with its own address and a real
# `conveyor agent` inside it (`ip netns exec`); the coordinator and the HAProxy it starts
# run in the root namespace and reach the hosts over the bridge. The example service is
# spread over the hosts, v2 goes out as a canary judged by its analysis under a steady
# load, and in the middle of it one host is cut off (its agent killed, its link taken
# down): HAProxy's checks take it out, its instance is replaced on another host, the
# canary's verdict stands, and the load's count of failed requests says what it cost.
# When the host comes back, its agent stops what it no longer owns. Everything it made
# (namespaces, bridge, processes) is removed on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
if [ "$(id -u)" -ne 0 ]; then
  echo "make demo-fleet makes network namespaces as hosts: run it as root" >&2
  exit 1
fi
if ! command -v haproxy > /dev/null && [ ! -x /usr/sbin/haproxy ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends haproxy iproute2 > /dev/null
fi
BIN=$ROOT/.venv/bin
export PATH="$BIN:$PATH"
PY=$BIN/python

TAG=$($PY -c 'import secrets; print(secrets.token_hex(3))')
NET=10.$((200 + RANDOM % 50)).$((RANDOM % 250))
GW=$NET.1
BRIDGE=cvb$TAG
HOSTS=(h1 h2 h3 h4)
DATA=$(mktemp -d /tmp/conveyor-demo-fleet.XXXXXX)
PORT=$($PY -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export CONVEYOR_SERVER="http://$GW:$PORT"
export CONVEYOR_ADMIN_TOKEN="cvy_admin_demo-$($PY -c 'import secrets; print(secrets.token_hex(8))')"
export CONVEYOR_TOKEN=$CONVEYOR_ADMIN_TOKEN
# A host is found lost 5 s after its agent's last call (the default is 15 s).
export CONVEYOR_HOST_LEASE_SECONDS=5
pids=()
declare -A agent_pid

cleanup() {
  local status=$?
  for pid in "${pids[@]}" "${agent_pid[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}" "${agent_pid[@]}"; do wait "$pid" 2>/dev/null || true; done
  for name in "${HOSTS[@]}"; do
    for pid in $(ip netns pids "cvy-$TAG-$name" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null || true; done
    ip link del "cvv$TAG$name" 2>/dev/null || true
    ip netns del "cvy-$TAG-$name" 2>/dev/null || true
  done
  ip link del "$BRIDGE" 2>/dev/null || true
  conveyor down --data-dir "$DATA/server" > /dev/null 2>&1 || true
  if [ "$status" -ne 0 ] || [ -n "${CONVEYOR_DEMO_KEEP:-}" ]; then
    echo "the demo's files are kept in $DATA (server.log, agent-*.log, load.json)" >&2
  else
    rm -rf "$DATA"
  fi
}
trap cleanup EXIT

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "four hosts as network namespaces on bridge $BRIDGE ($NET.0/24; this machine is $GW)"
ip link add "$BRIDGE" type bridge
ip addr add "$GW/24" dev "$BRIDGE"
ip link set "$BRIDGE" up
n=2
declare -A address
for name in "${HOSTS[@]}"; do
  ns="cvy-$TAG-$name"
  ip netns add "$ns"
  ip link add "cvv$TAG$name" type veth peer name "cvp$TAG$name"
  ip link set "cvp$TAG$name" netns "$ns"
  ip link set "cvv$TAG$name" master "$BRIDGE"
  ip link set "cvv$TAG$name" up
  ip -n "$ns" addr add "$NET.$n/24" dev "cvp$TAG$name"
  ip -n "$ns" link set "cvp$TAG$name" up
  ip -n "$ns" link set lo up
  address[$name]=$NET.$n
  echo "host $name: namespace $ns, address $NET.$n"
  n=$((n + 1))
done

step "conveyor serve on $GW:$PORT (SQLite in $DATA/server): the coordinator, and HAProxy"
conveyor serve --host "$GW" --port "$PORT" --data-dir "$DATA/server" > "$DATA/server.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 300); do
  curl -sf "$CONVEYOR_SERVER/healthz" > /dev/null 2>&1 && break
  sleep 0.1
done
conveyor team create payments > /dev/null
conveyor project create payments/payments-api --repo "file://$ROOT" > /dev/null

step "a host token for the team, and an agent on each host (it dials out; it opens no port)"
TOKEN=$(conveyor host-token create --team payments)
start_agent() {
  local name=$1
  ip netns exec "cvy-$TAG-$name" "$PY" -m conveyor agent --server "$CONVEYOR_SERVER" \
    --token "$TOKEN" --name "$name" --address "${address[$name]}" --labels "zone=$2" \
    --data-dir "$DATA/$name" >> "$DATA/agent-$name.log" 2>&1 &
  agent_pid[$name]=$!
}
declare -A zone=([h1]=a [h2]=a [h3]=b [h4]=b)
for name in "${HOSTS[@]}"; do start_agent "$name" "${zone[$name]}"; done
for _ in $(seq 1 300); do
  [ "$(conveyor host list --json 2>/dev/null | $PY -c 'import json, sys; print(sum(h["state"] == "up" for h in json.load(sys.stdin)))' 2>/dev/null)" = "4" ] && break
  sleep 0.2
done
conveyor host list

# The example service, spread over the hosts; v2 is a canary judged every second from
# HAProxy's record of each request.
service() {  # service VERSION: a copy of the example with its conveyor.yml for the fleet
  local dir=$DATA/svc-$1
  mkdir -p "$dir"
  cp -r examples/payments-api/payments "$dir/"
  cat > "$dir/conveyor.yml" <<YML
version: 1
service: payments-api
team: payments
jobs:
  deploy-production:
    deploy:
      environment: production
      strategy:
        canary:
          steps: [{weight: 50}, {analysis: http-health, for: 20s}, {weight: 100}]
analysis:
  templates:
    http-health:
      interval: 1s
      min_samples: 100
      metrics:
        - {name: error-rate, max: 1%, compare: stable, max_ratio: 1.5}
        - {name: p99, quantile: 0.99, max: 300ms}
runtime:
  command: python3 -m payments.app --port \$PORT
  replicas: 2
  placement: {spread: [zone, host]}
  health: {path: /healthz}
  drain: 3s
  env:
    PAYMENTS_VERSION: $1
YML
  conveyor artifacts upload payments/payments-api "$dir" | tail -n 1
}
where() {  # where production's instances run
  conveyor status payments/payments-api --env production --json | $PY -c '
import json, sys
for i in json.load(sys.stdin)["instances"]:
    print("  revision {revision} {role:7} {state:9} on {address}:{port}".format(**i))'
}

step "v1 to production: two replicas, spread over zones and hosts"
V1=$(service v1)
conveyor deploy payments/payments-api --env production --artifact "$V1" --strategy rolling --wait > /dev/null
where
URL=$(conveyor status payments/payments-api --env production --json | $PY -c 'import json, sys; print(json.load(sys.stdin)["url"])')

step "v2 as a canary under a steady load of 300 requests a second through HAProxy"
V2=$(service v2)
conveyor load "$URL/api/v1/quote?amount=42&currency=EUR" --rate 300 --seconds 120 > "$DATA/load.json" &
LOAD=$!
pids+=("$LOAD")
sleep 1
conveyor deploy payments/payments-api --env production --artifact "$V2" > /dev/null
for _ in $(seq 1 600); do
  conveyor status payments/payments-api --env production --json \
    | $PY -c 'import json, sys; s = json.load(sys.stdin); sys.exit(0 if "analysis" in (s.get("step") or "") else 1)' \
    && break
  sleep 0.1
done
where

VICTIM=$(conveyor status payments/payments-api --env production --json | $PY -c '
import json, sys
rows = json.load(sys.stdin)["instances"]
canary = {i["address"] for i in rows if i["role"] == "canary"}
print(next(i["address"] for i in rows if i["role"] == "stable" and i["address"] not in canary))')
for name in "${HOSTS[@]}"; do [ "${address[$name]}" = "$VICTIM" ] && VICTIM_NAME=$name; done
step "in the middle of the canary's analysis: host $VICTIM_NAME ($VICTIM) is cut off (kill -9 its agent, link down)"
kill -KILL "${agent_pid[$VICTIM_NAME]}"
wait "${agent_pid[$VICTIM_NAME]}" 2>/dev/null || true
unset "agent_pid[$VICTIM_NAME]"
ip link set "cvv$TAG$VICTIM_NAME" down
CUT=$(date +%s.%N)
for _ in $(seq 1 300); do
  conveyor host show "$VICTIM_NAME" --json | $PY -c 'import json, sys; sys.exit(0 if json.load(sys.stdin)["state"] == "lost" else 1)' && break
  sleep 0.1
done
echo "host $VICTIM_NAME found lost after $($PY -c "import time; print(round(time.time() - $CUT, 1))") s (its lease: ${CONVEYOR_HOST_LEASE_SECONDS} s)"
conveyor host list
for _ in $(seq 1 600); do  # two stable instances serving, neither on the lost host
  [ "$(where | grep 'stable  ready' | grep -vc " on $VICTIM:")" -ge 2 ] && break
  sleep 0.1
done
echo "its instance replaced after $($PY -c "import time; print(round(time.time() - $CUT, 1))") s:"
where

step "the canary goes on and its analysis judges it (the cut-off host's failures were the stable's)"
for _ in $(seq 1 1200); do
  PHASE=$(conveyor status payments/payments-api --env production --json | $PY -c 'import json, sys; print(json.load(sys.stdin)["phase"])')
  case "$PHASE" in succeeded | aborted | failed) break ;; esac
  sleep 0.1
done
conveyor analysis payments/payments-api --env production
sleep 1
kill -TERM "$LOAD"
wait "$LOAD" || true

step "what the load saw"
$PY - "$DATA/load.json" <<'PY'
import json, sys
summary = json.load(open(sys.argv[1]))
print(f"{summary['requests']} requests, {summary['failed']} failed, p99 {summary['p99_ms']} ms, "
      f"served by {summary['versions']}")
if summary["failed"]:
    print(f"the failures: {summary['errors']}, from {summary['failures_from_s']} s to "
          f"{summary['failures_until_s']} s into the load (requests in flight to the host as "
          "its link went down)")
PY

step "host $VICTIM_NAME comes back: its agent joins again, fenced, and stops what was placed elsewhere"
ip link set "cvv$TAG$VICTIM_NAME" up
start_agent "$VICTIM_NAME" "${zone[$VICTIM_NAME]}"
for _ in $(seq 1 300); do
  [ -z "$(ls "$DATA/$VICTIM_NAME/agent/host/pids/" 2>/dev/null)" ] && break
  sleep 0.1
done
conveyor host list
echo "instances left running on $VICTIM_NAME: $(ls "$DATA/$VICTIM_NAME/agent/host/pids/" 2>/dev/null | wc -l)"
conveyor project events payments/payments-api --limit 8
echo
echo "the demo: done"
[ "$PHASE" = succeeded ]
