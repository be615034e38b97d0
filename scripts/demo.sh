#!/usr/bin/env bash
# The demo behind `make demo`: a coordinator and a runner on this machine (SQLite, local
# runner, HAProxy), the example project from this very repository pushed to a bare git
# repository, its pipeline building one artifact and deploying it to staging (rolling)
# and production (canary), then v2 rolled out as a canary under load, promoted, with no
# failed request, then a bad v3 rolled back by its own analysis within seconds, then
# policy: v4 goes to staging alone (low risk) and waits in production for a maintainer's
# approval, a freeze holds a deploy, and the audit chain names an altered entry. Every
# process it starts is stopped on exit (`conveyor down` stops the
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
    echo "the demo's files are kept in $DATA (server/logs/: the coordinator's and runners'" \
      "logs; load*.json; server/deploy/router/haproxy.log)" >&2
  else
    rm -rf "$DATA"
  fi
}
trap cleanup EXIT

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "conveyor validate: the example's pipeline file"
conveyor validate examples/payments-api/conveyor.yml

step "conveyor up on 127.0.0.1:$PORT: a coordinator (SQLite in $DATA/server), two runners, HAProxy"
conveyor up --port "$PORT" --data-dir "$DATA/server" > "$DATA/up.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 300); do
  grep -q "Ctrl-C stops everything" "$DATA/up.log" 2>/dev/null && break
  sleep 0.1
done
head -n 1 "$DATA/up.log"

step "a team"
conveyor team create payments

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

start_load() {  # a steady load on the production URL, counted in $DATA/NAME.json
  conveyor load "$URL/api/v1/quote?amount=42&currency=EUR" --rate 300 --seconds 180 \
    > "$DATA/$1.json" &
  LOAD=$!
  pids+=("$LOAD")
}
stop_load() { kill -TERM "$LOAD"; wait "$LOAD" || true; }

step "v2: a commit changes the service; under a steady load, its canary goes 20 % → pause 5s → 50 % → analysis, judged every second"
git -C "$WORK" checkout -q main
sed -i 's/PAYMENTS_VERSION: v1/PAYMENTS_VERSION: v2/' "$WORK/examples/payments-api/conveyor.yml"
git -C "$WORK" -c user.email=demo@example.com -c user.name=demo commit -qam "payments-api v2"
start_load load
git -C "$WORK" push -q origin main
newest_run() {
  conveyor runs payments/payments-api --json | python -c 'import json, sys; print(json.load(sys.stdin)["items"][0]["id"])'
}
wait_new_run() {  # the run the push just started (not the one before it)
  local before=$1 run
  for _ in $(seq 1 100); do
    run=$(newest_run)
    [ "$run" != "$before" ] && { echo "$run"; return; }
    sleep 0.1
  done
  echo "no new run started" >&2; exit 1
}
RUN=$(wait_new_run "$RUN")
conveyor watch "$RUN" > /dev/null
stop_load
conveyor status payments/payments-api --env production

step "its analysis: every metric passed, so v2 was promoted, then baked while v1 stayed warm"
conveyor analysis payments/payments-api --env production

step "the load generator's count, across the whole rollout of v2"
python - "$DATA/load.json" <<'PY'
import json, sys
summary = json.load(open(sys.argv[1]))
print(f"{summary['requests']} requests, {summary['failed']} failed, "
      f"p99 {summary['p99_ms']} ms, served by {summary['versions']}")
if summary["failed"]:
    print(f"statuses {summary['statuses']}, errors {summary['errors']}")
sys.exit(1 if summary["failed"] else 0)
PY

step "v3 has a bug: 20 % of its answers fail and each takes 200 ms longer; it goes out as a canary under the same load"
sed -i 's/PAYMENTS_VERSION: v2/PAYMENTS_VERSION: v3\n    PAYMENTS_FAIL_RATE: "0.2"\n    PAYMENTS_LATENCY_MS: "200"/' \
  "$WORK/examples/payments-api/conveyor.yml"
git -C "$WORK" -c user.email=demo@example.com -c user.name=demo commit -qam "payments-api v3 (a bad one)"
start_load load-v3
git -C "$WORK" push -q origin main
RUN=$(wait_new_run "$RUN")
conveyor watch "$RUN" > /dev/null || true   # its production deploy job fails, with the verdict
sleep 1
stop_load

step "nobody touched anything: the analysis failed v3, its traffic went back to v2, and v3 is pinned"
conveyor status payments/payments-api --env production
conveyor analysis payments/payments-api --env production

step "policy (docs/policy.md): production needs a maintainer's approval unless a change scores below 15; staging only when one scores 60 or more"
conveyor protect payments/payments-api --env production --required-approvals 1 \
  --auto-approve-below 15 > /dev/null
conveyor protect payments/payments-api --env staging --required-approvals 1 --auto-approve-below 60
LEAD=$(conveyor token create --team payments --name lead --role maintainer)

step "v4 fixes v3: staging, a low-risk change, goes out alone; in production it waits for approval, its deploy job blocked"
sed -i '/PAYMENTS_FAIL_RATE/d; /PAYMENTS_LATENCY_MS/d; s/PAYMENTS_VERSION: v3/PAYMENTS_VERSION: v4/' \
  "$WORK/examples/payments-api/conveyor.yml"
git -C "$WORK" -c user.email=demo@example.com -c user.name=demo commit -qam "payments-api v4 (fixes v3)"
# The load again: v4's canary is judged on real answers once it is approved.
start_load load-v4
git -C "$WORK" push -q origin main
RUN=$(wait_new_run "$RUN")
waiting_id() {  # the deployment waiting for the lead's approval, once there is one
  for _ in $(seq 1 600); do
    id=$(conveyor approvals --json --token "$LEAD" | python -c 'import json, sys; items = json.load(sys.stdin); print(items[0]["id"] if items else "")')
    [ -n "$id" ] && { echo "$id"; return; }
    sleep 0.2
  done
  echo "nothing came to wait for approval" >&2; exit 1
}
WAITING=$(waiting_id)
conveyor status payments/payments-api --env staging --json | python -c '
import json, sys
d = json.load(sys.stdin)["history"][0]
print("staging revision", d["number"], d["phase"] + ":", d["approval"]["reasons"][0])'
conveyor approvals --token "$LEAD"
curl -fsS -H "Authorization: Bearer $CONVEYOR_TOKEN" "$CONVEYOR_SERVER/api/v1/runs/$RUN" | python -c '
import json, sys
job = next(j for j in json.load(sys.stdin)["jobs"] if j["name"] == "deploy-production")
print("job deploy-production:", job["status"], "(" + job["reason"] + ")")'
conveyor approve "$WAITING" --comment "v4 fixes v3" --token "$LEAD"
conveyor watch "$RUN" > /dev/null
stop_load
conveyor status payments/payments-api --env production > "$DATA/status.txt"
head -n 3 "$DATA/status.txt"

wait_phase() {  # env number phase: wait until that revision reaches the phase
  for _ in $(seq 1 600); do
    phase=$(curl -fsS -H "Authorization: Bearer $CONVEYOR_TOKEN" \
      "$CONVEYOR_SERVER/api/v1/projects/payments/payments-api/environments/$1/deployments/$2" \
      | python -c 'import json, sys; print(json.load(sys.stdin)["phase"])')
    [ "$phase" = "$3" ] && return
    sleep 0.2
  done
  echo "revision $2 of $1 never reached $3" >&2; exit 1
}

step "a freeze holds a deploy: the team freezes deploys, and a new artifact waits, paused(freeze), until the freeze is lifted"
FREEZE=$(conveyor freeze add payments --cron "* * * * *" --duration 10m \
  --reason "demo: holiday season" --json | python -c 'import json, sys; print(json.load(sys.stdin)["id"])')
conveyor freeze list payments
D5=$(conveyor artifacts upload payments/payments-api "$WORK/examples/payments-api" | tail -n 1)
N5=$(conveyor deploy payments/payments-api --env staging --artifact "$D5" --json \
  | python -c 'import json, sys; print(json.load(sys.stdin)["number"])')
wait_phase staging "$N5" paused
conveyor status payments/payments-api --env staging > "$DATA/status.txt"
head -n 4 "$DATA/status.txt"
conveyor freeze rm "$FREEZE"
wait_phase staging "$N5" succeeded
echo "the freeze is lifted: staging revision $N5 went out"

step "Conveyor's own metrics (docs/metrics.md): $CONVEYOR_SERVER/metrics, for an admin or the scrape token"
curl -fsS -H "Authorization: Bearer $CONVEYOR_TOKEN" "$CONVEYOR_SERVER/metrics" \
  | grep -E '^conveyor_(deployments_finished_total|rollbacks_total|analysis_verdicts_total|runs_finished_total)' \
  | sort
echo "(alert rules: deploy/prometheus/alerts.yml; a Grafana dashboard: deploy/grafana/conveyor.json)"

step "the team's DORA figures (docs/dora.md), and its audit log: every deploy, approval, rollback, pin and freeze, chained by hash (docs/policy.md)"
conveyor dora payments
conveyor audit list payments --limit 100 | tail -n 10
conveyor audit verify payments

step "what the load saw of v3: only requests the canary served failed, for a few seconds"
conveyor status payments/payments-api --env production --json > "$DATA/status.json"
python - "$DATA/load-v3.json" "$DATA/status.json" <<'PY'
import json, sys
summary = json.load(open(sys.argv[1]))
status = json.load(open(sys.argv[2]))
aborted = next(d for d in status["history"] if d["phase"] == "aborted")
print(f"verdict: revision {aborted['number']} aborted: {aborted['message']}")
print(f"load: {summary['requests']} requests, {summary['failed']} failed "
      f"(statuses {summary['statuses']}), served by {summary['versions']}")
window = (summary["failures_until_s"] or 0) - (summary["failures_from_s"] or 0)
print(f"the failures lasted {window:.1f} s, from the canary's first bad answer to its last")
problems = []
if status["revision"] == aborted["number"] or status["traffic"]["canary"] != 0:
    problems.append("v3 is still taking traffic")
if not aborted["message"].startswith("analysis http-health failed"):
    problems.append("v3 was not stopped by its analysis")
if set(summary["statuses"]) - {"200", "500"} or summary["failed"] != summary["statuses"].get("500", 0):
    problems.append("requests failed that the canary did not answer")
if window > 10:
    problems.append("the canary was served bad answers for more than 10 s")
for problem in problems:
    print(f"FAILED: {problem}")
sys.exit(1 if problems else 0)
PY

step "someone with the database in hand alters an audit entry: the chain names it"
python - "$DATA/server/conveyor.db" <<'PY'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
with db:
    db.execute("DROP TRIGGER audit_append_only_update")
    db.execute("UPDATE audit_entries SET actor = 'nobody' WHERE team = 'payments' AND seq = 3")
PY
if conveyor audit verify payments; then
  echo "FAILED: the altered entry went unnoticed"; exit 1
fi

step "the UI: the demo's runs, deployments and audit log in a browser"
echo "$CONVEYOR_SERVER/  (log in with the admin token: $CONVEYOR_TOKEN)"
if [ -n "${CONVEYOR_DEMO_SCREENSHOTS:-}" ]; then  # docs/ui.md's pictures
  python scripts/screenshots.py "$CONVEYOR_SERVER" "$CONVEYOR_TOKEN" "$CONVEYOR_DEMO_SCREENSHOTS"
fi
if [ -t 0 ] && [ -z "${CI:-}" ]; then
  read -r -p "press Enter to stop the demo (the UI stays up until then) " _
fi
