"""The `alert` provider: alerts that Prometheus's Alertmanager sent about the
environment (api/routes/alerts.py stores them). Its measurement is how many alerts fire
at the end of the window that began after the deployment did; the judge holds it to 0,
so one firing alert fails the analysis at once. An alert that already fired before the
deployment began is not the new revision's doing and does not count.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

from conveyor.analysis.providers.base import Measurement, Slot, SlotTarget
from conveyor.pipeline.analysis import Metric
from conveyor.storage import alerts
from conveyor.storage.database import Database


class AlertProvider:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def close(self) -> None:
        return None

    async def measure(
        self, metric: Metric, targets: Sequence[SlotTarget], start: float, end: float
    ) -> list[Measurement]:
        canary = next((t for t in targets if t.slot is Slot.CANARY), None)
        if canary is None or canary.environment_id is None:
            return []
        since = datetime.fromtimestamp(canary.since or start, UTC)
        async with self.db.transaction() as session:
            found = await alerts.firing(session, uuid.UUID(canary.environment_id), since)
        names = sorted({a.name for a in found})
        detail = f"firing: {', '.join(names)}" if names else "no alert firing"
        return [Measurement(metric.name, Slot.CANARY, float(len(found)), 1, start, end, detail)]
