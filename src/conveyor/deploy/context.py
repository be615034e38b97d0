"""What an action's handler (effects.py) is given: the driver's context (the database
under the environment's lease, the artifact store, the target), what the pass loaded,
and the action with its recorded intent. Handlers see nothing else of the manager, so
they can be driven in a test without one.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime

from conveyor.artifacts.blobs import BlobStore
from conveyor.deploy.instance_hosts import FLEET, InstanceHosts
from conveyor.deploy.records import gate_of, plan_of, runtime_of
from conveyor.deploy.world import Action, Rollout
from conveyor.domain.clock import utcnow
from conveyor.domain.policy import Gate
from conveyor.hosting.target import Target
from conveyor.pipeline.deploy import Runtime
from conveyor.storage import environments
from conveyor.storage.database import Database, Session
from conveyor.storage.deployment_records import DeploymentRecord, EnvironmentRecord, InstanceRecord
from conveyor.storage.environments import EnvironmentRows


class EnvironmentLeaseLost(Exception):
    """This replica no longer holds the environment: another one drives it now."""


@dataclass(frozen=True)
class DriverContext:
    """What every handler may use. One per manager; shared by its drivers."""

    db: Database
    blobs: BlobStore
    target: Target
    owner: str
    """This replica, as written in the environments it holds."""
    lease_s: float
    local: InstanceHosts
    """Instances on the coordinator's machine (the local target's processes)."""
    fleet: InstanceHosts
    """Instances on the fleet's hosts, run by their agents."""
    wake: Callable[[uuid.UUID], None] = lambda host_id: None
    """Ends the long poll of a host's agent waiting on this replica."""
    clock: Callable[[], datetime] = utcnow
    """The manager's wall clock: what a handler stamps (a drain's start, a step's, an
    end), so that the planner's timing rules read the same clock as the stamps."""

    def hosts_for(self, env: EnvironmentRecord) -> InstanceHosts:
        """Where the environment's instances run."""
        return self.fleet if env.target == FLEET else self.local

    @asynccontextmanager
    async def fenced(self, env_id: uuid.UUID, fence: int) -> AsyncIterator[Session]:
        """A transaction that first renews the lease under `fence` (holding the row), or
        raises EnvironmentLeaseLost when another replica has taken the environment."""
        async with self.db.transaction() as session:
            if not await environments.renew_lease(session, env_id, fence, self.owner, self.lease_s):
                raise EnvironmentLeaseLost(str(env_id))
            yield session


@dataclass(frozen=True)
class Driven:
    """What one pass loaded, with the runtimes parsed once."""

    rows: EnvironmentRows
    rollout: Rollout | None
    """The active deployment as the planner sees it."""
    runtime: Runtime | None
    """The active deployment's runtime."""
    stable_runtime: Runtime | None
    """The stable revision's runtime (None before the first deploy)."""
    next_gate: Gate | None = None
    """What the gate of the deployment queued next sees."""

    @classmethod
    def of(cls, rows: EnvironmentRows) -> Driven:
        stable = runtime_of(rows.env.runtime) if rows.env.runtime else None
        active = rows.active
        if active is None:
            first = rows.first_pending
            gate = gate_of(first, rows.stopped, rows.freezes) if first is not None else None
            return cls(rows, None, None, stable, gate)
        runtime = runtime_of(active.runtime)
        plan = plan_of(active, runtime, stopped=rows.stopped, freezes=rows.freezes)
        return cls(rows, plan, runtime, stable)

    @property
    def env(self) -> EnvironmentRecord:
        return self.rows.env

    @property
    def plan_row(self) -> DeploymentRecord | None:
        return self.rows.active

    @property
    def instances(self) -> list[InstanceRecord]:
        return self.rows.instances

    def runtime_for(self, digest: str) -> Runtime | None:
        """How to run instances of `digest`: the active deployment's runtime for its own
        revision, else the stable revision's (or, before the first, the active one's);
        None for a leftover of neither."""
        if self.plan_row is not None and self.plan_row.digest == digest:
            return self.runtime
        return self.stable_runtime or self.runtime


@dataclass(frozen=True)
class Effect:
    """One action to carry out, with what its intent recorded."""

    env_id: uuid.UUID
    fence: int
    driven: Driven
    action: Action
    params: dict[str, object]
    intent_id: uuid.UUID
