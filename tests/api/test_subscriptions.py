"""Webhook subscriptions on an in-process coordinator: who may manage them, what is
refused, and a run's events posted to a real receiver on loopback, signed (Standard
Webhooks), each to the subscriptions that want it."""

from __future__ import annotations

import json
import sqlite3
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from standardwebhooks.webhooks import Webhook

from conveyor.storage.database import SQLITE_FILE
from tests.api.conftest import World
from tests.helpers import wait_until

BASE = "/api/v1/projects/a/api"


class Receiver:
    """An HTTP server on loopback that keeps what it is posted."""

    def __init__(self) -> None:
        self.got: list[tuple[str, dict[str, str], bytes]] = []
        received = self.got

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                received.append((self.path, dict(self.headers.items()), body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def at(self, path: str) -> list[tuple[dict[str, str], bytes]]:
        return [(h, b) for p, h, b in self.got if p == path]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    made = Receiver()
    try:
        yield made
    finally:
        made.close()


def test_maintainers_manage_subscriptions_and_bad_ones_are_refused(world: World):
    body = {"url": "http://127.0.0.1:9/hook", "events": ["deployment.*"]}
    assert world.call("a:developer", "POST", f"{BASE}/subscriptions", json=body).status_code == 403
    assert world.call("b:owner", "POST", f"{BASE}/subscriptions", json=body).status_code == 404
    for bad, where in (
        ({"url": "ftp://x/hook"}, "url"),
        ({"url": "http://\U0001f600.example/hook"}, "Invalid IDNA hostname"),
        ({"url": "http://x", "events": ["deploy.*"]}, "is not an event type"),
        ({"url": "http://x", "events": []}, "events"),
        ({"url": "http://x", "format": "teams"}, "format"),
        ({"url": "http://x", "secret": "hunter2"}, "secret"),
    ):
        refused = world.call("a:maintainer", "POST", f"{BASE}/subscriptions", json=bad)
        assert refused.status_code == 422 and where in refused.text, (bad, refused.text)
    made = world.call("a:maintainer", "POST", f"{BASE}/subscriptions", json=body)
    assert made.status_code == 201, made.text
    sub = made.json()
    assert sub["secret"].startswith("whsec_") and sub["events"] == ["deployment.*"]
    listed = world.call("a:maintainer", "GET", f"{BASE}/subscriptions").json()
    assert [s["id"] for s in listed] == [sub["id"]] and listed[0]["secret"] is None
    assert world.call("a:viewer", "GET", f"{BASE}/subscriptions").status_code == 403
    gone = world.call("a:maintainer", "DELETE", f"{BASE}/subscriptions/{sub['id']}")
    assert gone.status_code == 204
    again = world.call("a:maintainer", "DELETE", f"{BASE}/subscriptions/{sub['id']}")
    assert again.status_code == 404
    assert world.call("a:maintainer", "GET", f"{BASE}/subscriptions").json() == []


def test_a_run_s_events_reach_the_subscriptions_that_want_them(world: World, receiver: Receiver):
    secret = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    every = {"url": f"{receiver.url}/all", "secret": secret}
    made = world.call("a:maintainer", "POST", f"{BASE}/subscriptions", json=every)
    assert made.status_code == 201 and made.json()["secret"] is None  # given, not shown
    slack = {"url": f"{receiver.url}/slack", "events": ["run.finished"], "format": "slack"}
    assert (
        world.call("a:maintainer", "POST", f"{BASE}/subscriptions", json=slack).status_code == 201
    )
    deploys = {"url": f"{receiver.url}/deploys", "events": ["deployment.*"]}
    assert (
        world.call("a:maintainer", "POST", f"{BASE}/subscriptions", json=deploys).status_code == 201
    )
    run = world.call("a:developer", "POST", f"{BASE}/runs", json={"ref": "main"}).json()
    canceled = world.call("a:developer", "POST", f"/api/v1/runs/{run['id']}/cancel")
    assert canceled.status_code == 200, canceled.text
    wait_until(lambda: len(receiver.at("/all")) >= 2 and receiver.at("/slack"), 30, "two events")
    seen = []
    for headers, body in receiver.at("/all"):
        payload = Webhook(secret).verify(body, headers)
        assert headers["webhook-id"] and payload["data"]["run"]["id"] == run["id"]
        seen.append((payload["type"], payload["data"]["run"]["status"]))
    assert seen == [("run.queued", "queued"), ("run.finished", "canceled")]
    ((_, body),) = receiver.at("/slack")
    assert json.loads(body)["text"].startswith(":no_entry_sign: a/api: run <http://")
    assert receiver.at("/deploys") == []
    listed = world.call("a:viewer", "GET", f"{BASE}/events").json()
    assert [e["type"] for e in listed] == ["run.finished", "run.queued"]
    assert {e["id"] for e in listed} == {h["webhook-id"] for h, _ in receiver.at("/all")}
    only = world.call("a:viewer", "GET", f"{BASE}/events", params={"type": "run.queued"}).json()
    assert [e["type"] for e in only] == ["run.queued"]
    counts = {
        s["url"]: s for s in world.call("a:maintainer", "GET", f"{BASE}/subscriptions").json()
    }
    assert (counts[every["url"]]["sent"], counts[every["url"]]["pending"]) == (2, 0)
    assert counts[deploys["url"]]["sent"] == 0
    assert world.call("b:viewer", "GET", f"{BASE}/events").status_code == 404


def test_a_delivery_to_a_url_that_can_never_be_sent_to_ends_failed(world: World, tmp_path: Path):
    """Issue 19 §1.6: a stored URL httpx cannot send to (a row from before the check)
    failed with InvalidURL every 30 s, `pending` forever. It ends failed, with why."""
    body = {"url": "http://127.0.0.1:9/hook", "events": ["run.*"]}
    sub = world.call("a:maintainer", "POST", f"{BASE}/subscriptions", json=body).json()
    with sqlite3.connect(tmp_path / "server" / SQLITE_FILE) as db:
        db.execute(
            "UPDATE subscriptions SET url = ? WHERE id = ?",
            ("http://\U0001f600.example/hook", uuid.UUID(sub["id"]).hex),
        )
    run = world.call("a:developer", "POST", f"{BASE}/runs", json={"ref": "main"}).json()
    assert world.call("a:developer", "POST", f"/api/v1/runs/{run['id']}/cancel").is_success

    def ended() -> dict | None:
        (row,) = world.call("a:maintainer", "GET", f"{BASE}/subscriptions").json()
        return row if row["failed"] >= 2 else None

    row = wait_until(ended, 30, "both deliveries to end failed")
    assert row["pending"] == 0 and "InvalidURL" in row["last_error"], row
