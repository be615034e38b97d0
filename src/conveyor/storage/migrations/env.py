"""Alembic's entry point. Conveyor runs migrations itself (storage.migrate): the connection
comes in through `config.attributes["connection"]`."""

from __future__ import annotations

from alembic import context

from conveyor.storage.tables import Base

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
