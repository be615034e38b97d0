"""Real monitoring servers for the tests, from Debian's packages (`.ci/run` installs
them): Prometheus and Alertmanager, each started on a free loopback port with its own
data directory, ready when its `/-/ready` answers, stopped by pid. Also the example
service as a plain process, the thing they watch."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.helpers import free_port, process, wait_until

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "payments-api"


def require_tool(binary: str, package: str) -> str:
    """The binary's path; in CI (`CI` set) a missing one fails the test, elsewhere it is
    skipped loudly."""
    found = shutil.which(binary) or next(
        (p for p in (f"/usr/bin/{binary}", f"/usr/sbin/{binary}") if os.access(p, os.X_OK)), None
    )
    if found is not None:
        return found
    message = (
        f"{binary} is not installed: apt-get install -y --no-install-recommends {package} "
        "(.ci/run does this)"
    )
    if os.environ.get("CI"):
        pytest.fail(message)
    print(f"\n\n*** SKIPPING: {message} ***\n")
    pytest.skip(message)


def ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/-/ready", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


@contextmanager
def _server(binary: str, root: Path, config: str, flags: list[str]) -> Iterator[str]:
    """`binary --config.file=<root>/<binary>.yml … --web.listen-address=<free port>`,
    ready once `/-/ready` answers; yields its URL."""
    root.mkdir(parents=True, exist_ok=True)
    name = Path(binary).name
    (root / f"{name}.yml").write_text(config)
    url = f"http://127.0.0.1:{free_port()}"
    args = [
        binary,
        f"--config.file={root / f'{name}.yml'}",
        f"--web.listen-address={url.removeprefix('http://')}",
        *flags,
    ]
    with process(args, root / f"{name}.log", dict(os.environ)):
        wait_until(lambda: ready(url), 30, f"{name} to be ready")
        yield url


@contextmanager
def prometheus(root: Path, config: str) -> Iterator[str]:
    """Prometheus with `config` (YAML); yields its URL."""
    binary = require_tool("prometheus", "prometheus")
    flags = [f"--storage.tsdb.path={root / 'data'}", "--storage.tsdb.retention.time=1h"]
    with _server(binary, root, config, flags) as url:
        yield url


@contextmanager
def alertmanager(root: Path, config: str) -> Iterator[str]:
    """Alertmanager with `config` (YAML), without a cluster; yields its URL."""
    binary = require_tool("prometheus-alertmanager", "prometheus-alertmanager")
    flags = [f"--storage.path={root / 'data'}", "--cluster.listen-address="]
    with _server(binary, root, config, flags) as url:
        yield url


@contextmanager
def example(root: Path, **env: str) -> Iterator[int]:
    """One instance of the example service; yields its port once it is healthy."""
    port = free_port()
    variables = dict(os.environ) | {"PYTHONPATH": str(EXAMPLE)} | env
    args = [sys.executable, "-m", "payments.app", "--port", str(port)]
    with process(args, root / f"example-{port}.log", variables):
        wait_until(lambda: _answers(port), 20, f"the example service on {port}")
        yield port


def _answers(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
