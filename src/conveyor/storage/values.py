"""How storage hands a row out: as a frozen record of the fields a caller needs, read
once, every time in UTC (SQLite hands datetimes back naive)."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any, TypeVar

from conveyor.domain.clock import as_utc

R = TypeVar("R")


def record_of(record: type[R], row: object) -> R:
    """A `record` (a dataclass) with each of its fields read from `row`'s attribute of
    the same name."""
    values: dict[str, Any] = {}
    for field in dataclasses.fields(record):  # type: ignore[arg-type]
        value = getattr(row, field.name)
        values[field.name] = as_utc(value) if isinstance(value, datetime) else value
    return record(**values)
