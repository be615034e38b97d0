"""Routes held by router hosts, on SQLite and PostgreSQL: a route is stored with a
version that raises every router host's generation; a router host's long poll carries
every route of the teams it serves; a server is healthy only when every router that is
up has it healthy; `apply` returns once every router that is up holds the new version
and names those that do not; a lost router counts for nothing; the requests routers
report per second come back for an analysis window, a lag behind. The merge of the
routers' views and the latency histogram are unit-tested here too."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from sqlalchemy import update

from conveyor.deploy import routers as routers_module
from conveyor.deploy.fleet import Fleet
from conveyor.deploy.routers import SAMPLE_LAG_S, HostRouters, Routers, merge, spec_of
from conveyor.domain.traffic import bucket_ms, latency_bucket
from conveyor.hosting.memory_router import MemoryRouter
from conveyor.hosting.routing import HealthCheck, Route, RouterError, Server, ServerStatus
from conveyor.protocol.agent import Join, ObservedRoute, ObservedServer, Report, ServedSecond
from conveyor.storage import hosts
from conveyor.storage.database import Database
from conveyor.storage.tables import Host, Team

DIGEST = "d" * 64


def status(name: str, state: str = "UP", check: str = "L7OK", weight: int = 256, **more: int):
    return ServerStatus(name, "be_e1_a", state, check, weight, more.get("sessions", 0), 0, 0, 0)


def test_a_server_is_healthy_only_where_every_router_has_it_up():
    assert merge([status("s"), status("s")]).healthy
    assert merge([status("s"), status("s", weight=0)]).weight == 0  # not serving yet
    one_behind = merge([status("s"), None])  # a router does not hold it yet
    assert not one_behind.healthy and one_behind.takes_traffic  # the other may send it some
    down_on_one = merge([status("s"), status("s", "DOWN", "L4CON")])
    assert not down_on_one.healthy and not down_on_one.status.startswith("DOWN")
    down = merge([status("s", "DOWN", "L4CON"), status("s", "DOWN", "L7STS")])
    assert down.status == "DOWN" and not down.healthy
    drained = merge([status("s", "DRAIN", weight=0), status("s", "DRAIN", weight=0, sessions=2)])
    assert drained.status == "DRAIN" and drained.sessions == 2 and drained.takes_traffic
    gone = merge([status("s", "MAINT", "", weight=0), None])
    assert gone.status == "MAINT" and not gone.takes_traffic


def test_latency_buckets_overstate_by_at_most_a_tenth():
    for ms in (0.2, 1.0, 3.7, 54.0, 180.0, 999.9, 12_345.0):
        upper = bucket_ms(latency_bucket(ms))
        assert ms <= upper <= max(ms * 1.1, 1.0) + 1e-9, ms
    assert latency_bucket(0.5) == 0 and bucket_ms(0) == 1.0


def route(team: uuid.UUID, share_b: int = 0, *servers: Server) -> Route:
    return Route(
        key="e1",
        port=24001,
        preview_port=24002,
        health=HealthCheck(),
        canary_slot="b",
        share_b=share_b,
        servers={"a": servers, "b": ()},
        team=team,
    )


async def _fleet(database: Database) -> tuple[uuid.UUID, Fleet, HostRouters, list[uuid.UUID]]:
    async with database.transaction() as session:
        pay = Team(name="pay")
        session.add(pay)
        await session.flush()
        team_id = pay.id
        await hosts.add_token(session, team_id, None, "fleet", DIGEST, "alice")
    routers = HostRouters(database)
    fleet = Fleet(database, routers=routers)
    joined = []
    for n in (1, 2):
        body = Join(name=f"r{n}", address=f"10.77.0.{n}", router=True)
        joined.append((await fleet.join(DIGEST, body)).host_id)
    return team_id, fleet, routers, joined


async def _holds(fleet: Fleet, host_id: uuid.UUID, version: int, *servers: str) -> None:
    seen = [
        ObservedServer(name=s, backend="be_e1_a", status="UP", check="L7OK", weight=256)
        for s in servers
    ]
    async with fleet.db.transaction() as session:
        fence = (await hosts.host(session, host_id)).fence  # type: ignore[union-attr]
    body = Report(
        fence=fence, generation=0, routes=[ObservedRoute(key="e1", version=version, servers=seen)]
    )
    await fleet.report(DIGEST, host_id, body)


async def test_router_hosts_hold_a_route_every_one_of_them_confirms(
    database: Database, monkeypatch: pytest.MonkeyPatch
):
    team, fleet, routers, (r1, r2) = await _fleet(database)
    assert await routers.teams() == {team}
    assert await routers.addresses(team) == ["10.77.0.1", "10.77.0.2"]
    s1 = Server("s1", 20001, 256, address="10.77.0.11")

    # Stored, not waited for: the routers' long polls answer with it.
    await routers.apply(route(team, 0, s1), confirm=False)
    wanted = await fleet.desired(DIGEST, r1, 1, 1, 0)
    (held,) = wanted.routes or []
    assert held.version == 1 and held.servers["a"][0].address == "10.77.0.11"
    assert held.model_dump(exclude={"version"}) == spec_of(route(team, 0, s1))
    again = await fleet.desired(DIGEST, r1, 1, wanted.generation, 0)
    assert again.routes is None  # nothing changed since

    # Healthy only once both routers have it up.
    await _holds(fleet, r1, 1, "s1")
    assert not (await routers.status("e1"))["s1"].healthy
    await _holds(fleet, r2, 1, "s1")
    assert (await routers.status("e1"))["s1"].healthy

    # A new version counts as applied when both report it: apply waits for them.
    waiting = asyncio.ensure_future(routers.apply(route(team, 2500, s1)))
    await asyncio.sleep(0.1)
    assert not waiting.done()
    await _holds(fleet, r1, 2, "s1")
    await asyncio.sleep(0.1)
    assert not waiting.done()
    await _holds(fleet, r2, 2, "s1")
    await asyncio.wait_for(waiting, 5)

    # A router that never confirms is named.
    monkeypatch.setattr(routers_module, "CONFIRM_S", 0.3)
    await _holds(fleet, r1, 3, "s1")  # ahead of the change below, as if it were quick
    with pytest.raises(RouterError, match="r2 have not taken version 3"):
        await routers.apply(route(team, 5000, s1))
    async with fleet.db.transaction() as session:
        fence = (await hosts.host(session, r2)).fence  # type: ignore[union-attr]
    taken = ObservedRoute(key="e1", version=2, problem="port 24001 is taken")
    await fleet.report(DIGEST, r2, Report(fence=fence, generation=0, routes=[taken]))
    with pytest.raises(RouterError, match=r"r2 \(port 24001 is taken\) have not taken"):
        await routers.apply(route(team, 5000, s1))

    # A lost router counts for nothing: the other one's view is the status.
    async with database.transaction() as session:
        await session.execute(update(Host).where(Host.id == r2).values(state="lost"))
    assert (await routers.status("e1"))["s1"].healthy
    assert await routers.addresses(team) == ["10.77.0.1"]
    await routers.apply(route(team, 5000, s1))  # r1 holds version 3 already
    # r2 joins again: it counts once it has re-synced, not on what it held before.
    await fleet.join(DIGEST, Join(name="r2", address="10.77.0.2", router=True))
    assert not (await routers.status("e1"))["s1"].healthy
    await _holds(fleet, r2, 3, "s1")
    assert (await routers.status("e1"))["s1"].healthy


async def test_requests_routers_report_are_read_a_lag_behind(database: Database):
    team, fleet, routers, (r1, r2) = await _fleet(database)
    await routers.apply(route(team), confirm=False)
    now = int(time.time())
    for host_id, code in ((r1, "200"), (r2, "503")):
        async with database.transaction() as session:
            fence = (await hosts.host(session, host_id)).fence  # type: ignore[union-attr]
        served = [
            ServedSecond(
                key="e1",
                side="a",
                second=now - 5,
                statuses={code: 3},
                latency={str(latency_bucket(40.0)): 3},
            ),
            ServedSecond(key="e1", side="a", second=now - 1, statuses={code: 1}, latency={"0": 1}),
            ServedSecond(
                key="e1",
                side="b",
                preview=True,
                second=now - 5,
                statuses={"200": 2},
                latency={"0": 2},
            ),
        ]
        await fleet.report(DIGEST, host_id, Report(fence=fence, generation=0, served=served))
    start = now - 5 + SAMPLE_LAG_S
    window = await routers.served("e1", "a", start, start + 1)
    assert sorted(s.status for s in window) == [200, 200, 200, 503, 503, 503]
    assert sorted((s.router, s.status) for s in window)[::3] == [("r1", 200), ("r2", 503)]
    assert all(40.0 <= s.ms <= 44.0 and s.at == now - 5 + 0.5 for s in window)
    preview = await routers.served("e1", "b", start, start + 1)
    assert [s.preview for s in preview] == [True] * 4
    assert len(await routers.served("e1", "a", start + 1, start + 5)) == 2


async def test_the_managers_router_sends_each_route_where_it_is_held(database: Database):
    team, fleet, routers, (r1, _) = await _fleet(database)
    local = MemoryRouter(lambda port: True)
    both = Routers(local, routers)
    here = Route("e9", 24003, 24004, HealthCheck(), "b", 0)
    await both.sync([route(team), here])
    assert set(local.routes) == {"e9"} and both.running()
    assert (await fleet.desired(DIGEST, r1, 1, 0, 0)).routes[0].key == "e1"  # type: ignore[index]
    # The team's router hosts are removed: the route moves to the coordinator's router,
    # which is written again before the next pass counts on it.
    await both.apply(Route("e1", 24001, 24002, HealthCheck(), "b", 0))
    assert not both.running()
    await both.sync([Route("e1", 24001, 24002, HealthCheck(), "b", 0), here])
    assert set(local.routes) == {"e1", "e9"} and both.running()
    await local.stop()
