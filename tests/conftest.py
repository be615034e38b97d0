"""Shared test helpers: build pipelines from text, record what a run reports."""

from __future__ import annotations

import os
import textwrap
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlalchemy.engine import make_url

from conveyor.domain.status import JobStatus
from conveyor.observability import tracing
from conveyor.pipeline.loader import LoadedPipeline, parse_pipeline
from conveyor.pipeline.plan import Plan, compile_plan
from conveyor.pipeline.triggers import Event, EventKind
from conveyor.storage.database import Database, database_url
from conveyor.storage.migrate import upgrade


def pipeline_text(body: str, *, service: str = "svc", team: str = "team") -> str:
    """A pipeline file: the header plus `body` (dedented)."""
    return f"version: 1\nservice: {service}\nteam: {team}\n" + textwrap.dedent(body)


def load(body: str) -> LoadedPipeline:
    return parse_pipeline(pipeline_text(body), "conveyor.yml")


def event(
    kind: EventKind = EventKind.PUSH,
    *,
    ref: str = "refs/heads/main",
    changed: tuple[str, ...] | None = None,
    message: str = "",
    target: str | None = None,
) -> Event:
    return Event(kind=kind, ref=ref, changed=changed, message=message, target_branch=target)


def plan_for(body: str, ev: Event | None = None) -> Plan:
    return compile_plan(load(body).spec, ev or event())


@dataclass
class RecordingObserver:
    """Keeps every log line and status change, in order."""

    lines: list[tuple[str, str]] = field(default_factory=list)
    statuses: list[tuple[str, JobStatus, str]] = field(default_factory=list)

    def job_log(self, job: str, line: str) -> None:
        self.lines.append((job, line))

    def job_status(self, job: str, status: JobStatus, detail: str) -> None:
        self.statuses.append((job, status, detail))

    def output(self, job: str) -> list[str]:
        return [line for name, line in self.lines if name == job]


@pytest.fixture
def observer() -> RecordingObserver:
    return RecordingObserver()


# PostgreSQL comes from CONVEYOR_TEST_POSTGRES_URL (default postgresql://postgres@127.0.0.1:
# 5432/postgres). Each test creates a database of its own and drops it afterwards. When the
# variable is set (as .ci/run sets it), an unreachable PostgreSQL fails the test; when it is
# not set, the PostgreSQL tests are skipped.
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


@pytest.fixture
def redis_url() -> str:
    """Redis from CONVEYOR_TEST_REDIS_URL (default redis://127.0.0.1:6379): required when
    the variable is set, else the test is skipped when Redis is unreachable."""
    import socket

    configured = os.environ.get("CONVEYOR_TEST_REDIS_URL")
    url = configured or "redis://127.0.0.1:6379"
    parsed = make_url(url.replace("redis://", "redis+x://", 1))
    try:
        with socket.create_connection((parsed.host, parsed.port or 6379), timeout=2) as sock:
            sock.sendall(b"PING\r\n")
            assert sock.recv(16).startswith(b"+PONG")
    except (OSError, AssertionError) as exc:
        if configured:
            pytest.fail(f"CONVEYOR_TEST_REDIS_URL is set but Redis is unreachable: {exc}")
        pytest.skip(f"Redis not reachable at {url}")
    return url


@pytest.fixture
def nats_url() -> str:
    """NATS (with JetStream) from CONVEYOR_TEST_NATS_URL (default nats://127.0.0.1:4222):
    required when the variable is set, else the test is skipped when NATS is unreachable."""
    import socket

    configured = os.environ.get("CONVEYOR_TEST_NATS_URL")
    url = configured or "nats://127.0.0.1:4222"
    host, _, port = url.removeprefix("nats://").partition(":")
    try:
        with socket.create_connection((host, int(port or 4222)), timeout=2) as sock:
            assert sock.recv(4096).startswith(b"INFO ")
    except (OSError, AssertionError) as exc:
        if configured:
            pytest.fail(f"CONVEYOR_TEST_NATS_URL is set but NATS is unreachable: {exc}")
        pytest.skip(f"NATS not reachable at {url}")
    return url


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


@pytest.fixture
def spans(monkeypatch: pytest.MonkeyPatch) -> InMemorySpanExporter:
    """Conveyor's spans, recorded by the SDK's in-memory exporter for this test only (the
    process-wide tracer provider stays the no-op one). Ask for it before a fixture that
    makes an app, so that the app's request spans are recorded too."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: "conveyor-test"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(tracing, "TRACER", provider.get_tracer("conveyor"))
    monkeypatch.setattr(tracing, "PROVIDER", provider)  # FastAPI's spans: apps made after
    return exporter


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """A real SeaweedFS S3 server for the session (tests/seaweed.py) and one bucket in
    it: (endpoint, bucket). Each test keeps to a prefix of its own (seaweed.prefix)."""
    from tests.seaweed import new_bucket, seaweedfs

    with seaweedfs(tmp_path_factory.mktemp("seaweedfs")) as endpoint:
        yield endpoint, new_bucket(endpoint)
