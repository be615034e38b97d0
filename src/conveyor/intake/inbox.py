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
import json
import logging
import secrets
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from conveyor.ids import new_id
from conveyor.intake.providers import PROVIDERS
from conveyor.intake.providers.base import Change, Look, PayloadError
from conveyor.pipeline.errors import PipelineInvalid
from conveyor.pipeline.loader import parse_pipeline
from conveyor.pipeline.plan import compile_plan
from conveyor.pipeline.triggers import Event, EventKind
from conveyor.scheduler.service import Scheduler
from conveyor.storage.secrets import SecretBox
from conveyor.storage.tables import Delivery, Project, Team, utcnow
from conveyor.vcs import GitError, GitMirror

log = logging.getLogger("conveyor.intake")
CLAIM_S = 120.0
"""A claimed delivery is left alone this long before another worker may take it."""
MAX_ATTEMPTS = 8
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


class IntakeError(Exception):
    """A delivery refused before it was stored: HTTP status, code, message."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail


@dataclass(frozen=True)
class Receipt:
    status: int
    body: dict[str, Any]


def new_hook_secret() -> str:
    """A webhook secret: 32 random bytes, in Standard Webhooks' `whsec_` form (any
    provider accepts it as a plain string)."""
    return "whsec_" + secrets.token_urlsafe(32).replace("-", "+").replace("_", "/") + "="


def seal_hook_secret(box: SecretBox, project_id: uuid.UUID, value: str) -> bytes:
    return box.seal_blob(project_id, HOOK_SECRET, value)


def hook_secrets(box: SecretBox, project: Project, now: datetime) -> list[str]:
    """The secrets a delivery may be signed with: the current one, and the previous one
    during its grace period."""
    found: list[str] = []
    if project.hook_secret is not None:
        found.append(box.open_blob(project.id, HOOK_SECRET, project.hook_secret))
    until = project.hook_secret_old_until
    if project.hook_secret_old is not None and until is not None and _aware(until) > now:
        found.append(box.open_blob(project.id, HOOK_SECRET, project.hook_secret_old))
    return found


def _aware(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes; they are UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=utcnow().tzinfo)


def _parse_json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise IntakeError(400, "invalid_json", f"the body is not valid JSON: {exc}") from exc


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

    # -- receiving ------------------------------------------------------------------------

    async def receive(
        self, provider_name: str, team: str, project: str, headers: Mapping[str, str], body: bytes
    ) -> Receipt:
        """Verify, store, acknowledge. Raises IntakeError for a refused delivery."""
        provider = PROVIDERS.get(provider_name)
        if provider is None:
            known = ", ".join(sorted(PROVIDERS))
            raise IntakeError(
                404, "unknown_provider", f"no provider {provider_name!r}; use {known}"
            )
        async with self.db.transaction() as session:
            row = await self._project(session, team, project)
            now = utcnow()
            if not provider.verify(hook_secrets(self.box, row, now), headers, body):
                raise IntakeError(
                    401, "bad_signature", f"the {provider.name} signature or token does not verify"
                )
            payload = _parse_json(body)
            look = provider.first_look(headers, payload)
            if look.look is Look.PING:
                return Receipt(200, {"status": "pong", "event": look.event})
            if look.look is Look.IGNORE:
                return Receipt(
                    202, {"status": "ignored", "event": look.event, "reason": look.reason}
                )
            key = provider.delivery_key(headers, body)
            stored = await self._store(session, row, provider.name, key, look.event, headers, body)
        if stored is None:
            return Receipt(200, {"status": "duplicate", "delivery_key": key})
        self._wake.set()
        return Receipt(202, {"status": "accepted", "delivery": str(stored), "event": look.event})

    async def _project(self, session: AsyncSession, team: str, name: str) -> Project:
        row = await session.scalar(
            select(Project)
            .join(Team, Team.id == Project.team_id)
            .where(Team.name == team, Project.name == name)
        )
        if row is None:
            raise IntakeError(404, "not_found", f"no project {team}/{name}")
        return row

    async def _store(
        self,
        session: AsyncSession,
        project: Project,
        provider: str,
        key: str,
        event: str,
        headers: Mapping[str, str],
        body: bytes,
    ) -> uuid.UUID | None:
        """Insert the delivery; None when (project, provider, key) is already there."""
        now = utcnow()
        values = {
            "id": new_id(),
            "team_id": project.team_id,
            "project_id": project.id,
            "provider": provider,
            "delivery_key": key,
            "event": event[:200],
            "headers": {k: headers[k] for k in KEPT_HEADERS if k in headers},
            "body": body,
            "state": "received",
            "attempts": 0,
            "not_before": now,
            "outcome": [],
            "runs": [],
            "received_at": now,
        }
        insert: Any = postgresql.insert if not self.db.is_sqlite else sqlite.insert
        stored = await session.scalar(
            insert(Delivery)
            .values(**values)
            .on_conflict_do_nothing(index_elements=["project_id", "provider", "delivery_key"])
            .returning(Delivery.id)
        )
        return stored if isinstance(stored, uuid.UUID) else None

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
            try:
                await asyncio.wait_for(self._wake.wait(), self.poll_s)
            except TimeoutError:
                pass
            self._wake.clear()

    async def drain(self) -> int:
        """Claim and process one batch; returns how many deliveries it handled."""
        claimed = await self._claim()
        if claimed:
            await asyncio.gather(*(self.process(d) for d in claimed))
        return len(claimed)

    async def _claim(self) -> list[uuid.UUID]:
        now = utcnow()
        async with self.db.transaction() as session:
            query = (
                select(Delivery.id)
                .where(Delivery.state == "received", Delivery.not_before <= now)
                .order_by(Delivery.not_before)
                .limit(self.batch)
            )
            if not self.db.is_sqlite:
                query = query.with_for_update(skip_locked=True)
            ids = list((await session.scalars(query)).all())
            if ids:
                await session.execute(
                    update(Delivery)
                    .where(Delivery.id.in_(ids))
                    .values(
                        not_before=now + timedelta(seconds=CLAIM_S),
                        attempts=Delivery.attempts + 1,
                    )
                )
        return ids

    async def process(self, delivery_id: uuid.UUID) -> None:
        """Translate one delivery and start its runs; record the outcome."""
        async with self.db.transaction() as session:
            delivery = await session.get(Delivery, delivery_id)
            if delivery is None or delivery.state != "received":
                return
            project = await session.get(Project, delivery.project_id)
            attempts = delivery.attempts
            provider = PROVIDERS[delivery.provider]
            headers = dict(delivery.headers)
            body = delivery.body
        assert project is not None  # the foreign key cascades
        outcome: list[str] = []
        runs: list[str] = []
        try:
            translation = provider.translate(headers, json.loads(body))
            outcome += translation.skipped
            for change in translation.changes:
                line, run = await self._start(project, change)
                outcome.append(line)
                if run is not None:
                    runs.append(str(run))
        except PayloadError as exc:
            await self._finish(
                delivery_id, "failed", [*outcome, f"unexpected payload: {exc}"], runs
            )
            return
        except GitError as exc:
            await self._retry(delivery_id, attempts, f"git: {exc}")
            return
        except Exception as exc:  # a bug: record it on the delivery instead of retrying forever
            log.exception("delivery %s", delivery_id)
            outcome.append(f"internal error: {type(exc).__name__}: {exc}")
            await self._finish(delivery_id, "failed", outcome, runs)
            return
        await self._finish(delivery_id, "done", outcome or ["nothing to do"], runs)

    async def _start(self, project: Project, change: Change) -> tuple[str, uuid.UUID | None]:
        mirror = self.mirror(project.repo_url)
        where = f"{change.ref}@{change.sha[:12]}"
        if not await mirror.has(change.sha):
            await mirror.fetch()
        try:
            sha = await mirror.resolve(change.sha)
        except GitError:
            return f"{where}: commit not found in {project.repo_url}", None
        changed, how = await self._changed(mirror, change, sha)
        message = change.message
        if not message and change.kind is EventKind.PUSH:
            message = await mirror.message(sha)
        try:
            text = await mirror.read(sha, project.config_path)
        except GitError:
            return f"{where}: no {project.config_path} in this commit", None
        try:
            loaded = parse_pipeline(text, project.config_path)
        except PipelineInvalid as exc:
            shown = "; ".join(str(e) for e in exc.errors[:5])
            return f"{where}: the pipeline is invalid: {shown}", None
        event = Event(
            kind=change.kind,
            ref=change.ref,
            sha=sha,
            changed=changed,
            message=message,
            target_branch=change.target_branch,
            action=change.action,
        )
        plan = compile_plan(loaded.spec, event)
        if not plan.triggered:
            return f"{where}: not triggered ({'; '.join(plan.trigger.reasons)}; {how})", None
        created = await self.scheduler.start_run(project, plan, pipeline=project.config_path)
        verb = "started" if created.created else "already started by an earlier delivery:"
        return f"{where}: run {verb} {created.run_id} ({how})", created.run_id

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
        try:
            base = await mirror.resolve(f"refs/heads/{branch}")
        except GitError:
            return None, f"no branch {branch} to compare with: every path counts as changed"
        merge_base = await mirror.merge_base(base, sha)
        if merge_base is None or merge_base == sha:
            return None, f"no history to compare with {branch}: every path counts as changed"
        files = await mirror.changed_files(merge_base, sha)
        return files, f"{len(files)} changed files since the merge-base with {branch}"

    async def _finish(
        self, delivery_id: uuid.UUID, state: str, outcome: list[str], runs: list[str]
    ) -> None:
        async with self.db.transaction() as session:
            await session.execute(
                update(Delivery)
                .where(Delivery.id == delivery_id, Delivery.state == "received")
                .values(state=state, outcome=outcome, runs=runs, processed_at=utcnow())
            )

    async def _retry(self, delivery_id: uuid.UUID, attempts: int, error: str) -> None:
        """A passing failure (the repository could not be fetched): back off and retry,
        up to MAX_ATTEMPTS."""
        if attempts >= MAX_ATTEMPTS:
            await self._finish(
                delivery_id, "failed", [f"gave up after {attempts} attempts: {error}"], []
            )
            return
        delay = min(2.0**attempts, 300.0)
        async with self.db.transaction() as session:
            await session.execute(
                update(Delivery)
                .where(Delivery.id == delivery_id, Delivery.state == "received")
                .values(not_before=utcnow() + timedelta(seconds=delay), outcome=[error])
            )
        log.warning("delivery %s: %s; retrying in %.0fs", delivery_id, error, delay)
