"""The fleet's use cases: host tokens, agents joining and long-polling for their host's
desired state, the sweep of hosts whose lease ran out, and people's commands on hosts
(list, drain, undrain, remove) and on shared pools. The API's routes and the UI call
these; they take a principal (people) or a host token's sha256 (agents) and raise
domain errors."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from conveyor.deploy.routers import HostRouters, desired_route
from conveyor.domain import events as types
from conveyor.domain.audit import Action
from conveyor.domain.clock import iso, utcnow
from conveyor.domain.errors import Conflict, Forbidden, NotFound, Unauthenticated
from conveyor.domain.hosts import LOCAL_POOL, HostState
from conveyor.domain.principal import Principal
from conveyor.domain.roles import Role
from conveyor.observability import metrics
from conveyor.policy.access import team_named
from conveyor.protocol.agent import (
    LEASE_S,
    POLL_S,
    PROTOCOL,
    Desired,
    DesiredInstance,
    DesiredTask,
    HealthProbe,
    Join,
    Joined,
    Report,
)
from conveyor.protocol.api import HostOut, HostTokenOut
from conveyor.storage import audit, deployments, events, hosts, names
from conveyor.storage import routes as route_rows
from conveyor.storage.artifacts import ArtifactRecord
from conveyor.storage.database import Database, Session
from conveyor.storage.deployment_records import DeploymentRecord, InstanceRecord
from conveyor.storage.events import HostFacts
from conveyor.storage.hosts import HostRecord, HostTokenRecord, Joining
from conveyor.waiting import event_or_timeout

log = logging.getLogger(__name__)
PRUNE_S = 60.0
"""How often the sweep forgets router hosts' request summaries that are too old."""


_RESERVED = (
    f"pool {LOCAL_POOL} is the coordinators' own machines: their embedded agents join it, "
    "and it serves every team"
)


class Fenced(Conflict):
    """The agent's fence is older than its host's: the host registered again since (or
    was found lost), so this agent must join again before it does anything."""


@dataclass
class Fleet:
    """One per coordinator process (state.fleet)."""

    db: Database
    lease_s: float = LEASE_S
    poll_s: float = POLL_S
    clock: Callable[[], datetime] = utcnow
    wakeups: dict[uuid.UUID, asyncio.Event] = field(default_factory=dict)
    """Per host with an agent waiting on this replica: set when what it should run
    changes here (another replica's change is seen at the agent's next poll)."""
    routers: HostRouters | None = None
    """The routes router hosts hold (the deployment manager's): told of their reports."""
    _pruned_at: float = -PRUNE_S

    # -- host tokens ---------------------------------------------------------------------

    async def create_token(
        self, who: Principal, team: str | None, pool: str | None, name: str, digest: str
    ) -> HostTokenRecord:
        """A team's token (a maintainer's to make), or, with no team, a shared pool's
        (the admin's)."""
        async with self.db.transaction() as session:
            team_id = None
            if team is not None:
                team_id = (await team_named(session, who, team, Role.MAINTAINER)).id
                pool = None
            elif not who.is_admin:
                raise Forbidden("only the admin makes tokens for shared pools")
            elif pool == LOCAL_POOL:
                raise Conflict(_RESERVED)
            made = await hosts.add_token(session, team_id, pool, name, digest, who.display)
            target = team or f"pool {pool}"
            detail = {"id": str(made.id), "name": name}
            action = Action.HOST_TOKEN_CREATE
            await audit.record(session, team_id, who.display, action, target, detail)
        return made

    async def local_token(self, name: str, digest: str) -> None:
        """The token of a coordinator's embedded agent (pool LOCAL_POOL), made at each
        start: the one made before under this name is revoked."""
        async with self.db.transaction() as session:
            await hosts.revoke_named(session, LOCAL_POOL, name, self.clock())
            await hosts.add_token(session, None, LOCAL_POOL, name, digest, "conveyor")

    async def tokens(self, who: Principal) -> list[HostTokenRecord]:
        async with self.db.transaction() as session:
            return await hosts.tokens(session, _teams_of(who))

    async def revoke_token(self, who: Principal, token_id: uuid.UUID) -> HostTokenRecord:
        """Revoke it: every host that joined with it is refused at its agent's next call."""
        async with self.db.transaction() as session:
            found = await hosts.token_by_id(session, token_id)
            if found is None or not _may_see(who, found.team_id):
                raise NotFound(f"no host token {token_id}")
            _require(who, found.team_id, Role.MAINTAINER)
            if not await hosts.revoke_token(session, token_id, self.clock()):
                raise Conflict(f"host token {token_id} is revoked already")
            target = f"pool {found.pool}" if found.pool else found.name
            detail = {"id": str(token_id), "name": found.name}
            await audit.record(
                session, found.team_id, who.display, Action.HOST_TOKEN_REVOKE, target, detail
            )
            again = await hosts.token_by_id(session, token_id)
        assert again is not None
        return again

    # -- agents --------------------------------------------------------------------------

    async def join(self, digest: str, body: Join) -> Joined:
        """An agent registers its host: a new host, or the same one with a raised fence."""
        if body.protocol != PROTOCOL:  # the body fits; the peer is of another release
            raise Conflict(
                f"this coordinator speaks agent protocol {PROTOCOL}, the agent {body.protocol}: "
                "install the agent of the coordinator's release",
                code="protocol_mismatch",
            )
        joining = Joining(
            name=body.name,
            address=body.address,
            labels=dict(body.labels),
            slots=body.slots,
            memory=body.memory,
            router=body.router,
            version=body.version,
        )
        metrics.agent_calls.labels("join").inc()
        async with self.db.transaction() as session:
            grant = await hosts.token(session, digest)
            if grant is None or grant.revoked_at is not None:
                raise Unauthenticated("unknown or revoked host token")
            host, new = await hosts.register(session, grant, joining, self.lease_s, self.clock())
            await _tell(session, types.HOST_JOINED, host, rejoined=not new)
        log.info(
            "host %s %s (%s, fence %d)",
            host.name,
            "joined" if new else "joined again",
            host.address,
            host.fence,
        )
        self.poke(host.id)  # an agent of an older fence that waits here hears of it
        if self.routers is not None and host.router:
            self.routers.forget_teams()  # which teams have router hosts may have changed
        return Joined(
            host_id=host.id,
            fence=host.fence,
            generation=host.generation,
            lease_s=self.lease_s,
            poll_s=self.poll_s,
        )

    async def desired(
        self, digest: str, host_id: uuid.UUID, fence: int, generation: int, wait: float
    ) -> Desired:
        """What the host should run. Renews its lease (one statement while nothing
        changes); waits up to `wait` (at most `poll_s`) for a generation other than the
        agent's `generation`."""
        metrics.agent_calls.labels("desired").inc()
        wait = min(wait, self.poll_s)
        lease = await self._renew(digest, host_id, fence)
        if lease.generation == generation and wait > 0:
            event = self.wakeups.setdefault(host_id, asyncio.Event())
            if await event_or_timeout(event, wait):
                event.clear()
                lease = await self._renew(digest, host_id, fence)
        instances = held = tasks = None
        if lease.generation != generation:
            async with self.db.transaction() as session:
                rows = await hosts.desired_instances(session, host_id)
                tasks = [task_of(d) for d in await deployments.tasks_on(session, host_id)]
                if lease.router:
                    host = await hosts.host(session, host_id)
                    assert host is not None
                    teams = await hosts.served_teams(session, host)
                    held = [desired_route(r) for r in await route_rows.for_host(session, teams)]
            instances = [wanted for row in rows if (wanted := desired_of(row)) is not None]
        return Desired(
            host_id=host_id,
            fence=fence,
            generation=lease.generation,
            draining=lease.draining,
            instances=instances,
            routes=held,
            tasks=tasks,
        )

    async def report(self, digest: str, host_id: uuid.UUID, body: Report) -> None:
        """Keep what the agent sees of its host's instances; renews the lease."""
        metrics.agent_calls.labels("report").inc()
        await self._renew(digest, host_id, body.fence)
        reports = {seen.id: seen.model_dump(mode="json", exclude={"id"}) for seen in body.instances}
        async with self.db.transaction() as session:
            await hosts.observed(session, host_id, reports, self.clock())
            if body.tasks:
                ended = {t.id: t.model_dump(mode="json", exclude={"id"}) for t in body.tasks}
                await deployments.task_ended(session, host_id, ended)
            if body.routes is not None:
                routing = {r.key: r.model_dump(mode="json", exclude={"key"}) for r in body.routes}
                await route_rows.held(session, host_id, routing)
            await route_rows.add_samples(
                session,
                host_id,
                [
                    route_rows.Sample(
                        s.key, s.side, s.preview, s.second, dict(s.statuses), dict(s.latency)
                    )
                    for s in body.served
                ],
            )
        if body.routes is not None and self.routers is not None:
            self.routers.heard()

    async def _renew(self, digest: str, host_id: uuid.UUID, fence: int) -> hosts.Lease:
        async with self.db.transaction() as session:
            lease = await hosts.renew(session, host_id, fence, digest, self.lease_s, self.clock())
            if lease is not None:
                return lease
            raise await _refused(session, host_id, fence, digest)

    async def artifact(
        self, digest: str, host_id: uuid.UUID, fence: int, artifact: str
    ) -> tuple[ArtifactRecord, str]:
        """The artifact `artifact` (a digest) for the host's agent to fetch, if it is one
        of a team the host serves; with that team's name (downloads are counted by it)."""
        async with self.db.transaction() as session:
            host = await hosts.held(session, host_id, fence, digest)
            if host is None:
                raise await _refused(session, host_id, fence, digest)
            found = await hosts.artifact_for(session, host, artifact)
            if found is None:
                raise NotFound(f"no artifact {artifact} of a team this host serves")
            team = await names.team(session, found.team_id)
        return found, team

    def poke(self, host_id: uuid.UUID) -> None:
        """An agent of this host waiting on this replica polls again now."""
        event = self.wakeups.get(host_id)
        if event is not None:
            event.set()

    async def sweep(self) -> list[HostRecord]:
        """Hosts whose lease ran out become lost (their agents are fenced); draining
        hosts that run nothing any more are told of as drained."""
        async with self.db.transaction() as session:
            now = self.clock()
            lost = await hosts.sweep(session, now)
            for host in lost:
                await _tell(session, types.HOST_LOST, host)
            for host in await hosts.drained(session, now):
                log.info("host %s drained: it runs nothing any more", host.name)
                await _tell(session, types.HOST_DRAINED, host)
        for host in lost:
            log.warning("host %s lost: its agent's lease ran out", host.name)
            metrics.hosts_lost.inc()
            self.poke(host.id)
        if self.routers is not None and time.monotonic() - self._pruned_at >= PRUNE_S:
            self._pruned_at = time.monotonic()
            await self.routers.prune()
        return lost

    # -- people's commands ---------------------------------------------------------------

    async def hosts(self, who: Principal) -> list[HostRecord]:
        async with self.db.transaction() as session:
            return await hosts.hosts(session, _teams_of(who))

    async def host(self, who: Principal, name: str) -> HostRecord:
        async with self.db.transaction() as session:
            return await _visible(session, who, name)

    async def drain(self, who: Principal, name: str, on: bool) -> HostRecord:
        """Drain a host (nothing new is placed on it; its instances move elsewhere) or
        stop draining it."""
        async with self.db.transaction() as session:
            found = await _visible(session, who, name)
            _require(who, found.team_id, Role.MAINTAINER)
            if await hosts.set_draining(session, found.id, on):
                action = Action.HOST_DRAIN if on else Action.HOST_UNDRAIN
                await audit.record(session, found.team_id, who.display, action, name, {})
            changed = await hosts.host(session, found.id)
        assert changed is not None
        self.poke(found.id)
        return changed

    async def remove(self, who: Principal, name: str) -> None:
        """Forget a host that is lost or drained (an up host's agent would join again)."""
        async with self.db.transaction() as session:
            found = await _visible(session, who, name)
            _require(who, found.team_id, Role.MAINTAINER)
            if found.status is HostState.UP:
                raise Conflict(
                    f"host {name} is up: drain it first (conveyor host drain {name}), "
                    "or stop its agent"
                )
            await hosts.remove(session, found.id)
            await audit.record(session, found.team_id, who.display, Action.HOST_REMOVE, name, {})
        self.poke(found.id)

    async def hosts_out(self, who: Principal) -> list[HostOut]:
        """The hosts the caller sees, as the API and the UI show them."""
        return [await self.host_out(host) for host in await self.hosts(who)]

    async def host_out(self, host: HostRecord) -> HostOut:
        async with self.db.transaction() as session:
            team = await names.team(session, host.team_id) if host.team_id else None
        return HostOut(
            name=host.name,
            team=team,
            pool=host.pool,
            address=host.address,
            labels={str(k): str(v) for k, v in host.labels.items()},
            slots=host.slots,
            memory=host.memory,
            router=host.router,
            state=host.status.value,
            version=host.version,
            seen_at=iso(host.seen_at) or "",
            lease_until=iso(host.lease_until) or "",
            registered_at=iso(host.registered_at) or "",
        )

    async def token_out(self, made: HostTokenRecord) -> HostTokenOut:
        async with self.db.transaction() as session:
            team = await names.team(session, made.team_id) if made.team_id else None
        return HostTokenOut(
            id=made.id,
            name=made.name,
            team=team,
            pool=made.pool,
            created_by=made.created_by,
            created_at=iso(made.created_at) or "",
            revoked_at=iso(made.revoked_at),
        )

    async def share_pool(self, who: Principal, pool: str, team: str, on: bool) -> None:
        """Open a shared pool to a team (or close it): the admin's."""
        if not who.is_admin:
            raise Forbidden("only the admin shares pools")
        if pool == LOCAL_POOL:
            raise Conflict(_RESERVED)
        async with self.db.transaction() as session:
            found = await team_named(session, who, team, Role.VIEWER)
            if on:
                await hosts.share_pool(session, pool, found.id)
            elif not await hosts.unshare_pool(session, pool, found.id):
                raise NotFound(f"pool {pool} is not shared with team {team}")
            action = Action.POOL_SHARE if on else Action.POOL_UNSHARE
            await audit.record(session, found.id, who.display, action, f"pool {pool}", {})


async def _refused(
    session: Session, host_id: uuid.UUID, fence: int, digest: str
) -> Unauthenticated | Fenced:
    """Why an agent's call is refused: its token (401), or a newer join of its host (409)."""
    if await hosts.why(session, host_id, fence, digest) == "revoked":
        return Unauthenticated("unknown or revoked host token, or no such host")
    return Fenced(
        "this host registered again since, or was found lost: the agent must join again",
        code="stale_fence",
    )


async def _tell(session: Session, event_type: str, host: HostRecord, **more: object) -> None:
    """A host event, to the teams the host serves (a coordinator's machine: the teams
    that run instances on it), in the change's transaction."""
    facts = HostFacts(
        id=host.id,
        name=host.name,
        address=host.address,
        pool=host.pool,
        labels=dict(host.labels),
        fence=host.fence,
    )
    await events.host_event(session, event_type, facts, await hosts.told(session, host), **more)


def desired_of(row: InstanceRecord) -> DesiredInstance | None:
    """What an agent runs for an instance placed on its host (None: not placed there by
    a launch, which does not happen for a placed instance)."""
    if row.launch is None:
        return None
    return DesiredInstance(
        id=row.id,
        digest=row.digest,
        command=str(row.launch["command"]),
        env=dict(row.launch.get("env", {})),
        port=row.port,
        incarnation=row.restarts,
        health=HealthProbe.model_validate(row.launch.get("health", {})),
        log_patterns=[str(p) for p in row.launch.get("log_patterns", [])],
    )


def task_of(row: DeploymentRecord) -> DesiredTask:
    """The deployment's pre_deploy commands, as the host's agent runs them."""
    runtime = row.runtime
    commands = [
        (str(c["command"]), float(c.get("timeout", 60.0))) for c in runtime.get("pre_deploy", [])
    ]
    env = {str(k): str(v) for k, v in dict(runtime.get("env", {})).items()}
    return DesiredTask(id=row.id, digest=row.digest, commands=commands, env=env)


def _teams_of(who: Principal) -> list[uuid.UUID] | None:
    """The teams whose hosts the caller sees (None: every team, the admin)."""
    if who.is_admin:
        return None
    return [who.team_id] if who.team_id is not None and who.runner is None else []


def _may_see(who: Principal, team_id: uuid.UUID | None) -> bool:
    return who.is_admin or (team_id is not None and who.can_see(team_id))


def _require(who: Principal, team_id: uuid.UUID | None, role: Role) -> None:
    """A team's host or token: the role in that team; a pool's: the admin."""
    if team_id is None:
        if not who.is_admin:
            raise Forbidden("only the admin manages shared pools' hosts and tokens")
        return
    who.require(team_id, role, "host")


async def _visible(session: Session, who: Principal, name: str) -> HostRecord:
    """The host called `name` if the caller sees it (a pool's host: when shared)."""
    found = await hosts.host_named(session, name)
    if found is not None and who.is_admin:
        return found
    if found is not None and who.runner is None and who.team_id is not None:
        if found.team_id == who.team_id:
            return found
        if found.pool is not None and await hosts.shared_with(session, found.pool, who.team_id):
            return found
    raise NotFound(f"no host {name!r}")
