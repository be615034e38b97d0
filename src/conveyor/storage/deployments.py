"""Deployment rows: environments found or created at their first deploy, the queue of
deployments, phase changes guarded by domain.deploy.PHASE_TRANSITIONS, and pins of bad
revisions. The checks that decide what to write live in deploy.requests; this module only
reads and writes.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from conveyor.domain.clock import utcnow
from conveyor.domain.deploy import InstanceState, Phase, QueuePolicy, phase_sources
from conveyor.domain.errors import Conflict
from conveyor.domain.events import DEPLOYMENT_STARTED
from conveyor.storage import events
from conveyor.storage.artifacts import ArtifactRecord
from conveyor.storage.database import Session
from conveyor.storage.deployment_records import (
    DeploymentRecord,
    EnvironmentRecord,
    InstanceRecord,
    PinRecord,
    deployment_record,
    environment_record,
    instance_record,
    pin_record,
)
from conveyor.storage.environments import ACTIVE_PHASES
from conveyor.storage.projects import ProjectRecord, project_of
from conveyor.storage.tables import (
    Deployment,
    Environment,
    Instance,
    Job,
    Project,
    RevisionPin,
    Run,
)


class PhaseChangeRejected(Conflict):
    """The deployment was not in a phase that allows the change."""


# -- environments ----------------------------------------------------------------------


async def environment(
    session: Session, project_id: uuid.UUID, name: str, *, lock: bool = False
) -> EnvironmentRecord | None:
    query = select(Environment).where(
        Environment.project_id == project_id, Environment.name == name
    )
    if lock:
        query = query.with_for_update()
    found: Environment | None = await session.scalar(query)
    return environment_record(found) if found is not None else None


async def environments(session: Session, project_id: uuid.UUID) -> list[EnvironmentRecord]:
    rows = await session.scalars(
        select(Environment)
        .where(Environment.project_id == project_id)
        .order_by(Environment.created_at)
    )
    return [environment_record(row) for row in rows]


async def create_environment(
    session: Session,
    project: ProjectRecord,
    name: str,
    ports: tuple[int, int],
    target: str = "local",
) -> EnvironmentRecord:
    """The project's environment `name`, created with `target` (where its instances run)
    unless it exists (a concurrent first deploy may create it at the same moment)."""
    found = await environment(session, project.id, name)
    if found is not None:
        return found
    env = Environment(
        team_id=project.team_id,
        project_id=project.id,
        name=name,
        target=target,
        port=ports[0],
        preview_port=ports[1],
    )
    try:
        async with session.begin_nested():
            session.add(env)
    except IntegrityError:
        raced = await environment(session, project.id, name)
        assert raced is not None
        return raced
    return environment_record(env)


async def lock(session: Session, env_id: uuid.UUID) -> None:
    """Serialise requests on one environment (PostgreSQL's row lock; SQLite's writer
    lock) until the transaction ends, and raise its `changes` (a settled environment's
    driver looks again)."""
    await session.execute(
        update(Environment).where(Environment.id == env_id).values(changes=Environment.changes + 1)
    )


async def set_queue_policy(
    session: Session, env: EnvironmentRecord, policy: QueuePolicy
) -> EnvironmentRecord:
    """The environment's queue policy; the environment as it is now."""
    await session.execute(
        update(Environment).where(Environment.id == env.id).values(queue_policy=policy.value)
    )
    return dataclasses.replace(env, queue_policy=policy.value)


async def keep_warm(session: Session, env: EnvironmentRecord, until: datetime) -> None:
    """Keep the previous revision warm at least until `until`."""
    current = env.warm_until
    if current is None or current < until:
        await session.execute(
            update(Environment).where(Environment.id == env.id).values(warm_until=until)
        )


# -- deployments -----------------------------------------------------------------------


async def queue(
    session: Session,
    env: EnvironmentRecord,
    *,
    digest: str,
    artifact_id: uuid.UUID,
    sha: str | None,
    runtime: dict[str, Any],
    strategy: dict[str, Any],
    started_by: str,
    run_id: uuid.UUID | None = None,
    kind: str = "deploy",
    rollback_of: int | None = None,
    committed_at: datetime | None = None,
    fix: bool = False,
    traceparent: str | None = None,
    policy: dict[str, Any] | None = None,
    requester: str | None = None,
    approved_at: datetime | None = None,
    job_id: uuid.UUID | None = None,
    emergency: str | None = None,
) -> DeploymentRecord:
    """A new deployment, pending, numbered after the environment's last one (with what
    its gate needs: the rules' decision, who asked, when it was approved)."""
    number = await session.scalar(
        select(func.coalesce(func.max(Deployment.number), 0)).where(
            Deployment.environment_id == env.id
        )
    )
    row = Deployment(
        team_id=env.team_id,
        project_id=env.project_id,
        environment_id=env.id,
        number=int(number or 0) + 1,
        digest=digest,
        artifact_id=artifact_id,
        sha=sha,
        runtime=runtime,
        strategy=strategy,
        kind=kind,
        rollback_of=rollback_of,
        started_by=started_by,
        run_id=run_id,
        committed_at=committed_at,
        fix=fix,
        traceparent=traceparent,
        policy=policy,
        requester=requester,
        approved_at=approved_at,
        job_id=job_id,
        emergency=emergency,
    )
    session.add(row)
    await session.flush()
    return deployment_record(row)


async def by_id(session: Session, deployment_id: uuid.UUID) -> DeploymentRecord | None:
    found = await session.get(Deployment, deployment_id, populate_existing=True)
    return deployment_record(found) if found is not None else None


async def with_origin(
    session: Session, deployment_id: uuid.UUID
) -> tuple[DeploymentRecord, ProjectRecord, str | None] | None:
    """A deployment with its project and the ref of the run that made it, if any."""
    found = (
        await session.execute(
            select(Deployment, Project, Run.ref)
            .join(Project, Project.id == Deployment.project_id)
            .outerjoin(Run, Run.id == Deployment.run_id)
            .where(Deployment.id == deployment_id)
        )
    ).first()
    if found is None:
        return None
    return deployment_record(found[0]), project_of(found[1]), found[2]


async def environment_of(session: Session, deployment: DeploymentRecord) -> EnvironmentRecord:
    found = await session.get(Environment, deployment.environment_id, populate_existing=True)
    assert found is not None, "a deployment's environment is deleted with it"
    return environment_record(found)


async def numbered(session: Session, env_id: uuid.UUID, number: int) -> DeploymentRecord | None:
    return _one(
        await session.scalar(
            select(Deployment).where(
                Deployment.environment_id == env_id, Deployment.number == number
            )
        )
    )


def _one(found: Deployment | None) -> DeploymentRecord | None:
    return deployment_record(found) if found is not None else None


async def newest_built(session: Session, env: EnvironmentRecord) -> DeploymentRecord | None:
    """Of the deployed and the queued or running revisions, the one whose artifact was
    built last (artifact ids are UUIDv7, so they sort by upload time)."""
    found: Deployment | None = await session.scalar(
        select(Deployment)
        .where(
            Deployment.environment_id == env.id,
            (Deployment.phase.in_(ACTIVE_PHASES)) | (Deployment.number == env.revision),
        )
        .order_by(Deployment.artifact_id.desc())
        .limit(1)
    )
    return _one(found)


async def of_artifact(
    session: Session, project_id: uuid.UUID, environment_name: str, artifact: ArtifactRecord
) -> DeploymentRecord | None:
    """The revision of the environment that runs `artifact` or is on its way to: the
    newest built one, when it is that artifact."""
    env = await environment(session, project_id, environment_name)
    if env is None:
        return None
    newest = await newest_built(session, env)
    return newest if newest is not None and newest.artifact_id == artifact.id else None


async def of_jobs(
    session: Session, job_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, tuple[str, int]]:
    """The deployment each of these `deploy:` jobs asked for: its environment's name and
    its number (the newest, for a job that asked more than once)."""
    if not job_ids:
        return {}
    rows = await session.execute(
        select(Deployment.job_id, Environment.name, Deployment.number)
        .join(Environment, Environment.id == Deployment.environment_id)
        .where(Deployment.job_id.in_(job_ids))
        .order_by(Deployment.number)
    )
    return {job: (name, number) for job, name, number in rows if job is not None}


async def in_progress(session: Session, env_id: uuid.UUID) -> DeploymentRecord | None:
    """The deployment progressing or paused (one at most)."""
    found: Deployment | None = await session.scalar(
        select(Deployment)
        .where(
            Deployment.environment_id == env_id,
            Deployment.phase.in_([Phase.PROGRESSING.value, Phase.PAUSED.value]),
        )
        .limit(1)
    )
    return _one(found)


async def next_pending(session: Session, env_id: uuid.UUID) -> DeploymentRecord | None:
    found: Deployment | None = await session.scalar(
        select(Deployment)
        .where(Deployment.environment_id == env_id, Deployment.phase == Phase.PENDING.value)
        .order_by(Deployment.number)
        .limit(1)
    )
    return _one(found)


async def unfinished(session: Session, env_id: uuid.UUID) -> list[DeploymentRecord]:
    """Every deployment pending, progressing or paused."""
    rows = await session.scalars(
        select(Deployment).where(
            Deployment.environment_id == env_id, Deployment.phase.in_(ACTIVE_PHASES)
        )
    )
    return [deployment_record(row) for row in rows]


async def last_good_before(session: Session, env: EnvironmentRecord) -> DeploymentRecord | None:
    """The newest earlier revision that succeeded with another artifact than the current."""
    found: Deployment | None = await session.scalar(
        select(Deployment)
        .where(
            Deployment.environment_id == env.id,
            Deployment.phase == Phase.SUCCEEDED.value,
            Deployment.number < env.revision,
            Deployment.digest != env.digest,
        )
        .order_by(Deployment.number.desc())
        .limit(1)
    )
    return _one(found)


async def history(session: Session, env_id: uuid.UUID, limit: int) -> list[DeploymentRecord]:
    """The newest `limit` deployments, newest first."""
    rows = await session.scalars(
        select(Deployment)
        .where(Deployment.environment_id == env_id)
        .order_by(Deployment.number.desc())
        .limit(limit)
    )
    return [deployment_record(row) for row in rows]


async def started_by(
    session: Session, project_id: uuid.UUID, environment: str, who: str
) -> DeploymentRecord | None:
    """The deployment `who` started in the project's environment (a deploy job's own)."""
    found: Deployment | None = await session.scalar(
        select(Deployment)
        .join(Environment, Environment.id == Deployment.environment_id)
        .where(
            Environment.project_id == project_id,
            Environment.name == environment,
            Deployment.started_by == who,
        )
    )
    return _one(found)


async def of_job_project(
    session: Session, job_id: uuid.UUID, environment: str, number: int
) -> DeploymentRecord | None:
    """Revision `number` of `environment` in the project of job `job_id`."""
    found: Deployment | None = await session.scalar(
        select(Deployment)
        .join(Environment, Environment.id == Deployment.environment_id)
        .join(Run, Run.project_id == Environment.project_id)
        .join(Job, Job.run_id == Run.id)
        .where(Job.id == job_id, Environment.name == environment, Deployment.number == number)
    )
    return _one(found)


async def change_phase(
    session: Session,
    deployment: DeploymentRecord | uuid.UUID,
    target: Phase,
    *,
    strict: bool = True,
    among: Sequence[Phase] | None = None,
    **values: Any,
) -> bool:
    """Move a deployment to `target` and set `values` in one UPDATE guarded by
    PHASE_TRANSITIONS (narrowed to `among` when given); `by_id` reads its new state.
    PhaseChangeRejected when the deployment was in no such phase (False instead, when
    not `strict`: a driver's redo)."""
    deployment_id = deployment if isinstance(deployment, uuid.UUID) else deployment.id
    allowed = phase_sources(target)
    if among is not None:
        allowed &= frozenset(among)
    resumed = False
    if target is Phase.PROGRESSING:  # resumed from a pause, or the next step: which?
        before = await session.scalar(
            select(Deployment.phase).where(Deployment.id == deployment_id)
        )
        resumed = before == Phase.PAUSED.value
    moved = await session.execute(
        update(Deployment)
        .where(Deployment.id == deployment_id, Deployment.phase.in_([p.value for p in allowed]))
        .values(phase=target.value, **values)
        .execution_options(synchronize_session=False)
    )
    if moved.rowcount == 1:  # type: ignore[attr-defined]
        await events.deployment_moved(session, deployment_id, target, resumed=resumed)
        return True
    if strict:
        raise PhaseChangeRejected(f"deployment {deployment_id} cannot become {target}")
    return False


async def set_pre_deploy(
    session: Session,
    deployment_id: uuid.UUID,
    state: str,
    *,
    before: str | None,
    host_id: uuid.UUID | None = None,
) -> bool:
    """Move a deployment's pre_deploy state from `before` (guarded: a redo changes
    nothing); `host_id`: the host whose agent runs them."""
    current = Deployment.pre_deploy.is_(None) if before is None else Deployment.pre_deploy == before
    values: dict[str, object] = {"pre_deploy": state}
    if host_id is not None:
        values["pre_deploy_host_id"] = host_id
    moved = await session.execute(
        update(Deployment)
        .where(Deployment.id == deployment_id, current)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return bool(moved.rowcount == 1)  # type: ignore[attr-defined]


async def tasks_on(session: Session, host_id: uuid.UUID) -> list[DeploymentRecord]:
    """The deployments whose pre_deploy commands the host's agent is to run now."""
    found = await session.scalars(
        select(Deployment)
        .where(Deployment.pre_deploy_host_id == host_id, Deployment.pre_deploy == "running")
        .order_by(Deployment.created_at)
    )
    return [deployment_record(row) for row in found]


async def task_ended(
    session: Session, host_id: uuid.UUID, results: dict[uuid.UUID, dict[str, Any]]
) -> None:
    """Keep how pre_deploy commands ended, as the host's agent reported it (only for
    deployments whose commands run on that host)."""
    for deployment_id, result in results.items():
        await session.execute(
            update(Deployment)
            .where(
                Deployment.id == deployment_id,
                Deployment.pre_deploy_host_id == host_id,
                Deployment.pre_deploy == "running",
            )
            .values(pre_deploy_result=result)
            .execution_options(synchronize_session=False)
        )


async def repause(session: Session, deployment_id: uuid.UUID, reason: str, message: str) -> bool:
    """A paused deployment waits for something else now (at its gate: an approval, then
    its wait timer, then a freeze); it stays paused."""
    moved = await session.execute(
        update(Deployment)
        .where(Deployment.id == deployment_id, Deployment.phase == Phase.PAUSED.value)
        .values(pause_reason=reason, message=message)
        .execution_options(synchronize_session=False)
    )
    return bool(moved.rowcount == 1)  # type: ignore[attr-defined]


async def set_fields(session: Session, deployment: DeploymentRecord, **values: Any) -> None:
    """Change what is not the phase (a request left for the driver, the user's pause)."""
    await session.execute(
        update(Deployment)
        .where(Deployment.id == deployment.id)
        .values(**values)
        .execution_options(synchronize_session=False)
    )


async def change_phase_by_number(
    session: Session,
    env_id: uuid.UUID,
    numbers: Sequence[int],
    target: Phase,
    *,
    origin: Phase,
    **values: Any,
) -> int:
    """Move the environment's deployments `numbers` that are in `origin` to `target`
    (guarded by PHASE_TRANSITIONS); returns how many moved."""
    if origin not in phase_sources(target):
        raise PhaseChangeRejected(f"a deployment cannot go from {origin} to {target}")
    moved = list(
        await session.scalars(
            update(Deployment)
            .where(
                Deployment.environment_id == env_id,
                Deployment.number.in_(list(numbers)),
                Deployment.phase == origin.value,
            )
            .values(phase=target.value, **values)
            .returning(Deployment.id)
            .execution_options(synchronize_session=False)
        )
    )
    for deployment_id in moved:
        if origin is Phase.PENDING and target is Phase.PROGRESSING:
            row = await session.get(Deployment, deployment_id, populate_existing=True)
            assert row is not None
            await events.deployment_event(session, DEPLOYMENT_STARTED, row)
        else:
            await events.deployment_moved(session, deployment_id, target)
    return len(moved)


# -- pins ------------------------------------------------------------------------------


async def pin_of(session: Session, env_id: uuid.UUID, digest: str) -> PinRecord | None:
    """The standing pin on `digest`, if any."""
    found: RevisionPin | None = await session.scalar(
        select(RevisionPin).where(
            RevisionPin.environment_id == env_id,
            RevisionPin.digest == digest,
            RevisionPin.cleared_at.is_(None),
        )
    )
    return pin_record(found) if found is not None else None


def pin(session: Session, env_id: uuid.UUID, digest: str, reason: str, by: str) -> None:
    session.add(RevisionPin(environment_id=env_id, digest=digest, reason=reason, pinned_by=by))


async def standing_pins(session: Session, env_id: uuid.UUID) -> list[PinRecord]:
    rows = await session.scalars(
        select(RevisionPin).where(
            RevisionPin.environment_id == env_id, RevisionPin.cleared_at.is_(None)
        )
    )
    return [pin_record(row) for row in rows]


async def clear_pins(
    session: Session, env_id: uuid.UUID, digest: str, by: str, at: datetime | None = None
) -> int:
    """Clear the standing pins on `digest`, keeping who cleared them and when."""
    cleared = await session.execute(
        update(RevisionPin)
        .where(
            RevisionPin.environment_id == env_id,
            RevisionPin.digest == digest,
            RevisionPin.cleared_at.is_(None),
        )
        .values(cleared_by=by, cleared_at=at or utcnow())
    )
    return int(cleared.rowcount)  # type: ignore[attr-defined]


async def live_instances(session: Session, env_id: uuid.UUID) -> list[InstanceRecord]:
    """The environment's instances that are not stopped, by slot and age."""
    rows = await session.scalars(
        select(Instance)
        .where(
            Instance.environment_id == env_id,
            Instance.state != InstanceState.STOPPED.value,
        )
        .order_by(Instance.slot, Instance.created_at)
    )
    return [instance_record(row) for row in rows]


async def recent_failures(
    session: Session, env_id: uuid.UUID | None, limit: int
) -> tuple[int, int]:
    """Of the environment's last `limit` deploys that ended (rollbacks themselves not
    counted), how many were aborted, failed or later rolled back; and how many there were."""
    if env_id is None:
        return 0, 0
    ended = (Phase.SUCCEEDED.value, Phase.ABORTED.value, Phase.FAILED.value)
    rows = (
        await session.execute(
            select(Deployment.number, Deployment.phase)
            .where(
                Deployment.environment_id == env_id,
                Deployment.kind == "deploy",
                Deployment.phase.in_(ended),
            )
            .order_by(Deployment.number.desc())
            .limit(limit)
        )
    ).all()
    rolled_back = set(
        await session.scalars(
            select(Deployment.rollback_of).where(
                Deployment.environment_id == env_id,
                Deployment.kind == "rollback",
                Deployment.rollback_of.is_not(None),
            )
        )
    )
    failed = sum(
        1 for number, phase in rows if phase != Phase.SUCCEEDED.value or number in rolled_back
    )
    return failed, len(rows)
