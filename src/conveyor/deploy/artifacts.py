"""A project's artifacts as people and deploys find them: listed newest first with
their provenance, or one by its digest."""

from __future__ import annotations

from conveyor.artifacts.blobs import BlobError, check_digest
from conveyor.domain.clock import as_utc
from conveyor.domain.errors import Invalid, NotFound
from conveyor.domain.principal import Principal
from conveyor.domain.roles import Role
from conveyor.policy.access import project_named
from conveyor.protocol.api import ArtifactOut
from conveyor.storage import artifacts
from conveyor.storage.artifacts import ArtifactRecord
from conveyor.storage.database import Database


def artifact_out(row: ArtifactRecord, team: str, project: str) -> ArtifactOut:
    return ArtifactOut(
        id=row.id,
        team=team,
        project=project,
        name=row.name,
        digest=row.digest,
        size=row.size,
        media_type=row.media_type,
        sha=row.sha,
        run_id=row.run_id,
        job_id=row.job_id,
        job_name=row.job_name,
        runner=row.runner,
        uploaded_by=row.uploaded_by,
        created_at=as_utc(row.created_at).isoformat(),
    )


async def listing(
    db: Database, who: Principal, team: str, project: str, limit: int
) -> list[ArtifactOut]:
    """The project's artifacts, newest first."""
    async with db.transaction() as session:
        row, team_row = await project_named(session, who, team, project, Role.VIEWER)
        rows = await artifacts.listing(session, row.id, limit)
    return [artifact_out(r, team_row.name, row.name) for r in rows]


async def find(
    db: Database, who: Principal, team: str, project: str, digest: str
) -> ArtifactRecord:
    """The project's artifact with this digest."""
    try:
        check_digest(digest)
    except BlobError as exc:
        raise Invalid(f"digest: {exc}") from exc
    async with db.transaction() as session:
        row, _ = await project_named(session, who, team, project, Role.VIEWER)
        found = await artifacts.by_digest(session, row.id, digest)
    if found is None:
        raise NotFound(f"no artifact {digest} in {team}/{project}")
    return found
