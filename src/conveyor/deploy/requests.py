"""What people ask of the deployment manager, and the checks that decide it: deploy an
artifact, the controls (promote, pause, resume, abort), roll back, clear a pin. Each
request is checked here and written through storage.deployments; the driver of the
environment (its driver in deploy/manager.py) carries it out on its next pass.

Ordering: one deployment at a time per environment, queued `ordered` or `newest-wins`;
a request for an artifact built before the one deployed or queued is refused, so the
environment never moves to an older build except through an explicit rollback.
"""

from __future__ import annotations

import tarfile
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from conveyor.artifacts import tarballs
from conveyor.deploy.instance_hosts import target_of
from conveyor.deploy.strategy import DeployStrategy, chosen
from conveyor.deploy.world import Kind
from conveyor.domain import events as event_types
from conveyor.domain.audit import Action
from conveyor.domain.clock import as_utc, utcnow
from conveyor.domain.deploy import Control, DriverRequest, PauseReason, Phase
from conveyor.domain.errors import Conflict, Invalid, NotFound
from conveyor.domain.policy import Decision
from conveyor.observability import metrics, tracing
from conveyor.pipeline.errors import PipelineInvalid
from conveyor.pipeline.loader import MAX_FILE_BYTES, parse_pipeline
from conveyor.pipeline.schema import PipelineSpec
from conveyor.storage import audit, deployments, events, names
from conveyor.storage.artifacts import ArtifactRecord
from conveyor.storage.database import Session
from conveyor.storage.deployment_records import DeploymentRecord, EnvironmentRecord
from conveyor.storage.projects import ProjectRecord
from conveyor.vcs import GitError, GitMirror

PIPELINE_FILE = "conveyor.yml"


@dataclass(frozen=True)
class ArtifactSpec:
    """What a service artifact's own conveyor.yml says about running and deploying it."""

    runtime: dict[str, Any]
    strategies: dict[str, DeployStrategy]
    """Per environment: the strategy of the pipeline job that deploys there."""
    templates: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Its `analysis.templates`, parsed (as a deployment stores the ones it names)."""
    sensitive_paths: tuple[str, ...] = ()
    """Its `risk.sensitive_paths`."""
    environments: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Its `environments:` protection rules, per environment (domain.policy.parse)."""

    @property
    def pre_deploy(self) -> list[str]:
        """The commands its `runtime.pre_deploy` runs before traffic."""
        return [str(task["command"]) for task in self.runtime.get("pre_deploy") or ()]


SPEC_SCAN_BYTES = 256 << 20
SPEC_SCAN_S = 0.8
"""How much of an artifact (decompressed), and for how long, is read looking for its
conveyor.yml before the deploy is refused: a request is answered within a second."""


def read_spec(blob: Path, digest: str) -> ArtifactSpec:
    """The `runtime` of the conveyor.yml at the root of a service artifact (a tarball)."""
    name = f"{digest[:19]}…/{PIPELINE_FILE}"
    try:
        found = tarballs.find_member(blob, PIPELINE_FILE, SPEC_SCAN_BYTES, SPEC_SCAN_S)
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise Invalid(f"artifact {digest} is not a tarball: {exc}") from exc
    except tarballs.ScanLimit as exc:
        raise Invalid(
            f"artifact {digest}: {exc}: a service artifact keeps its {PIPELINE_FILE} at its "
            "root, near the start (as `artifacts: paths` packs it)",
        ) from exc
    if found is None or not found[0].isfile():
        raise Invalid(
            f"artifact {digest} has no {PIPELINE_FILE} at its root: a service "
            "artifact is a tarball of the service's files and its conveyor.yml",
        )
    member, raw = found
    if member.size > MAX_FILE_BYTES:
        raise Invalid(f"{name}: larger than {MAX_FILE_BYTES} bytes")
    try:
        spec = parse_pipeline(raw, name).spec
    except PipelineInvalid as exc:
        raise Invalid(str(exc)) from exc
    if spec.runtime is None:
        raise Invalid(
            f"{name}:1:1: no `runtime` section: it says how to start the service "
            "(command with $PORT, replicas, health path, drain)",
        )
    templates = {
        name: template.model_dump(mode="json", by_alias=True)
        for name, template in spec.analysis.templates.items()
    }
    return ArtifactSpec(
        spec.runtime.model_dump(mode="json"),
        _strategies(spec),
        templates,
        tuple(spec.risk.sensitive_paths or ()),
        {name: rules.declared() for name, rules in spec.environments.items()},
    )


def _strategies(spec: PipelineSpec) -> dict[str, DeployStrategy]:
    return {
        job.deploy.environment: DeployStrategy.of_pipeline(job.deploy.strategy, job.deploy.bake)
        for job in spec.jobs.values()
        if job.deploy is not None
    }


def choose_strategy(
    kind: str | None, steps: str | None, spec: ArtifactSpec, environment: str
) -> DeployStrategy:
    """The request's strategy, else the one the artifact's pipeline names for this
    environment, else rolling."""
    return chosen(kind, steps, spec.strategies.get(environment))


async def environment(
    session: Session,
    project: ProjectRecord,
    name: str,
    ports: tuple[int, int],
    runtime: dict[str, Any],
    local_host: bool = False,
) -> EnvironmentRecord:
    """The project's environment `name`, created at its first deploy: on the fleet's
    hosts when the runtime says how to place it or when this machine is a host itself
    (`local_host`), else through the manager's local target."""
    target = target_of(runtime, local_host)
    return await deployments.create_environment(session, project, name, ports, target)


async def find_environment(
    session: Session, project: ProjectRecord, name: str
) -> EnvironmentRecord:
    found = await deployments.environment(session, project.id, name)
    if found is None:
        raise NotFound(f"no environment {name!r} (it is created at its first deploy)")
    return found


async def commit_time(mirror: GitMirror, sha: str | None) -> datetime | None:
    """When an artifact's commit was made (DORA's lead time starts there); None without a
    commit, or when the project's mirror does not hold it (an uploaded artifact)."""
    if sha is None:
        return None
    try:
        return await mirror.committed_at(sha)
    except GitError:
        return None


async def deploy(
    session: Session,
    env: EnvironmentRecord,
    artifact: ArtifactRecord,
    spec: ArtifactSpec,
    strategy: DeployStrategy,
    started_by: str,
    run_id: uuid.UUID | None = None,
    *,
    committed_at: datetime | None = None,
    fix: bool = False,
    decision: Decision | None = None,
    requester: str | None = None,
    job_id: uuid.UUID | None = None,
    emergency: str | None = None,
) -> DeploymentRecord:
    """Queue a deployment of `artifact`. Conflict for a pinned revision, or for an
    artifact built before the one deployed or queued (use rollback for that).
    `committed_at`: its commit's time; `fix`: it fixes the revision before it (DORA).
    `decision`: what the environment's rules decided (policy.gates), kept on it for its
    gate; an emergency one skips the rollout's pauses and analyses (never its health
    checks or draining); `emergency` is its reason. `requester`: who asked, stably
    (they may not approve it)."""
    await deployments.lock(session, env.id)
    pin = await deployments.pin_of(session, env.id, artifact.digest)
    if pin is not None:
        raise Conflict(
            f"{artifact.digest} is pinned as bad in {env.name} ({pin.reason}); clear the "
            "pin first (`conveyor unpin`)",
        )
    await _check_order(session, env, artifact)
    if (
        env.revision == 0
        and strategy.bake is not None
        and await deployments.next_pending(session, env.id) is None
    ):
        # A first deploy has no earlier revision to go back to: nothing to bake for.
        strategy = strategy.without_bake()
    decision = decision or Decision()
    if decision.emergency:
        strategy = strategy.without_pauses()
    strategy = strategy.with_templates(spec.templates, f"the artifact's {PIPELINE_FILE}")
    made = await deployments.queue(
        session,
        env,
        digest=artifact.digest,
        artifact_id=artifact.id,
        sha=artifact.sha,
        runtime=spec.runtime,
        strategy=strategy.stored(),
        started_by=started_by,
        run_id=run_id,
        committed_at=committed_at,
        fix=fix,
        traceparent=tracing.traceparent(),
        policy=decision.stored(),
        requester=requester,
        approved_at=None if decision.required else utcnow(),
        job_id=job_id,
        emergency=emergency,
    )
    detail: dict[str, Any] = {
        "digest": artifact.digest,
        "sha": artifact.sha,
        "strategy": strategy.kind.value,
    }
    if run_id is not None:
        detail["run_id"] = str(run_id)
    if fix:
        detail["fix"] = True
    if decision.required:
        detail |= {"approvals_required": decision.required, "risk": decision.risk}
    action = Action.DEPLOY
    if emergency is not None:
        action, detail["reason"] = Action.EMERGENCY, emergency
    await audited(session, env, started_by, action, made.number, detail)
    await announce(session, made)
    return made


async def announce(session: Session, made: DeploymentRecord) -> None:
    """A new deployment's own events: an emergency, or one that waits for approvals."""
    await session.flush()
    if made.emergency is not None:
        await events.deployment_event(session, event_types.DEPLOYMENT_EMERGENCY, made)
    elif made.approved_at is None:
        await events.deployment_event(session, event_types.DEPLOYMENT_APPROVAL_REQUESTED, made)


async def audited(
    session: Session,
    env: EnvironmentRecord,
    who: str,
    action: Action,
    number: int | None,
    detail: dict[str, Any],
) -> None:
    """An audit entry about the environment (or one of its revisions), in the team's
    chain: `team/project/environment#number`."""
    team = await names.team(session, env.team_id)
    project = await names.project(session, env.project_id)
    target = f"{team}/{project}/{env.name}" + (f"#{number}" if number is not None else "")
    await audit.record(session, env.team_id, who, action, target, detail)


async def _check_order(session: Session, env: EnvironmentRecord, artifact: ArtifactRecord) -> None:
    newest = await deployments.newest_built(session, env)
    if newest is None:
        return
    if artifact.id == newest.artifact_id:
        raise Conflict(f"{artifact.digest} is already revision {newest.number} of {env.name}")
    if artifact.id < newest.artifact_id:
        raise Conflict(
            f"{artifact.digest} was built before revision {newest.number} "
            f"({newest.digest[:19]}…); an environment moves back only by `conveyor rollback`",
        )


CONTROL_REQUESTS = {
    Control.PROMOTE: DriverRequest.PROMOTE,
    Control.PROMOTE_FULL: DriverRequest.PROMOTE_FULL,
    Control.ABORT: DriverRequest.ABORT,
}
"""The controls that the driver carries out, left on the deployment as its request."""


async def command(
    session: Session, env: EnvironmentRecord, what: Control, who: str = ""
) -> DeploymentRecord:
    """A control for the environment's current deployment (409 when none is in
    progress), recorded with who gave it, and audited. Every phase change is guarded by
    domain.deploy.PHASE_TRANSITIONS."""
    moved = await _command(session, env, what, who)
    detail = {"command": what.value, "digest": moved.digest}
    await audited(session, env, who or "request", Action.CONTROL, moved.number, detail)
    now = await deployments.by_id(session, moved.id)  # as the command left it
    assert now is not None, "a deployment is never deleted while it is commanded"
    return now


async def _command(
    session: Session, env: EnvironmentRecord, what: Control, who: str
) -> DeploymentRecord:
    await deployments.lock(session, env.id)
    current = await deployments.in_progress(session, env.id)
    if current is None:
        pending = await deployments.next_pending(session, env.id)
        if what is Control.ABORT and pending is not None:
            await deployments.change_phase(
                session,
                pending,
                Phase.ABORTED,
                finished_at=utcnow(),
                message=f"aborted before it started by {who or 'request'}",
                requested_by=who or None,
            )
            return pending
        raise Conflict(f"no deployment is in progress in {env.name}")
    request = CONTROL_REQUESTS.get(what)
    if request is not None:
        if current.request == DriverRequest.ABORT.value and request is not DriverRequest.ABORT:
            raise Conflict(f"revision {current.number} is being aborted")
        values: dict[str, Any] = {"request": request.value, "requested_by": who or None}
        if request is not DriverRequest.ABORT:
            values["paused_by_user"] = False
        await deployments.set_fields(session, current, **values)
    elif what is Control.PAUSE:
        await _pause(session, current, who)
    else:
        if not current.paused_by_user:
            raise Conflict(f"revision {current.number} was not paused by `pause`")
        await _resume(session, current, who)
    return current


async def _pause(session: Session, current: DeploymentRecord, who: str) -> None:
    held: dict[str, Any] = {
        "paused_by_user": True,
        "pause_reason": PauseReason.USER.value,
        "requested_by": who or None,
    }
    if Phase(current.phase) is Phase.PAUSED:  # paused already, by a step: now by the user
        await deployments.set_fields(session, current, **held)
    else:
        await deployments.change_phase(session, current, Phase.PAUSED, **held)


async def _resume(session: Session, current: DeploymentRecord, who: str) -> None:
    released: dict[str, Any] = {
        "paused_by_user": False,
        "pause_reason": None,
        "requested_by": who or None,
    }
    if Phase(current.phase) is Phase.PROGRESSING:
        await deployments.set_fields(session, current, **released)
    else:
        await deployments.change_phase(session, current, Phase.PROGRESSING, **released)


async def rollback(
    session: Session,
    env: EnvironmentRecord,
    to: int | None,
    who: str,
    *,
    emergency: str | None = None,
) -> DeploymentRecord:
    """Back to revision `to` (default: the one before the current). The revision rolled
    back from is pinned as bad. A revision still warm in the other slot comes back by a
    traffic switch; an older one by a rolling deploy of its stored artifact."""
    await deployments.lock(session, env.id)
    if env.revision == 0:
        raise Conflict(f"{env.name} has no deployed revision to roll back from")
    target = await _rollback_target(session, env, to)
    for row in await deployments.unfinished(session, env.id):
        if row.phase == Phase.PENDING.value:
            await deployments.change_phase(
                session,
                row,
                Phase.ABORTED,
                finished_at=utcnow(),
                message="superseded by a rollback",
            )
        elif row.number == env.revision:  # promoted already, baking: this is its end
            await deployments.change_phase(
                session,
                row,
                Phase.ABORTED,
                finished_at=utcnow(),
                message=f"rolled back by {who} during the bake",
                request=None,
                pause_reason=None,
            )
        else:
            await deployments.set_fields(
                session, row, request=DriverRequest.ABORT.value, requested_by=who
            )
    warm = (
        env.warm_digest == target.digest
        and env.warm_until is not None
        and as_utc(env.warm_until) > utcnow() + timedelta(seconds=1)
    )
    return await queue_rollback(session, env, target, warm=warm, who=who, emergency=emergency)


async def queue_rollback(
    session: Session,
    env: EnvironmentRecord,
    target: DeploymentRecord,
    *,
    warm: bool,
    who: str,
    automatic: bool = False,
    emergency: str | None = None,
) -> DeploymentRecord:
    """Queue a rollback to `target`'s revision, pinning the one rolled back from: a
    traffic switch when `target` is warm in the other slot, else a rolling redeploy of
    its stored artifact. `automatic`: a failed bake asks for it, not a person."""
    team = await names.team(session, env.team_id)
    project = await names.project(session, env.project_id)
    trigger = "automatic" if automatic else "manual"
    metrics.rollbacks.labels(team, project, env.name, trigger).inc()
    pinned = None
    if env.digest and env.digest != target.digest:
        reason = f"rolled back from revision {env.revision} to {target.number}"
        if await deployments.pin_of(session, env.id, env.digest) is None:
            deployments.pin(session, env.id, env.digest, reason, who)
            pinned = env.digest
    if warm and env.warm_until is not None:
        # Keep it warm for the switch (a bake may have judged past its window).
        await deployments.keep_warm(session, env, utcnow() + timedelta(seconds=WARM_FOR_SWITCH_S))
    strategy = DeployStrategy(kind=Kind.SWITCH if warm else Kind.ROLLING).stored()
    made = await deployments.queue(
        session,
        env,
        digest=target.digest,
        artifact_id=target.artifact_id,
        sha=target.sha,
        runtime=target.runtime,
        strategy=strategy,
        started_by=who,
        kind="rollback",
        rollback_of=env.revision,
        traceparent=tracing.traceparent(),
        approved_at=utcnow(),
        emergency=emergency,
    )
    detail: dict[str, Any] = {
        "from": env.revision,
        "to": target.number,
        "digest": target.digest,
        "trigger": trigger,
    }
    if pinned is not None:
        detail["pinned"] = pinned
    action = Action.ROLLBACK
    if emergency is not None:
        action, detail["reason"] = Action.EMERGENCY, emergency
        await announce(session, made)
    await audited(session, env, who, action, made.number, detail)
    return made


WARM_FOR_SWITCH_S = 60.0


async def _rollback_target(
    session: Session, env: EnvironmentRecord, to: int | None
) -> DeploymentRecord:
    if to is not None:
        found = await deployments.numbered(session, env.id, to)
        if found is None:
            raise NotFound(f"{env.name} has no revision {to}")
        if found.digest == env.digest:
            raise Conflict(f"revision {to} is what {env.name} runs now")
        return found
    found = await deployments.last_good_before(session, env)
    if found is None:
        raise Conflict(f"{env.name} has no earlier successful revision")
    return found


async def unpin(session: Session, env: EnvironmentRecord, digest: str, who: str) -> int:
    """Clear the pins on `digest`, keeping who cleared them and when."""
    await deployments.lock(session, env.id)
    cleared = await deployments.clear_pins(session, env.id, digest, who)
    if not cleared:
        raise NotFound(f"{digest} is not pinned in {env.name}")
    await audited(session, env, who, Action.UNPIN, None, {"digest": digest})
    return cleared
