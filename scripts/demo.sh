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
