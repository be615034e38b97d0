"""Artifact retention on SQLite and PostgreSQL: old artifacts go, with their blobs, unless
one of the last N deployments of an environment names them."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

from sqlalchemy import update

from conveyor.artifacts.blobs import FileBlobStore
from conveyor.domain.clock import utcnow
from conveyor.ids import new_id
from conveyor.storage import artifacts
from conveyor.storage.artifacts import Provenance
from conveyor.storage.database import Database
from conveyor.storage.tables import Artifact, Deployment, Environment, Project, Team


async def chunks(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def test_retention_keeps_what_recent_deployments_name(database: Database, tmp_path: Path):
    blobs = FileBlobStore(tmp_path / "blobs")
    async with database.transaction() as session:
        team = Team(name="a")
        session.add(team)
        await session.flush()
        project = Project(
            team_id=team.id, name="svc", repo_url="file:///x", artifact_retention_days=7
        )
        session.add(project)
        await session.flush()
        env = Environment(
            team_id=team.id, project_id=project.id, name="prod", port=1, preview_port=2
        )
        session.add(env)
        await session.flush()
    stored = {}
    for name in ("deployed", "old", "fresh", "shared"):
        blob = await blobs.put(chunks(name.encode()), limit=100)
        stored[name] = blob.digest
        async with database.transaction() as session:
            row, created = await artifacts.record(
                session, project, name, blob.digest, blob.size, "application/x-tar", Provenance()
            )
            assert created
            if name != "fresh":
                aged = update(Artifact).where(Artifact.id == row.id)
                await session.execute(aged.values(created_at=utcnow() - timedelta(days=30)))
        path = blobs.local_path(blob.digest)
        assert path is not None
        os.utime(path, (0, 0))  # long past the blob grace period
    async with database.transaction() as session:
        _, created = await artifacts.record(
            session, project, "shared-copy", stored["shared"], 6, "application/x-tar", Provenance()
        )
        assert created  # a second name for the same bytes: a fresh row, one blob
        session.add(
            Deployment(
                team_id=team.id,
                project_id=project.id,
                environment_id=env.id,
                number=1,
                digest=stored["deployed"],
                artifact_id=new_id(),
                runtime={},
                strategy={"kind": "rolling"},
            )
        )
    rows, deleted = await artifacts.collect_garbage(database, blobs, utcnow())
    assert (rows, deleted) == (2, 1)  # "old" and the old "shared" row; only "old"'s blob
    async with database.transaction() as session:
        left = {a.name for a in await artifacts.listing(session, project.id, 10)}
    assert left == {"deployed", "fresh", "shared-copy"}
    assert not await blobs.exists(stored["old"])
    assert await blobs.exists(stored["shared"]) and await blobs.exists(stored["deployed"])
    assert await artifacts.collect_garbage(database, blobs, utcnow()) == (0, 0)
