"""Approvals: a person's decision on a deployment that waits for them (docs/policy.md).

A decision is taken under the environment's lock, so two approvers racing for the last
approval count once: the second finds the deployment approved already. The approval is
a row, so it survives restarts; the deployment's gate (deploy.planner) sees
`approved_at` on its next pass. A pipeline's deploy job waits `blocked` meanwhile, and
goes back to `pending` once the deployment is approved or rejected, for a runner to
follow it to its end.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from conveyor.deploy.requests import audited
from conveyor.domain import events as event_types
from conveyor.domain.audit import Action
from conveyor.domain.clock import utcnow
from conveyor.domain.deploy import DriverRequest, Phase
from conveyor.domain.errors import Conflict, Forbidden, Refused
from conveyor.domain.policy import Decision
from conveyor.domain.roles import Role
from conveyor.domain.status import JobStatus
from conveyor.storage import deployments, events, jobs, logs
from conveyor.storage import policy as rows
from conveyor.storage.database import Session
from conveyor.storage.deployment_records import ApprovalRecord, DeploymentRecord

APPROVE, REJECT = "approve", "reject"


@dataclass(frozen=True)
class Approver:
    """Who decides: stably (a token's subject), for display, and with which role."""

    subject: str
    display: str
    role: Role


def awaiting(row: DeploymentRecord) -> bool:
    """It needs approvals it does not have yet, and has not ended or been released."""
    return (
        Decision.load(row.policy).required > 0
        and row.approved_at is None
        and row.released_at is None
        and not Phase(row.phase).is_final
        and row.request != DriverRequest.ABORT.value
    )


def why_not(row: DeploymentRecord, who: Approver, decided: list[ApprovalRecord]) -> Refused | None:
    """Why `who` may not decide the deployment now (None: they may): Conflict when it
    does not wait (or they decided already), Forbidden for a role below
    `approver_role` or for the person who asked for it."""
    decision = Decision.load(row.policy)
    if not awaiting(row):
        if row.approved_at is not None and decision.required:
            return Conflict("it is approved already")
        return Conflict("it does not wait for an approval")
    if who.role < decision.approver_role:
        return Forbidden(f"approving needs the {decision.approver_role.label} role")
    if row.requester is not None and row.requester == who.subject:
        return Forbidden("whoever asked for a deployment cannot approve it")
    if any(a.subject == who.subject for a in decided):
        return Conflict("you have decided on it already")
    return None


async def decide(
    session: Session, deployment: DeploymentRecord, who: Approver, verdict: str, comment: str
) -> DeploymentRecord:
    """Record `who`'s approval or rejection. The last approval needed marks the
    deployment approved; a rejection ends it (at once while queued, else by its
    driver). Refused as `why_not` says."""
    env = await deployments.environment_of(session, deployment)
    await deployments.lock(session, env.id)
    deployment = await _again(session, deployment)  # as it is under the lock
    decided = await rows.approvals(session, [deployment.id])
    refused = why_not(deployment, who, decided)
    if refused is not None:
        raise type(refused)(f"revision {deployment.number} of {env.name}: {refused}")
    rows.add_approval(session, deployment, verdict, who.subject, who.display, comment)
    detail: dict[str, Any] = {"digest": deployment.digest, "comment": comment}
    if verdict == APPROVE:
        given = 1 + sum(1 for a in decided if a.decision == APPROVE)
        needed = Decision.load(deployment.policy).required
        detail |= {"approvals": given, "required": needed}
        if given >= needed:
            await rows.mark_approved(session, deployment, utcnow())
            await unblock(session, deployment)
            deployment = await _again(session, deployment)
            await events.deployment_event(session, event_types.DEPLOYMENT_APPROVED, deployment)
        await audited(session, env, who.display, Action.APPROVE, deployment.number, detail)
    else:
        await _reject(session, deployment, who, comment)
        await unblock(session, deployment)
        await events.deployment_event(session, event_types.DEPLOYMENT_REJECTED, deployment)
        await audited(session, env, who.display, Action.REJECT, deployment.number, detail)
    return await _again(session, deployment)


async def _again(session: Session, deployment: DeploymentRecord) -> DeploymentRecord:
    """The deployment read again (after a change, or under its environment's lock)."""
    found = await deployments.by_id(session, deployment.id)
    assert found is not None, "a deployment is never deleted while it is decided"
    return found


async def _reject(
    session: Session, deployment: DeploymentRecord, who: Approver, comment: str
) -> None:
    why = f"rejected by {who.display}" + (f": {comment}" if comment else "")
    if deployment.phase == Phase.PENDING.value:
        await deployments.change_phase(
            session,
            deployment,
            Phase.ABORTED,
            finished_at=utcnow(),
            message=why,
            requested_by=who.display,
        )
    else:  # waiting at its gate: its driver ends it on the next pass
        await deployments.set_fields(
            session, deployment, request=DriverRequest.ABORT.value, requested_by=why
        )


async def unblock(session: Session, deployment: DeploymentRecord) -> None:
    """The deploy job blocked on this deployment goes back to pending, for a runner to
    follow the deployment to its end. A job that is running (it follows the deployment
    already) stays as it is."""
    if deployment.job_id is not None:
        await jobs.unblock(session, deployment.job_id)


async def block(
    session: Session, deployment: DeploymentRecord, job_id: uuid.UUID, fence: int
) -> bool:
    """Hand a running deploy job back while its deployment waits for approvals: it
    waits `blocked`, holding no runner (its attempt does not count)."""
    env = await deployments.environment_of(session, deployment)
    why = f"waits for approval of {env.name} revision {deployment.number}"
    if not await jobs.hand_back(session, job_id, fence, JobStatus.BLOCKED, reason=why):
        return False
    reasons = "; ".join(Decision.load(deployment.policy).reasons)
    note = (
        f"[conveyor] {why} ({reasons}): the job waits blocked, holding no runner, and is "
        "taken up again once the deployment is approved or rejected\n"
    )
    await logs.append_chunk(
        session, deployment.team_id, job_id, await logs.log_end(session, job_id), note.encode()
    )
    return True
