"""The audit log, by chain (docs/policy.md, "Audit log"): a team's for its maintainers,
the company's for the admin. Entries come oldest first with the chain's head, so that a
client recomputes the chain itself (`conveyor audit verify`)."""

from __future__ import annotations

from conveyor.domain.errors import Forbidden
from conveyor.domain.principal import Principal
from conveyor.domain.roles import Role
from conveyor.policy.access import team_named
from conveyor.protocol.api import AuditEntryOut, AuditHeadOut, AuditPage
from conveyor.storage import audit
from conveyor.storage.database import Database


async def team_page(db: Database, who: Principal, team: str, after: int, limit: int) -> AuditPage:
    """The team's chain after entry `after` (maintainers and owners)."""
    async with db.transaction() as session:
        row = await team_named(session, who, team, Role.MAINTAINER)
        found = await audit.page(session, audit.chain_of(row.id), after, limit)
    return _page(row.name, found, limit)


async def company_page(db: Database, who: Principal, after: int, limit: int) -> AuditPage:
    """The company's chain after entry `after` (the admin)."""
    if not who.is_admin:
        raise Forbidden("the company's audit log is the admin's")
    async with db.transaction() as session:
        found = await audit.page(session, audit.COMPANY, after, limit)
    return _page(None, found, limit)


def _page(team: str | None, found: audit.Page, limit: int) -> AuditPage:
    items = [AuditEntryOut.model_validate(audit.hashed(e)) for e in found.entries]
    more = len(items) == limit and items[-1].seq < found.head[0]
    return AuditPage(
        team=team,
        items=items,
        head=AuditHeadOut(seq=found.head[0], hash=found.head[1]),
        next=items[-1].seq if more else None,
    )
