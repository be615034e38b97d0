"""A deployment's analyses, explained: every run (a canary step's, the background one,
the bake) with its phase and reason, its latest verdicts per metric, and its newest
evaluations with their measurements (`conveyor analysis`; docs/analysis.md)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query

from conveyor.api.state import Caller, State
from conveyor.protocol.api import AnalysisOut
from conveyor.storage.analysis import KEPT

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
    return await state.deploys.analysis(who, deployment_id, evaluations, after)
