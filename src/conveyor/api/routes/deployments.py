"""Deployments and environments: deploy an artifact, follow it, promote, pause, resume,
abort, roll back, and clear a pin. Requests are rows; each environment's driver in the
deployment manager carries them out (deploy/manager.py)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from datetime import timedelta
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Header, Query
from fastapi.responses import JSONResponse

from conveyor.api import patterns
from conveyor.api.auth import Principal
from conveyor.api.errors import ApiError
from conveyor.api.idempotency import once, parse_key
from conveyor.api.routes.projects import project_named
from conveyor.api.schemas import (
    DIGEST,
    ApprovalStateOut,
    DecisionOut,
    DeployIn,
    DeploymentOut,
    EnvironmentOut,
    InstanceOut,
    PinOut,
    PromoteIn,
    RiskFactorOut,
    RiskOut,
    RollbackIn,
    TrafficOut,
)
from conveyor.api.state import Caller, Coordinator, State
from conveyor.deploy import approvals, records, requests
from conveyor.deploy.router.base import RouterError, ServerStatus
from conveyor.deploy.router.haproxy import find_haproxy
from conveyor.deploy.world import traffic
from conveyor.domain.deploy import Control, InstanceState, Phase
from conveyor.domain.policy import Decision, Rules
from conveyor.domain.roles import Role
from conveyor.policy import gates
from conveyor.storage import artifacts, deployments
from conveyor.storage.database import Session
from conveyor.storage.tables import (
    Approval,
    Artifact,
    Deployment,
    Environment,
    Instance,
    Project,
    Team,
    as_utc,
    iso,
    utcnow,
)
from conveyor.vcs import GitMirror

router = APIRouter(prefix="/api/v1/projects/{team}/{project}", tags=["deployments"])
HISTORY = 10


def approval_out(row: Deployment, decided: Sequence[Approval] = ()) -> ApprovalStateOut | None:
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
    row: Deployment, environment: str, decided: Sequence[Approval] = ()
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


@router.post("/deployments", status_code=201, response_model=DeploymentOut)
async def create_deployment(
    team: str,
    project: str,
    body: DeployIn,
    state: State,
    who: Caller,
    idempotency_key: Annotated[
        str | None,
        Header(max_length=300, json_schema_extra=patterns.documented(patterns.IDEMPOTENCY_KEY)),
    ] = None,
) -> DeploymentOut | JSONResponse:
    """Deploy an artifact of this project to an environment (created at its first deploy,
    with the local target). 409 for a pinned revision or one older than what is
    deployed or queued; 422 when the artifact has no valid conveyor.yml `runtime`."""
    if idempotency_key is None:
        return await _deploy(team, project, body, state, who)
    parse_key(idempotency_key)
    return await once(
        state,
        who,
        f"/api/v1/projects/{team}/{project}/deployments",
        idempotency_key,
        body,
        201,
        lambda: _deploy(team, project, body, state, who),
    )


async def _deploy(
    team: str, project: str, body: DeployIn, state: Coordinator, who: Principal
) -> DeploymentOut:
    try:
        find_haproxy()
    except RouterError as exc:
        raise ApiError(503, "router_missing", str(exc)) from exc
    row, artifact, spec = await _artifact_spec(
        state, who, team, project, body.artifact, Role.DEVELOPER
    )
    strategy = requests.choose_strategy(body.strategy, body.steps, spec, body.environment)
    mirror = state.mirror(row.repo_url)
    committed_at = await requests.commit_time(mirror, artifact.sha)
    decision = await gate_decision(
        state, mirror, row, body.environment, artifact, spec, who, body.emergency
    )
    ports = (state.deploy.target.allocate_port(), state.deploy.target.allocate_port())
    async with state.db.transaction() as session:
        env = await requests.environment(session, row, body.environment, ports)
        if body.queue_policy is not None:
            deployments.set_queue_policy(env, body.queue_policy)
        made = await requests.deploy(
            session,
            env,
            artifact,
            spec,
            strategy,
            who.display,
            committed_at=committed_at,
            fix=body.fix,
            decision=decision,
            requester=who.subject or None,
            emergency=body.emergency,
        )
    state.deploy.poke(env.id)
    return deployment_out(made, env.name)


async def gate_decision(
    state: Coordinator,
    mirror: GitMirror | None,
    project: Project,
    environment: str,
    artifact: Artifact,
    spec: requests.ArtifactSpec,
    who: Principal,
    emergency: str | None,
) -> Decision:
    """What the environment's rules decide for deploying `artifact` (policy.gates):
    409 for a branch they do not allow or a refusing freeze, 403 for an emergency by a
    role below `emergency_role`."""
    async with state.db.transaction() as session:
        env = await deployments.environment(session, project.id, environment)
        asked = gates.Asked(
            project=project,
            environment=environment,
            env=env,
            artifact=artifact,
            declared=spec.environments.get(environment, {}),
            sensitive_paths=spec.sensitive_paths,
            pre_deploy=tuple(spec.pre_deploy),
            role=role_in(who, project.team_id),
            emergency=emergency,
        )
        return await gates.decide(session, mirror, asked, utcnow())


def role_in(who: Principal, team_id: uuid.UUID) -> Role:
    """The caller's role in a team it may see (a runner acts for a pipeline: developer)."""
    return Role.DEVELOPER if who.runner is not None else who.role


async def _artifact_spec(
    state: Coordinator, who: Principal, team: str, project: str, digest: str, role: Role
) -> tuple[Project, Artifact, requests.ArtifactSpec]:
    """The project (for `role`), its artifact `digest` and what the artifact's own
    conveyor.yml says: 404 for an unknown artifact, 410 for one whose content is gone,
    422 for one without a valid conveyor.yml and runtime."""
    async with state.db.transaction() as session:
        row, _ = await project_named(session, who, team, project, role)
        artifact = await artifacts.by_digest(session, row.id, digest)
    if artifact is None:
        raise ApiError(404, "not_found", f"no artifact {digest} in {team}/{project}")
    return row, artifact, await artifact_spec(state, artifact)


async def artifact_spec(state: Coordinator, artifact: Artifact) -> requests.ArtifactSpec:
    """What an artifact's own conveyor.yml says: 410 when its content is gone, 422
    without a valid conveyor.yml and runtime."""
    blob = state.blobs.local_path(artifact.digest)
    if blob is None:
        raise ApiError(410, "gone", f"the content of {artifact.digest} is no longer stored")
    return await asyncio.to_thread(requests.read_spec, blob, artifact.digest)


async def _env(
    session: Session, who: Principal, team: str, project: str, name: str, role: Role
) -> tuple[Project, Team, Environment]:
    row, team_row = await project_named(session, who, team, project, role)
    return row, team_row, await requests.find_environment(session, row, name)


@router.get("/environments")
async def list_environments(
    team: str, project: str, state: State, who: Caller
) -> list[EnvironmentOut]:
    async with state.db.transaction() as session:
        row, team_row = await project_named(session, who, team, project, Role.VIEWER)
        envs = await deployments.environments(session, row.id)
    return [await environment_status(state, team_row, row, env) for env in envs]


@router.get("/environments/{environment}")
async def show_environment(
    team: str, project: str, environment: str, state: State, who: Caller
) -> EnvironmentOut:
    """Revision, URL, phase, step, traffic split, instances with health, and history."""
    async with state.db.transaction() as session:
        row, team_row, env = await _env(session, who, team, project, environment, Role.VIEWER)
    return await environment_status(state, team_row, row, env)


@router.get("/environments/{environment}/risk")
async def show_risk(
    team: str,
    project: str,
    environment: str,
    state: State,
    who: Caller,
    artifact: Annotated[str, Query(pattern=DIGEST, description="sha256:…")],
) -> RiskOut:
    """The risk score of deploying `artifact` to the environment now, factor by factor
    (an environment not deployed to yet has no diff and no history to weigh), timed on
    the environment's clock (its rules' `timezone`) and its freeze windows."""
    row, found, spec = await _artifact_spec(state, who, team, project, artifact, Role.VIEWER)
    at = utcnow()
    async with state.db.transaction() as session:
        env = await deployments.environment(session, row.id, environment)
        declared = spec.environments.get(environment, {})
        rules = await gates.rules_for(session, row, environment, declared)
        scored = await gates.risk_score(
            session,
            state.mirror(row.repo_url),
            gates.target_of(row, environment, env),
            found,
            rules=rules,
            sensitive_paths=spec.sensitive_paths,
            pre_deploy=spec.pre_deploy,
            at=at,
        )
    at = at.astimezone(ZoneInfo(rules.timezone))
    return RiskOut(
        environment=environment,
        artifact=found.digest,
        score=scored.score,
        at=iso(at) or "",
        factors=[
            RiskFactorOut(name=f.name, value=f.value, weight=f.weight, contribution=f.contribution)
            for f in scored.factors
        ],
    )


@router.get("/environments/{environment}/deployments/{number}")
async def show_deployment(
    team: str, project: str, environment: str, number: int, state: State, who: Caller
) -> DeploymentOut:
    async with state.db.transaction() as session:
        _, _, env = await _env(session, who, team, project, environment, Role.VIEWER)
        found = await deployments.numbered(session, env.id, number)
    if found is None:
        raise ApiError(404, "not_found", f"{environment} has no revision {number}")
    return deployment_out(found, environment)


@router.post("/environments/{environment}/promote")
async def promote(
    team: str, project: str, environment: str, body: PromoteIn, state: State, who: Caller
) -> DeploymentOut:
    """Skip the current pause (or, with `full`, every remaining step)."""
    what = Control.PROMOTE_FULL if body.full else Control.PROMOTE
    return await _command(state, who, team, project, environment, what)


async def _command(
    state: Coordinator, who: Principal, team: str, project: str, environment: str, what: Control
) -> DeploymentOut:
    async with state.db.transaction() as session:
        _, _, env = await _env(session, who, team, project, environment, Role.DEVELOPER)
        current = await requests.command(session, env, what, who.display)
    state.deploy.poke(env.id)
    return deployment_out(current, environment)


@router.post("/environments/{environment}/rollback", status_code=201, response_model=DeploymentOut)
async def rollback(
    team: str,
    project: str,
    environment: str,
    body: RollbackIn,
    state: State,
    who: Caller,
    idempotency_key: Annotated[
        str | None,
        Header(max_length=300, json_schema_extra=patterns.documented(patterns.IDEMPOTENCY_KEY)),
    ] = None,
) -> DeploymentOut | JSONResponse:
    """Back to revision `to` (default: the previous one), pinning the current one as bad:
    a traffic switch when that revision is still warm, else a rolling redeploy of its
    stored artifact."""

    async def act() -> DeploymentOut:
        if body.emergency is not None:
            async with state.db.transaction() as session:
                row, _, env = await _env(session, who, team, project, environment, Role.DEVELOPER)
            await _emergency_allowed(state, row, env, who)
        async with state.db.transaction() as session:
            row, _, env = await _env(session, who, team, project, environment, Role.DEVELOPER)
            made = await requests.rollback(
                session, env, body.to, who.display, emergency=body.emergency
            )
        state.deploy.poke(env.id)
        return deployment_out(made, environment)

    if idempotency_key is None:
        return await act()
    parse_key(idempotency_key)
    route = f"/api/v1/projects/{team}/{project}/environments/{environment}/rollback"
    return await once(state, who, route, idempotency_key, body, 201, act)


async def rules_now(state: Coordinator, project: Project, env: Environment) -> Rules:
    """The rules in force in an environment: the deployed artifact's conveyor.yml
    `environments:` (none before a first deploy), with the server's winning."""
    async with state.db.transaction() as session:
        found = await artifacts.by_digest(session, project.id, env.digest) if env.digest else None
    declared: dict[str, Any] = {}
    if found is not None and state.blobs.local_path(found.digest) is not None:
        declared = (await artifact_spec(state, found)).environments.get(env.name, {})
    async with state.db.transaction() as session:
        return await gates.rules_for(session, project, env.name, declared)


async def _emergency_allowed(
    state: Coordinator, project: Project, env: Environment, who: Principal
) -> None:
    """403 unless the caller has the environment's `emergency_role`."""
    rules = await rules_now(state, project, env)
    if role_in(who, project.team_id) < rules.emergency_role:
        raise ApiError(
            403,
            "forbidden",
            f"an emergency rollback of {env.name} needs the {rules.emergency_role.label} "
            "role (emergency_role)",
        )


@router.post("/environments/{environment}/pause")
async def pause(
    team: str, project: str, environment: str, state: State, who: Caller
) -> DeploymentOut:
    """Hold the deployment at its current step."""
    return await _command(state, who, team, project, environment, Control.PAUSE)


@router.post("/environments/{environment}/resume")
async def resume(
    team: str, project: str, environment: str, state: State, who: Caller
) -> DeploymentOut:
    """Carry on after `pause`."""
    return await _command(state, who, team, project, environment, Control.RESUME)


@router.post("/environments/{environment}/abort")
async def abort(
    team: str, project: str, environment: str, state: State, who: Caller
) -> DeploymentOut:
    """Send the canary's traffic back to stable at once, then remove it."""
    return await _command(state, who, team, project, environment, Control.ABORT)


@router.delete("/environments/{environment}/pins/{digest}")
async def unpin(
    team: str, project: str, environment: str, digest: str, state: State, who: Caller
) -> dict[str, int]:
    """Clear the pin on a revision (who and when are kept)."""
    async with state.db.transaction() as session:
        _, _, env = await _env(session, who, team, project, environment, Role.MAINTAINER)
        cleared = await requests.unpin(session, env, digest, who.display)
    return {"cleared": cleared}


async def environment_status(
    state: Coordinator, team: Team, project: Project, env: Environment
) -> EnvironmentOut:
    async with state.db.transaction() as session:
        history = await deployments.history(session, env.id, HISTORY)
        instances = await deployments.live_instances(session, env.id)
        pins = await deployments.standing_pins(session, env.id)
    try:
        seen = await state.deploy.router.status(records.route_key(env))
    except (OSError, RouterError):
        seen = {}
    current = next((d for d in history if Phase(d.phase) is not Phase.PENDING), None)
    live = next((d for d in history if Phase(d.phase).is_active), current)
    split = traffic(records.settled_of(env, None))
    return EnvironmentOut(
        team=team.name,
        project=project.name,
        environment=env.name,
        revision=env.revision,
        digest=env.digest,
        url=f"http://127.0.0.1:{env.port}",
        preview_url=f"http://127.0.0.1:{env.preview_port}",
        phase=live.phase if live is not None else "pending",
        step=_step_text(live, env),
        traffic=TrafficOut(stable=split.stable, canary=split.canary),
        instances=[_instance(i, env, seen.get(i.server)) for i in instances],
        deployment=deployment_out(live, env.name) if live is not None else None,
        history=[deployment_out(d, env.name) for d in history],
        pins=[
            PinOut(
                digest=p.digest,
                reason=p.reason,
                pinned_by=p.pinned_by,
                created_at=as_utc(p.created_at).isoformat(),
            )
            for p in pins
        ],
    )


def _step_text(row: Deployment | None, env: Environment) -> str | None:
    if row is None or not Phase(row.phase).is_active:
        return None
    if row.released_at is None:
        return f"at its gate: {row.pause_reason or 'opening'}"
    steps = records.steps_of(row.strategy)
    if row.step < len(steps):
        return f"{row.step + 1}/{len(steps)}: {steps[row.step].describe()}"
    if row.number == env.revision:
        bake = records.strategy_of(row.strategy).bake or {}
        return f"{len(steps)}/{len(steps)}: promoted, baking ({bake.get('analysis', '')})"
    return f"{len(steps)}/{len(steps)}: promoting"


def _instance(row: Instance, env: Environment, seen: ServerStatus | None) -> InstanceOut:
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
        state=row.state,
        healthy=healthy and row.state == InstanceState.READY.value,
        restarts=row.restarts,
    )
