"""A migrated database per test, on SQLite and on PostgreSQL (`postgres_url` in
tests/conftest.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from conveyor.storage.database import Database, database_url
from conveyor.storage.migrate import upgrade


@pytest.fixture(params=["sqlite", "postgresql"])
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    if request.param == "sqlite":
        db = Database(database_url(tmp_path))
    else:
        db = Database(database_url(tmp_path, request.getfixturevalue("postgres_url")))
    await upgrade(db)
    try:
        yield db
    finally:
        await db.dispose()
