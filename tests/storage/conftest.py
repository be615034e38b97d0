"""A migrated database per test, on SQLite and on PostgreSQL.

PostgreSQL comes from CONVEYOR_TEST_POSTGRES_URL (default postgresql://postgres@127.0.0.1:5432/
postgres). Each test creates a database of its own and drops it afterwards. When the
variable is set (as .ci/run sets it), an unreachable PostgreSQL fails the test run; when it
is not set, the PostgreSQL variants are skipped.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.engine import make_url

from conveyor.storage.database import Database, database_url
from conveyor.storage.migrate import upgrade

DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/postgres"


def _admin_url() -> tuple[str, bool]:
    configured = os.environ.get("CONVEYOR_TEST_POSTGRES_URL")
    return (configured or DEFAULT_PG), configured is not None


@pytest.fixture
def postgres_url() -> Iterator[str]:
    admin, required = _admin_url()
    name = f"conveyor_test_{uuid.uuid4().hex[:12]}"
    try:
        with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        if required:
            pytest.fail(f"CONVEYOR_TEST_POSTGRES_URL is set but PostgreSQL is unreachable: {exc}")
        pytest.skip(f"PostgreSQL not reachable at {admin}")
    try:
        yield make_url(admin).set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


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
