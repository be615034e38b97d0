"""Analysis runs and their evaluations: started by a deployment's driver when its
planner says an analysis is due, moved only while running (one guarded UPDATE), and
read back by the API. Each run keeps its newest KEPT evaluations."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select, update

from conveyor.domain.analysis import AnalysisPhase
from conveyor.domain.clock import utcnow
from conveyor.storage.database import Session
from conveyor.storage.deployment_records import (
    AnalysisRunRecord,
    DeploymentRecord,
    EvaluationRecord,
    analysis_run_record,
    evaluation_record,
)
from conveyor.storage.tables import AnalysisEvaluation, AnalysisRun

RUNNING = AnalysisPhase.RUNNING.value
KEPT = 900
"""Evaluations kept per run: 15 minutes at one a second (older ones are deleted)."""
TRIM_EVERY = 60


async def runs(session: Session, deployment_ids: Sequence[uuid.UUID]) -> list[AnalysisRunRecord]:
    """The runs of these deployments, oldest first."""
    if not deployment_ids:
        return []
    rows = await session.scalars(
        select(AnalysisRun)
        .where(AnalysisRun.deployment_id.in_(list(deployment_ids)))
        .order_by(AnalysisRun.started_at, AnalysisRun.key)
    )
    return [analysis_run_record(row) for row in rows]


async def start(
    session: Session,
    deployment: DeploymentRecord,
    *,
    key: str,
    template: str,
    spec: dict[str, Any],
    duration_s: float | None,
    at: datetime,
) -> AnalysisRunRecord:
    """The deployment's run `key`, started `at` unless it exists (a driver's redo)."""
    found: AnalysisRun | None = await session.scalar(
        select(AnalysisRun).where(
            AnalysisRun.deployment_id == deployment.id, AnalysisRun.key == key
        )
    )
    if found is not None:
        return analysis_run_record(found)
    run = AnalysisRun(
        team_id=deployment.team_id,
        deployment_id=deployment.id,
        key=key,
        template=template,
        spec=spec,
        duration_s=duration_s,
        started_at=at,
    )
    session.add(run)
    await session.flush()
    return analysis_run_record(run)


async def record(
    session: Session,
    run: AnalysisRunRecord,
    *,
    elapsed_s: float,
    verdict: str,
    judgements: list[dict[str, Any]],
    measurements: list[dict[str, Any]],
    phase: str,
    failures: dict[str, int],
    extended: int,
    reason: str,
    at: datetime | None = None,
) -> bool:
    """One evaluation of a running run, and the run's new state (decided when its phase
    is no longer running). False, writing nothing, when the run had ended already."""
    now = at or utcnow()
    seq = run.evaluations + 1
    moved = await session.execute(
        update(AnalysisRun)
        .where(AnalysisRun.id == run.id, AnalysisRun.phase == RUNNING)
        .values(
            phase=phase,
            failures=failures,
            extended=extended,
            evaluations=seq,
            reason=reason,
            latest=judgements,
            last_at=now,
            decided_at=None if phase == RUNNING else now,
        )
        .execution_options(synchronize_session=False)
    )
    if moved.rowcount != 1:  # type: ignore[attr-defined]
        return False
    session.add(
        AnalysisEvaluation(
            run_id=run.id,
            seq=seq,
            at=now,
            elapsed_s=elapsed_s,
            verdict=verdict,
            judgements=judgements,
            measurements=measurements,
        )
    )
    if seq % TRIM_EVERY == 0 and seq > KEPT:
        await session.execute(
            delete(AnalysisEvaluation).where(
                AnalysisEvaluation.run_id == run.id, AnalysisEvaluation.seq <= seq - KEPT
            )
        )
    return True


async def end(
    session: Session, run_id: uuid.UUID, phase: str, reason: str, ended_by: str | None = None
) -> bool:
    """End a running run without a verdict of its own (the deployment moved past it)."""
    moved = await session.execute(
        update(AnalysisRun)
        .where(AnalysisRun.id == run_id, AnalysisRun.phase == RUNNING)
        .values(phase=phase, reason=reason, ended_by=ended_by, decided_at=utcnow())
    )
    return bool(moved.rowcount == 1)  # type: ignore[attr-defined]


async def end_running(session: Session, deployment_id: uuid.UUID, reason: str) -> None:
    """Stop every run of a deployment that has ended (its background analysis when it
    is aborted, say)."""
    await session.execute(
        update(AnalysisRun)
        .where(AnalysisRun.deployment_id == deployment_id, AnalysisRun.phase == RUNNING)
        .values(phase=AnalysisPhase.STOPPED.value, reason=reason, decided_at=utcnow())
    )


async def evaluations(
    session: Session, run_id: uuid.UUID, *, after: int = 0, limit: int = 100
) -> list[EvaluationRecord]:
    """The run's evaluations after `after` (a seq), oldest first, or its newest `limit`
    when `after` is 0."""
    query = select(AnalysisEvaluation).where(AnalysisEvaluation.run_id == run_id)
    if after:
        query = query.where(AnalysisEvaluation.seq > after).order_by(AnalysisEvaluation.seq)
        return [evaluation_record(e) for e in await session.scalars(query.limit(limit))]
    newest = await session.scalars(query.order_by(AnalysisEvaluation.seq.desc()).limit(limit))
    return [evaluation_record(e) for e in newest][::-1]
