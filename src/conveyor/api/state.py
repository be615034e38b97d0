"""What every request handler reaches: the database, the scheduler, repositories."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Annotated

from fastapi import Depends, Request

from conveyor.api.auth import PrincipalCache, bearer, principal_for, token_hash
from conveyor.api.limits import RateLimit
from conveyor.artifacts.blobs import BlobStore
from conveyor.deploy.fleet import Fleet
from conveyor.deploy.manager import DeploymentManager
from conveyor.deploy.service import DeployService
from conveyor.domain.principal import Principal
from conveyor.intake.inbox import Intake
from conveyor.intake.runs import Runs
from conveyor.scheduler.service import Scheduler
from conveyor.storage.database import Database
from conveyor.storage.secrets import SecretBox
from conveyor.vcs import GitMirror, MirrorSet


@dataclass
class Coordinator:
    db: Database
    scheduler: Scheduler
    data_dir: Path
    secrets: SecretBox
    rate_limit: RateLimit
    mirrors: MirrorSet
    hook_limit: RateLimit
    intake: Intake
    blobs: BlobStore
    deploy: DeploymentManager
    artifact_limit: int = 2 * 1024**3
    cache_quota: int = 256 * 1024 * 1024
    long_poll_s: float = 30.0
    recheck_s: float = 1.0
    principals: PrincipalCache = field(default_factory=PrincipalCache)
    host_lease_s: float = 15.0

    def mirror(self, url: str) -> GitMirror:
        return self.mirrors.get(url)

    @property
    def runs(self) -> Runs:
        """The run use cases (intake/runs.py)."""
        return self.intake.runs

    @cached_property
    def deploys(self) -> DeployService:
        """The deployment use cases (deploy/service.py)."""
        return DeployService(self.db, self.blobs, self.mirrors, self.deploy)

    @cached_property
    def fleet(self) -> Fleet:
        """The fleet's use cases (deploy/fleet.py): hosts, agents, host tokens."""
        return Fleet(self.db, lease_s=self.host_lease_s, poll_s=min(5.0, self.host_lease_s / 3))


def coordinator(request: Request) -> Coordinator:
    state: Coordinator = request.app.state.coordinator
    return state


async def caller(
    request: Request, state: Annotated[Coordinator, Depends(coordinator)]
) -> Principal:
    """The authenticated caller (401 without a valid token)."""
    return await principal_of(state, bearer(request))


async def principal_of(state: Coordinator, token: str) -> Principal:
    """Who holds `token` (401 for an unknown one), counted against its rate limit."""
    who = state.principals.get(token)
    if who is None:
        async with state.db.transaction() as session:
            who = await principal_for(session, token)
        state.principals.put(who)
    if who.runner is None:
        await state.rate_limit.check(token_hash(token), "this token")
    return who


State = Annotated[Coordinator, Depends(coordinator)]
Caller = Annotated[Principal, Depends(caller)]
