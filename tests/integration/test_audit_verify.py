"""`conveyor audit verify` against a real `conveyor serve`: a chain that holds, then the
same chain after someone with the database file rewrote one entry."""

from __future__ import annotations

import json
import sqlite3
import subprocess
from pathlib import Path

from conveyor.storage.database import SQLITE_FILE
from tests.helpers import cli, conveyor


def _verify(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        conveyor("audit", "verify", *args), env=env, capture_output=True, text=True, timeout=60
    )


def test_verify_holds_then_names_the_entry_changed_in_the_database(server, tmp_path: Path):
    _, env = server
    cli(env, "team", "create", "a")
    cli(env, "project", "create", "a/api", "--repo", "file:///nowhere")
    for name in ("ci", "deployer", "reader"):
        cli(env, "token", "create", "--team", "a", "--name", name, "--role", "developer")
    cli(env, "secret", "set", "a/api", "K", "--value", "v-0123456789")
    held = _verify(env, "a")
    assert held.returncode == 0, held.stdout + held.stderr
    assert "the audit chain of team a holds: 5 entries" in held.stdout
    company = _verify(env)
    assert company.returncode == 0 and "holds: 1 entries" in company.stdout

    listed = json.loads(cli(env, "audit", "list", "a", "--json"))
    third = listed["items"][2]
    assert (third["action"], third["detail"]["name"]) == ("token.create", "deployer")

    database = sqlite3.connect(tmp_path / "server" / SQLITE_FILE)
    try:
        with database:
            refused = None
            try:
                database.execute("UPDATE audit_entries SET detail = '{}' WHERE seq = 3")
            except sqlite3.DatabaseError as exc:
                refused = str(exc)
            assert refused == "audit entries are append-only"
            database.execute("DROP TRIGGER audit_append_only_update")
            database.execute(
                "UPDATE audit_entries SET detail = ? WHERE seq = 3 AND team = 'a'",
                (json.dumps({"name": "deployer", "role": "owner"}),),
            )
    finally:
        database.close()
    broken = _verify(env, "a")
    assert broken.returncode == 1
    assert f"fails at entry 3 ({third['id']}): its content does not match its hash" in (
        " ".join(broken.stderr.split())
    )
