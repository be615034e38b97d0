"""Durable state: SQLAlchemy 2 (async) tables, sessions and Alembic migrations, on SQLite
(the embedded default, WAL mode) or PostgreSQL. Every table that holds team data carries
its `team_id`, so queries can always be partitioned by team."""
