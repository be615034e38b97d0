"""The registered runners as people see them: the admin every one, a team's token the
team's own and the shared ones; newest seen first, with the jobs each runs now."""

from __future__ import annotations

from conveyor.domain.clock import utcnow
from conveyor.domain.errors import Forbidden
from conveyor.domain.principal import Principal
from conveyor.protocol.api import RunnerOut
from conveyor.storage import tokens
from conveyor.storage.database import Database

RUNNER_ONLINE_S = 90.0
"""A runner seen within this long is online (it asks for work at least every 30 s)."""


async def listing(db: Database, who: Principal) -> list[RunnerOut]:
    if who.runner is not None:
        raise Forbidden("a runner does not list runners")
    async with db.transaction() as session:
        found = await tokens.runners(session, None if who.is_admin else who.team_id)
    now = utcnow()
    return [
        RunnerOut(
            id=r.id,
            name=r.name,
            team=r.team,
            labels=list(r.labels),
            last_seen_at=r.last_seen_at.isoformat(),
            online=(now - r.last_seen_at).total_seconds() <= RUNNER_ONLINE_S,
            running=r.running,
        )
        for r in found
    ]
