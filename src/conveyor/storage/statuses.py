"""The commit-status outbox's rows: the runs whose reported state may be stale, the
queued reports, their claims, and what each send came to."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update

from conveyor.domain.clock import utcnow
from conveyor.storage import outbox
from conveyor.storage.database import Session
from conveyor.storage.projects import ProjectRecord, TeamRecord, project_of, team_of
from conveyor.storage.runs import RunRecord, run_of
from conveyor.storage.tables import Project, Run, StatusReport, Team

CLAIM_S = 60
"""A claimed report is left alone by other replicas this long."""


@dataclass(frozen=True, slots=True)
class Report:
    """A commit status to send: a run's state (or a required team's) at a commit."""

    team_id: uuid.UUID
    project_id: uuid.UUID
    run_id: uuid.UUID
    sha: str
    ref: str
    context: str
    state: str
    description: str = ""


async def runs_to_reconcile(
    session: Session, finished: list[str], since: datetime, *, skip_locked: bool
) -> list[tuple[RunRecord, ProjectRecord, TeamRecord]]:
    """The runs since `since` of projects that report statuses, whose last reported
    state is not one of `finished` (locked with SKIP LOCKED on PostgreSQL, so replicas
    reconcile different runs at the same time)."""
    query = (
        select(Run, Project, Team)
        .join(Project, Project.id == Run.project_id)
        .join(Team, Team.id == Run.team_id)
        .where(
            Project.status_api.is_not(None),
            Project.provider != "git",
            Run.created_at > since,
            Run.status_reported.is_(None) | Run.status_reported.not_in(finished),
        )
    )
    if skip_locked:
        query = query.with_for_update(skip_locked=True, of=Run)
    found = (await session.execute(query)).all()
    return [(run_of(r), project_of(p), team_of(t)) for r, p, t in found]


def queue_report(session: Session, report: Report) -> None:
    session.add(StatusReport(**dataclasses.asdict(report)))


async def mark_reported(session: Session, run_id: uuid.UUID, state: str) -> None:
    """What was last queued for the run (`overall|required`)."""
    await session.execute(update(Run).where(Run.id == run_id).values(status_reported=state))


async def claim_due(session: Session, limit: int, *, skip_locked: bool) -> list[uuid.UUID]:
    """The reports due, oldest first, claimed for CLAIM_S."""
    return await outbox.claim_due(
        session, StatusReport, limit, skip_locked=skip_locked, hold_s=CLAIM_S
    )


async def with_project(
    session: Session, report_id: uuid.UUID
) -> tuple[Report, ProjectRecord] | None:
    """A queued report, and the project it goes to."""
    report = await session.get(StatusReport, report_id)
    project = await session.get(Project, report.project_id) if report else None
    if report is None or project is None:
        return None
    found = Report(
        team_id=report.team_id,
        project_id=report.project_id,
        run_id=report.run_id,
        sha=report.sha,
        ref=report.ref,
        context=report.context,
        state=report.state,
        description=report.description,
    )
    return found, project_of(project)


async def record_send(
    session: Session,
    report_id: uuid.UUID,
    error: str,
    *,
    give_up_after: int,
    delay_for: Callable[[int], float],
) -> None:
    """One more attempt: sent (no `error`), given up after `give_up_after` attempts, or
    due again after `delay_for(attempts)` seconds."""
    row = await session.get(StatusReport, report_id)
    if row is None:
        return
    row.attempts += 1
    if not error:
        row.sent_at, row.last_error = utcnow(), ""
    elif row.attempts >= give_up_after:
        row.sent_at = utcnow()
        row.last_error = f"gave up after {row.attempts} attempts: {error}"
    else:
        row.last_error = error
        row.next_at = utcnow() + timedelta(seconds=delay_for(row.attempts))
