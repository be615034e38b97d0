"""Runs: the one way a run starts from an event (a provider's delivery, a schedule's
slot, a person's trigger or retry), and what people do with runs (show, list, cancel,
play a manual job). Starting reads the pipeline at the event's commit through one
parse cache, compiles the plan for the event, and hands it to the scheduler; every
caller goes through `plan` and `start`, so a run starts the same way from anywhere.
Errors are domain errors (domain.errors), with a `code` where a client needs it."""

from __future__ import annotations

import re
import uuid
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from conveyor.domain.clock import as_utc, iso
from conveyor.domain.errors import Invalid, NotFound
from conveyor.domain.principal import Principal
from conveyor.domain.roles import Role
from conveyor.domain.status import RunStatus
from conveyor.pipeline.errors import PipelineInvalid
from conveyor.pipeline.loader import LoadedPipeline, parse_pipeline
from conveyor.pipeline.plan import Plan, compile_plan
from conveyor.pipeline.triggers import Event, EventKind
from conveyor.policy.access import project_named
from conveyor.protocol.api import (
    AttemptOut,
    DeliveryOut,
    JobOut,
    RunFilter,
    RunOut,
    RunPage,
    RunSummary,
)
from conveyor.scheduler.service import RunStart, Scheduler
from conveyor.storage import inbox, runs
from conveyor.storage import jobs as job_rows
from conveyor.storage.database import Session
from conveyor.storage.projects import ProjectRecord, TeamRecord
from conveyor.storage.runs import CreatedRun, RunQuery, RunRecord, derived_status
from conveyor.vcs import GitError, GitMirror

PIPELINE_CACHE = 512
"""Parsed pipelines kept (by file content and path), and full shas known per mirror."""
FULL_SHA = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
FILTERED_CHUNK = 500
"""Runs read per round when a listing filters by status (the matching ones may be few)."""


@dataclass(frozen=True)
class NoPipeline:
    """Why a commit has no pipeline to run: its file is missing, or invalid."""

    reason: str
    """In words, for a delivery's outcome."""
    refusal: Invalid
    """What a person who asked for the run is answered."""


class Runs:
    """Starting runs, and the run use cases of the API and the UI."""

    def __init__(self, scheduler: Scheduler, mirror: Callable[[str], GitMirror]) -> None:
        self.db = scheduler.db
        self.scheduler = scheduler
        self.mirror = mirror
        self._pipelines: OrderedDict[tuple[str, str], LoadedPipeline | NoPipeline] = OrderedDict()
        self._known: OrderedDict[tuple[str, str], None] = OrderedDict()
        """Full shas known to be in their mirror (commits never leave a mirror we read)."""

    # -- starting ------------------------------------------------------------------------

    async def pipeline(
        self, project: ProjectRecord, mirror: GitMirror, sha: str
    ) -> LoadedPipeline | NoPipeline:
        """The pipeline at a commit, or why there is none. Parsed once per (file
        content, path): the many commits that leave conveyor.yml unchanged share one
        parse."""
        path = project.config_path
        try:
            blob, text = await mirror.blob(sha, path)
        except GitError:
            refusal = Invalid(f"{path} is not in commit {sha[:12]}", code="no_pipeline")
            return NoPipeline(f"no {path} in this commit", refusal)
        key = (blob, path)
        if key in self._pipelines:
            self._pipelines.move_to_end(key)
            return self._pipelines[key]
        found: LoadedPipeline | NoPipeline
        try:
            found = parse_pipeline(text, path)
        except PipelineInvalid as exc:
            shown = "; ".join(str(e) for e in exc.errors[:5])
            errors = [str(e) for e in exc.errors]
            refusal = Invalid(shown, code="invalid_pipeline", detail=errors)
            found = NoPipeline(f"the pipeline is invalid: {shown}", refusal)
        self._pipelines[key] = found
        if len(self._pipelines) > PIPELINE_CACHE:
            self._pipelines.popitem(last=False)
        return found

    async def commit(self, mirror: GitMirror, sha: str) -> str | None:
        """The full sha of a commit, fetching the mirror when it does not have it yet."""
        if FULL_SHA.fullmatch(sha) and (mirror.url, sha) in self._known:
            return sha
        if not await mirror.has(sha):
            await mirror.fetch()
        try:
            full = await mirror.resolve(sha)
        except GitError:
            return None
        self._known[mirror.url, full] = None
        if len(self._known) > PIPELINE_CACHE:
            self._known.popitem(last=False)
        return full

    async def plan(self, project: ProjectRecord, event: Event) -> Plan | NoPipeline:
        """The plan the project's pipeline at the event's commit makes for the event
        (`plan.triggered` says whether it runs anything), or why there is none."""
        loaded = await self.pipeline(project, self.mirror(project.repo_url), event.sha)
        if isinstance(loaded, NoPipeline):
            return loaded
        return compile_plan(loaded.spec, event)

    async def start(self, starts: Sequence[RunStart], *, durable: bool = True) -> list[CreatedRun]:
        """Start planned runs in one transaction, in order (the scheduler makes their
        first jobs pending). Not `durable` when the caller can start them again after a
        database crash (the inbox can)."""
        return await self.scheduler.start_runs(starts, durable=durable)

    async def start_event(self, project: ProjectRecord, event: Event, pipeline: str) -> CreatedRun:
        """Start the run an event asks for, or refuse: Invalid with code `no_pipeline`,
        `invalid_pipeline` or `nothing_to_run`. `pipeline` names where it came from, and
        with the commit makes the run's dedupe key (docs/ids.md)."""
        plan = await self.plan(project, event)
        if isinstance(plan, NoPipeline):
            raise plan.refusal
        if not plan.triggered:
            reasons = list(plan.trigger.reasons) or ["no job matched"]
            raise Invalid("; ".join(reasons), code="nothing_to_run", detail=reasons)
        return (await self.start([RunStart(project, plan, pipeline)]))[0]

    # -- a person's runs -----------------------------------------------------------------

    async def trigger(
        self, who: Principal, team: str, project: str, ref: str, sha: str | None, nonce: str
    ) -> RunOut:
        """Start a run of `ref` (at `sha` if given). NotFound (`unknown_ref`) for a ref or
        commit the repository does not have. `nonce` tells this request's run from
        another of the same commit."""
        async with self.db.transaction() as session:
            row, _ = await project_named(session, who, team, project, Role.DEVELOPER)
        event = await self._manual_event(row, ref, sha)
        created = await self.start_event(row, event, f"{row.config_path}#manual:{nonce}")
        async with self.db.transaction() as session:
            return await load_run(session, created.run_id)

    async def _manual_event(self, project: ProjectRecord, ref: str, sha: str | None) -> Event:
        ref = ref if ref.startswith("refs/") else f"refs/heads/{ref}"
        mirror = self.mirror(project.repo_url)
        try:
            await mirror.fetch()
            found = await mirror.resolve(sha or ref)
        except GitError as exc:
            raise NotFound(f"cannot resolve {sha or ref}: {exc}", code="unknown_ref") from exc
        return Event(
            kind=EventKind.MANUAL,
            ref=ref,
            sha=found,
            message=await mirror.message(found),
            author=await mirror.author(found),
        )

    async def retry(self, who: Principal, run_id: uuid.UUID, key: str | None = None) -> RunOut:
        """Run the same commit of the same ref again, as a new run (one per
        Idempotency-Key `key`)."""
        run, project, team = await self.retryable(who, run_id)
        again = nonce(who, f"retry:{run_id}:{key}" if key else None)
        return await self.trigger(who, team.name, project.name, run.ref, run.sha, again)

    async def retryable(
        self, who: Principal, run_id: uuid.UUID
    ) -> tuple[RunRecord, ProjectRecord, TeamRecord]:
        """The run, its project and team, if the caller may run it again."""
        async with self.db.transaction() as session:
            found = await run_row(session, run_id)
            who.require(found[0].team_id, Role.DEVELOPER, "run")
        return found

    async def run(self, who: Principal, run_id: uuid.UUID) -> RunOut:
        async with self.db.transaction() as session:
            run, _, _ = await run_row(session, run_id)
            who.require(run.team_id, Role.VIEWER, "run")
            return await load_run(session, run_id)

    async def cancel(self, who: Principal, run_id: uuid.UUID) -> RunOut:
        async with self.db.transaction() as session:
            run, _, _ = await run_row(session, run_id)
            who.require(run.team_id, Role.DEVELOPER, "run")
        await self.scheduler.cancel_run(run_id)
        async with self.db.transaction() as session:
            return await load_run(session, run_id)

    async def play(self, who: Principal, job_id: uuid.UUID) -> RunOut:
        """Start a manual job."""
        async with self.db.transaction() as session:
            row = await job_rows.brief(session, job_id)
            if row is None or not who.can_see(row.team_id):
                raise NotFound("no such job")
            who.require(row.team_id, Role.DEVELOPER, "job")
        await self.scheduler.play(job_id)
        async with self.db.transaction() as session:
            return await load_run(session, row.run_id)

    async def page(
        self, who: Principal, filters: RunFilter, project: tuple[str, str] | None = None
    ) -> RunPage:
        """Runs the caller can see (of one project, `(team, name)`), newest first."""
        async with self.db.transaction() as session:
            project_id = None
            if project is not None:
                row, _ = await project_named(session, who, *project, Role.VIEWER)
                project_id = row.id
            return await run_page(session, who, filters, project_id=project_id)

    async def deliveries(
        self, who: Principal, team: str, project: str, limit: int
    ) -> list[DeliveryOut]:
        """The project's latest webhook deliveries, newest first, with what each started."""
        async with self.db.transaction() as session:
            row, _ = await project_named(session, who, team, project, Role.VIEWER)
            rows = await inbox.recent(session, row.id, limit)
            return [
                DeliveryOut(
                    id=d.id,
                    provider=d.provider,
                    delivery_key=d.delivery_key,
                    event=d.event,
                    state=d.state,
                    attempts=d.attempts,
                    outcome=[str(x) for x in d.outcome],
                    runs=[str(x) for x in d.runs],
                    received_at=as_utc(d.received_at).isoformat(),
                    processed_at=iso(d.processed_at),
                )
                for d in rows
            ]


def nonce(who: Principal, key: str | None) -> str:
    """What tells a person's run from another of the same commit: the caller and its
    Idempotency-Key (a repeat finds the same run), else a new random one."""
    return f"{who.subject[:16]}:{key}" if key else str(uuid.uuid4())


# -- how a run is shown ------------------------------------------------------------------


def summary_of(
    run: RunRecord, project: ProjectRecord, team: TeamRecord, status: RunStatus
) -> RunSummary:
    return RunSummary(
        id=run.id,
        team=team.name,
        project=project.name,
        status=status.value,
        event=run.event,
        ref=run.ref,
        sha=run.sha,
        title=run.title,
        author=run.author,
        created_at=as_utc(run.created_at).isoformat(),
        finished_at=iso(run.finished_at),
    )


async def run_row(
    session: Session, run_id: uuid.UUID
) -> tuple[RunRecord, ProjectRecord, TeamRecord]:
    found = await runs.with_project(session, run_id)
    if found is None:
        raise NotFound("no such run")
    return found


async def load_run(session: Session, run_id: uuid.UUID) -> RunOut:
    run, project, team = await run_row(session, run_id)
    summary = summary_of(run, project, team, await derived_status(session, run.id))
    jobs, attempts = await job_rows.jobs_and_attempts(session, run_id)
    history: dict[uuid.UUID, list[AttemptOut]] = {}
    for a in attempts:
        history.setdefault(a.job_id, []).append(
            AttemptOut(
                number=a.number,
                status=a.status,
                exit_code=a.exit_code,
                failure_class=a.failure_class,
                detail=a.detail,
                reports=a.reports,
            )
        )
    return RunOut(
        **summary.model_dump(),
        jobs=[
            JobOut(
                id=j.id,
                name=j.name,
                stage=str(j.spec.get("stage", "")),
                status=j.status,
                attempts=j.attempt,
                exit_code=j.exit_code,
                failure_class=j.failure_class,
                reason=j.reason,
                queued_at=iso(j.queued_at),
                started_at=iso(j.started_at),
                finished_at=iso(j.finished_at),
                history=history.get(j.id, []),
            )
            for j in jobs
        ],
    )


async def run_page(
    session: Session,
    who: Principal,
    filters: RunFilter,
    *,
    project_id: uuid.UUID | None = None,
) -> RunPage:
    """Runs, newest first (UUIDv7 ids sort by time); `next_cursor` continues the list.
    The status filter is applied after deriving each run's status."""
    ref, limit, status, cursor = filters.ref, filters.limit, filters.status, filters.cursor
    query = RunQuery(
        team_id=who.team_id,
        every_team=who.is_admin,
        project_id=project_id,
        ref=None if ref is None else ref if ref.startswith("refs/") else f"refs/heads/{ref}",
        event=filters.event,
        status=_status_of(status),
    )
    items: list[RunSummary] = []
    last: uuid.UUID | None = None
    chunk = limit if status is None else max(limit, FILTERED_CHUNK)
    while len(items) < limit:
        rows = await runs.newest_first(session, query, cursor, chunk)
        if not rows:
            return RunPage(items=items, next_cursor=None)
        # A finished run's status is kept; only the others' are derived from their jobs.
        unknown = [run.id for run, _, _ in rows if run.final_status is None]
        statuses = await runs.derived_statuses(session, unknown)
        statuses |= {r.id: RunStatus(r.final_status) for r, _, _ in rows if r.final_status}
        for run, project, team in rows:
            cursor = last = run.id
            summary = summary_of(run, project, team, statuses[run.id])
            if status is None or summary.status == status:
                items.append(summary)
                if len(items) == limit:
                    break
    return RunPage(items=items, next_cursor=str(last) if last else None)


def _status_of(text: str | None) -> RunStatus | None:
    """A filter's status, when it names one (another matches no run, as before)."""
    if text is None:
        return None
    try:
        return RunStatus(text)
    except ValueError:
        return None
