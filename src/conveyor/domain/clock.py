"""Conveyor's times: every stored time is UTC; SQLite hands them back naive."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes; every stored time is UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def iso(moment: datetime | None) -> str | None:
    """A stored time as ISO 8601 with its UTC offset (None stays None)."""
    return as_utc(moment).isoformat() if moment is not None else None
