#!/usr/bin/env bash
# Start one instance on a free loopback port, wait until it is healthy, run the
# functional tests against it. Conveyor kills the instance with the job's process group.
set -euo pipefail
PORT=$(python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export PORT BASE_URL="http://127.0.0.1:$PORT"
python -m payments.app --port "$PORT" &
for _ in $(seq 1 50); do
  if python -c 'import os, urllib.request; urllib.request.urlopen(os.environ["BASE_URL"] + "/healthz", timeout=1)' 2>/dev/null; then
    break
  fi
  sleep 0.1
done
python -m pytest -q functional --junitxml=reports/functional.xml -p no:cacheprovider
