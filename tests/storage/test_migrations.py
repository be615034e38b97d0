"""The migrations build exactly the schema the tables declare, on SQLite and on
PostgreSQL: Alembic's autogenerate finds nothing to add, drop or change."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from conveyor.storage.database import Database
from conveyor.storage.tables import Base


async def test_migrations_match_the_tables(database: Database):
    def differences(connection):  # type: ignore[no-untyped-def]
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return compare_metadata(context, Base.metadata)

    async with database.engine.connect() as connection:
        found = await connection.run_sync(differences)
    assert found == []
