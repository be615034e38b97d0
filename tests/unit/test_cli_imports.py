"""The client commands speak HTTP only: loading the `conveyor` command loads neither
storage nor the server (DESIGN.md section 2). A fresh interpreter, so that nothing a
test imported before counts."""

from __future__ import annotations

import json
import subprocess
import sys

SERVER_SIDE = ("sqlalchemy", "alembic", "psycopg", "uvicorn", "conveyor.storage", "conveyor.api")


def test_the_cli_loads_no_storage_and_no_server():
    probe = "import json, sys, conveyor.cli.main\nprint(json.dumps(sorted(sys.modules)))\n"
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    loaded = json.loads(done.stdout)
    assert "conveyor.cli.client" in loaded and "conveyor.cli.processes" in loaded
    leaked = [m for m in loaded if m.startswith(SERVER_SIDE)]
    assert leaked == []
