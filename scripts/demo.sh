#!/usr/bin/env bash
# The demo behind `make demo`: a coordinator and a runner on this machine (SQLite, local
# runner, HAProxy), the example project from this very repository pushed to a bare git
# repository, its pipeline building one artifact and deploying it to staging (rolling)
# and production (canary), then v2 rolled out as a canary under load, promoted, with no
# failed request. Every process it starts is stopped on exit (`conveyor down` stops the
# instances and HAProxy, which outlive the coordinator on purpose).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
if ! command -v haproxy > /dev/null && [ ! -x /usr/sbin/haproxy ]; then
  if [ "$(id -u)" -eq 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
      apt-get install -y -qq --no-install-recommends haproxy > /dev/null
  else
    echo "the demo deploys through HAProxy: install the haproxy package (2.6+) first" >&2
    exit 1
  fi
fi
BIN=$ROOT/.venv/bin
export PATH="$BIN:$PATH"   # the example's jobs use python, pytest and coverage from .venv

DATA=$(mktemp -d /tmp/conveyor-demo.XXXXXX)
PORT=$(python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export CONVEYOR_SERVER="http://127.0.0.1:$PORT"
export CONVEYOR_ADMIN_TOKEN="cvy_admin_demo-$(python -c 'import secrets; print(secrets.token_hex(8))')"
export CONVEYOR_TOKEN=$CONVEYOR_ADMIN_TOKEN
pids=()
cleanup() {
  local status=$?
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  conveyor down --data-dir "$DATA/server" > /dev/null 2>&1 || true
  if [ "$status" -ne 0 ] || [ -n "${CONVEYOR_DEMO_KEEP:-}" ]; then
    echo "the demo's files are kept in $DATA (server.log, runner.log, load.json," \
      "server/deploy/router/haproxy.log)" >&2
  else
    rm -rf "$DATA"
  fi
}
trap cleanup EXIT

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "conveyor validate: the example's pipeline file"
conveyor validate examples/payments-api/conveyor.yml

step "conveyor serve on 127.0.0.1:$PORT (SQLite in $DATA)"
conveyor serve --port "$PORT" --data-dir "$DATA/server" > "$DATA/server.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do
  curl -fsS "$CONVEYOR_SERVER/healthz" > /dev/null 2>&1 && break
  sleep 0.1
done

step "a team, and a runner"
conveyor team create payments
REG=$(conveyor runner-token create --team payments)
conveyor runner --token "$REG" --name demo-runner --concurrency 2 --data-dir "$DATA/runner" \
  > "$DATA/runner.log" 2>&1 &
pids+=($!)

step "a bare git repository with Conveyor's post-receive hook, as the project's source"
BARE=$DATA/payments.git
git init -q --bare -b main "$BARE"
conveyor project create payments/payments-api --repo "$BARE" \
  --config-path examples/payments-api/conveyor.yml --install-hook

step "git push this repository's commit: the hook tells Conveyor, which starts the pipeline"
git push -q "$BARE" HEAD:refs/heads/main
for _ in $(seq 1 100); do
  RUN=$(conveyor runs payments/payments-api --json | python -c 'import json, sys; items = json.load(sys.stdin)["items"]; print(items[0]["id"] if items else "")')
  [ -n "$RUN" ] && break
  sleep 0.1
done
conveyor watch "$RUN"

step "the provider redelivers the same push: answered as a duplicate, nothing starts"
SHA=$(git rev-parse HEAD)
printf '%s %s refs/heads/main\n' "0000000000000000000000000000000000000000" "$SHA" \
  | GIT_DIR="$BARE" python -m conveyor git-hook

step "a branch that only touches notes: the path filter (merge-base diff) starts nothing"
WORK=$DATA/work
git clone -q "$BARE" "$WORK"
git -C "$WORK" checkout -q -b feature/notes
echo "demo notes" > "$WORK/NOTES.md"
git -C "$WORK" add NOTES.md
git -C "$WORK" -c user.email=demo@example.com -c user.name=demo commit -qm "notes only"
git -C "$WORK" push -q origin feature/notes
sleep 1

step "what each delivery did"
conveyor project deliveries payments/payments-api

step "runs of the project"
conveyor runs payments/payments-api

step "the first run built one artifact and deployed it: staging (rolling), production (first deploy)"
conveyor artifacts list payments/payments-api
conveyor status payments/payments-api --env production
URL=$(conveyor status payments/payments-api --env production --json \
  | python -c 'import json, sys; print(json.load(sys.stdin)["url"])')

step "v2: a commit changes the service; under a steady load, its canary goes 20 % → pause 5s → 50 % → analysis"
git -C "$WORK" checkout -q main
sed -i 's/PAYMENTS_VERSION: v1/PAYMENTS_VERSION: v2/' "$WORK/examples/payments-api/conveyor.yml"
git -C "$WORK" -c user.email=demo@example.com -c user.name=demo commit -qam "payments-api v2"
conveyor load "$URL/api/v1/quote?amount=42&currency=EUR" --rate 300 --seconds 120 \
  > "$DATA/load.json" &
LOAD=$!
pids+=($LOAD)
git -C "$WORK" push -q origin main
for _ in $(seq 1 600); do
  STEP=$(conveyor status payments/payments-api --env production --json \
    | python -c 'import json, sys; d = json.load(sys.stdin); print(d["phase"], d["step"] or "")')
  case "$STEP" in "paused 4/4"*) break ;; esac
  sleep 0.5
done
conveyor status payments/payments-api --env production

step "conveyor promote: the canary takes all traffic, the old stack stays warm for a fast switch back"
conveyor promote payments/payments-api --env production
RUN=$(conveyor runs payments/payments-api --json | python -c 'import json, sys; print(json.load(sys.stdin)["items"][0]["id"])')
conveyor watch "$RUN" > /dev/null
kill -TERM "$LOAD"; wait "$LOAD" || true
conveyor status payments/payments-api --env production

step "the load generator's count, across the whole rollout"
python - "$DATA/load.json" <<'PY'
import json, sys
summary = json.load(open(sys.argv[1]))
print(f"{summary['requests']} requests, {summary['failed']} failed, "
      f"p99 {summary['p99_ms']} ms, served by {summary['versions']}")
if summary["failed"]:
    print(f"statuses {summary['statuses']}, errors {summary['errors']}")
sys.exit(1 if summary["failed"] else 0)
PY
