"""The audit log (docs/policy.md, "Audit log"; docs/ids.md, "Audit entries").

`record` appends an entry in the caller's transaction, so a change and its entry commit
together or not at all. Appending first moves the chain's head (an UPDATE: PostgreSQL
locks the head's row until commit, and SQLite has one writer), so concurrent appends to
one chain take turns and the chain never forks; chains of different teams do not wait
for each other."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update

from conveyor.domain import audit
from conveyor.domain.clock import utcnow
from conveyor.ids import new_id
from conveyor.observability.logs import bound_value
from conveyor.storage import names
from conveyor.storage.database import Session, insert_for
from conveyor.storage.tables import AuditEntry, AuditHead
from conveyor.storage.values import record_of

COMPANY = "company"
"""The chain of what belongs to no team (teams made, admin tokens)."""


def chain_of(team_id: uuid.UUID | None) -> str:
    return COMPANY if team_id is None else str(team_id)


async def record(
    session: Session,
    team_id: uuid.UUID | None,
    actor: str,
    action: audit.Action,
    target: str,
    detail: dict[str, Any] | None = None,
) -> AuditRecord:
    """Append an entry to the team's chain (the company's when `team_id` is None); the
    request id is the one bound to this task's logs, if any."""
    chain = chain_of(team_id)
    team = await names.team(session, team_id) if team_id is not None else None
    await session.execute(
        insert_for(session)(AuditHead)
        .values(chain=chain, seq=0, hash=audit.GENESIS)
        .on_conflict_do_nothing()
    )
    moved = await session.execute(
        update(AuditHead)
        .where(AuditHead.chain == chain)
        .values(seq=AuditHead.seq + 1)
        .returning(AuditHead.seq, AuditHead.hash)
        .execution_options(synchronize_session=False)
    )
    seq, previous = moved.one()
    entry = AuditEntry(
        id=new_id(),
        chain=chain,
        seq=seq,
        team=team,
        at=utcnow(),
        actor=actor[:200],
        action=action.value,
        target=target[:300],
        detail=detail or {},
        request_id=bound_value("request_id"),
        prev_hash=previous,
    )
    entry.hash = audit.link(previous, hashed(entry))
    await session.execute(
        update(AuditHead)
        .where(AuditHead.chain == chain)
        .values(hash=entry.hash)
        .execution_options(synchronize_session=False)
    )
    session.add(entry)
    return record_of(AuditRecord, entry)


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One entry of a chain, as the API shows it and its hash covers it."""

    seq: int
    id: uuid.UUID
    team: str | None
    at: datetime
    actor: str
    action: str
    target: str
    detail: dict[str, Any]
    request_id: str | None
    prev_hash: str
    hash: str


def hashed(entry: AuditEntry | AuditRecord) -> dict[str, Any]:
    """An entry as its hash sees it (domain.audit.HASHED) and as the API shows it."""
    return {
        "seq": entry.seq,
        "id": str(entry.id),
        "team": entry.team,
        "at": audit.timestamp(entry.at),
        "actor": entry.actor,
        "action": entry.action,
        "target": entry.target,
        "detail": entry.detail,
        "request_id": entry.request_id,
        "prev_hash": entry.prev_hash,
        "hash": entry.hash,
    }


@dataclass(frozen=True)
class Page:
    entries: list[AuditRecord]
    head: tuple[int, str]
    """The chain's last entry, its number and hash ((0, GENESIS) for an empty chain)."""


async def page(session: Session, chain: str, after: int = 0, limit: int = 100) -> Page:
    """Entries of a chain numbered after `after`, oldest first, with the chain's head."""
    found = await session.scalars(
        select(AuditEntry)
        .where(AuditEntry.chain == chain, AuditEntry.seq > after)
        .order_by(AuditEntry.seq)
        .limit(limit)
    )
    head = (
        await session.execute(select(AuditHead.seq, AuditHead.hash).where(AuditHead.chain == chain))
    ).first()
    entries = [record_of(AuditRecord, row) for row in found]
    return Page(entries, (int(head[0]), str(head[1])) if head else (0, audit.GENESIS))
