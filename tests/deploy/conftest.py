"""The deploy tests' world: a real `conveyor serve` (or two), real HAProxy started by it,
the example service as real processes, and a real load over loopback.

HAProxy is required: in CI (`CI` set, as .ci/run runs) a missing binary fails these
tests; a local run without it skips them with a loud message.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import signal
import subprocess
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from conveyor.cli.loadgen import Load
from conveyor.hosting.haproxy import HAProxyRouter
from conveyor.hosting.processes import stop_everything
from conveyor.storage.database import Database, database_url
from tests.deploy.backends import Backend
from tests.deploy.inprocess import make_world
from tests.helpers import conveyor, free_port, healthy, wait_until

ADMIN = "cvy_admin_deploytests"
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "payments-api"
QUOTE = "/api/v1/quote?amount=12.5&currency=EUR"


def service_dir(
    root: Path, version: str, replicas: int = 2, extra: str = "", jobs: str = "", **env: str
) -> Path:
    """The example service with a conveyor.yml whose runtime names its version (`extra`:
    more top-level sections, e.g. `analysis`; `jobs`: more jobs, e.g. one that deploys)."""
    path = root / f"svc-{version}-{len(env)}-{len(extra)}-{len(jobs)}"
    if path.exists():
        return path
    shutil.copytree(EXAMPLE / "payments", path / "payments")
    variables = {"PAYMENTS_VERSION": version, **env}
    lines = "".join(f"      {k}: {json.dumps(v)}\n" for k, v in variables.items())
    (path / "conveyor.yml").write_text(
        "version: 1\nservice: payments-api\nteam: a\njobs:\n  noop: {script: 'true'}\n"
        + jobs
        + "runtime:\n  command: python3 -m payments.app --port $PORT\n"
        f"  replicas: {replicas}\n"
        "  health: {path: /healthz, start_period: 3s, failures: 3}\n"
        "  drain: 3s\n"
        f"  env:\n{lines}" + extra
    )
    return path


@pytest.fixture
def haproxy_required() -> None:
    require_haproxy()


def require_haproxy() -> None:
    if shutil.which("haproxy") or Path("/usr/sbin/haproxy").exists():
        return
    message = (
        "HAProxy is not installed: the deploy tests need it "
        "(apt-get install -y --no-install-recommends haproxy; .ci/run does this)"
    )
    if os.environ.get("CI"):
        pytest.fail(message)
    print(f"\n\n*** SKIPPING: {message} ***\n")
    pytest.skip(message)


@dataclass
class Stack:
    """One or more coordinator replicas sharing a data directory (and a database)."""

    root: Path
    data: Path
    env: dict[str, str]
    urls: list[str]
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.urls[0]

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            conveyor(*args), env=self.env, capture_output=True, text=True, timeout=120
        )
        if check:
            assert done.returncode == 0, done.stdout + done.stderr
        return done

    def api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {ADMIN}"}
        for url in self.urls:
            try:
                return httpx.request(method, url + path, headers=headers, timeout=30, **kwargs)
            except httpx.TransportError:
                continue
        raise AssertionError("no replica answered")

    def upload(self, version: str, extra: str = "", jobs: str = "", **env: str) -> str:
        folder = service_dir(self.root, version, extra=extra, jobs=jobs, **env)
        return self.cli("artifacts", "upload", "a/pay", str(folder)).stdout.strip().splitlines()[-1]

    def deploy(self, environment: str, digest: str, **body: Any) -> dict[str, Any]:
        made = self.api(
            "POST",
            "/api/v1/projects/a/pay/deployments",
            json={"environment": environment, "artifact": digest, **body},
        )
        assert made.status_code == 201, made.text
        return dict(made.json())

    def status(self, environment: str) -> dict[str, Any]:
        found = self.api("GET", f"/api/v1/projects/a/pay/environments/{environment}")
        assert found.status_code == 200, found.text
        return dict(found.json())

    def deployment(self, environment: str, number: int) -> dict[str, Any]:
        path = f"/api/v1/projects/a/pay/environments/{environment}/deployments/{number}"
        return dict(self.api("GET", path).json())

    def command(self, environment: str, what: str, **body: Any) -> httpx.Response:
        return self.api(
            "POST", f"/api/v1/projects/a/pay/environments/{environment}/{what}", json=body
        )

    def wait_phase(
        self, environment: str, number: int, phases: set[str], timeout: float = 60
    ) -> dict[str, Any]:
        def reached() -> dict[str, Any] | None:
            row = self.deployment(environment, number)
            if row["phase"] in phases:
                return row
            if row["phase"] in {"succeeded", "aborted", "failed"}:
                raise AssertionError(f"revision {number} ended {row['phase']}: {row['message']}")
            return None

        return wait_until(reached, timeout, f"revision {number} to reach {phases}")

    def wait_step(self, environment: str, text: str, timeout: float = 60) -> dict[str, Any]:
        return wait_until(
            lambda: (s := self.status(environment))["step"] and text in s["step"] and s,
            timeout,
            f"step {text!r}",
        )


def _serve(
    stack: Stack, port: int, log: Path, extra_env: dict[str, str]
) -> subprocess.Popen[bytes]:
    host = stack.url.split("//")[1].rsplit(":", 1)[0]
    args = conveyor("serve", "--host", host, "--port", str(port), "--data-dir", str(stack.data))
    out = log.open("wb")
    proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=stack.env | extra_env)
    out.close()
    stack.procs.append(proc)
    return proc


def start_stack(
    root: Path,
    replicas: int = 1,
    database_url: str | None = None,
    extra_env: dict[str, str] | None = None,
    host: str = "127.0.0.1",
) -> Stack:
    """`replicas` coordinators listening on `host` (a fleet's agents in network
    namespaces reach them on the bridge's address)."""
    ports = [free_port() for _ in range(replicas)]
    urls = [f"http://{host}:{p}" for p in ports]
    env = os.environ | {
        "CONVEYOR_ADMIN_TOKEN": ADMIN,
        "CONVEYOR_SERVER": urls[0],
        "CONVEYOR_TOKEN": ADMIN,
        "CONVEYOR_SECRET_KEY": base64.urlsafe_b64encode(b"k" * 32).decode(),
        # One admin token sends every request here, 50 deploys at once right after the
        # uploads among them: over the default 50/second. Rate limits have their own tests.
        "CONVEYOR_RATE_LIMIT": "1000/second",
        # A fleet's host is found lost 4 s after its agent's last call (test_fleet.py).
        "CONVEYOR_HOST_LEASE_SECONDS": "4",
    }
    env.pop("CONVEYOR_DATABASE_URL", None)
    if database_url:
        env["CONVEYOR_DATABASE_URL"] = database_url
    env |= extra_env or {}
    stack = Stack(root=root, data=root / "data", env=env, urls=urls)
    for index, port in enumerate(ports):
        _serve(stack, port, root / f"server-{index}.log", {})
        wait_until(lambda u=urls[index]: healthy(u), 30, f"replica {index}")
    stack.cli("team", "create", "a")
    stack.cli("project", "create", "a/pay", "--repo", f"file://{root}")
    return stack


def stop_stack(stack: Stack) -> None:
    for proc in stack.procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in stack.procs:
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    stop_everything(stack.data / "deploy")
    stop_everything(stack.data / "agent" / "host")  # the embedded agent's
    asyncio.run(HAProxyRouter(stack.data / "deploy" / "router").stop())


@pytest.fixture
def stack(tmp_path: Path, haproxy_required: None) -> Iterator[Stack]:
    made = start_stack(tmp_path)
    try:
        yield made
    finally:
        stop_stack(made)


class Background:
    """A Load running in its own thread and event loop while the test drives the CLI."""

    def __init__(self, load: Load) -> None:
        self.load = load
        self.result: dict[str, Any] = {}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            self.result = self._loop.run_until_complete(self.load.run())
        finally:
            self._loop.close()

    def start(self) -> Background:
        self._thread.start()
        return self

    def versions_now(self) -> Counter[str]:
        """How many answers each version gave so far (read in the load's own thread)."""

        async def copy() -> Counter[str]:
            return Counter(self.load.tally.versions)

        return asyncio.run_coroutine_threadsafe(copy(), self._loop).result(timeout=10)

    def finish(self) -> dict[str, Any]:
        self._loop.call_soon_threadsafe(self.load.stop)
        self._thread.join(timeout=30)
        assert not self._thread.is_alive(), "the load did not stop"
        return self.result


@contextmanager
def load(
    url: str, keepalive: bool, rate: float = 500, seconds: float = 120
) -> Iterator[Background]:
    """At least 500 requests/s over loopback until the block ends (or `seconds` pass)."""
    running = Background(Load(url, rate=rate, seconds=seconds, keepalive=keepalive)).start()
    with ExitStack() as cleanup:
        cleanup.callback(running.finish)
        yield running


def assert_no_failures(result: dict[str, Any], at_least: int) -> None:
    assert result["requests"] >= at_least, result
    assert result["failed"] == 0, json.dumps(result, indent=2)


@pytest.fixture
def backends() -> Iterator[tuple[Backend, Backend]]:
    a, b = Backend("a"), Backend("b")
    yield a, b
    a.close()
    b.close()


@pytest.fixture
async def world(tmp_path: Path):  # type: ignore[no-untyped-def]
    db = Database(database_url(tmp_path))
    try:
        yield await make_world(db, tmp_path)
    finally:
        await db.dispose()


@pytest.fixture
async def shared(database: Database, tmp_path: Path):  # type: ignore[no-untyped-def]
    """The same world on SQLite and on PostgreSQL (the `database` fixture)."""
    return await make_world(database, tmp_path)
