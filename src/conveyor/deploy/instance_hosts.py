"""Where an environment's instances run, as the deployment manager sees it: on the
coordinator's own machine (`LocalHosts`: the local target's processes, started and
watched by the manager itself), or on the fleet's hosts (`FleetHosts`: placed by
deploy.placement, started and watched by each host's agent, seen through the agents'
reports). The environment's `target` picks one (`local`, or `fleet` for a runtime with
`placement`); the planner decides the same way for both (decision 0027)."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Protocol

from conveyor.artifacts.blobs import BlobStore
from conveyor.deploy.placement import Candidate, place
from conveyor.domain.clock import as_utc
from conveyor.domain.deploy import InstanceState
from conveyor.domain.hosts import LOCAL_LABEL, LOCAL_POOL, HostState
from conveyor.hosting.target import Handle, Launch, Target
from conveyor.pipeline.deploy import Placement, Runtime
from conveyor.storage import hosts as host_rows
from conveyor.storage.database import Session
from conveyor.storage.deployment_records import EnvironmentRecord, InstanceRecord

log = logging.getLogger("conveyor.deploy")

LOCAL = "local"
FLEET = "fleet"
KILL_GRACE_S = 5.0
"""A stopped instance still running this long after SIGTERM is killed."""
PORTS = (20000, 29999)
"""Where instance ports on a fleet's host come from: below Linux's ephemeral range
(32768-60999), so that they never collide with outgoing connections."""


HERE = Placement(labels={LOCAL_LABEL: "true"})
"""Where a runtime with no `placement` runs on the fleet: the coordinators' own machines."""


def target_of(runtime: dict[str, Any], local_host: bool = False) -> str:
    """Where a new environment's instances run: on the fleet when the runtime says how
    to place them or when the coordinator's machine is a host itself (its embedded
    agent: a runtime with no placement runs there), else through the local target."""
    return FLEET if local_host or runtime.get("placement") is not None else LOCAL


class ArtifactGone(Exception):
    """The artifact's blob is no longer in the store."""


class Unplaced(Exception):
    """No host can take the instance now: the message says what every host lacked."""


@dataclass(frozen=True)
class Spot:
    """Where a new instance will run."""

    port: int
    host_id: uuid.UUID | None = None
    address: str | None = None


@dataclass(frozen=True)
class NewInstance:
    """An instance the planner starts: of `runtime`, in `slot` of `env`, beside the
    environment's `instances`."""

    env: EnvironmentRecord
    runtime: Runtime
    slot: str
    instances: list[InstanceRecord]
    task: bool = False
    """Not an instance: the deployment's pre_deploy commands, which run once and briefly
    on any host whose labels match (its capacity and spread do not count)."""


@dataclass(frozen=True)
class Look:
    """One instance's process as a pass sees it."""

    alive: bool
    healthy: bool | None = None
    """Its health path answered 2xx (None: not asked: it is not starting)."""


class InstanceHosts(Protocol):
    async def spot(self, session: Session, new: NewInstance) -> Spot:
        """Where a new instance goes (Unplaced when nowhere)."""
        ...

    async def start(self, row: InstanceRecord, runtime: Runtime) -> Handle | None:
        """Start it, or find it running (a redo); None when its host's agent starts it."""
        ...

    def kill(self, row: InstanceRecord) -> None:
        """End its process now, before a restart (an agent does that itself)."""
        ...

    def stop(self, row: InstanceRecord) -> Callable[[], None] | None:
        """What ends it once the router no longer sends it anything."""
        ...

    async def look(self, row: InstanceRecord, runtime: Runtime | None, probe: bool) -> Look:
        """Whether it runs, and (`probe`: a starting instance) whether it is healthy."""
        ...

    def reap(self, row: InstanceRecord, now: datetime) -> None:
        """A stopped instance whose process outlived its grace time is killed."""
        ...


class LocalHosts:
    """Instances as processes of the local target on the coordinator's machine."""

    def __init__(self, target: Target, blobs: BlobStore) -> None:
        self.target = target
        self.blobs = blobs

    async def spot(self, session: Session, new: NewInstance) -> Spot:
        return Spot(self.target.allocate_port())

    async def start(self, row: InstanceRecord, runtime: Runtime) -> Handle:
        handle = _handle(row)
        if handle is not None and self.target.alive(handle):
            return handle
        adopted = self.target.adopt(str(row.id))
        if adopted is not None:
            return adopted
        blob = await self.blobs.local_file(row.digest)
        if blob is None:
            raise ArtifactGone(f"artifact {row.digest} is not in the store")
        release = await asyncio.to_thread(self.target.prepare, row.digest, blob)
        launch = Launch(str(row.id), release, runtime.command, row.port, dict(runtime.env))
        return await asyncio.to_thread(self.target.start, launch)

    def kill(self, row: InstanceRecord) -> None:
        handle = _handle(row)
        if handle is not None and self.target.alive(handle):
            self.target.terminate(handle, force=True)

    def stop(self, row: InstanceRecord) -> Callable[[], None] | None:
        handle = _handle(row)
        if handle is None:
            return None
        return lambda: self.target.terminate(handle, force=False)

    async def look(self, row: InstanceRecord, runtime: Runtime | None, probe: bool) -> Look:
        handle = _handle(row)
        alive = handle is not None and self.target.alive(handle)
        if not (probe and alive):
            return Look(alive)
        health = runtime.health if runtime is not None else None
        path, timeout = (health.path, health.timeout) if health else ("/healthz", 2.0)
        return Look(alive, await self.target.healthy(row.port, path, timeout))

    def reap(self, row: InstanceRecord, now: datetime) -> None:
        handle = _handle(row)
        if handle is None:
            return
        if not self.target.alive(handle):
            self.target.forget(str(row.id))
            return
        if row.stopped_at and (now - as_utc(row.stopped_at)).total_seconds() > KILL_GRACE_S:
            log.warning("instance %s ignored SIGTERM; killing it", row.id)
            self.target.terminate(handle, force=True)


class FleetHosts:
    """Instances on the fleet's hosts: placed here, run by each host's agent, which
    reports what it sees (instances.observed); a change of a host's instances raises its
    generation (by the action that writes it) and `wake` ends its agent's long poll on
    this replica."""

    def __init__(self, wake: Callable[[uuid.UUID], None] = lambda host_id: None) -> None:
        self.wake = wake

    async def leaving(
        self, session: Session, instances: list[InstanceRecord]
    ) -> frozenset[uuid.UUID]:
        """The instances whose host is draining, lost or gone: each is replaced on
        another host, then leaves (drained first while it serves)."""
        placed = {row.id: row.host_id for row in instances if row.host_id is not None}
        if not placed:
            return frozenset()
        states = await host_rows.states(session, set(placed.values()))
        return frozenset(
            instance
            for instance, host in placed.items()
            if states.get(host, HostState.LOST) is not HostState.UP
        )

    async def room(self, session: Session, new: NewInstance) -> str | None:
        """Why no host can take the new instance now (None: one can)."""
        try:
            await self.spot(session, new)
        except Unplaced as exc:
            return str(exc)
        return None

    async def spot(self, session: Session, new: NewInstance) -> Spot:
        env, runtime, slot, instances = new.env, new.runtime, new.slot, new.instances
        rules = runtime.placement or HERE
        # The coordinators' own machines take what asks for them by label, nothing else.
        here = str(rules.labels.get(LOCAL_LABEL)) == "true"
        usage = {
            u.host.name: u
            for u in await host_rows.usable(session, env.team_id)
            if here or u.host.pool != LOCAL_POOL
        }
        by_id = {u.host.id: u.host.name for u in usage.values()}
        candidates = [
            Candidate(
                name,
                {str(k): str(v) for k, v in u.host.labels.items()},
                u.host.slots,
                u.host.memory,
                used_slots=u.instances,
                used_memory=u.memory,
                state=u.host.status,
            )
            for name, u in usage.items()
        ]
        peers = [
            by_id[row.host_id]
            for row in instances
            if row.slot == slot
            and row.host_id in by_id
            and row.state != InstanceState.STOPPED.value
        ]
        if new.task:
            rules = Placement(labels=rules.labels)
            candidates = [replace(c, slots=None, memory=None) for c in candidates]
            placed = place(rules, candidates, [], 1)
        else:
            placed = place(rules, candidates, peers, 1, runtime.memory or 0)
        if not placed.complete:
            raise Unplaced(placed.reason or "no host")
        chosen = usage[placed.hosts[0]]
        if new.task:
            return Spot(0, chosen.host.id, chosen.host.address)
        port = next((p for p in range(*PORTS) if p not in chosen.ports), None)
        if port is None:
            raise Unplaced(f"host {chosen.host.name} has no free port in {PORTS}")
        return Spot(port, chosen.host.id, chosen.host.address)

    async def start(self, row: InstanceRecord, runtime: Runtime) -> None:
        return None

    def kill(self, row: InstanceRecord) -> None:
        return None

    def stop(self, row: InstanceRecord) -> Callable[[], None] | None:
        return None

    async def look(self, row: InstanceRecord, runtime: Runtime | None, probe: bool) -> Look:
        seen = row.observed
        if seen is None or int(seen.get("incarnation", -1)) != row.restarts:
            # Not reported yet for this incarnation: it is starting on its host.
            return Look(True, False if probe else None)
        healthy = bool(seen.get("healthy")) if probe else None
        return Look(bool(seen.get("running")), healthy)

    def reap(self, row: InstanceRecord, now: datetime) -> None:
        return None


def log_patterns(templates: dict[str, dict[str, Any]]) -> list[str]:
    """The patterns the `logs` metrics of these analysis templates match: an agent counts
    the lines of its instances that match each (the provider reads the counts)."""
    found = {
        str(metric["pattern"])
        for spec in templates.values()
        for metric in spec.get("metrics", [])
        if isinstance(metric, dict) and metric.get("provider") == "logs" and metric.get("pattern")
    }
    return sorted(found)


def launch_of(runtime: Runtime, patterns: list[str] | None = None) -> dict[str, Any]:
    """What an agent needs to start an instance (instances.launch)."""
    return {
        "log_patterns": list(patterns or []),
        "command": runtime.command,
        "env": dict(runtime.env),
        "health": {"path": runtime.health.path, "timeout": runtime.health.timeout},
        "memory": runtime.memory or 0,
    }


def _handle(row: InstanceRecord) -> Handle | None:
    return Handle(row.pid, row.pid_started or "") if row.pid else None
