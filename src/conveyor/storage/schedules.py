"""Which `on.schedule` slots have fired: one row per (project, entry, slot), so that a
slot fires once across replicas."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy.exc import IntegrityError

from conveyor.storage.database import Database, Session
from conveyor.storage.tables import ScheduleFire


async def fired(session: Session, project_id: uuid.UUID, entry: str, slot: datetime) -> bool:
    return await session.get(ScheduleFire, (project_id, entry, slot)) is not None


async def record_fire(
    db: Database, project_id: uuid.UUID, entry: str, slot: datetime, run_id: uuid.UUID | None
) -> bool:
    """Record that a slot fired (in its own transaction); False when another replica
    recorded it first (its run is the same one: the dedupe key names the slot)."""
    try:
        async with db.transaction() as session:
            session.add(ScheduleFire(project_id=project_id, entry=entry, slot=slot, run_id=run_id))
    except IntegrityError:
        return False
    return True
