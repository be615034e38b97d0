"""What people ask of the deployment manager: deploy an artifact, promote, pause, resume,
abort, roll back, clear a pin. Each request is checked and written as rows; the driver of
the environment (manager.py) carries it out on its next pass.

Ordering: one deployment at a time per environment, queued `ordered` or `newest-wins`;
a request for an artifact built before the one deployed or queued is refused, so the
environment never moves to an older build except through an explicit rollback.
"""

from __future__ import annotations

import re
import tarfile
import uuid
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from conveyor.deploy.strategies import Kind
from conveyor.domain.deploy import Phase, Request
from conveyor.pipeline.deploy import Strategy
from conveyor.pipeline.durations import parse_duration
from conveyor.pipeline.errors import PipelineInvalid
from conveyor.pipeline.loader import MAX_FILE_BYTES, parse_pipeline
from conveyor.pipeline.schema import PipelineSpec
from conveyor.storage.tables import (
    Artifact,
    Deployment,
    Environment,
    Project,
    RevisionPin,
    as_utc,
    utcnow,
)

ACTIVE = [Phase.PENDING.value, Phase.PROGRESSING.value, Phase.PAUSED.value]
PIPELINE_FILE = "conveyor.yml"


class DeployRefused(Exception):
    """A request that cannot be carried out; `status` is its HTTP answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class ArtifactSpec:
    """What a service artifact's own conveyor.yml says about running and deploying it."""

    runtime: dict[str, Any]
    strategies: dict[str, dict[str, Any]]
    """Per environment: the strategy of the pipeline job that deploys there."""


def read_spec(blob: Path, digest: str) -> ArtifactSpec:
    """The `runtime` of the conveyor.yml at the root of a service artifact (a tarball)."""
    name = f"{digest[:19]}…/{PIPELINE_FILE}"
    try:
        with tarfile.open(blob, "r:*") as tar:
            member = next(
                (m for m in tar.getmembers() if m.name.lstrip("./") == PIPELINE_FILE), None
            )
            if member is None or not member.isfile():
                raise DeployRefused(
                    422,
                    f"artifact {digest} has no {PIPELINE_FILE} at its root: a service "
                    "artifact is a tarball of the service's files and its conveyor.yml",
                )
            if member.size > MAX_FILE_BYTES:
                raise DeployRefused(422, f"{name}: larger than {MAX_FILE_BYTES} bytes")
            handle = tar.extractfile(member)
            assert handle is not None
            raw = handle.read()
    except (tarfile.TarError, OSError) as exc:
        raise DeployRefused(422, f"artifact {digest} is not a tarball: {exc}") from exc
    try:
        spec = parse_pipeline(raw, name).spec
    except PipelineInvalid as exc:
        raise DeployRefused(422, str(exc)) from exc
    if spec.runtime is None:
        raise DeployRefused(
            422,
            f"{name}:1:1: no `runtime` section: it says how to start the service "
            "(command with $PORT, replicas, health path, drain)",
        )
    return ArtifactSpec(spec.runtime.model_dump(mode="json"), _strategies(spec))


def _strategies(spec: PipelineSpec) -> dict[str, dict[str, Any]]:
    return {
        job.deploy.environment: strategy_dict(job.deploy.strategy)
        for job in spec.jobs.values()
        if job.deploy is not None
    }


def strategy_dict(strategy: Strategy) -> dict[str, Any]:
    """A pipeline's `deploy.strategy` as a deployment stores it."""
    if strategy.canary is not None:
        steps = [s.model_dump(exclude_none=True) for s in strategy.canary.steps]
        return {"kind": "canary", "steps": _normal(steps)}
    if strategy.blue_green is not None:
        return {"kind": "blue-green"} | strategy.blue_green.model_dump(exclude_none=True)
    rolling = strategy.rolling.model_dump() if strategy.rolling is not None else {}
    return {"kind": "rolling"} | rolling


def _normal(steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Pause steps as `{"pause": seconds | None}` (None: until promoted)."""
    out = []
    for step in steps:
        if "pause" in step:
            value = step["pause"]
            out.append({"pause": None if value == "until-promoted" else float(value)})
        elif "analysis" in step:
            out.append({"analysis": step["analysis"]})
        else:
            out.append({"weight": float(step["weight"])})
    return out


STEP = re.compile(r"^(?:(?P<weight>\d+(?:\.\d+)?)|pause(?:=(?P<pause>\S+))?|analysis)$")


def parse_steps(text: str) -> list[dict[str, Any]]:
    """`10,pause=5s,50,pause,100` → canary steps (a bare `pause` waits until promoted)."""
    steps: list[dict[str, Any]] = []
    for index, raw in enumerate(p.strip() for p in text.split(",")):
        found = STEP.match(raw)
        if found is None:
            raise DeployRefused(
                422,
                f"--steps item {index + 1} {raw!r}: expected a weight (0-100), "
                "`pause`, `pause=30s` or `analysis`",
            )
        if found["weight"] is not None:
            weight = float(found["weight"])
            if weight > 100:
                raise DeployRefused(422, f"--steps item {index + 1}: a weight is at most 100")
            steps.append({"weight": weight})
        elif raw.startswith("pause"):
            try:
                seconds = parse_duration(found["pause"]) if found["pause"] else None
            except ValueError as exc:
                raise DeployRefused(422, f"--steps item {index + 1}: {exc}") from exc
            steps.append({"pause": seconds})
        else:
            steps.append({"analysis": {}})
    return steps


def choose_strategy(
    kind: str | None, steps: str | None, spec: ArtifactSpec, environment: str
) -> dict[str, Any]:
    """The request's strategy, else the one the artifact's pipeline names for this
    environment, else rolling."""
    if kind is None and steps is not None:
        kind = "canary"
    if kind is None:
        return spec.strategies.get(environment, {"kind": "rolling"})
    if kind == "canary":
        parsed = parse_steps(steps) if steps else _canary_steps(spec, environment)
        return {"kind": "canary", "steps": parsed}
    if steps is not None:
        raise DeployRefused(422, "--steps goes with the canary strategy")
    base = spec.strategies.get(environment, {})
    return ({k: v for k, v in base.items() if base.get("kind") == kind}) | {"kind": kind}


def _canary_steps(spec: ArtifactSpec, environment: str) -> list[dict[str, Any]]:
    named = spec.strategies.get(environment, {})
    if named.get("kind") == "canary":
        return list(named["steps"])
    return [{"weight": 10.0}, {"pause": None}, {"weight": 50.0}, {"pause": None}]


async def environment(
    session: AsyncSession, project: Project, name: str, ports: tuple[int, int]
) -> Environment:
    """The project's environment `name`, created with the local target at its first deploy."""
    found = await _environment(session, project.id, name)
    if found is not None:
        return found
    env = Environment(
        team_id=project.team_id,
        project_id=project.id,
        name=name,
        port=ports[0],
        preview_port=ports[1],
    )
    try:
        async with session.begin_nested():
            session.add(env)
    except IntegrityError:  # created by a concurrent first deploy
        raced = await _environment(session, project.id, name)
        assert raced is not None
        return raced
    return env


async def _environment(
    session: AsyncSession, project_id: uuid.UUID, name: str, lock: bool = False
) -> Environment | None:
    query = select(Environment).where(
        Environment.project_id == project_id, Environment.name == name
    )
    if lock:
        query = query.with_for_update()
    found: Environment | None = await session.scalar(query)
    return found


async def find_environment(session: AsyncSession, project: Project, name: str) -> Environment:
    found = await _environment(session, project.id, name)
    if found is None:
        raise DeployRefused(404, f"no environment {name!r} (it is created at its first deploy)")
    return found


async def deploy(
    session: AsyncSession,
    env: Environment,
    artifact: Artifact,
    spec: ArtifactSpec,
    strategy: dict[str, Any],
    started_by: str,
    run_id: uuid.UUID | None = None,
) -> Deployment:
    """Queue a deployment of `artifact`. Refused (409) for a pinned revision, or for an
    artifact built before the one deployed or queued (use rollback for that)."""
    await _lock(session, env)
    pin = await session.scalar(
        select(RevisionPin).where(
            RevisionPin.environment_id == env.id,
            RevisionPin.digest == artifact.digest,
            RevisionPin.cleared_at.is_(None),
        )
    )
    if pin is not None:
        raise DeployRefused(
            409,
            f"{artifact.digest} is pinned as bad in {env.name} ({pin.reason}); clear the "
            "pin first (`conveyor unpin`)",
        )
    await _check_order(session, env, artifact)
    return await _queue(
        session,
        env,
        artifact.digest,
        artifact.id,
        artifact.sha,
        spec.runtime,
        strategy,
        started_by=started_by,
        run_id=run_id,
    )


async def _lock(session: AsyncSession, env: Environment) -> None:
    """Serialise requests on one environment (PostgreSQL row lock; SQLite's writer lock)."""
    await session.execute(
        update(Environment)
        .where(Environment.id == env.id)
        .values(queue_policy=Environment.queue_policy)
    )


async def _check_order(session: AsyncSession, env: Environment, artifact: Artifact) -> None:
    newest = await session.scalar(
        select(Deployment)
        .where(
            Deployment.environment_id == env.id,
            (Deployment.phase.in_(ACTIVE)) | (Deployment.number == env.revision),
        )
        .order_by(Deployment.artifact_id.desc())
        .limit(1)
    )
    if newest is None:
        return
    if artifact.id == newest.artifact_id:
        raise DeployRefused(
            409, f"{artifact.digest} is already revision {newest.number} of {env.name}"
        )
    if artifact.id < newest.artifact_id:
        raise DeployRefused(
            409,
            f"{artifact.digest} was built before revision {newest.number} "
            f"({newest.digest[:19]}…); an environment moves back only by `conveyor rollback`",
        )


async def _queue(
    session: AsyncSession,
    env: Environment,
    digest: str,
    artifact_id: uuid.UUID,
    sha: str | None,
    runtime: dict[str, Any],
    strategy: dict[str, Any],
    *,
    started_by: str,
    run_id: uuid.UUID | None = None,
    kind: str = "deploy",
    rollback_of: int | None = None,
) -> Deployment:
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
    )
    session.add(row)
    await session.flush()
    return row


async def active(session: AsyncSession, env: Environment) -> Deployment | None:
    found: Deployment | None = await session.scalar(
        select(Deployment)
        .where(
            Deployment.environment_id == env.id,
            Deployment.phase.in_([Phase.PROGRESSING.value, Phase.PAUSED.value]),
        )
        .limit(1)
    )
    return found


async def command(session: AsyncSession, env: Environment, what: str) -> Deployment:
    """promote | promote-full | abort | pause | resume, for the environment's current
    deployment (409 when none is in progress)."""
    await _lock(session, env)
    current = await active(session, env)
    if current is None:
        pending = await session.scalar(
            select(Deployment)
            .where(Deployment.environment_id == env.id, Deployment.phase == Phase.PENDING.value)
            .order_by(Deployment.number)
            .limit(1)
        )
        if what == "abort" and pending is not None:
            pending.phase, pending.finished_at = Phase.ABORTED.value, utcnow()
            pending.message = "aborted before it started"
            return pending
        raise DeployRefused(409, f"no deployment is in progress in {env.name}")
    if what in (Request.PROMOTE.value, Request.PROMOTE_FULL.value, Request.ABORT.value):
        if current.request == Request.ABORT.value and what != "abort":
            raise DeployRefused(409, f"revision {current.number} is being aborted")
        current.request = what
        if what != "abort":
            current.paused_by_user = False
    elif what == "pause":
        current.paused_by_user = True
        current.phase, current.pause_reason = Phase.PAUSED.value, "user"
    elif what == "resume":
        if not current.paused_by_user:
            raise DeployRefused(409, f"revision {current.number} was not paused by `pause`")
        current.paused_by_user = False
        current.phase, current.pause_reason = Phase.PROGRESSING.value, None
    return current


async def rollback(session: AsyncSession, env: Environment, to: int | None, who: str) -> Deployment:
    """Back to revision `to` (default: the one before the current). The revision rolled
    back from is pinned as bad. A revision still warm in the other slot comes back by a
    traffic switch; an older one by a rolling deploy of its stored artifact."""
    await _lock(session, env)
    if env.revision == 0:
        raise DeployRefused(409, f"{env.name} has no deployed revision to roll back from")
    target = await _rollback_target(session, env, to)
    for row in await session.scalars(
        select(Deployment).where(Deployment.environment_id == env.id, Deployment.phase.in_(ACTIVE))
    ):
        if row.phase == Phase.PENDING.value:
            row.phase, row.finished_at = Phase.ABORTED.value, utcnow()
            row.message = "superseded by a rollback"
        else:
            row.request = Request.ABORT.value
    if env.digest and env.digest != target.digest:
        session.add(
            RevisionPin(
                environment_id=env.id,
                digest=env.digest,
                reason=f"rolled back from revision {env.revision} to {target.number}",
                pinned_by=who,
            )
        )
    warm = (
        env.warm_digest == target.digest
        and env.warm_until is not None
        and as_utc(env.warm_until) > utcnow() + timedelta(seconds=1)
    )
    strategy = {"kind": Kind.SWITCH.value} if warm else {"kind": Kind.ROLLING.value}
    return await _queue(
        session,
        env,
        target.digest,
        target.artifact_id,
        target.sha,
        target.runtime,
        strategy,
        started_by=who,
        kind="rollback",
        rollback_of=env.revision,
    )


async def _rollback_target(session: AsyncSession, env: Environment, to: int | None) -> Deployment:
    query = select(Deployment).where(Deployment.environment_id == env.id)
    if to is not None:
        found = await session.scalar(query.where(Deployment.number == to))
        if found is None:
            raise DeployRefused(404, f"{env.name} has no revision {to}")
        if found.digest == env.digest:
            raise DeployRefused(409, f"revision {to} is what {env.name} runs now")
        return found
    found = await session.scalar(
        query.where(
            Deployment.phase == Phase.SUCCEEDED.value,
            Deployment.number < env.revision,
            Deployment.digest != env.digest,
        )
        .order_by(Deployment.number.desc())
        .limit(1)
    )
    if found is None:
        raise DeployRefused(409, f"{env.name} has no earlier successful revision")
    return found


async def unpin(session: AsyncSession, env: Environment, digest: str, who: str) -> int:
    """Clear the pins on `digest`, keeping who cleared them and when."""
    pins = list(
        await session.scalars(
            select(RevisionPin).where(
                RevisionPin.environment_id == env.id,
                RevisionPin.digest == digest,
                RevisionPin.cleared_at.is_(None),
            )
        )
    )
    if not pins:
        raise DeployRefused(404, f"{digest} is not pinned in {env.name}")
    for pin in pins:
        pin.cleared_by, pin.cleared_at = who, utcnow()
    return len(pins)
