#!/usr/bin/env bash
# The demo behind `make demo`: a coordinator and a runner on this machine (SQLite, local
# runner), a team and the example project from this very repository, a run triggered
# and followed to its end. Every process it starts is stopped by its PID on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BIN=$ROOT/.venv/bin
export PATH="$BIN:$PATH"   # the example's jobs use python, pytest and coverage from .venv

DATA=$(mktemp -d /tmp/conveyor-demo.XXXXXX)
PORT=$(python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export CONVEYOR_SERVER="http://127.0.0.1:$PORT"
export CONVEYOR_ADMIN_TOKEN="cvy_admin_demo-$(python -c 'import secrets; print(secrets.token_hex(8))')"
export CONVEYOR_TOKEN=$CONVEYOR_ADMIN_TOKEN
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$DATA"
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

step "a team, a runner, and the example project (this repository, examples/payments-api)"
conveyor team create payments
REG=$(conveyor runner-token create --team payments)
conveyor runner --token "$REG" --name demo-runner --concurrency 2 --data-dir "$DATA/runner" \
  > "$DATA/runner.log" 2>&1 &
pids+=($!)
conveyor project create payments/payments-api --repo "file://$ROOT" \
  --config-path examples/payments-api/conveyor.yml

step "trigger the commit checked out here, and follow it"
SHA=$(git rev-parse HEAD)
conveyor trigger payments/payments-api --ref main --sha "$SHA" --wait

step "runs of the project"
conveyor runs payments/payments-api
