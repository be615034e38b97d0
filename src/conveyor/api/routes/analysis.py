"""A deployment's analyses, explained: every run (a canary step's, the background one,
the bake) with its phase and reason, its latest verdicts per metric, and its newest
evaluations with their measurements (`conveyor analysis`; docs/analysis.md)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query

from conveyor.api.errors import ApiError
from conveyor.api.routes.deployments import deployment_out
from conveyor.api.schemas import (
    AnalysisOut,
    AnalysisRunOut,
    EvaluationOut,
    JudgementOut,
    MeasurementOut,
)
from conveyor.api.state import Caller, State
from conveyor.domain.roles import Role
from conveyor.storage import analysis, deployments
from conveyor.storage.analysis import KEPT
from conveyor.storage.tables import AnalysisEvaluation, AnalysisRun, as_utc, iso

router = APIRouter(prefix="/api/v1/deployments", tags=["deployments"])


@router.get("/{deployment_id}/analysis")
async def show_analysis(
    deployment_id: uuid.UUID,
    state: State,
    who: Caller,
    evaluations: Annotated[int, Query(ge=0, le=KEPT)] = 10,
    after: Annotated[int, Query(ge=0)] = 0,
) -> AnalysisOut:
    """The deployment's analysis runs, each with its newest `evaluations` evaluations,
    or with those after the evaluation numbered `after` (to follow one live)."""
    async with state.db.transaction() as session:
        row = await deployments.by_id(session, deployment_id)
        if row is None or not who.can_see(row.team_id):
            raise ApiError(404, "not_found", f"no deployment {deployment_id}")
        who.require(row.team_id, Role.VIEWER, f"deployment {deployment_id}")
        env = await deployments.environment_of(session, row)
        runs = await analysis.runs(session, [row.id])
        history = {
            run.id: await analysis.evaluations(session, run.id, after=after, limit=evaluations)
            if evaluations or after
            else []
            for run in runs
        }
    return AnalysisOut(
        deployment=deployment_out(row, env.name),
        runs=[_run(run, history[run.id]) for run in runs],
    )


def _run(run: AnalysisRun, history: list[AnalysisEvaluation]) -> AnalysisRunOut:
    return AnalysisRunOut(
        key=run.key,
        template=run.template,
        phase=run.phase,
        reason=run.reason,
        duration_s=run.duration_s,
        evaluations=run.evaluations,
        failures=dict(run.failures),
        ended_by=run.ended_by,
        started_at=as_utc(run.started_at).isoformat(),
        last_at=iso(run.last_at),
        decided_at=iso(run.decided_at),
        latest=[JudgementOut.model_validate(j) for j in run.latest],
        history=[
            EvaluationOut(
                seq=e.seq,
                at=as_utc(e.at).isoformat(),
                elapsed_s=e.elapsed_s,
                verdict=e.verdict,
                judgements=[JudgementOut.model_validate(j) for j in e.judgements],
                measurements=[MeasurementOut.model_validate(m) for m in e.measurements],
            )
            for e in history
        ],
    )
