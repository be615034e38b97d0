"""`on.schedule` entries: cron slots (UTC, croniter) fire one run each.

Every replica checks the schedules of every project every `check_s`, reading each
project's pipeline at the head of its default branch in the local mirror. The mirror of a
project with schedules is fetched at most every FETCH_EVERY_S, so a slot runs the latest
commit; one without is fetched only every DISCOVER_EVERY_S (its pushes, which bring it up
to date, are the usual way a new schedule arrives). A slot's run has a
deterministic dedupe key (the pipeline name holds the entry and the slot), so replicas
that fire the same slot at once still start one run; the `schedule_fires` row then tells
later passes that the slot is handled. Slots missed while no replica was running are not
made up (like GitLab); a slot fires if it is at most `grace_s` old.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from croniter import croniter

from conveyor.domain.clock import as_utc, utcnow
from conveyor.intake.inbox import Intake
from conveyor.intake.runs import NoPipeline
from conveyor.pipeline.plan import compile_plan
from conveyor.pipeline.schema import ScheduleEntry
from conveyor.pipeline.triggers import Event, EventKind
from conveyor.scheduler.service import RunStart
from conveyor.storage import projects, schedules
from conveyor.storage.projects import ProjectRecord
from conveyor.vcs import GitError, GitMirror

log = logging.getLogger("conveyor.schedules")
FETCH_EVERY_S = 60.0
DISCOVER_EVERY_S = 600.0


@dataclass(frozen=True)
class Fired:
    project: str
    entry: str
    slot: datetime
    outcome: str


def entry_key(entry: ScheduleEntry, branch: str) -> str:
    """How a schedule entry is named in its fires: its name, else `cron@branch`."""
    return entry.name or f"{entry.cron}@{branch}"


def latest_slot(cron: str, now: datetime) -> datetime:
    """The latest cron slot at or before `now` (UTC)."""
    base = now.replace(microsecond=0) + timedelta(seconds=1)
    slot: datetime = croniter(cron, base).get_prev(datetime)
    return slot


class Schedules:
    def __init__(
        self,
        intake: Intake,
        *,
        check_s: float = 15.0,
        grace_s: float = 120.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.intake = intake
        self.db = intake.db
        self.check_s = check_s
        self.grace_s = grace_s
        self.clock = clock
        self.fetches = 0
        self._fetched: dict[str, float] = {}
        self._unreachable: set[str] = set()
        """Mirrors whose last fetch failed (their missing clone is no reason to retry)."""
        self._scheduled: dict[uuid.UUID, bool] = {}
        """Whether a project's pipeline had schedules when last read (unknown: fetch)."""

    async def work(self) -> None:
        """Fire due slots every `check_s` until cancelled."""
        while True:
            try:
                await self.fire_due()
            except Exception:  # pragma: no cover - logged; the next pass retries
                log.exception("schedule pass failed")
            await asyncio.sleep(self.check_s)

    async def fire_due(self, now: datetime | None = None) -> list[Fired]:
        """One pass over every project's schedules."""
        moment = now or utcnow()
        async with self.db.transaction() as session:
            every = await projects.all_projects(session)
        fired: list[Fired] = []
        for project in every:
            try:
                fired += await self._project(project, moment)
            except GitError as exc:
                log.warning("schedules of %s: %s", project.repo_url, exc)
        return fired

    async def _refresh(self, mirror: GitMirror, every: float) -> None:
        last = self._fetched.get(mirror.url)
        due = last is None or self.clock() - last > every
        if due or (not mirror.path.exists() and mirror.url not in self._unreachable):
            # A fetch that fails counts too: a repository that cannot be reached is tried
            # again after `every`, not at every check (500 of them spawned git 30 times a
            # second).
            self._fetched[mirror.url] = self.clock()
            self.fetches += 1
            try:
                await mirror.fetch()
            except GitError:
                self._unreachable.add(mirror.url)
                raise
            self._unreachable.discard(mirror.url)

    async def _project(self, project: ProjectRecord, now: datetime) -> list[Fired]:
        mirror = self.intake.mirror(project.repo_url)
        scheduled = self._scheduled.get(project.id, True)
        await self._refresh(mirror, FETCH_EVERY_S if scheduled else DISCOVER_EVERY_S)
        default = await mirror.default_branch()
        if default is None:
            return []
        runs = self.intake.runs
        head = await runs.commit(mirror, await mirror.resolve(f"refs/heads/{default}"))
        if head is None:
            return []
        loaded = await runs.pipeline(project, mirror, head)
        self._scheduled[project.id] = not isinstance(loaded, NoPipeline) and bool(
            loaded.spec.on.schedule
        )
        if isinstance(loaded, NoPipeline) or not loaded.spec.on.schedule:
            return []
        fired: list[Fired] = []
        for entry in loaded.spec.on.schedule:
            branch = entry.branch or default
            slot = latest_slot(entry.cron, now)
            if (now - slot).total_seconds() > self.grace_s or slot < as_utc(project.created_at):
                continue
            key = entry_key(entry, branch)
            if await self._handled(project, key, slot):
                continue
            outcome = await self._fire(project, mirror, branch, key, slot)
            fired.append(Fired(f"{project.id}", key, slot, outcome))
        return fired

    async def _handled(self, project: ProjectRecord, key: str, slot: datetime) -> bool:
        async with self.db.transaction() as session:
            return await schedules.fired(session, project.id, key, slot)

    async def _fire(
        self, project: ProjectRecord, mirror: GitMirror, branch: str, key: str, slot: datetime
    ) -> str:
        try:
            sha = await mirror.resolve(f"refs/heads/{branch}")
        except GitError:
            return f"no branch {branch}"
        loaded = await self.intake.runs.pipeline(project, mirror, sha)
        run_id = None
        if isinstance(loaded, NoPipeline):
            outcome = loaded.reason
        else:
            event = Event(
                kind=EventKind.SCHEDULE,
                ref=f"refs/heads/{branch}",
                sha=sha,
                message=await mirror.message(sha),
                author=await mirror.author(sha),
            )
            plan = compile_plan(loaded.spec, event)
            if plan.triggered:
                named = f"{project.config_path}#schedule:{key}@{slot.isoformat()}"
                (created,) = await self.intake.runs.start([RunStart(project, plan, named)])
                run_id = created.run_id
                outcome = f"run {run_id}" + ("" if created.created else " (fired elsewhere)")
            else:
                outcome = "not triggered: " + "; ".join(plan.trigger.reasons)
        await schedules.record_fire(self.db, project.id, key, slot, run_id)
        return outcome
