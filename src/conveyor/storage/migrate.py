"""Schema migrations with Alembic, run from Conveyor itself (`conveyor db upgrade`, and
`conveyor serve` on start). Migrations follow expand/contract (DESIGN.md section 7)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Connection

from conveyor.storage.database import Database

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


MIGRATION_LOCK = 0x436F6E76  # "Conv": the advisory lock that serialises migrations


async def upgrade(database: Database, revision: str = "head") -> None:
    """Bring the schema up to `revision` (the newest by default). Idempotent, and safe when
    several replicas start at once: on PostgreSQL they take turns on an advisory lock held
    until the migration commits, and the later ones find nothing left to do."""
    async with database.engine.begin() as connection:
        if not database.is_sqlite:
            await connection.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK}
            )
        await connection.run_sync(lambda sync: command.upgrade(alembic_config(sync), revision))


async def current_revision(database: Database) -> str | None:
    async with database.engine.connect() as connection:
        return await connection.run_sync(
            lambda sync: MigrationContext.configure(sync).get_current_revision()
        )
