"""Lifecycle events on a message bus, as CDEvents, at least once (docs/events.md).

Every replica runs the loop: it claims the events the bus has not acknowledged yet,
oldest first, publishes them in that order, and marks the acknowledged ones. Each
message carries the event's id as `Nats-Msg-Id`, so a resend after a crash (the claim
expires and another replica takes the event) is dropped by JetStream's duplicate window
(2 minutes by default) instead of stored twice.

`Publisher` is what a bus adapter implements: NATS JetStream here (`NatsPublisher`); a
Kafka adapter (aiokafka) would be one more class in its own file."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Protocol

import nats
from nats.aio.client import Client
from nats.js.client import JetStreamContext
from nats.js.errors import NotFoundError

from conveyor.notify.cdevents import bus_subject, cdevent, ce_headers
from conveyor.storage import events
from conveyor.storage.database import Database
from conveyor.storage.events import EventRecord

log = logging.getLogger("conveyor.bus")
PREFIX = "conveyor"
"""Subjects are `conveyor.<team>.<project>.<event type>`."""
BATCH = 200
BACKOFF_MAX_S = 30.0
CLAIM_S = 15.0
"""A replica that dies after publishing leaves its claimed events to another this long:
well within JetStream's 2-minute duplicate window, so the resend is dropped."""


class Publisher(Protocol):
    async def publish(
        self, subject: str, msg_id: str, body: bytes, headers: dict[str, str]
    ) -> bool:
        """Publish one message and wait for the bus to store it; True when the bus says
        it was a duplicate (stored before). Raises when it was not stored."""

    async def close(self) -> None: ...


class NatsPublisher:
    """JetStream: connects on first use, and makes sure the stream exists and takes
    `<prefix>.>`."""

    def __init__(self, url: str, stream: str, prefix: str = PREFIX) -> None:
        self.url = url
        self.stream = stream
        self.prefix = prefix
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None

    async def _jetstream(self) -> JetStreamContext:
        if self._js is None or self._nc is None or self._nc.is_closed:
            nc = await nats.connect(
                self.url, connect_timeout=2, max_reconnect_attempts=-1, allow_reconnect=True
            )
            js = nc.jetstream(timeout=5)
            try:
                await js.stream_info(self.stream)
            except NotFoundError:
                await js.add_stream(name=self.stream, subjects=[f"{self.prefix}.>"])
            self._nc, self._js = nc, js
        return self._js

    async def publish(
        self, subject: str, msg_id: str, body: bytes, headers: dict[str, str]
    ) -> bool:
        js = await self._jetstream()
        ack = await js.publish(subject, body, timeout=5, headers={**headers, "Nats-Msg-Id": msg_id})
        return bool(ack.duplicate)

    async def close(self) -> None:
        if self._nc is not None and not self._nc.is_closed:
            await self._nc.drain()
        self._nc = self._js = None


class EventBus:
    """The publishing loop of one replica."""

    def __init__(
        self,
        db: Database,
        publisher: Publisher,
        *,
        public_url: str,
        prefix: str = PREFIX,
        poll_s: float = 0.5,
    ) -> None:
        self.db = db
        self.publisher = publisher
        self.public_url = public_url
        self.prefix = prefix
        self.poll_s = poll_s
        self.duplicates = 0
        """Resends the bus recognised (and did not store again)."""
        self._failures = 0

    async def work(self) -> None:
        try:
            while True:
                try:
                    published = await self.publish_due()
                except Exception:  # pragma: no cover - logged; the next pass retries
                    log.exception("event bus pass failed")
                    published = 0
                if published < BATCH:
                    await asyncio.sleep(self.poll_s)
        finally:
            await self.publisher.close()

    async def publish_due(self) -> int:
        """Publish the events that are due, in order; returns how many the bus stored.
        At the first failure the rest of the batch waits for a later pass."""
        async with self.db.transaction() as session:
            due = await events.claim_unpublished(
                session, BATCH, skip_locked=not self.db.is_sqlite, claim_s=CLAIM_S
            )
        done: list[EventRecord] = []
        for index, event in enumerate(due):
            cd = cdevent(event, self.public_url)
            body = json.dumps(cd, separators=(",", ":")).encode()
            try:
                duplicate = await self.publisher.publish(
                    bus_subject(self.prefix, event), str(event.id), body, ce_headers(cd)
                )
            except Exception as exc:
                self._failures += 1
                delay = min(0.5 * 2 ** min(self._failures, 10), BACKOFF_MAX_S)
                log.warning("event bus: %s; %d event(s) wait %.1fs", exc, len(due) - index, delay)
                async with self.db.transaction() as session:
                    await events.mark_published(session, [e.id for e in done])
                    await events.retry_publish(session, [e.id for e in due[index:]], delay)
                return len(done)
            self.duplicates += duplicate
            done.append(event)
        self._failures = 0
        async with self.db.transaction() as session:
            await events.mark_published(session, [e.id for e in done])
        return len(done)
