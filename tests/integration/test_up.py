"""`conveyor up`: a coordinator, two runners and (for deploys) HAProxy on this machine in
one command; it prints the UI's URL and the admin token, and Ctrl-C stops it all."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import httpx
import psutil
import pytest
from typer.testing import CliRunner

from conveyor.cli.main import app
from conveyor.hosting import haproxy
from conveyor.hosting.routing import RouterError
from tests.deploy.conftest import require_haproxy
from tests.helpers import conveyor, free_port, wait_until


def test_up_names_the_package_when_haproxy_is_missing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
):
    def missing() -> str:
        raise RouterError("HAProxy is not installed")

    monkeypatch.setattr(haproxy, "find_haproxy", missing)
    result = CliRunner().invoke(app, ["up", "--data-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "install the `haproxy` package" in result.output


def test_up_starts_a_coordinator_and_two_runners_and_stops_them(tmp_path: Path):
    require_haproxy()
    port = free_port()
    log = (tmp_path / "up.out").open("wb")
    proc = subprocess.Popen(
        conveyor("up", "--port", str(port), "--data-dir", str(tmp_path / "data")),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        printed = wait_until(
            lambda: (
                "Ctrl-C stops everything" in (text := (tmp_path / "up.out").read_text()) and text
            ),
            60,
            "conveyor up to say it is up",
        )
        token = next(
            line.split()[-1] for line in printed.splitlines() if line.startswith("admin token:")
        )
        assert f"{url}/" in printed and token.startswith("cvy_admin_")
        assert (tmp_path / "data" / "admin-token").read_text().strip() == token
        with httpx.Client(base_url=url) as client:
            login = client.post("/login", data={"token": token}, follow_redirects=False)
            assert login.status_code == 303
            assert "Services" in client.get("/").text
        runners = tmp_path / "data" / "logs"
        wait_until(
            lambda: all(
                "taking jobs from" in (runners / f"runner-{i}.log").read_text() for i in (1, 2)
            ),
            30,
            "both runners to take jobs",
        )
        children = psutil.Process(proc.pid).children()
        command_lines = [" ".join(c.cmdline()) for c in children]
        assert len(children) == 3, command_lines
        assert not any("cvy_reg_" in line for line in command_lines), command_lines
        # A child that dies is started again (issue 19 §1.1): `up` goes on, and says so.
        runner = next(c for c in children if " runner " in " ".join(c.cmdline()))
        runner.kill()
        wait_until(lambda: "started again" in (tmp_path / "up.out").read_text(), 30, "a restart")
        printed = (tmp_path / "up.out").read_text()
        assert "exited (killed by SIGKILL)" in printed, printed
        assert proc.poll() is None
        wait_until(
            lambda: len(psutil.Process(proc.pid).children()) == 3, 10, "three children again"
        )
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
        log.close()
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{url}/healthz", timeout=2)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.1)
    assert proc.returncode == 0, (tmp_path / "up.out").read_text()
