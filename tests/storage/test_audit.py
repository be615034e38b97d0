"""storage.audit on SQLite and PostgreSQL: entries chained per team in the caller's
transaction, concurrent appends that never fork a chain, a trigger that refuses UPDATE
and DELETE, and a tampered row found by recomputing the chain."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError

from conveyor.domain import audit as chain
from conveyor.domain.audit import Action
from conveyor.observability.logs import bound
from conveyor.storage import audit
from conveyor.storage.database import Database
from conveyor.storage.tables import AuditEntry, Team


async def _team(db: Database, name: str) -> uuid.UUID:
    async with db.transaction() as session:
        team = Team(name=name)
        session.add(team)
        await session.flush()
        return team.id


async def _verify(db: Database, chain_name: str) -> chain.Break | None:
    async with db.transaction() as session:
        found = await audit.page(session, chain_name, 0, 1000)
    return chain.verify([audit.hashed(e) for e in found.entries], found.head)


async def test_entries_chain_per_team_with_the_request_id(database: Database):
    pay, web = await _team(database, "pay"), await _team(database, "web")
    with bound(request_id="req-7"):
        async with database.transaction() as session:
            first = await audit.record(session, pay, "alice", Action.DEPLOY, "pay/api/prod#1")
            await audit.record(session, web, "bob", Action.SECRET_SET, "web/ui", {"name": "K"})
            second = await audit.record(session, pay, "alice", Action.ROLLBACK, "pay/api/prod#2")
    async with database.transaction() as session:
        await audit.record(session, None, "admin", Action.TEAM_CREATE, "ops", {})
    assert (first.seq, second.seq) == (1, 2)
    assert first.prev_hash == chain.GENESIS and second.prev_hash == first.hash
    async with database.transaction() as session:
        paid = await audit.page(session, audit.chain_of(pay))
        webbed = await audit.page(session, audit.chain_of(web))
        company = await audit.page(session, audit.COMPANY)
    assert [(e.seq, e.action, e.team, e.request_id) for e in paid.entries] == [
        (1, "deploy", "pay", "req-7"),
        (2, "rollback", "pay", "req-7"),
    ]
    assert paid.head == (2, second.hash)
    assert [(e.seq, e.detail) for e in webbed.entries] == [(1, {"name": "K"})]
    assert [(e.seq, e.team, e.request_id) for e in company.entries] == [(1, None, None)]
    for name in (audit.chain_of(pay), audit.chain_of(web), audit.COMPANY):
        assert await _verify(database, name) is None


async def test_a_failed_transaction_leaves_no_entry(database: Database):
    pay = await _team(database, "pay")
    with pytest.raises(RuntimeError):
        async with database.transaction() as session:
            await audit.record(session, pay, "alice", Action.DEPLOY, "pay/api/prod#1")
            raise RuntimeError("the change it records failed")
    async with database.transaction() as session:
        found = await audit.page(session, audit.chain_of(pay))
    assert found.entries == [] and found.head == (0, chain.GENESIS)


async def test_concurrent_appends_take_turns_and_never_fork(database: Database):
    pay = await _team(database, "pay")

    async def append(n: int) -> int:
        async with database.transaction() as session:
            made = await audit.record(session, pay, f"user-{n}", Action.CONTROL, "pay/api/prod")
            await asyncio.sleep(0.01)  # hold the head while others wait for it
            return made.seq

    seqs = await asyncio.gather(*(append(n) for n in range(20)))
    assert sorted(seqs) == list(range(1, 21))
    assert await _verify(database, audit.chain_of(pay)) is None


async def test_entries_are_append_only_and_a_tampered_row_is_named(database: Database):
    pay = await _team(database, "pay")
    async with database.transaction() as session:
        for n in range(1, 6):
            await audit.record(session, pay, "alice", Action.DEPLOY, f"pay/api/prod#{n}")
    async with database.transaction() as session:
        third = await session.scalar(select(AuditEntry.id).where(AuditEntry.seq == 3))
    for statement in (
        "UPDATE audit_entries SET actor = 'mallory'",
        "DELETE FROM audit_entries",
    ):
        with pytest.raises(DBAPIError, match="append-only"):
            async with database.transaction() as session:
                await session.execute(text(statement))
    # Someone with the database's keys drops the guard and rewrites who deployed #3.
    async with database.transaction() as session:
        if database.is_sqlite:
            await session.execute(text("DROP TRIGGER audit_append_only_update"))
        else:
            await session.execute(text("ALTER TABLE audit_entries DISABLE TRIGGER USER"))
        await session.execute(
            text("UPDATE audit_entries SET actor = 'mallory' WHERE seq = 3 AND chain = :c"),
            {"c": audit.chain_of(pay)},
        )
    broken = await _verify(database, audit.chain_of(pay))
    assert broken == chain.Break(3, str(third), "its content does not match its hash")
