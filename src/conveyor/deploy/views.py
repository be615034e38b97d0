"""How a deployment, its approvals, its analyses and an environment's instances are
shown: the `/api/v1` bodies (protocol.api) built from what storage holds. The API, the
runner protocol and the UI show them through these, so they never differ."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from conveyor.deploy import approvals, records
from conveyor.domain.clock import as_utc, iso
from conveyor.domain.deploy import InstanceState, Phase
from conveyor.domain.policy import Decision
from conveyor.hosting.routing import ServerStatus
from conveyor.protocol.api import (
    AnalysisRunOut,
    ApprovalStateOut,
    DecisionOut,
    DeploymentOut,
    EvaluationOut,
    InstanceOut,
    JudgementOut,
    MeasurementOut,
)
from conveyor.storage.deployment_records import (
    AnalysisRunRecord,
    ApprovalRecord,
    DeploymentRecord,
    EnvironmentRecord,
    EvaluationRecord,
    InstanceRecord,
)


def approval_out(
    row: DeploymentRecord, decided: Sequence[ApprovalRecord] = ()
) -> ApprovalStateOut | None:
    """What the environment's rules required of a deployment (None: nothing)."""
    decision = Decision.load(row.policy)
    if not decision.required and not decision.reasons:
        return None
    deadline = None
    if decision.required and row.approved_at is None:
        deadline = as_utc(row.created_at) + timedelta(seconds=decision.approval_timeout)
    return ApprovalStateOut(
        required=decision.required,
        approver_role=decision.approver_role.label,
        risk=decision.risk,
        reasons=list(decision.reasons),
        approved_at=iso(row.approved_at),
        decisions=[
            DecisionOut(
                decision=a.decision,
                by=a.approver,
                comment=a.comment,
                at=as_utc(a.created_at).isoformat(),
            )
            for a in decided
        ],
        deadline=iso(deadline),
        on_timeout=decision.on_timeout.value,
    )


def deployment_out(
    row: DeploymentRecord, environment: str, decided: Sequence[ApprovalRecord] = ()
) -> DeploymentOut:
    steps = [s.describe() for s in records.steps_of(row.strategy)]
    return DeploymentOut(
        id=str(row.id),
        number=row.number,
        environment=environment,
        digest=row.digest,
        sha=row.sha,
        kind=row.kind,
        strategy=str(row.strategy["kind"]),
        phase=row.phase,
        step=row.step,
        steps=steps,
        pause_reason=row.pause_reason,
        request=row.request,
        requested_by=row.requested_by,
        started_by=row.started_by,
        message=row.message,
        rollback_of=row.rollback_of,
        fix=row.fix,
        committed_at=iso(row.committed_at),
        desired=row.desired or {},
        observed=row.observed or {},
        created_at=as_utc(row.created_at).isoformat(),
        started_at=iso(row.started_at),
        finished_at=iso(row.finished_at),
        approval=approval_out(row, decided),
        awaiting_approval=approvals.awaiting(row),
        emergency=row.emergency,
        run_id=str(row.run_id) if row.run_id else None,
        job_id=str(row.job_id) if row.job_id else None,
    )


def step_text(row: DeploymentRecord | None, env: EnvironmentRecord) -> str | None:
    """Where an active deployment is: at its gate, at step k/n, promoting or baking."""
    if row is None or not Phase(row.phase).is_active:
        return None
    if row.released_at is None:
        return f"at its gate: {row.pause_reason or 'opening'}"
    steps = records.steps_of(row.strategy)
    if row.step < len(steps):
        return f"{row.step + 1}/{len(steps)}: {steps[row.step].describe()}"
    if row.number == env.revision:
        bake = records.strategy_of(row.strategy).bake
        return f"{len(steps)}/{len(steps)}: promoted, baking ({bake.analysis if bake else ''})"
    return f"{len(steps)}/{len(steps)}: promoting"


def instance_out(
    row: InstanceRecord, env: EnvironmentRecord, seen: ServerStatus | None
) -> InstanceOut:
    """An instance with its role (stable, canary, warm) and whether the router finds it
    healthy."""
    if row.slot == env.stable_slot:
        role = "stable"
    elif row.digest == env.warm_digest and row.digest != env.digest:
        role = "warm"
    else:
        role = "canary"
    healthy = seen.healthy if seen is not None else False
    return InstanceOut(
        revision=row.revision,
        digest=row.digest,
        slot=row.slot,
        role=role,
        port=row.port,
        address=row.address or records.LOCAL_ADDRESS,
        state=row.state,
        healthy=healthy and row.state == InstanceState.READY.value,
        restarts=row.restarts,
    )


def analysis_run_out(run: AnalysisRunRecord, history: Sequence[EvaluationRecord]) -> AnalysisRunOut:
    """An analysis run with its latest verdicts and the evaluations asked for."""
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
