"""The deployment use cases, one way in for the API, the runner protocol and the UI:
deploy an artifact (asked by a person, or by a pipeline's `deploy:` job), control the
rollout, roll back, clear a pin, decide an approval, and show environments and
deployments. Each takes a principal and typed arguments and raises domain errors
(domain.errors); the checks and writes are deploy.requests' and deploy.approvals', the
rollout is the manager's (a poke starts its next pass at once)."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from conveyor.artifacts.blobs import BlobStore
from conveyor.deploy import approvals, records, requests, views
from conveyor.deploy.approvals import Approver
from conveyor.deploy.instance_hosts import FLEET
from conveyor.deploy.manager import DeploymentManager
from conveyor.deploy.records import gate_of
from conveyor.deploy.strategy import DeployStrategy
from conveyor.deploy.world import traffic
from conveyor.domain.clock import as_utc, iso, utcnow
from conveyor.domain.deploy import Control, Phase
from conveyor.domain.errors import Forbidden, Gone, Invalid, NotFound
from conveyor.domain.policy import Decision, Rules, judge
from conveyor.domain.principal import Principal
from conveyor.domain.roles import Role
from conveyor.hosting.routing import RouterError
from conveyor.pipeline.plan import job_from_json
from conveyor.policy import gates
from conveyor.policy.access import project_named
from conveyor.protocol.api import (
    AnalysisOut,
    ApprovalItemOut,
    DeployIn,
    DeploymentOut,
    EnvironmentOut,
    PinOut,
    RiskFactorOut,
    RiskOut,
    TrafficOut,
)
from conveyor.storage import analysis, artifacts, deployments, jobs
from conveyor.storage import policy as rows
from conveyor.storage.artifacts import ArtifactRecord
from conveyor.storage.database import Database, Session
from conveyor.storage.deployment_records import DeploymentRecord, EnvironmentRecord
from conveyor.storage.projects import ProjectRecord, TeamRecord
from conveyor.vcs import MirrorSet

HISTORY = 10
"""Revisions an environment's status lists."""


@dataclass(frozen=True)
class Queued:
    """A deployment a request made (or found), in its environment."""

    deployment: DeploymentRecord
    environment: EnvironmentRecord

    def out(self) -> DeploymentOut:
        return views.deployment_out(self.deployment, self.environment.name)


@dataclass
class DeployService:
    db: Database
    blobs: BlobStore
    mirrors: MirrorSet
    manager: DeploymentManager

    # -- deploying ---------------------------------------------------------------------

    async def deploy(self, who: Principal, team: str, project: str, ask: DeployIn) -> Queued:
        """Deploy an artifact of the project to an environment (created at its first
        deploy): the requested strategy, else the one the artifact's pipeline names for
        it. Conflict for a pinned revision or one older than what is deployed or queued,
        or one the environment's rules refuse; Invalid without a valid `runtime`."""
        async with self.db.transaction() as session:
            row, _ = await project_named(session, who, team, project, Role.DEVELOPER)
            artifact = await artifacts.by_digest(session, row.id, ask.artifact)
        if artifact is None:
            raise NotFound(f"no artifact {ask.artifact} in {team}/{project}")
        spec = await self.spec_of(artifact)
        strategy = requests.choose_strategy(ask.strategy, ask.steps, spec, ask.environment)
        return await self._queue(
            who,
            row,
            ask.environment,
            artifact,
            spec,
            strategy,
            who.display,
            fix=ask.fix,
            emergency=ask.emergency,
            requester=who.subject or None,
            queue_policy=ask.queue_policy,
        )

    async def deploy_for_job(self, who: Principal, job_id: uuid.UUID, fence: int) -> Queued:
        """A `deploy:` job's deployment: the artifact a job it needs published in this
        run, to the job's environment with its strategy. Asked again, it answers the same
        one; a commit that runs again follows the revision that already deploys its
        artifact. While the deployment waits for approvals the job is handed back, to
        wait `blocked` holding no runner."""
        async with self.db.transaction() as session:
            job, run, project, _ = await jobs.with_run(session, job_id)
        planned = job_from_json(job.spec)
        if planned.deploy is None:
            raise Invalid(f"job {job.name!r} has no `deploy`")
        environment = planned.deploy.environment
        started_by = f"job {job.name} of run {run.id}"
        async with self.db.transaction() as session:
            found = await deployments.started_by(session, project.id, environment, started_by)
            artifact = None
            for needed in planned.artifacts_from:
                artifact = artifact or await artifacts.of_run(session, run.id, needed)
            if found is None and artifact is not None:
                same = await deployments.of_artifact(session, project.id, environment, artifact)
                found = same if same is not None and not approvals.awaiting(same) else None
            env = await deployments.environment_of(session, found) if found else None
        if found is not None and env is not None:
            queued = Queued(found, env)
        elif artifact is None:
            raise Invalid(
                f"job {job.name!r} deploys the artifact of a job it needs, and none of "
                f"{list(planned.artifacts_from) or 'its needs'} published one in this run"
            )
        else:
            spec = await self.spec_of(artifact)
            strategy = DeployStrategy.of_pipeline(planned.deploy.strategy, planned.deploy.bake)
            queued = await self._queue(
                who,
                project,
                environment,
                artifact,
                spec,
                strategy,
                started_by,
                run_id=run.id,
                job_id=job_id,
            )
        if approvals.awaiting(queued.deployment):
            async with self.db.transaction() as session:
                await approvals.block(session, queued.deployment, job_id, fence)
        return queued

    async def _queue(
        self,
        who: Principal,
        project: ProjectRecord,
        environment: str,
        artifact: ArtifactRecord,
        spec: requests.ArtifactSpec,
        strategy: DeployStrategy,
        started_by: str,
        *,
        run_id: uuid.UUID | None = None,
        job_id: uuid.UUID | None = None,
        fix: bool = False,
        emergency: str | None = None,
        requester: str | None = None,
        queue_policy: Any = None,
    ) -> Queued:
        """The steps every deploy takes: the commit's time (DORA), what the
        environment's rules decide, the environment (ports for its first deploy), the
        checks and the row (deploy.requests), then the manager's next pass at once."""
        mirror = self.mirrors.get(project.repo_url)
        committed_at = await requests.commit_time(mirror, artifact.sha)
        decision = await self.gate_decision(who, project, environment, artifact, spec, emergency)
        ports = (self.manager.target.allocate_port(), self.manager.target.allocate_port())
        async with self.db.transaction() as session:
            env = await requests.environment(
                session, project, environment, ports, spec.runtime, self.manager.local_host
            )
            if queue_policy is not None:
                env = await deployments.set_queue_policy(session, env, queue_policy)
            made = await requests.deploy(
                session,
                env,
                artifact,
                spec,
                strategy,
                started_by,
                run_id=run_id,
                committed_at=committed_at,
                fix=fix,
                decision=decision,
                requester=requester,
                job_id=job_id,
                emergency=emergency,
            )
        self.manager.poke(env.id)
        return Queued(made, env)

    async def gate_decision(
        self,
        who: Principal,
        project: ProjectRecord,
        environment: str,
        artifact: ArtifactRecord,
        spec: requests.ArtifactSpec,
        emergency: str | None,
        at: datetime | None = None,
    ) -> Decision:
        """What the environment's rules decide for deploying `artifact` (policy.gates)."""
        async with self.db.transaction() as session:
            env = await deployments.environment(session, project.id, environment)
            asked = gates.Asked(
                project=project,
                environment=environment,
                env=env,
                artifact=artifact,
                declared=spec.environments.get(environment, {}),
                sensitive_paths=spec.sensitive_paths,
                pre_deploy=tuple(spec.pre_deploy),
                role=who.acting_role,
                emergency=emergency,
            )
            return await gates.decide(
                session, self.mirrors.get(project.repo_url), asked, at or utcnow()
            )

    async def spec_of(self, artifact: ArtifactRecord) -> requests.ArtifactSpec:
        """What an artifact's own conveyor.yml says: Gone when its content is no longer
        stored, Invalid without a valid conveyor.yml and runtime."""
        blob = await self.blobs.local_file(artifact.digest)
        if blob is None:
            raise Gone(f"the content of {artifact.digest} is no longer stored")
        return await asyncio.to_thread(requests.read_spec, blob, artifact.digest)

    # -- controlling -------------------------------------------------------------------

    async def control(
        self, who: Principal, team: str, project: str, environment: str, what: Control
    ) -> Queued:
        """Promote, pause, resume or abort the environment's current deployment."""
        async with self.db.transaction() as session:
            _, _, env = await self._environment(session, who, team, project, environment)
            current = await requests.command(session, env, what, who.display)
        self.manager.poke(env.id)
        return Queued(current, env)

    async def rollback(
        self,
        who: Principal,
        team: str,
        project: str,
        environment: str,
        to: int | None = None,
        emergency: str | None = None,
    ) -> Queued:
        """Back to revision `to` (default: the previous one), pinning the current one as
        bad. An emergency rollback needs the environment's `emergency_role`."""
        if emergency is not None:
            async with self.db.transaction() as session:
                row, _, env = await self._environment(session, who, team, project, environment)
            rules = await self.rules_now(row, env)
            if who.acting_role < rules.emergency_role:
                raise Forbidden(
                    f"an emergency rollback of {env.name} needs the "
                    f"{rules.emergency_role.label} role (emergency_role)"
                )
        async with self.db.transaction() as session:
            _, _, env = await self._environment(session, who, team, project, environment)
            made = await requests.rollback(session, env, to, who.display, emergency=emergency)
        self.manager.poke(env.id)
        return Queued(made, env)

    async def unpin(
        self, who: Principal, team: str, project: str, environment: str, digest: str
    ) -> int:
        """Clear the pin on a revision (maintainer; who and when are kept)."""
        async with self.db.transaction() as session:
            _, _, env = await self._environment(
                session, who, team, project, environment, Role.MAINTAINER
            )
            return await requests.unpin(session, env, digest, who.display)

    async def rules_now(self, project: ProjectRecord, env: EnvironmentRecord) -> Rules:
        """The rules in force in an environment: the deployed artifact's conveyor.yml
        `environments:` (none before a first deploy), with the server's winning."""
        async with self.db.transaction() as session:
            found = (
                await artifacts.by_digest(session, project.id, env.digest) if env.digest else None
            )
        declared: dict[str, Any] = {}
        if found is not None and await self.blobs.exists(found.digest):
            declared = (await self.spec_of(found)).environments.get(env.name, {})
        async with self.db.transaction() as session:
            return await gates.rules_for(session, project, env.name, declared)

    # -- approvals ---------------------------------------------------------------------

    async def inbox(self, who: Principal, every: bool = False) -> list[ApprovalItemOut]:
        """Deployments that wait for approvals: those the caller may decide (with
        `every`, every one it can see, with why it may not decide the others)."""
        approver = _approver(who)
        teams = None if who.is_admin else [who.team_id] if who.team_id else []
        async with self.db.transaction() as session:
            waiting = await rows.waiting(session, teams)
            decided = await rows.approvals(session, [w.deployment.id for w in waiting])
        out = []
        for item in waiting:
            mine = [a for a in decided if a.deployment_id == item.deployment.id]
            refused = approvals.why_not(item.deployment, approver, mine)
            if refused is not None and not every:
                continue
            shown = views.deployment_out(item.deployment, item.environment, mine)
            assert shown.approval is not None
            out.append(
                ApprovalItemOut(
                    id=str(item.deployment.id),
                    team=item.team,
                    project=item.project,
                    environment=item.environment,
                    number=item.deployment.number,
                    digest=item.deployment.digest,
                    sha=item.deployment.sha,
                    started_by=item.deployment.started_by,
                    phase=item.deployment.phase,
                    created_at=shown.created_at,
                    approval=shown.approval,
                    can_approve=refused is None,
                    why_not=str(refused) if refused is not None else None,
                )
            )
        return out

    async def decide(
        self, who: Principal, deployment_id: uuid.UUID, verdict: str, comment: str
    ) -> DeploymentOut:
        """Approve or reject a deployment that waits; an approved one says what else of
        its gate still holds it (a freeze, a wait timer, stop-the-line), so that nobody
        is told it starts while it waits."""
        approver = _approver(who)
        async with self.db.transaction() as session:
            row = await _visible(session, who, deployment_id)
            decided = await approvals.decide(session, row, approver, verdict, comment)
            env = await deployments.environment_of(session, decided)
            given = await rows.approvals(session, [decided.id])
            held = None
            if decided.approved_at is not None and decided.released_at is None:
                stopped = await rows.is_on(session)
                gate = gate_of(decided, stopped, await rows.windows_over(session, env))
                held = judge(gate, utcnow()).message or None
        self.manager.poke(env.id)
        shown = views.deployment_out(decided, env.name, given)
        return shown.model_copy(update={"held": held})

    # -- showing -----------------------------------------------------------------------

    async def deployment_by_id(self, who: Principal, deployment_id: uuid.UUID) -> DeploymentOut:
        """One deployment by its id, with its approvals."""
        async with self.db.transaction() as session:
            row = await _visible(session, who, deployment_id)
            env = await deployments.environment_of(session, row)
            decided = await rows.approvals(session, [row.id])
        return views.deployment_out(row, env.name, decided)

    async def deployment(
        self, who: Principal, team: str, project: str, environment: str, number: int
    ) -> DeploymentOut:
        """Revision `number` of an environment."""
        async with self.db.transaction() as session:
            _, _, env = await self._environment(
                session, who, team, project, environment, Role.VIEWER
            )
            found = await deployments.numbered(session, env.id, number)
        if found is None:
            raise NotFound(f"{environment} has no revision {number}")
        return views.deployment_out(found, environment)

    async def analysis(
        self, who: Principal, deployment_id: uuid.UUID, evaluations: int = 10, after: int = 0
    ) -> AnalysisOut:
        """The deployment's analysis runs, each with its newest `evaluations`
        evaluations, or with those after the evaluation numbered `after`."""
        async with self.db.transaction() as session:
            row = await _visible(session, who, deployment_id)
            env = await deployments.environment_of(session, row)
            runs = await analysis.runs(session, [row.id])
            history = {
                run.id: await analysis.evaluations(session, run.id, after=after, limit=evaluations)
                if evaluations or after
                else []
                for run in runs
            }
        return AnalysisOut(
            deployment=views.deployment_out(row, env.name),
            runs=[views.analysis_run_out(run, history[run.id]) for run in runs],
        )

    async def environments(self, who: Principal, team: str, project: str) -> list[EnvironmentOut]:
        """Every environment of the project, with its status."""
        async with self.db.transaction() as session:
            row, team_row = await project_named(session, who, team, project, Role.VIEWER)
            envs = await deployments.environments(session, row.id)
        return [await self.status(team_row, row, env) for env in envs]

    async def environment(
        self, who: Principal, team: str, project: str, environment: str
    ) -> EnvironmentOut:
        """Revision, URL, phase, step, traffic split, instances with health, history."""
        async with self.db.transaction() as session:
            row, team_row, env = await self._environment(
                session, who, team, project, environment, Role.VIEWER
            )
        return await self.status(team_row, row, env)

    async def status(
        self, team: TeamRecord, project: ProjectRecord, env: EnvironmentRecord
    ) -> EnvironmentOut:
        async with self.db.transaction() as session:
            history = await deployments.history(session, env.id, HISTORY)
            instances = await deployments.live_instances(session, env.id)
            pins = await deployments.standing_pins(session, env.id)
        try:
            seen = await self.manager.router.status(records.route_key(env))
        except (OSError, RouterError):
            seen = {}
        current = next((d for d in history if Phase(d.phase) is not Phase.PENDING), None)
        live = next((d for d in history if Phase(d.phase).is_active), current)
        split = traffic(records.settled_of(env, None))
        routers = await self._routers_of(env)
        where = routers[0] if routers else "127.0.0.1"
        return EnvironmentOut(
            team=team.name,
            project=project.name,
            environment=env.name,
            revision=env.revision,
            digest=env.digest,
            url=f"http://{where}:{env.port}",
            preview_url=f"http://{where}:{env.preview_port}",
            routers=routers,
            phase=live.phase if live is not None else "pending",
            step=views.step_text(live, env),
            traffic=TrafficOut(stable=split.stable, canary=split.canary),
            instances=[views.instance_out(i, env, seen.get(i.server)) for i in instances],
            deployment=views.deployment_out(live, env.name) if live is not None else None,
            history=[views.deployment_out(d, env.name) for d in history],
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

    async def _routers_of(self, env: EnvironmentRecord) -> list[str]:
        """The addresses of the router hosts that route the environment (none: the
        coordinator's own router does)."""
        hosts = self.manager.router.hosts
        if env.target != FLEET or hosts is None or env.team_id not in await hosts.teams():
            return []
        return await hosts.addresses(env.team_id)

    async def risk(
        self, who: Principal, team: str, project: str, environment: str, digest: str
    ) -> RiskOut:
        """The risk score of deploying the artifact to the environment now, factor by
        factor, timed on the environment's clock (its rules' `timezone`)."""
        async with self.db.transaction() as session:
            row, _ = await project_named(session, who, team, project, Role.VIEWER)
            found = await artifacts.by_digest(session, row.id, digest)
        if found is None:
            raise NotFound(f"no artifact {digest} in {team}/{project}")
        spec = await self.spec_of(found)
        at = utcnow()
        async with self.db.transaction() as session:
            env = await deployments.environment(session, row.id, environment)
            declared = spec.environments.get(environment, {})
            rules = await gates.rules_for(session, row, environment, declared)
            scored = await gates.risk_score(
                session,
                self.mirrors.get(row.repo_url),
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
                RiskFactorOut(
                    name=f.name, value=f.value, weight=f.weight, contribution=f.contribution
                )
                for f in scored.factors
            ],
        )

    async def _environment(
        self,
        session: Session,
        who: Principal,
        team: str,
        project: str,
        name: str,
        role: Role = Role.DEVELOPER,
    ) -> tuple[ProjectRecord, TeamRecord, EnvironmentRecord]:
        row, team_row = await project_named(session, who, team, project, role)
        return row, team_row, await requests.find_environment(session, row, name)


def _approver(who: Principal) -> Approver:
    if who.runner is not None:
        raise Forbidden("a runner does not approve deployments")
    return Approver(subject=who.subject, display=who.display, role=who.role)


async def _visible(session: Session, who: Principal, deployment_id: uuid.UUID) -> DeploymentRecord:
    row = await deployments.by_id(session, deployment_id)
    if row is None or not who.can_see(row.team_id):
        raise NotFound(f"no deployment {deployment_id}")
    return row
