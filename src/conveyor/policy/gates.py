"""What an environment's protection rules decide for a deployment when it is asked for
(domain.policy decides; this gathers the facts): the rules in force, the artifact's
branch, the freeze windows over the environment, and the risk score when the rules
weigh it. The deployment stores the decision; its gate (deploy.planner) enforces it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from conveyor.domain import policy, risk
from conveyor.domain.clock import utcnow
from conveyor.domain.deploy import QueuePolicy
from conveyor.domain.errors import Conflict, Forbidden
from conveyor.domain.freeze import Window, frozen, hours_until
from conveyor.domain.policy import Decision, Rules
from conveyor.domain.roles import Role
from conveyor.pipeline.patterns import glob_matches
from conveyor.policy.risk import facts as risk_facts
from conveyor.storage import policy as rows
from conveyor.storage import runs
from conveyor.storage.artifacts import ArtifactRecord
from conveyor.storage.database import Session
from conveyor.storage.deployment_records import EnvironmentRecord
from conveyor.storage.policy import FreezeRecord
from conveyor.storage.projects import ProjectRecord
from conveyor.vcs import GitMirror

BRANCH_PREFIX = "refs/heads/"


async def rules_for(
    session: Session, project: ProjectRecord, environment: str, declared: dict[str, Any]
) -> Rules:
    """The rules in force: the artifact's conveyor.yml `environments.<name>`, with the
    server's settings winning field by field."""
    stored = await rows.protection(session, project.id, environment)
    return policy.merged(declared, stored.rules if stored is not None else {})


def target_of(
    project: ProjectRecord, environment: str, env: EnvironmentRecord | None
) -> EnvironmentRecord:
    """The environment, or one not saved yet (before its first deploy: no id of its
    own, nothing deployed, no history)."""
    if env is not None:
        return env
    return EnvironmentRecord(
        id=UNSAVED,
        team_id=project.team_id,
        project_id=project.id,
        name=environment,
        target="local",
        queue_policy=QueuePolicy.ORDERED.value,
        port=0,
        preview_port=0,
        stable_slot="a",
        canary_share=0,
        revision=0,
        digest=None,
        runtime=None,
        warm_digest=None,
        warm_until=None,
        lease_owner=None,
        lease_until=None,
        fence=0,
        changes=0,
        created_at=utcnow(),
    )


UNSAVED = uuid.UUID(int=0)
"""The id of an environment not saved yet (no row has it)."""


def window_of(row: FreezeRecord) -> Window:
    """A stored freeze window as domain.freeze reckons with it."""
    return Window(row.cron, timedelta(seconds=row.duration_s), row.timezone)


def windows_of(found: list[FreezeRecord]) -> list[Window]:
    return [window_of(w) for w in found]


async def risk_score(
    session: Session,
    mirror: GitMirror | None,
    env: EnvironmentRecord,
    artifact: ArtifactRecord,
    *,
    rules: Rules,
    sensitive_paths: tuple[str, ...],
    pre_deploy: list[str],
    at: datetime,
) -> risk.Risk:
    """The risk of deploying `artifact` to `env` at `at`, timed on the environment's
    clock and against the freeze windows over it."""
    windows = windows_of(await rows.windows_over(session, env))
    known = await risk_facts(
        session,
        mirror,
        env,
        artifact,
        sensitive_paths=sensitive_paths,
        pre_deploy=pre_deploy,
        at=at.astimezone(ZoneInfo(rules.timezone)),
    )
    return risk.score(replace(known, hours_to_freeze=hours_until(windows, at)))


@dataclass(frozen=True)
class Asked:
    """A deploy request, as its gate needs it."""

    project: ProjectRecord
    environment: str
    env: EnvironmentRecord | None
    artifact: ArtifactRecord
    declared: dict[str, Any]
    """The artifact's conveyor.yml `environments.<name>`."""
    sensitive_paths: tuple[str, ...] = ()
    pre_deploy: tuple[str, ...] = ()
    role: Role = Role.DEVELOPER
    """The caller's role in the team (a runner's job: developer)."""
    emergency: str | None = None
    """The reason of an emergency request."""


async def decide(
    session: Session, mirror: GitMirror | None, asked: Asked, at: datetime
) -> Decision:
    """What the rules decide for a deploy: Conflict for a branch they do not allow
    or a refusing freeze window in force (policy.RulesRefuse), Forbidden for an emergency by
    a role below the environment's `emergency_role`; RuleError (Invalid) for rules that
    cannot be; else the approvals it needs and why."""
    rules = await rules_for(session, asked.project, asked.environment, asked.declared)
    env = target_of(asked.project, asked.environment, asked.env)
    if asked.emergency is not None and asked.role < rules.emergency_role:
        raise Forbidden(
            f"an emergency deploy to {asked.environment} needs the "
            f"{rules.emergency_role.label} role (emergency_role)",
        )
    if asked.emergency is None:
        await refuse_if_frozen(session, env, at)
    branch = None
    if asked.artifact.run_id is not None:
        ref = await runs.ref_of(session, asked.artifact.run_id)
        if ref is not None and ref.startswith(BRANCH_PREFIX):
            branch = ref.removeprefix(BRANCH_PREFIX)
    score = None
    if rules.required_approvals and rules.auto_approve_below is not None:
        scored = await risk_score(
            session,
            mirror,
            env,
            asked.artifact,
            rules=rules,
            sensitive_paths=asked.sensitive_paths,
            pre_deploy=list(asked.pre_deploy),
            at=at,
        )
        score = scored.score
    return policy.decide(
        rules,
        asked.environment,
        branch=branch,
        risk=score,
        emergency=asked.emergency is not None,
        branch_allowed=glob_matches,
    )


async def refuse_if_frozen(session: Session, env: EnvironmentRecord, at: datetime) -> None:
    """Conflict when a freeze window that refuses deploys is in force over the environment."""
    refusing = [w for w in await rows.windows_over(session, env) if w.action == "refuse"]
    windows = windows_of(refusing)
    held = frozen(windows, at)
    if held is not None:
        row = refusing[windows.index(held[0])]
        why = f" ({row.reason})" if row.reason else ""
        raise Conflict(
            f"{env.name} is frozen until {held[1].isoformat()}{why}: deploys are refused "
            "(an emergency deploy passes: `--emergency --reason`)",
        )
