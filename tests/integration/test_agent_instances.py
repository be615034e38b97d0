"""A real `conveyor agent` runs the instances placed on its host: it fetches the artifact
by digest from a real `conveyor serve`, starts the service, reports it running and
healthy, adopts it after its own kill -9, restarts it when its incarnation is raised,
and stops it when it is no longer wanted. The instance rows are written here as the
deployment manager will write them (decision 0027), in an environment the coordinator's
own manager does not drive."""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from conveyor.domain.deploy import InstanceState
from conveyor.hosting.haproxy import HAProxyRouter
from conveyor.hosting.processes import stop_everything
from conveyor.storage import hosts
from conveyor.storage.database import Database, database_url
from conveyor.storage.tables import Environment, Instance
from tests.deploy.conftest import service_dir
from tests.helpers import ADMIN, agent_args, alive, cli, free_port, process, wait_until
from tests.integration.conftest import serving


@pytest.fixture
def fleet_server(tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    with serving(tmp_path, {"CONVEYOR_HOST_LEASE_SECONDS": "6"}) as running:
        yield running
    stop_everything(tmp_path / "agent" / "agent" / "host")
    # Whatever the coordinator's router started outlives it on purpose (`conveyor down`).
    asyncio.run(HAProxyRouter(tmp_path / "server" / "deploy" / "router").stop())


def _admin(url: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {ADMIN}"}
    return httpx.request(method, url + path, headers=headers, timeout=10, **kwargs)


def _run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


async def _place(data: Path, host_name: str, digest: str, port: int) -> uuid.UUID:
    """An instance of `digest` on the host, as the manager places one."""
    db = Database(database_url(data))
    try:
        async with db.transaction() as session:
            host = await hosts.host_named(session, host_name)
            assert host is not None and host.team_id is not None
            env = Environment(
                team_id=host.team_id,
                project_id=await _project(session),
                name="fleet",
                target="unmanaged",  # no replica's deployment manager drives it
                port=free_port(),
                preview_port=free_port(),
            )
            session.add(env)
            await session.flush()
            instance = Instance(
                environment_id=env.id,
                revision=1,
                digest=digest,
                slot="a",
                server="i1",
                port=port,
                host_id=host.id,
                launch={
                    "command": "python3 -m payments.app --port $PORT",
                    "env": {"PAYMENTS_VERSION": "v1"},
                    "health": {"path": "/healthz", "timeout": 2.0},
                    "log_patterns": ["listening on", "Traceback"],
                },
            )
            session.add(instance)
            await session.flush()
            await hosts.changed(session, [host.id])
            return instance.id
    finally:
        await db.dispose()


async def _project(session: Any) -> uuid.UUID:
    from sqlalchemy import select

    from conveyor.storage.tables import Project

    found = await session.scalar(select(Project.id).where(Project.name == "pay"))
    assert found is not None
    return uuid.UUID(str(found))


async def _change(data: Path, instance_id: uuid.UUID, **values: Any) -> dict[str, Any] | None:
    """Change the instance's row (and raise its host's generation); its last report."""
    db = Database(database_url(data))
    try:
        async with db.transaction() as session:
            row = await session.get(Instance, instance_id, populate_existing=True)
            assert row is not None
            for name, value in values.items():
                setattr(row, name, value)
            if values and row.host_id is not None:
                await hosts.changed(session, [row.host_id])
            return dict(row.observed) if row.observed else None
    finally:
        await db.dispose()


def _observed(data: Path, instance_id: uuid.UUID) -> dict[str, Any] | None:
    return _run(_change(data, instance_id))  # type: ignore[no-any-return]


def _serves(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_an_agent_runs_adopts_restarts_and_stops_the_instances_placed_on_its_host(
    fleet_server: tuple[str, dict[str, str]], tmp_path: Path
):
    url, env = fleet_server
    data = tmp_path / "server"
    assert _admin(url, "POST", "/api/v1/teams", json={"name": "a"}).status_code == 201
    project = {"team": "a", "name": "pay", "repo_url": f"file://{tmp_path}/nowhere"}
    assert _admin(url, "POST", "/api/v1/projects", json=project).status_code == 201
    digest = cli(env, "artifacts", "upload", "a/pay", str(service_dir(tmp_path, "v1"))).split()[-1]
    token = cli(env, "host-token", "create", "--team", "a")
    args = agent_args(url, token, "web-1", "127.0.0.1", tmp_path / "agent")
    port = free_port()
    with process(args, tmp_path / "agent-1.log", env) as agent:
        wait_until(lambda: _admin(url, "GET", "/api/v1/hosts/web-1").status_code == 200, 20, "join")
        instance = _run(_place(data, "web-1", digest, port))
        wait_until(lambda: _serves(port), 30, "the instance to serve")
        seen = wait_until(
            lambda: (o := _observed(data, instance)) and o["healthy"] and o, 20, "a report"
        )
        assert seen["running"] is True and seen["incarnation"] == 0 and seen["rss"] > 0
        # Its output lines are counted, and those of the patterns it was given.
        counted = wait_until(
            lambda: (o := _observed(data, instance))["log_lines"] and o, 20, "counted lines"
        )
        assert counted["log_matches"] == {"listening on": 1, "Traceback": 0}
        first_pid = seen["pid"]
        assert alive(first_pid)
        agent.send_signal(signal.SIGKILL)
        agent.wait()
    assert _serves(port), "the instance outlives its agent"
    with process(args, tmp_path / "agent-2.log", env):
        wait_until(lambda: "adopted" in (tmp_path / "agent-2.log").read_text(), 20, "the adoption")
        assert _observed(data, instance)["pid"] == first_pid  # type: ignore[index]
        # A restart the coordinator asks for: the incarnation goes up, a new process runs.
        _run(_change(data, instance, restarts=1))
        again = wait_until(
            lambda: (
                (o := _observed(data, instance)) and o["incarnation"] == 1 and o["healthy"] and o
            ),
            30,
            "the restarted instance",
        )
        assert again["pid"] != first_pid and not alive(first_pid)
        # No longer wanted: stopped.
        _run(_change(data, instance, state=InstanceState.STOPPED.value))
        wait_until(lambda: not alive(again["pid"]), 20, "the instance to stop")
        assert not _serves(port)
    assert os.path.isdir(tmp_path / "agent" / "agent" / "artifacts")
