"""Lifecycle events leave real coordinators and arrive, every one:

- to a webhook receiver that is down for a minute while two replicas on PostgreSQL make
  events and one of them is killed (-9) mid-burst: once it is back, it gets every event,
  each signed (Standard Webhooks);
- to NATS JetStream as CDEvents while the coordinator is killed (-9) mid-burst and
  restarted: the stream holds every event exactly once.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import threading
import time
import uuid
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest
from standardwebhooks.webhooks import Webhook

from tests.api.conftest import git_repo
from tests.helpers import (
    ADMIN,
    cli,
    conveyor,
    free_port,
    healthy,
    process,
    two_replicas,
    wait_until,
)

HEADERS = {"Authorization": f"Bearer {ADMIN}"}
BASE = "/api/v1/projects/a/api"
RUNS = 24


def repo_with_branches(path: Path, count: int) -> Path:
    """A repository whose one commit is on `count` branches b0 … (a run per branch)."""
    git_repo(path, "a")
    for index in range(count):
        subprocess.run(["git", "branch", f"b{index}"], cwd=path, check=True)
    return path


def start_and_cancel(url: str, branch: str) -> str:
    """A run of `branch`, canceled at once: its queued and finished events."""
    made = httpx.post(f"{url}{BASE}/runs", json={"ref": branch}, headers=HEADERS, timeout=30)
    assert made.status_code in (200, 201), made.text
    run_id = str(made.json()["id"])
    canceled = httpx.post(f"{url}/api/v1/runs/{run_id}/cancel", headers=HEADERS, timeout=30)
    assert canceled.status_code == 200, canceled.text
    return run_id


def all_events(url: str) -> list[dict[str, Any]]:
    found = httpx.get(f"{url}{BASE}/events", params={"limit": 500}, headers=HEADERS, timeout=30)
    assert found.status_code == 200, found.text
    return list(found.json())


class Receiver:
    """A webhook receiver on a fixed loopback port, started when the test says so."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.got: list[tuple[dict[str, str], bytes]] = []
        self.server: ThreadingHTTPServer | None = None

    def start(self) -> None:
        received = self.got

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                received.append((dict(self.headers.items()), body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


@pytest.mark.slow
def test_a_receiver_down_for_a_minute_gets_every_event_despite_a_killed_replica(
    postgres_url: str, tmp_path: Path
):
    repo = repo_with_branches(tmp_path / "repo", RUNS)
    receiver = Receiver(free_port())
    extra = {"CONVEYOR_NOTIFY_BACKOFF_MAX_S": "2"}
    with two_replicas(tmp_path, postgres_url, client_of=1, extra=extra) as (urls, env, procs):
        cli(env, "team", "create", "a")
        cli(env, "project", "create", "a/api", "--repo", f"file://{repo}")
        made = json.loads(
            cli(
                env,
                "project",
                "subscribe",
                "a/api",
                "--url",
                f"http://127.0.0.1:{receiver.port}/hook",
                "--json",
            )
        )
        secret = made["secret"]
        down_since = time.monotonic()
        runs = []
        for index in range(RUNS):
            if index == RUNS // 2:
                procs[0].kill()  # replica a dies mid-burst, holding whatever it claimed
                procs[0].wait()
            runs.append(
                start_and_cancel(urls[index % 2] if index < RUNS // 2 else urls[1], f"b{index}")
            )

        def every_run_finished() -> list[dict[str, Any]] | None:
            events = all_events(urls[1])
            finished = [e for e in events if e["type"] == "run.finished"]
            return events if len(finished) == RUNS else None

        events = wait_until(every_run_finished, 60, "every run's finished event")
        assert len(events) == 2 * RUNS

        def all_queued() -> dict[str, Any] | None:
            found = httpx.get(f"{urls[1]}{BASE}/subscriptions", headers=HEADERS).json()[0]
            return found if found["pending"] == 2 * RUNS else None

        queued = wait_until(all_queued, 30, "a delivery of every event")
        assert queued["sent"] == 0 and "ConnectError" in queued["last_error"], queued
        time.sleep(max(0.0, 60 - (time.monotonic() - down_since)))
        receiver.start()
        try:
            expected = {e["id"] for e in events}

            def all_arrived() -> bool:
                return expected <= {h["webhook-id"] for h, _ in receiver.got}

            wait_until(all_arrived, 60, "every event at the receiver", every=0.5)
        finally:
            receiver.stop()
        per_id = Counter(h["webhook-id"] for h, _ in receiver.got)
        assert set(per_id) == expected
        for headers, body in receiver.got:
            payload = Webhook(secret).verify(body, headers)
            assert payload["data"]["run"]["id"] in runs
        listed = httpx.get(f"{urls[1]}{BASE}/subscriptions", headers=HEADERS).json()
        assert listed[0]["sent"] == 2 * RUNS and listed[0]["pending"] == 0, listed


async def stream_messages(url: str, stream: str) -> list[Any]:
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        info = await js.stream_info(stream)
        sub = await js.pull_subscribe("", durable=None, stream=stream)
        out: list[Any] = []
        while len(out) < info.state.messages:
            out.extend(await sub.fetch(min(100, info.state.messages - len(out)), timeout=5))
        for msg in out:
            await msg.ack()
        return out
    finally:
        await nc.close()


async def delete_stream(url: str, stream: str) -> None:
    nc = await nats.connect(url)
    try:
        await nc.jetstream().delete_stream(stream)
    finally:
        await nc.close()


@pytest.mark.slow
def test_every_event_reaches_jetstream_once_across_a_kill_9(nats_url: str, tmp_path: Path):
    repo = repo_with_branches(tmp_path / "repo", RUNS)
    tag = uuid.uuid4().hex[:10]
    stream, prefix = f"CONVEYOR_TEST_{tag}", f"conveyortest{tag}"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = os.environ | {
        "CONVEYOR_ADMIN_TOKEN": ADMIN,
        "CONVEYOR_SERVER": url,
        "CONVEYOR_TOKEN": ADMIN,
        "CONVEYOR_NATS_URL": nats_url,
        "CONVEYOR_NATS_STREAM": stream,
        "CONVEYOR_NATS_SUBJECT_PREFIX": prefix,
    }
    env.pop("CONVEYOR_DATABASE_URL", None)
    args = conveyor("serve", "--port", str(port), "--data-dir", str(tmp_path / "server"))
    try:
        with process(args, tmp_path / "first.log", env) as first:
            wait_until(lambda: healthy(url), 30, "the server")
            cli(env, "team", "create", "a")
            cli(env, "project", "create", "a/api", "--repo", f"file://{repo}")
            for index in range(RUNS // 2):
                start_and_cancel(url, f"b{index}")
            first.kill()  # mid-burst: events claimed, some published, maybe unmarked
            first.wait()
        with process(args, tmp_path / "second.log", env):
            wait_until(lambda: healthy(url), 30, "the restarted server")
            for index in range(RUNS // 2, RUNS):
                start_and_cancel(url, f"b{index}")

            def all_published() -> list[dict[str, Any]] | None:
                events = all_events(url)
                done = len(events) == 2 * RUNS and all(e["published"] for e in events)
                return events if done else None

            events = wait_until(all_published, 90, "every event on the bus", every=0.5)
        messages = asyncio.run(stream_messages(nats_url, stream))
        per_id = Counter(m.headers["Nats-Msg-Id"] for m in messages)
        assert set(per_id) == {e["id"] for e in events}
        assert max(per_id.values()) == 1, [i for i, n in per_id.items() if n > 1]
        kinds = Counter(m.headers["ce-type"] for m in messages)
        assert kinds == {
            "dev.cdevents.pipelinerun.queued.0.3.0": RUNS,
            "dev.cdevents.pipelinerun.finished.0.3.0": RUNS,
        }
        for msg in messages:
            body = json.loads(msg.data)
            assert body["context"]["id"] == msg.headers["ce-id"] == msg.headers["Nats-Msg-Id"]
            assert msg.subject.startswith(f"{prefix}.a.api.run.")
    finally:
        asyncio.run(delete_stream(nats_url, stream))
