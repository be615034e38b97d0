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


def test_conveyor_agent_loads_only_the_agent():
    """`conveyor agent` dispatches before the full CLI is imported: an idle agent holds
    the agent's package and the protocol's bodies, not the pipeline or the client."""
    probe = (
        "import json, sys\n"
        "sys.argv = ['conveyor', 'agent', '--help']\n"
        "from conveyor.cli.entry import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "sys.stderr.write(json.dumps(sorted(sys.modules)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert "Usage: conveyor agent" in done.stdout and "--address" in done.stdout
    loaded = json.loads(done.stderr)
    assert "conveyor.cli.agent" in loaded
    heavy = ("conveyor.cli.main", "conveyor.cli.client", "conveyor.pipeline.schema", "croniter")
    assert [m for m in loaded if m.startswith(heavy + SERVER_SIDE)] == []
