"""The in-process deploy world: one project with one environment on real SQLite (or
PostgreSQL), a DeploymentManager over the shipped fakes (FakeTarget, MemoryRouter), and
passes taken one at a time."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from conveyor.artifacts.blobs import FileBlobStore
from conveyor.deploy import records, requests
from conveyor.deploy.manager import DeploymentManager
from conveyor.deploy.strategy import DeployStrategy
from conveyor.deploy.world import Act
from conveyor.domain.clock import utcnow
from conveyor.domain.deploy import Control, Phase
from conveyor.domain.policy import Decision
from conveyor.hosting.fake_target import FakeTarget
from conveyor.hosting.memory_router import MemoryRouter
from conveyor.pipeline.analysis import Template
from conveyor.storage import artifacts, deployments, environments
from conveyor.storage.artifacts import Provenance
from conveyor.storage.database import Database
from conveyor.storage.migrate import upgrade
from conveyor.storage.tables import Deployment, Environment, Project, Team

MAX_PASSES = 200


def runtime(replicas: int = 2, start_period: float = 0.0, **env: str) -> dict[str, Any]:
    return {
        "command": "serve --port $PORT",
        "replicas": replicas,
        "health": {
            "path": "/healthz",
            "interval": 1.0,
            "timeout": 2.0,
            "start_period": start_period,
            "failures": 2,
            "max_restarts": 2,
        },
        "drain": 0.0,
        "env": env,
    }


def with_pre_deploy(spec: dict[str, Any], *commands: str) -> dict[str, Any]:
    return spec | {"pre_deploy": [{"command": c, "timeout": 30.0} for c in commands]}


PASS_S = 0.025
"""How far a stopped clock moves per pass of the manager (about what a pass takes)."""


class WallClock:
    """The wall clock of a world's manager (its timing rules and analyses) and of its
    router's request log: real time until a test stops it, then only what the test
    moves it by, so that an analysis sees the same passes and requests however loaded
    the machine is."""

    def __init__(self) -> None:
        self.stopped_at: datetime | None = None

    def __call__(self) -> datetime:
        return self.stopped_at or utcnow()

    def timestamp(self) -> float:
        return self().timestamp()

    def stop(self) -> None:
        self.stopped_at = utcnow()

    def advance(self, seconds: float) -> None:
        assert self.stopped_at is not None, "a running clock moves by itself"
        self.stopped_at += timedelta(seconds=seconds)


@dataclass
class World:
    """One project with one environment, a manager over the fakes, and what it did."""

    db: Database
    blobs: FileBlobStore
    target: FakeTarget
    router: MemoryRouter
    project: Project
    clock: WallClock = field(default_factory=WallClock)
    env_id: Any = None
    acts: list[Act] = field(default_factory=list)
    versions: int = 0

    def tick(self) -> None:
        """A pass's worth of time, when the test stopped the clock."""
        if self.clock.stopped_at is not None:
            self.clock.advance(PASS_S)

    def manager(
        self,
        owner: str = "replica-a",
        lease_s: float = 30.0,
        clock: Callable[[], datetime] | None = None,
    ) -> DeploymentManager:
        return DeploymentManager(
            self.db,
            self.blobs,
            self.target,
            self.router,
            owner=owner,
            lease_s=lease_s,
            clock=clock or self.clock,
        )

    async def artifact(self) -> Any:
        """A new artifact (its content differs per call), stored and recorded."""
        self.versions += 1
        data = io.BytesIO()
        with tarfile.open(fileobj=data, mode="w") as tar:
            body = f"version {self.versions}\n".encode()
            info = tarfile.TarInfo("VERSION")
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))

        async def chunks():  # type: ignore[no-untyped-def]
            yield data.getvalue()

        blob = await self.blobs.put(chunks(), limit=1 << 20)
        async with self.db.transaction() as session:
            row, _ = await artifacts.record(
                session,
                self.project,
                "svc",
                blob.digest,
                blob.size,
                "application/x-tar",
                Provenance(uploaded_by="test"),
            )
        return row

    async def deploy(
        self,
        strategy: dict[str, Any],
        start_period: float = 0.0,
        templates: dict[str, Any] | None = None,
        pre_deploy: tuple[str, ...] = (),
        decision: Decision | None = None,
        requester: str | None = None,
        **env: str,
    ) -> Deployment:
        """Queue a deployment of a new artifact; `templates` are its conveyor.yml's
        analysis templates (as written there: `{name: {metrics: [...]}}`)."""
        artifact = await self.artifact()
        parsed = {
            name: Template.model_validate(body).model_dump(mode="json", by_alias=True)
            for name, body in (templates or {}).items()
        }
        run = with_pre_deploy(runtime(start_period=start_period, **env), *pre_deploy)
        spec = requests.ArtifactSpec(run, {}, parsed)
        async with self.db.transaction() as session:
            found = await requests.environment(session, self.project, "prod", (18001, 18002), run)
            made = await requests.deploy(
                session,
                found,
                artifact,
                spec,
                DeployStrategy.load(strategy),
                "test",
                decision=decision,
                requester=requester,
            )
        self.env_id = made.environment_id
        return made

    async def control(self, what: Control) -> Deployment:
        async with self.db.transaction() as session:
            env = await requests.find_environment(session, self.project, "prod")
            return await requests.command(session, env, what, "test")

    async def rollback(self, to: int | None = None) -> Deployment:
        async with self.db.transaction() as session:
            env = await requests.find_environment(session, self.project, "prod")
            return await requests.rollback(session, env, to, "test")

    async def traffic(self, requests_: int) -> list[int]:
        """Send requests through the split; the fake instances answer them."""
        env = await self.env()
        key = records.route_key(env)
        return [self.router.send(key, self.target.serve) for _ in range(requests_)]

    async def preview_traffic(self, requests_: int) -> list[int]:
        """Send requests to the preview (the canary slot, whatever the split)."""
        env = await self.env()
        key = records.route_key(env)
        side = "b" if env.stable_slot == "a" else "a"
        route = self.router.routes.get(key)
        servers = route.slot(side) if route is not None else ()
        out = []
        for i in range(requests_ if servers else 0):
            status, ms = self.target.serve(servers[i % len(servers)].port)
            self.router.record(key, side, status, ms, preview=True)
            out.append(status)
        return out

    async def env(self) -> Environment:
        async with self.db.transaction() as session:
            found = await deployments.environment(session, self.project.id, "prod")
        assert found is not None
        return found

    async def deployment(self, number: int) -> Deployment:
        async with self.db.transaction() as session:
            found = await deployments.numbered(session, self.env_id, number)
        assert found is not None
        return found

    async def drive(
        self,
        manager: DeploymentManager,
        fence: int,
        until: Phase | None = None,
        *,
        number: int = 1,
        check_traffic: bool = True,
    ) -> list[Act]:
        """Passes until deployment `number` reaches `until` (or a pass does nothing).
        After every pass that had a stable revision, a request in each slot's share
        must find a serving instance: no pass ever leaves the traffic without one."""
        taken: list[Act] = []
        for _ in range(MAX_PASSES):
            self.tick()
            action = await manager.reconcile(self.env_id, fence)
            if action is not None:
                taken.append(action.act)
            env = await self.env()
            if check_traffic and env.revision > 0:
                key = records.route_key(env)
                for draw in (0.0, 0.9999):
                    assert self.router.pick(key, draw) is not None, f"no server after {taken}"
            if until is not None and (await self.deployment(number)).phase == until.value:
                break
            if until is None and action is None:
                break
        else:  # pragma: no cover - a loop in the planner
            raise AssertionError(f"no end after {MAX_PASSES} passes: {taken[-20:]}")
        self.acts += taken
        return taken


class Clock:
    """The fake target's time, moved by the test."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def make_world(db: Database, tmp_path: Path) -> World:
    await upgrade(db)
    async with db.transaction() as session:
        team = Team(name="payments")
        session.add(team)
        await session.flush()
        project = Project(team_id=team.id, name="api", repo_url="file:///r")
        session.add(project)
    target = FakeTarget(tmp_path / "target", clock=Clock())
    wall = WallClock()
    return World(
        db,
        FileBlobStore(tmp_path / "blobs"),
        target,
        MemoryRouter(target.answers, clock=wall.timestamp),
        project,
        wall,
    )


async def claimed(manager: DeploymentManager, world: World) -> int:
    async with world.db.transaction() as session:
        free = await environments.claim_free(session, manager.owner, manager.lease_s)
    (fence,) = [f for env_id, f in free if env_id == world.env_id]
    return fence


ROLLING = {"kind": "rolling", "max_surge": 1, "max_unavailable": 0}


async def serving_v1(world: World) -> tuple[DeploymentManager, int]:
    """Given revision 1, rolled out by a manager that holds the environment."""
    await world.deploy(ROLLING)
    manager = world.manager()
    fence = await claimed(manager, world)
    await world.drive(manager, fence, Phase.SUCCEEDED)
    return manager, fence
