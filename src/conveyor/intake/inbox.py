"""The durable inbox: receive (verify, store, acknowledge) and process (translate, find
the changed files, start the runs whose triggers match).

Receiving is one SELECT and one INSERT; nothing slow happens before the acknowledgement.
Processing runs in a worker on every replica. A worker claims deliveries by pushing their
`not_before` forward (with SKIP LOCKED on PostgreSQL), so a replica that dies mid-way
leaves them to be claimed again; starting a run is idempotent through the run dedupe key,
so a delivery processed twice still starts each run once.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import secrets
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from conveyor.domain.clock import as_utc, utcnow
from conveyor.domain.delivery import DeliveryState
from conveyor.domain.errors import Malformed, NotFound, Refused, Unauthenticated
from conveyor.ids import new_id
from conveyor.intake.providers import PROVIDERS
from conveyor.intake.providers.base import Change, Look, PayloadError
from conveyor.intake.runs import NoPipeline, Runs
from conveyor.observability import metrics, tracing
from conveyor.observability.logs import bound
from conveyor.pipeline.plan import Plan, compile_plan
from conveyor.pipeline.triggers import Event, EventKind
from conveyor.scheduler.service import RunStart, Scheduler
from conveyor.storage import inbox, projects
from conveyor.storage.inbox import DeliveryOutcome, DeliveryRecord, DeliveryWriter
from conveyor.storage.projects import ProjectRecord
from conveyor.storage.runs import CreatedRun
from conveyor.storage.secrets import SecretBox
from conveyor.vcs import GitError, GitMirror
from conveyor.waiting import event_or_timeout

log = logging.getLogger("conveyor.intake")
CLAIM_S = 120.0
"""A claimed delivery is left alone this long before another worker may take it."""
MAX_ATTEMPTS = 8
TARGET_TTL_S = 1.0
YIELD_STEP_S = 0.005
YIELD_MAX_S = 0.25
HOOK_SECRET = "webhook-secret"
KEPT_HEADERS = (
    "x-github-event",
    "x-gitlab-event",
    "x-gitea-event",
    "x-forgejo-event",
    "x-gogs-event",
    "x-event-key",
    "x-conveyor-event",
)
"""The headers translation needs; the rest of a delivery's headers are not stored."""


@dataclass(frozen=True)
class Receipt:
    status: int
    body: dict[str, Any]


def new_hook_secret() -> str:
    """A webhook secret: 32 random bytes, in Standard Webhooks' `whsec_` form (any
    provider accepts it as a plain string)."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def seal_hook_secret(box: SecretBox, project_id: uuid.UUID, value: str) -> bytes:
    return box.seal_blob(project_id, HOOK_SECRET, value)


def _parse_json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise Malformed(f"the body is not valid JSON: {exc}", code="invalid_json") from exc


@dataclass(frozen=True)
class HookTarget:
    """What receiving a delivery needs to know about its project."""

    project_id: uuid.UUID
    team_id: uuid.UUID
    current: str | None
    previous: str | None
    previous_until: datetime | None
    fetched: float

    @classmethod
    def of(cls, box: SecretBox, row: ProjectRecord) -> HookTarget:
        def unseal(blob: bytes | None) -> str | None:
            return None if blob is None else box.open_blob(row.id, HOOK_SECRET, blob)

        until = row.hook_secret_old_until
        return cls(
            project_id=row.id,
            team_id=row.team_id,
            current=unseal(row.hook_secret),
            previous=unseal(row.hook_secret_old),
            previous_until=as_utc(until) if until else None,
            fetched=time.monotonic(),
        )

    def secrets(self, now: datetime) -> list[str]:
        """The current secret, and the previous one during its grace period."""
        found = [self.current] if self.current else []
        if self.previous and self.previous_until and self.previous_until > now:
            found.append(self.previous)
        return found


@dataclass(frozen=True)
class Planned:
    """A change whose run is planned, to start with the rest of the batch."""

    where: str
    how: str
    plan: Plan


@dataclass(frozen=True)
class Prepared:
    """A translated delivery: its outcome lines, some of them runs still to start."""

    delivery: uuid.UUID
    project: ProjectRecord
    lines: list[str | Planned]
    received_at: datetime | None = None
    """When the delivery arrived: its runs' push → start is timed from here."""
    traceparent: str | None = None
    """The trace context of its translation: its runs join that trace."""

    @property
    def planned(self) -> list[Planned]:
        return [line for line in self.lines if isinstance(line, Planned)]

    def outcome(self, created: list[CreatedRun]) -> DeliveryOutcome:
        """The outcome once its runs are started (`created`, in the order planned)."""
        out: list[str] = []
        runs: list[str] = []
        started = iter(created)
        for line in self.lines:
            if isinstance(line, str):
                out.append(line)
                continue
            run = next(started)
            verb = "started" if run.created else "already started by an earlier delivery:"
            out.append(f"{line.where}: run {verb} {run.run_id} ({line.how})")
            runs.append(str(run.run_id))
        return DeliveryOutcome(self.delivery, DeliveryState.DONE, out or ["nothing to do"], runs)

    def failed(self, reason: str) -> DeliveryOutcome:
        done = [line for line in self.lines if isinstance(line, str)]
        return DeliveryOutcome(self.delivery, DeliveryState.FAILED, [*done, reason], [])


def _internal(exc: BaseException) -> str:
    return f"internal error: {type(exc).__name__}: {exc}"


class Intake:
    """Receives deliveries and turns them into runs."""

    def __init__(
        self,
        scheduler: Scheduler,
        box: SecretBox,
        mirror: Callable[[str], GitMirror],
        *,
        poll_s: float = 1.0,
        batch: int = 20,
    ) -> None:
        self.db = scheduler.db
        self.scheduler = scheduler
        self.box = box
        self.mirror = mirror
        self.poll_s = poll_s
        self.batch = batch
        self._wake = asyncio.Event()
        self.writer = DeliveryWriter(self.db)
        self._receiving = 0
        self._targets: dict[tuple[str, str], HookTarget] = {}
        self.runs = Runs(scheduler, mirror)
        """Starting runs (intake/runs.py), with the parse cache every start shares."""

    # -- receiving ------------------------------------------------------------------------

    async def receive(
        self, provider_name: str, team: str, project: str, headers: Mapping[str, str], body: bytes
    ) -> Receipt:
        """Verify, store, acknowledge. Refused (domain.errors) for a refused delivery."""
        self._receiving += 1
        outcome = "refused"
        try:
            receipt = await self._receive(provider_name, team, project, headers, body)
            outcome = str(receipt.body.get("status", "accepted"))
            return receipt
        except Refused:
            outcome = "refused"
            raise
        finally:
            self._receiving -= 1
            # Only a known provider is a label: a made-up name must not add series.
            provider = provider_name if provider_name in PROVIDERS else "unknown"
            metrics.webhook_deliveries.labels(provider, outcome).inc()

    async def _receive(
        self, provider_name: str, team: str, project: str, headers: Mapping[str, str], body: bytes
    ) -> Receipt:
        provider = PROVIDERS.get(provider_name)
        if provider is None:
            known = ", ".join(sorted(PROVIDERS))
            raise NotFound(f"no provider {provider_name!r}; use {known}", code="unknown_provider")
        target = await self._target(team, project)
        if not provider.verify(target.secrets(utcnow()), headers, body):
            raise Unauthenticated(
                f"the {provider.name} signature or token does not verify", code="bad_signature"
            )
        payload = _parse_json(body)
        look = provider.first_look(headers, payload)
        if look.look is Look.PING:
            return Receipt(200, {"status": "pong", "event": look.event})
        if look.look is Look.IGNORE:
            return Receipt(202, {"status": "ignored", "event": look.event, "reason": look.reason})
        key = provider.delivery_key(headers, body)
        now = utcnow()
        stored = await self.writer.store(
            {
                "id": new_id(),
                "team_id": target.team_id,
                "project_id": target.project_id,
                "provider": provider.name,
                "delivery_key": key,
                "event": look.event[:200],
                "headers": {k: headers[k] for k in KEPT_HEADERS if k in headers},
                "body": body,
                "state": DeliveryState.RECEIVED.value,
                "attempts": 0,
                "not_before": now,
                "outcome": [],
                "runs": [],
                "received_at": now,
                "traceparent": tracing.traceparent(),
            }
        )
        if stored is None:
            return Receipt(200, {"status": "duplicate", "delivery_key": key})
        self._wake.set()
        return Receipt(202, {"status": "accepted", "delivery": str(stored), "event": look.event})

    async def _target(self, team: str, name: str) -> HookTarget:
        """The project a hook URL names, with its secrets; kept for TARGET_TTL_S, so a
        burst costs one lookup. A rotation made on another replica applies within that
        time (this replica's own rotations apply at once, see `forget`)."""
        cached = self._targets.get((team, name))
        if cached is not None and cached.fetched > time.monotonic() - TARGET_TTL_S:
            return cached
        async with self.db.transaction() as session:
            row = await projects.by_name(session, team, name)
        if row is None:
            self._targets.pop((team, name), None)
            raise NotFound(f"no project {team}/{name}")
        target = HookTarget.of(self.box, row)
        self._targets[team, name] = target
        return target

    def forget(self, team: str, name: str) -> None:
        """Drop a cached project (after its secret was rotated here)."""
        self._targets.pop((team, name), None)

    # -- processing -----------------------------------------------------------------------

    async def work(self) -> None:
        """Process the inbox until cancelled: at once when this replica stored a delivery,
        otherwise every `poll_s` (deliveries stored by other replicas, retries)."""
        while True:
            try:
                done = await self.drain()
            except Exception:  # pragma: no cover - logged; the next pass retries
                log.exception("inbox pass failed")
                done = 0
            if done:
                continue
            await event_or_timeout(self._wake, self.poll_s)
            self._wake.clear()

    async def drain(self) -> int:
        """Claim and process one batch; returns how many deliveries it handled. The batch
        is read with its claim, its runs are started in one transaction, and its outcomes
        are written in one statement at its end: a crash in between leaves the deliveries
        to be claimed again, and starting their runs again finds the same runs (the
        dedupe key)."""
        claimed = await self._claim()
        outcomes: list[DeliveryOutcome] = []
        prepared: list[Prepared] = []
        for delivery, project in claimed:
            await self._acknowledgements_first()
            with (
                bound(delivery_id=delivery.id),
                tracing.span(
                    "inbox.translate",
                    delivery.traceparent,
                    attributes={
                        "conveyor.delivery_id": str(delivery.id),
                        "conveyor.event": delivery.event,
                    },
                ),
            ):
                result = await self.prepare(delivery, project)
            lag = (utcnow() - as_utc(delivery.received_at)).total_seconds()
            metrics.intake_lag.labels(delivery.provider).observe(max(lag, 0.0))
            if isinstance(result, DeliveryOutcome):
                outcomes.append(result)
            elif result is not None:
                prepared.append(result)
        outcomes += await self._start_all(prepared)
        await self._finish(outcomes)
        return len(claimed)

    async def _acknowledgements_first(self) -> None:
        """Translation waits while this process is acknowledging deliveries (at most
        YIELD_MAX_S per delivery), so a burst is stored and answered first and translated
        from the inbox afterwards."""
        waited = 0.0
        while self._receiving and waited < YIELD_MAX_S:
            await asyncio.sleep(YIELD_STEP_S)
            waited += YIELD_STEP_S

    async def _claim(self) -> list[tuple[DeliveryRecord, ProjectRecord]]:
        """The next batch of deliveries due, with their projects, claimed for CLAIM_S."""
        # Not durable: a claim lost in a database crash is made again.
        async with self.db.transaction(durable=False) as session:
            return await inbox.claim_due(
                session, limit=self.batch, hold_s=CLAIM_S, skip_locked=not self.db.is_sqlite
            )

    async def prepare(
        self, delivery: DeliveryRecord, project: ProjectRecord
    ) -> Prepared | DeliveryOutcome | None:
        """Translate one claimed delivery and plan its runs: what is left is to start
        them (Prepared), or the outcome already (DeliveryOutcome), or None when it is left to
        retry."""
        lines: list[str | Planned] = []
        try:
            translation = PROVIDERS[delivery.provider].translate(
                dict(delivery.headers), json.loads(delivery.body)
            )
            lines += translation.skipped
            for change in translation.changes:
                lines.append(await self._plan(project, change))
        except PayloadError as exc:
            return DeliveryOutcome(
                delivery.id, DeliveryState.FAILED, [f"unexpected payload: {exc}"], []
            )
        except GitError as exc:
            return await self._retry(delivery.id, delivery.attempts + 1, f"git: {exc}")
        except Exception as exc:  # a bug: record it on the delivery instead of retrying forever
            log.exception("delivery %s", delivery.id)
            return Prepared(delivery.id, project, lines).failed(_internal(exc))
        return Prepared(
            delivery.id, project, lines, as_utc(delivery.received_at), tracing.traceparent()
        )

    async def _start_all(self, prepared: list[Prepared]) -> list[DeliveryOutcome]:
        """Start the planned runs of a batch in one transaction. Should that fail, each
        delivery is started on its own, so that one bad delivery fails alone."""
        starts = [
            RunStart(p.project, line.plan, p.project.config_path, p.received_at, p.traceparent)
            for p in prepared
            for line in p.planned
        ]
        if not starts:
            return [p.outcome([]) for p in prepared]
        try:
            # Not durable: a run lost in a database crash is started again from the
            # stored delivery, whose "done" commits later (and so makes this one durable
            # first).
            created = await self.runs.start(starts, durable=False)
        except Exception as exc:
            if len(prepared) == 1:
                log.exception("delivery %s", prepared[0].delivery)
                return [prepared[0].failed(_internal(exc))]
            return [outcome for p in prepared for outcome in await self._start_all([p])]
        outcomes = []
        for p in prepared:
            mine = len(p.planned)
            outcomes.append(p.outcome(created[:mine]))
            created = created[mine:]
        return outcomes

    async def _plan(self, project: ProjectRecord, change: Change) -> str | Planned:
        """The run one change would start, or why it starts none."""
        mirror = self.mirror(project.repo_url)
        where = f"{change.ref}@{change.sha[:12]}"
        sha = await self.runs.commit(mirror, change.sha)
        if sha is None:
            return f"{where}: commit not found in {project.repo_url}"
        loaded = await self.runs.pipeline(project, mirror, sha)
        if isinstance(loaded, NoPipeline):
            return f"{where}: {loaded.reason}"
        changed, how = await self._changed(mirror, change, sha)
        message = change.message
        if not message and change.kind is EventKind.PUSH:
            message = await mirror.message(sha)
        event = Event(
            kind=change.kind,
            ref=change.ref,
            sha=sha,
            changed=changed,
            message=message,
            target_branch=change.target_branch,
            action=change.action,
            author=await mirror.author(sha),
        )
        plan = compile_plan(loaded.spec, event)
        if not plan.triggered:
            return f"{where}: not triggered ({'; '.join(plan.trigger.reasons)}; {how})"
        return Planned(where, how, plan)

    async def _changed(
        self, mirror: GitMirror, change: Change, sha: str
    ) -> tuple[tuple[str, ...] | None, str]:
        """The changed files, and how they were found (docs/webhooks.md)."""
        if change.changed is not None:
            return change.changed, f"{len(change.changed)} changed files listed in the payload"
        if change.kind is EventKind.PUSH and change.before and await mirror.has(change.before):
            files = await mirror.changed_files(change.before, sha)
            return files, f"{len(files)} changed files since {change.before[:12]}"
        if change.ref.startswith("refs/tags/"):
            return None, "a tag: every path counts as changed"
        branch = change.target_branch or change.default_branch or await mirror.default_branch()
        if branch is None:
            return None, "no default branch to compare with: every path counts as changed"
        if change.ref == f"refs/heads/{branch}":
            return None, f"no history to compare with {branch}: every path counts as changed"
        try:
            base = await mirror.resolve(f"refs/heads/{branch}")
        except GitError:
            return None, f"no branch {branch} to compare with: every path counts as changed"
        merge_base = await mirror.merge_base(base, sha)
        if merge_base is None or merge_base == sha:
            return None, f"no history to compare with {branch}: every path counts as changed"
        files = await mirror.changed_files(merge_base, sha)
        return files, f"{len(files)} changed files since the merge-base with {branch}"

    async def _finish(self, outcomes: list[DeliveryOutcome]) -> None:
        """Record the outcomes of a batch, in one statement run for each."""
        if not outcomes:
            return
        async with self.db.transaction() as session:
            await inbox.record_outcomes(session, outcomes)

    async def _retry(
        self, delivery_id: uuid.UUID, attempts: int, error: str
    ) -> DeliveryOutcome | None:
        """A passing failure (the repository could not be fetched): back off and retry,
        up to MAX_ATTEMPTS (then the outcome is a failure)."""
        if attempts >= MAX_ATTEMPTS:
            return DeliveryOutcome(
                delivery_id,
                DeliveryState.FAILED,
                [f"gave up after {attempts} attempts: {error}"],
                [],
            )
        delay = min(2.0**attempts, 300.0)
        async with self.db.transaction() as session:
            await inbox.postpone(session, delivery_id, delay, error)
        log.warning("delivery %s: %s; retrying in %.0fs", delivery_id, error, delay)
        return None
