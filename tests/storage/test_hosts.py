"""Hosts and host tokens on SQLite and PostgreSQL: registration raises the fence, a lease
is renewed by one statement that also checks the token, the sweep marks hosts lost and
fences their agents, and teams see their own hosts and the pools shared with them."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from conveyor.domain.errors import Conflict
from conveyor.domain.events import HOST_LOST
from conveyor.domain.hosts import HostState
from conveyor.storage import events, hosts
from conveyor.storage.database import Database
from conveyor.storage.events import HostFacts
from conveyor.storage.hosts import HostTokenRecord, Joining
from conveyor.storage.tables import Project, Team

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
LEASE_S = 15.0


def joining(name: str = "h1", **changes: object) -> Joining:
    values: dict[str, object] = {
        "name": name,
        "address": "10.77.0.11",
        "labels": {"zone": "a"},
        "slots": 8,
        "memory": 4 * 2**30,
        "router": False,
        "version": "0.1.0",
    }
    return Joining(**(values | changes))  # type: ignore[arg-type]


async def _teams(database: Database) -> tuple[uuid.UUID, uuid.UUID]:
    async with database.transaction() as session:
        pay, web = Team(name="pay"), Team(name="web")
        session.add_all([pay, web])
        await session.flush()
        return pay.id, web.id


async def _token(
    database: Database, team_id: uuid.UUID | None, digest: str, pool: str | None = None
) -> HostTokenRecord:
    async with database.transaction() as session:
        return await hosts.add_token(session, team_id, pool, "fleet", digest, "alice")


async def test_registering_again_raises_the_fence_and_renewal_checks_it(database: Database):
    pay, _ = await _teams(database)
    grant = await _token(database, pay, "a" * 64)
    async with database.transaction() as session:
        first, new = await hosts.register(session, grant, joining(), LEASE_S, NOW)
    assert new and first.fence == 1 and first.status is HostState.UP
    assert first.lease_until == NOW + timedelta(seconds=LEASE_S)
    async with database.transaction() as session:
        lease = await hosts.renew(
            session, first.id, 1, "a" * 64, LEASE_S, NOW + timedelta(seconds=5)
        )
    assert lease == hosts.Lease(first.generation, draining=False, router=False)
    async with database.transaction() as session:
        again, new = await hosts.register(
            session, grant, joining(address="10.77.0.12"), LEASE_S, NOW + timedelta(seconds=6)
        )
    assert not new and again.id == first.id and again.fence == 2
    assert again.address == "10.77.0.12" and again.generation == first.generation + 1
    async with database.transaction() as session:
        assert await hosts.renew(session, first.id, 1, "a" * 64, LEASE_S, NOW) is None
        assert await hosts.why(session, first.id, 1, "a" * 64) == "fenced"
        assert await hosts.renew(session, first.id, 2, "a" * 64, LEASE_S, NOW) is not None


async def test_a_revoked_token_stops_renewal(database: Database):
    pay, _ = await _teams(database)
    grant = await _token(database, pay, "b" * 64)
    async with database.transaction() as session:
        host, _ = await hosts.register(session, grant, joining(), LEASE_S, NOW)
        assert await hosts.revoke_token(session, grant.id, NOW)
        assert not await hosts.revoke_token(session, grant.id, NOW), "once"
    async with database.transaction() as session:
        assert await hosts.renew(session, host.id, host.fence, "b" * 64, LEASE_S, NOW) is None
        assert await hosts.why(session, host.id, host.fence, "b" * 64) == "revoked"
        assert await hosts.why(session, host.id, host.fence, "c" * 64) == "revoked"


async def test_another_teams_host_name_is_refused(database: Database):
    pay, web = await _teams(database)
    ours, theirs = await _token(database, pay, "d" * 64), await _token(database, web, "e" * 64)
    async with database.transaction() as session:
        await hosts.register(session, ours, joining(), LEASE_S, NOW)
    with pytest.raises(Conflict, match="registered by another team or pool"):
        async with database.transaction() as session:
            await hosts.register(session, theirs, joining(), LEASE_S, NOW)
    async with database.transaction() as session:
        found = await hosts.host_named(session, "h1")
    assert found is not None and found.team_id == pay and found.fence == 1


async def test_the_sweep_marks_hosts_lost_and_fences_their_agents(database: Database):
    pay, _ = await _teams(database)
    grant = await _token(database, pay, "f" * 64)
    async with database.transaction() as session:
        h1, _ = await hosts.register(session, grant, joining("h1"), LEASE_S, NOW)
        h2, _ = await hosts.register(
            session, grant, joining("h2"), LEASE_S, NOW + timedelta(seconds=10)
        )
    async with database.transaction() as session:
        lost = await hosts.sweep(session, NOW + timedelta(seconds=LEASE_S + 1))
    assert [h.name for h in lost] == ["h1"]
    assert lost[0].status is HostState.LOST and lost[0].fence == h1.fence + 1
    async with database.transaction() as session:
        assert await hosts.sweep(session, NOW + timedelta(seconds=LEASE_S + 1)) == []
        late = NOW + timedelta(seconds=LEASE_S + 2)
        assert await hosts.renew(session, h1.id, h1.fence, "f" * 64, LEASE_S, late) is None
        assert await hosts.renew(session, h2.id, h2.fence, "f" * 64, LEASE_S, late) is not None
        back, new = await hosts.register(session, grant, joining("h1"), LEASE_S, late)
    assert not new and back.status is HostState.UP and back.fence == h1.fence + 2


async def test_teams_see_their_hosts_and_shared_pools_and_drains_raise_the_generation(
    database: Database,
):
    pay, web = await _teams(database)
    ours = await _token(database, pay, "1" * 64)
    pool = await _token(database, None, "2" * 64, pool="shared")
    async with database.transaction() as session:
        await hosts.register(session, ours, joining("p1"), LEASE_S, NOW)
        shared, _ = await hosts.register(session, pool, joining("s1"), LEASE_S, NOW)
        assert [h.name for h in await hosts.hosts(session, [web])] == []
        assert [h.name for h in await hosts.hosts(session, [pay])] == ["p1"]
        await hosts.share_pool(session, "shared", web)
        await hosts.share_pool(session, "shared", web)  # once
        assert [h.name for h in await hosts.hosts(session, [web])] == ["s1"]
        assert [h.name for h in await hosts.hosts(session, None)] == ["p1", "s1"]
        assert await hosts.set_draining(session, shared.id, True)
        assert not await hosts.set_draining(session, shared.id, True)
        drained = await hosts.host(session, shared.id)
        assert drained is not None and drained.status is HostState.DRAINING
        assert drained.generation == shared.generation + 1
        assert await hosts.unshare_pool(session, "shared", web)
        assert [h.name for h in await hosts.hosts(session, [web])] == []
        listed = await hosts.tokens(session, [pay])
        assert [t.id for t in listed] == [ours.id]
        await hosts.remove(session, shared.id)
        assert await hosts.host_named(session, "s1") is None


async def test_host_events_reach_the_served_teams_projects_that_ask_for_them(database: Database):
    pay, web = await _teams(database)
    async with database.transaction() as session:
        api = Project(team_id=pay, name="api", repo_url="file:///api")
        site = Project(team_id=web, name="site", repo_url="file:///site")
        session.add_all([api, site])
        await session.flush()
        subs = {}
        for name, project, team, wanted in (
            ("hosts", api, pay, ["host.*"]),
            ("deploys", api, pay, ["deployment.*"]),
            ("all-of-web", site, web, ["*"]),
        ):
            sub = await events.add_subscription(
                session,
                team_id=team,
                project_id=project.id,
                url=f"http://127.0.0.1:9/{name}",
                events=wanted,
                form="standard",
                secret=b"s",
                created_by="alice",
                subscription_id=uuid.uuid4(),
            )
            subs[sub.id] = name
        api_id, site_id = api.id, site.id
    grant = await _token(database, pay, "e" * 64)
    async with database.transaction() as session:
        host, _ = await hosts.register(session, grant, joining(), LEASE_S, NOW)
        facts = HostFacts(host.id, host.name, host.address, host.pool, host.labels, host.fence)
        served = await hosts.served_teams(session, host)
        await events.host_event(session, HOST_LOST, facts, served)
    assert served == [pay]
    async with database.transaction() as session:
        assert await events.fan_out(session, 100, skip_locked=False) == 1
        due = await events.claim_deliveries(session, 100, skip_locked=False)
        heard = [await events.delivery(session, d) for d in due]
        # The team's project sees its fleet's events among its own; the other team's not.
        (told,) = await events.latest(session, pay, api_id, 10)
        assert await events.latest(session, web, site_id, 10) == []
    assert [subs[sub.id] for d in heard if d is not None for sub in d[1:]] == ["hosts"]
    assert (told.type, told.project_id, told.subject) == ("host.lost", None, f"hosts/{host.id}")
    assert told.data == {
        "team": "pay",
        "host": {
            "id": str(host.id),
            "name": "h1",
            "address": "10.77.0.11",
            "pool": None,
            "labels": {"zone": "a"},
            "fence": 1,
        },
    }


async def test_a_draining_host_that_runs_nothing_is_told_of_once_per_drain(database: Database):
    pay, _ = await _teams(database)
    grant = await _token(database, pay, "f" * 64)
    async with database.transaction() as session:
        host, _ = await hosts.register(session, grant, joining(), LEASE_S, NOW)
        assert await hosts.drained(session, NOW) == []  # not draining
        assert await hosts.set_draining(session, host.id, True)
    async with database.transaction() as session:
        (found,) = await hosts.drained(session, NOW)
        assert found.id == host.id
        assert await hosts.drained(session, NOW) == []
        assert await hosts.set_draining(session, host.id, False)
        assert await hosts.set_draining(session, host.id, True)
        assert [h.id for h in await hosts.drained(session, NOW)] == [host.id]
