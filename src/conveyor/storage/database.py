"""Where the database is and how to talk to it.

`CONVEYOR_DATABASE_URL=postgresql://…` selects PostgreSQL (driver psycopg 3); otherwise the
database is `<data-dir>/conveyor.db`, SQLite in WAL mode, so readers never wait for the
writer.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import time
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import event, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from conveyor.observability import metrics

Session = AsyncSession
"""The handle of one transaction (`Database.transaction`). Code above storage passes it
to storage's functions and never builds a query on it (an import-linter contract keeps
SQLAlchemy inside `conveyor.storage`)."""

SQLITE_FILE = "conveyor.db"
POOL_SIZE = 20
POOL_OVERFLOW = 20
QUICK_POOL_SIZE = 10
_IN_TRANSACTION: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "conveyor_in_transaction", default=False
)


def insert_for(session_or_dialect: AsyncSession | str) -> Any:
    """The dialect's INSERT construct (it has ON CONFLICT): PostgreSQL's or SQLite's."""
    name = (
        session_or_dialect
        if isinstance(session_or_dialect, str)
        else session_or_dialect.get_bind().dialect.name
    )
    return postgresql.insert if name == "postgresql" else sqlite.insert


class DatabaseUrlError(ValueError):
    """The database URL names a database Conveyor cannot use."""


def database_url(data_dir: Path, configured: str | None = None) -> URL:
    """The async SQLAlchemy URL: the configured one (PostgreSQL or SQLite), else SQLite in
    the data directory."""
    if not configured:
        return make_url(f"sqlite+aiosqlite:///{(data_dir / SQLITE_FILE).resolve()}")
    url = make_url(configured)
    backend = url.get_backend_name()
    if backend == "postgresql":
        return url.set(drivername="postgresql+psycopg")
    if backend == "sqlite":
        return url.set(drivername="sqlite+aiosqlite")
    raise DatabaseUrlError(
        f"unsupported database {backend!r}: use postgresql://… or sqlite:///path"
    )


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


class Database:
    """An engine and a session factory for one database."""

    def __init__(self, url: URL | str, *, echo: bool = False) -> None:
        self.url = make_url(url) if isinstance(url, str) else url
        self.is_sqlite = self.url.get_backend_name() == "sqlite"
        if self.is_sqlite and self.url.database:
            Path(self.url.database).parent.mkdir(parents=True, exist_ok=True)
        # A pool large enough for bursts: a connection opened past the pool is closed on
        # return, and opening one costs a thread (aiosqlite) or a server process
        # (PostgreSQL). Pre-ping finds connections the database server dropped.
        self.engine: AsyncEngine = create_async_engine(
            self.url,
            echo=echo,
            pool_pre_ping=not self.is_sqlite,
            pool_size=POOL_SIZE,
            max_overflow=POOL_OVERFLOW,
        )
        if self.is_sqlite:
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
            # WAL with synchronous=NORMAL: commits do not wait for the disk already.
            self.quick_engine = self.engine
        else:
            # Connections whose commits do not wait for the WAL flush (see `transaction`).
            self.quick_engine = create_async_engine(
                self.url,
                echo=echo,
                pool_pre_ping=True,
                pool_size=QUICK_POOL_SIZE,
                max_overflow=POOL_OVERFLOW,
                connect_args={"options": "-c synchronous_commit=off"},
            )
        self.statements = 0
        """SQL statements this process sent (GET /api/v1/stats; the benchmarks read it)."""
        for engine in {self.engine, self.quick_engine}:
            event.listen(engine.sync_engine, "before_cursor_execute", self._count)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        self.quick_sessions = async_sessionmaker(self.quick_engine, expire_on_commit=False)
        self._turns: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
            weakref.WeakKeyDictionary()
        )

    def _count(self, *_: Any) -> None:
        self.statements += 1
        metrics.db_statements.inc()

    @asynccontextmanager
    async def transaction(self, *, durable: bool = True) -> AsyncIterator[AsyncSession]:
        """A session in one transaction: committed on success, rolled back on any error,
        so a failed request leaves nothing half-written.

        `durable=False` is for writes whose loss in a crash of the database server (not
        of a replica) is repaired by what follows them: on PostgreSQL the commit returns
        before the WAL reaches the disk (`synchronous_commit = off`; the server writes it
        within `wal_writer_delay`). WAL order still holds: a durable commit made later
        makes every earlier one durable too. Decision 0014."""
        factory = self.sessions if durable else self.quick_sessions
        began = time.perf_counter()
        async with self._turn():
            mark = _IN_TRANSACTION.set(True)
            try:
                async with factory() as session, session.begin():
                    yield session
            finally:
                _IN_TRANSACTION.reset(mark)
                metrics.db_transaction_duration.observe(time.perf_counter() - began)

    def _turn(self) -> contextlib.AbstractAsyncContextManager[object]:
        """What a transaction waits for first. SQLite has one writer at a time, and a
        connection that finds the write lock taken sleeps in SQLite's busy handler (1 ms,
        growing to 100 ms per try): the transactions of this process take turns on a lock
        instead, woken as soon as the previous one ends (another process still meets the
        busy handler). A transaction inside another in the same task does not wait for
        it; PostgreSQL waits for nothing here. Decision 0015."""
        if not self.is_sqlite or _IN_TRANSACTION.get():
            return contextlib.nullcontext()
        loop = asyncio.get_running_loop()
        turn = self._turns.get(loop)
        if turn is None:
            turn = self._turns[loop] = asyncio.Lock()
        return turn

    async def dispose(self) -> None:
        await self.engine.dispose()
        if self.quick_engine is not self.engine:
            await self.quick_engine.dispose()


async def ping(session: Session) -> None:
    """One round trip to the database (`/readyz`)."""
    await session.scalar(select(1))


UNAVAILABLE: tuple[type[Exception], ...] = (
    OperationalError,
    InterfaceError,
    psycopg.OperationalError,
    ConnectionError,
)
"""What a call that could not reach the database raises (answered 503 by the API)."""
