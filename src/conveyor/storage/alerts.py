"""Alerts from Alertmanager, per environment: recorded as they arrive (a repeat of the
same alert, by its fingerprint and start, updates it), and read by the `alert` provider."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from conveyor.domain.clock import utcnow
from conveyor.storage.database import Session
from conveyor.storage.deployment_records import EnvironmentRecord
from conveyor.storage.tables import Alert
from conveyor.storage.values import record_of

FIRING = "firing"


@dataclass(frozen=True)
class Incoming:
    """One alert of a webhook, checked."""

    fingerprint: str
    name: str
    status: str
    labels: dict[str, Any]
    annotations: dict[str, Any]
    starts_at: datetime
    ends_at: datetime | None


async def record(session: Session, env: EnvironmentRecord, incoming: Sequence[Incoming]) -> int:
    """Insert or update each alert; returns how many were new."""
    new = 0
    for alert in incoming:
        found: Alert | None = await session.scalar(
            select(Alert).where(
                Alert.environment_id == env.id,
                Alert.fingerprint == alert.fingerprint,
                Alert.starts_at == alert.starts_at,
            )
        )
        if found is None:
            try:
                async with session.begin_nested():
                    session.add(
                        Alert(
                            team_id=env.team_id,
                            environment_id=env.id,
                            fingerprint=alert.fingerprint,
                            name=alert.name,
                            status=alert.status,
                            labels=alert.labels,
                            annotations=alert.annotations,
                            starts_at=alert.starts_at,
                            ends_at=alert.ends_at,
                        )
                    )
                new += 1
                continue
            except IntegrityError:  # the same alert, delivered twice at once
                pass
        await session.execute(
            update(Alert)
            .where(
                Alert.environment_id == env.id,
                Alert.fingerprint == alert.fingerprint,
                Alert.starts_at == alert.starts_at,
            )
            .values(status=alert.status, ends_at=alert.ends_at, received_at=utcnow())
        )
    return new


@dataclass(frozen=True, slots=True)
class FiringAlert:
    """An alert firing for an environment, as Alertmanager last sent it."""

    fingerprint: str
    name: str
    starts_at: datetime


async def firing(session: Session, env_id: uuid.UUID, since: datetime) -> list[FiringAlert]:
    """The environment's alerts firing now that began at or after `since`."""
    return [
        record_of(FiringAlert, row)
        for row in await session.scalars(
            select(Alert)
            .where(
                Alert.environment_id == env_id,
                Alert.status == FIRING,
                Alert.starts_at >= since,
            )
            .order_by(Alert.starts_at)
        )
    ]
