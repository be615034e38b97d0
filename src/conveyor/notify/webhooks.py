"""Outgoing webhooks: each project's subscriptions get its lifecycle events, signed the
Standard Webhooks way, from a durable outbox (docs/events.md).

Every replica runs the loop: it fans new events out into one delivery row per matching
subscription, then posts the deliveries that are due. A delivery that fails (no answer,
or not 2xx) is retried with exponential backoff until it is older than the give-up
time; every attempt carries the same `webhook-id` (the event's id) so receivers can drop
a copy they have seen, and a fresh `webhook-timestamp` and signature."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import httpx
from standardwebhooks.webhooks import Webhook

from conveyor import __version__
from conveyor.domain import events as types
from conveyor.domain.clock import as_utc
from conveyor.storage import events
from conveyor.storage.database import Database
from conveyor.storage.events import EventRecord
from conveyor.storage.secrets import SecretBox

log = logging.getLogger("conveyor.notify")
SECRET_NAME = "subscription-secret"
"""The SecretBox context a subscription's secret is sealed under."""
FORMATS = ("standard", "slack")
SEND_CONCURRENCY = 16
TIMEOUT_S = 10.0


def link(public_url: str, event: EventRecord) -> str:
    """Where a person sees what the event is about."""
    base = public_url.rstrip("/")
    data = event.data
    if event.type.startswith("run."):
        return f"{base}/api/v1/runs/{data['run']['id']}"
    if event.type.startswith("host."):
        return f"{base}/api/v1/hosts/{quote(data['host']['name'], safe='')}"
    team, project = quote(data["team"], safe=""), quote(data["project"], safe="")
    env = quote(data["environment"], safe="")
    number = data["deployment"]["number"]
    return f"{base}/api/v1/projects/{team}/{project}/environments/{env}/deployments/{number}"


def standard_body(event: EventRecord, url: str) -> dict[str, Any]:
    """The payload shape Standard Webhooks recommends: type, timestamp, data."""
    return {
        "type": event.type,
        "timestamp": as_utc(event.created_at).isoformat(),
        "data": {**event.data, "url": url},
    }


EMOJI = {
    types.RUN_QUEUED: ":hourglass_flowing_sand:",
    types.DEPLOYMENT_STARTED: ":rocket:",
    types.DEPLOYMENT_PAUSED: ":double_vertical_bar:",
    types.DEPLOYMENT_RESUMED: ":arrow_forward:",
    types.DEPLOYMENT_SUCCEEDED: ":white_check_mark:",
    types.DEPLOYMENT_ROLLED_BACK: ":leftwards_arrow_with_hook:",
    types.DEPLOYMENT_ABORTED: ":no_entry:",
    types.DEPLOYMENT_FAILED: ":x:",
    types.HOST_JOINED: ":heavy_plus_sign:",
    types.HOST_LOST: ":warning:",
    types.HOST_DRAINED: ":arrow_heading_down:",
}
RUN_EMOJI = {"success": ":white_check_mark:", "failed": ":x:", "canceled": ":no_entry_sign:"}


def slack_text(event: EventRecord, url: str) -> str:
    """One line in Slack's mrkdwn: what happened, where, and a link."""
    data = event.data
    if event.type.startswith("host."):
        host = data["host"]
        verb = event.type.removeprefix("host.")
        if event.type == types.HOST_JOINED and host.get("rejoined"):
            verb = "joined again"
        named = f"<{url}|{host['name']}> ({host['address']})"
        return f"{EMOJI[event.type]} {data['team']}: host {named} {verb}"
    where = f"{data['team']}/{data['project']}"
    if event.type.startswith("run."):
        run = data["run"]
        ref = run["ref"].removeprefix("refs/heads/")
        emoji = RUN_EMOJI.get(run["status"], ":grey_question:")
        if event.type == types.RUN_QUEUED:
            emoji = EMOJI[types.RUN_QUEUED]
        return f"{emoji} {where}: run <{url}|{run['sha'][:8]}> on {ref} {run['status']}"
    dep = data["deployment"]
    verb = event.type.removeprefix("deployment.").replace("_", " ")
    reason = f": {dep['message']}" if dep["message"] else ""
    return (
        f"{EMOJI.get(event.type, '')} {where} {data['environment']}: "
        f"<{url}|revision {dep['number']}> ({dep['strategy']}) {verb}{reason}"
    )


def body_for(event: EventRecord, form: str, public_url: str) -> bytes:
    url = link(public_url, event)
    body: dict[str, Any] = (
        {"text": slack_text(event, url)} if form == "slack" else standard_body(event, url)
    )
    return json.dumps(body, separators=(",", ":")).encode()


def signed_headers(secret: str, msg_id: str, body: bytes, now: datetime) -> dict[str, str]:
    """Standard Webhooks' three headers (id, timestamp, `v1,` signature)."""
    return {
        "content-type": "application/json",
        "user-agent": f"Conveyor/{__version__}",
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id, now, body),
    }


class Webhooks:
    """The fan-out and the sender; both loop on every replica."""

    def __init__(
        self,
        db: Database,
        box: SecretBox,
        *,
        public_url: str,
        poll_s: float = 1.0,
        backoff_s: float = 1.0,
        backoff_max_s: float = 300.0,
        give_up_s: float = 86_400.0,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.db = db
        self.box = box
        self.public_url = public_url
        self.poll_s = poll_s
        self.backoff_s = backoff_s
        self.backoff_max_s = backoff_max_s
        self.give_up_s = give_up_s
        self.client = client or httpx.AsyncClient(timeout=TIMEOUT_S)
        self._slots = asyncio.Semaphore(SEND_CONCURRENCY)

    async def work(self) -> None:
        while True:
            try:
                await self.fan_out()
                await self.send_due()
            except Exception:  # pragma: no cover - logged; the next pass retries
                log.exception("webhook pass failed")
            await asyncio.sleep(self.poll_s)

    async def fan_out(self, limit: int = 500) -> int:
        async with self.db.transaction() as session:
            return await events.fan_out(session, limit, skip_locked=not self.db.is_sqlite)

    async def send_due(self, limit: int = 200) -> int:
        """Post the deliveries that are due, a few at a time; returns how many were
        answered 2xx."""
        async with self.db.transaction() as session:
            ids = await events.claim_deliveries(session, limit, skip_locked=not self.db.is_sqlite)
        sent = await asyncio.gather(*(self._send(i) for i in ids))
        return sum(sent)

    async def _send(self, delivery_id: uuid.UUID) -> int:
        async with self._slots:
            async with self.db.transaction() as session:
                found = await events.delivery(session, delivery_id)
            if found is None:  # pragma: no cover - pruned since the claim
                return 0
            event, sub = found
            secret = self.box.open_blob(sub.project_id, SECRET_NAME, sub.secret)
            body = body_for(event, sub.format, self.public_url)
            headers = signed_headers(secret, str(event.id), body, datetime.now(UTC))
            error, code = "", None
            give_up_at = as_utc(event.created_at) + timedelta(seconds=self.give_up_s)
            try:
                response = await self.client.post(sub.url, content=body, headers=headers)
                code = response.status_code
                if not 200 <= code < 300:
                    error = f"{code} {response.text[:200]}"
            except httpx.HTTPError as exc:
                error = f"{type(exc).__name__}: {exc}"
            except (httpx.InvalidURL, UnicodeError) as exc:  # never sendable: it ends failed
                error = f"the URL cannot be sent to ({type(exc).__name__}: {exc})"
                give_up_at = datetime.now(UTC) - timedelta(seconds=1)
            async with self.db.transaction() as session:
                await events.record_send(
                    session, delivery_id, error, code, give_up_at=give_up_at, delay_for=self.delay
                )
        if error:
            log.warning("event %s to %s: %s", event.id, sub.url, error)
            return 0
        return 1

    def delay(self, attempts: int) -> float:
        """Exponential backoff from `backoff_s`, at most `backoff_max_s`."""
        return float(min(self.backoff_s * 2 ** (attempts - 1), self.backoff_max_s))


def new_secret() -> str:
    """A signing secret in Standard Webhooks' form: `whsec_` and 32 random bytes."""
    return "whsec_" + base64.b64encode(os.urandom(32)).decode()
