"""Artifact metadata: recording an upload (idempotent per project, name and digest),
finding artifacts, and choosing what retention lets go."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from conveyor.artifacts.blobs import BlobStore
from conveyor.domain.clock import as_utc
from conveyor.storage.database import Database
from conveyor.storage.projects import ProjectRecord
from conveyor.storage.tables import Artifact, ArtifactPublication, Deployment, Project

KEEP_DEPLOYMENTS = 10
"""Retention never collects an artifact named by one of the last N deployments of any
environment."""


@dataclass(frozen=True)
class Provenance:
    """Where an artifact came from: the run and job that built it, or who uploaded it."""

    sha: str | None = None
    run_id: uuid.UUID | None = None
    job_id: uuid.UUID | None = None
    job_name: str | None = None
    runner: str | None = None
    uploaded_by: str = ""


@dataclass(frozen=True, slots=True)
class ArtifactRecord:
    """An artifact's metadata: what it is, and where it came from (its first
    provenance; artifacts are immutable)."""

    id: uuid.UUID
    team_id: uuid.UUID
    project_id: uuid.UUID
    name: str
    digest: str
    size: int
    media_type: str
    run_id: uuid.UUID | None
    job_id: uuid.UUID | None
    job_name: str | None
    sha: str | None
    runner: str | None
    uploaded_by: str
    created_at: datetime


def artifact_of(row: Artifact) -> ArtifactRecord:
    return ArtifactRecord(
        id=row.id,
        team_id=row.team_id,
        project_id=row.project_id,
        name=row.name,
        digest=row.digest,
        size=row.size,
        media_type=row.media_type,
        run_id=row.run_id,
        job_id=row.job_id,
        job_name=row.job_name,
        sha=row.sha,
        runner=row.runner,
        uploaded_by=row.uploaded_by,
        created_at=as_utc(row.created_at),
    )


async def record(
    session: AsyncSession,
    project: ProjectRecord,
    name: str,
    digest: str,
    size: int,
    media_type: str,
    provenance: Provenance,
) -> tuple[ArtifactRecord, bool]:
    """The artifact for (project, name, digest), created if new. Returns it and whether
    it was created; an existing one keeps its first provenance (artifacts are immutable)."""
    existing = await _named(session, project.id, name, digest)
    if existing is not None:
        await _published(session, existing, provenance)
        return artifact_of(existing), False
    row = Artifact(
        team_id=project.team_id,
        project_id=project.id,
        name=name,
        digest=digest,
        size=size,
        media_type=media_type,
        sha=provenance.sha,
        run_id=provenance.run_id,
        job_id=provenance.job_id,
        job_name=provenance.job_name,
        runner=provenance.runner,
        uploaded_by=provenance.uploaded_by,
    )
    try:
        async with session.begin_nested():
            session.add(row)
    except IntegrityError:  # the same upload, committed by another request meanwhile
        raced = await _named(session, project.id, name, digest)
        assert raced is not None
        await _published(session, raced, provenance)
        return artifact_of(raced), False
    await _published(session, row, provenance)
    return artifact_of(row), True


async def _published(session: AsyncSession, row: Artifact, provenance: Provenance) -> None:
    """Record that a job of a run published `row` (once per job: a retried upload adds
    nothing)."""
    if provenance.run_id is None or provenance.job_id is None or provenance.job_name is None:
        return
    already = await session.scalar(
        select(ArtifactPublication.id).where(
            ArtifactPublication.artifact_id == row.id,
            ArtifactPublication.job_id == provenance.job_id,
        )
    )
    if already is None:
        session.add(
            ArtifactPublication(
                artifact_id=row.id,
                run_id=provenance.run_id,
                job_id=provenance.job_id,
                job_name=provenance.job_name,
            )
        )


async def _named(
    session: AsyncSession, project_id: uuid.UUID, name: str, digest: str
) -> Artifact | None:
    return await session.scalar(
        select(Artifact).where(
            Artifact.project_id == project_id, Artifact.name == name, Artifact.digest == digest
        )
    )


async def by_digest(
    session: AsyncSession, project_id: uuid.UUID, digest: str
) -> ArtifactRecord | None:
    """The project's oldest artifact with this digest (its first provenance)."""
    found = await session.scalar(
        select(Artifact)
        .where(Artifact.project_id == project_id, Artifact.digest == digest)
        .order_by(Artifact.created_at)
        .limit(1)
    )
    return artifact_of(found) if found is not None else None


async def of_run(session: AsyncSession, run_id: uuid.UUID, job_name: str) -> ArtifactRecord | None:
    """The artifact a job of a run published (its `artifacts: paths`), whether it was new
    content or the same as an earlier run's."""
    found = await session.scalar(
        select(Artifact)
        .join(ArtifactPublication, ArtifactPublication.artifact_id == Artifact.id)
        .where(ArtifactPublication.run_id == run_id, ArtifactPublication.job_name == job_name)
        .order_by(ArtifactPublication.created_at.desc())
        .limit(1)
    )
    return artifact_of(found) if found is not None else None


async def listing(session: AsyncSession, project_id: uuid.UUID, limit: int) -> list[ArtifactRecord]:
    rows = await session.scalars(
        select(Artifact)
        .where(Artifact.project_id == project_id)
        .order_by(Artifact.created_at.desc(), Artifact.id.desc())
        .limit(limit)
    )
    return [artifact_of(row) for row in rows]


async def protected_digests(session: AsyncSession, keep: int = KEEP_DEPLOYMENTS) -> set[str]:
    """Digests named by one of the last `keep` deployments of any environment."""
    ranked = select(
        Deployment.digest,
        func.row_number()
        .over(partition_by=Deployment.environment_id, order_by=Deployment.number.desc())
        .label("rank"),
    ).subquery()
    rows = await session.scalars(select(ranked.c.digest).where(ranked.c.rank <= keep))
    return set(rows)


async def collect(
    session: AsyncSession, now: datetime, keep: int = KEEP_DEPLOYMENTS
) -> tuple[int, set[str]]:
    """Delete the artifact rows past their project's retention that no recent deployment
    names. Returns how many rows went and the digests no row names any more (their blobs
    can go once this transaction commits)."""
    protected = await protected_digests(session, keep)
    candidates = (
        await session.execute(
            select(
                Artifact.id, Artifact.digest, Artifact.created_at, Project.artifact_retention_days
            ).join(Project, Project.id == Artifact.project_id)
        )
    ).all()
    doomed = [
        (row.id, row.digest)
        for row in candidates
        if row.digest not in protected
        and as_utc(row.created_at) < now - timedelta(days=row.artifact_retention_days)
    ]
    if not doomed:
        return 0, set()
    await session.execute(delete(Artifact).where(Artifact.id.in_([i for i, _ in doomed])))
    digests = {d for _, d in doomed}
    still = set(await session.scalars(select(Artifact.digest).where(Artifact.digest.in_(digests))))
    return len(doomed), digests - still


BLOB_GRACE = timedelta(minutes=10)
"""A blob that lost its last row is deleted only once it is this old, so that an upload of
the same content racing the collection keeps its bytes."""


async def collect_garbage(
    db: Database, blobs: BlobStore, now: datetime, keep: int = KEEP_DEPLOYMENTS
) -> tuple[int, int]:
    """Apply every project's retention: rows first (one transaction), then the blobs no
    row names any more. Returns (rows deleted, blobs deleted)."""
    async with db.transaction() as session:
        rows, orphans = await collect(session, now, keep)
    deleted = 0
    for digest in sorted(orphans):
        async with db.transaction() as session:
            named = await session.scalar(
                select(Artifact.id).where(Artifact.digest == digest).limit(1)
            )
        if named is not None:
            continue
        stored = await blobs.touched_at(digest)
        if stored is not None and now - stored < BLOB_GRACE:
            continue
        deleted += await blobs.delete(digest)
    return rows, deleted
