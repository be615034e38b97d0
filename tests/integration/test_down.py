"""`conveyor down`: refused while a coordinator runs on the data dir (it would start the
instances again within seconds), and it stops each instance's whole process group (a
server's workers too) (issue 19 §1.7)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import psutil

from conveyor.hosting.processes import LocalTarget, stop_everything
from conveyor.hosting.target import Launch
from tests.helpers import conveyor, wait_dead, wait_until

PRE_FORK = """
import os, signal, sys, time
# A pre-fork server in small: a master and two workers; the master's SIGTERM does not
# reach its workers by itself, as a master killed with SIGKILL would leave them.
for _ in range(2):
    if os.fork() == 0:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        time.sleep(600)
        sys.exit(0)
print("workers up", flush=True)
time.sleep(600)
"""


def test_down_is_refused_while_a_coordinator_runs_on_the_data_dir(server, tmp_path: Path):
    url, env = server
    data = tmp_path / "server"
    refused = subprocess.run(
        conveyor("down", "--data-dir", str(data)), env=env, capture_output=True, text=True
    )
    assert refused.returncode == 2, refused.stdout + refused.stderr
    said = " ".join((refused.stdout + refused.stderr).split())
    assert "a coordinator runs on" in said and url in said and "Stop it first" in said


def test_down_stops_each_instance_s_process_group(tmp_path: Path):
    root = tmp_path / "deploy"
    release = tmp_path / "release"
    release.mkdir()
    (release / "server.py").write_text(PRE_FORK)
    target = LocalTarget(root)
    handle = target.start(
        Launch("i1", release, f"{sys.executable} server.py", 0, {"PYTHONUNBUFFERED": "1"})
    )
    wait_until(
        lambda: "workers up" in target.log_path("i1").read_text(), 30, "the workers to start"
    )
    workers = psutil.Process(handle.pid).children()
    assert len(workers) == 2
    assert os.getpgid(workers[0].pid) == handle.pid
    began = time.monotonic()
    assert stop_everything(root, grace_s=1.0) == 1
    assert time.monotonic() - began < 10
    assert wait_dead(handle.pid)
    assert not target.alive(handle)  # reaps it
    asyncio.run(target.close())
    for worker in workers:  # they ignore SIGTERM: the group's SIGKILL ended them
        assert wait_dead(worker.pid), f"worker {worker.pid} outlived `down`"
    assert list((root / "pids").glob("*.pid")) == []
