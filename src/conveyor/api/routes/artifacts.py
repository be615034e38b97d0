"""Artifacts: streamed uploads verified against their digest, listings with provenance,
and downloads. Runners publish a job's `artifacts: paths` here and fetch the artifacts of
the jobs they need (routes in runners.py)."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.responses import FileResponse, StreamingResponse

from conveyor.api.errors import ApiError
from conveyor.api.patterns import documented
from conveyor.api.routes.projects import project_named
from conveyor.api.schemas import DIGEST, ArtifactOut
from conveyor.api.state import Caller, Coordinator, State
from conveyor.artifacts.blobs import BlobError, check_digest
from conveyor.artifacts.tarballs import MEDIA_TYPE
from conveyor.domain.roles import Role
from conveyor.observability import metrics
from conveyor.storage import artifacts, names
from conveyor.storage.artifacts import Provenance
from conveyor.storage.tables import Artifact, Project, as_utc

router = APIRouter(prefix="/api/v1/projects/{team}/{project}/artifacts", tags=["artifacts"])

Digest = Annotated[str, Path(json_schema_extra=documented(DIGEST))]
"""An artifact's digest in a path: `sha256:` and 64 lowercase hex digits."""
ArtifactName = Annotated[str, Query(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\- ]*$", max_length=200)]
MEDIA = r"^[A-Za-z0-9!#$&^_.+-]+/[A-Za-z0-9!#$&^_.+-]+$"


def artifact_out(row: Artifact, team: str, project: str) -> ArtifactOut:
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


async def store(
    state: Coordinator,
    request: Request,
    project: Project,
    name: str,
    provenance: Provenance,
    expected: str | None = None,
) -> tuple[Artifact, bool]:
    """Stream the request body into the blob store, then record the artifact."""
    media = request.headers.get("content-type", MEDIA_TYPE).split(";")[0].strip() or MEDIA_TYPE
    if len(media) > 100 or not re.match(MEDIA, media):
        raise ApiError(400, "invalid_request", f"Content-Type {media[:100]!r} is not a media type")
    blob = await state.blobs.put(request.stream(), limit=state.artifact_limit, expected=expected)
    if blob.size == 0:
        raise ApiError(400, "invalid_request", "the request has no body: an artifact has content")
    async with state.db.transaction() as session:
        team = await names.team(session, project.team_id)
        metrics.artifact_bytes.labels(team, "upload").inc(blob.size)
        return await artifacts.record(
            session, project, name, blob.digest, blob.size, media, provenance
        )


@router.post(
    "",
    status_code=201,
    responses={200: {"model": ArtifactOut, "description": "This name and content were there"}},
    openapi_extra={
        "requestBody": {
            "description": "The artifact's bytes, streamed (a service artifact: a tarball)",
            "required": True,
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
            },
        }
    },
)
async def upload(
    team: str,
    project: str,
    name: ArtifactName,
    request: Request,
    response: Response,
    state: State,
    who: Caller,
    digest: Annotated[
        str | None, Query(max_length=71, json_schema_extra=documented(DIGEST))
    ] = None,
    sha: Annotated[str | None, Query(pattern="^[0-9a-f]{7,64}$")] = None,
) -> ArtifactOut:
    """Upload an artifact (the raw body, streamed). With `digest`, a body whose sha256
    differs is refused (400) and nothing is kept. 201 when new, 200 when this project
    already holds the same name and content."""
    async with state.db.transaction() as session:
        row, team_row = await project_named(session, who, team, project, Role.DEVELOPER)
    if digest is not None:
        check_digest(digest)
    stored, created = await store(
        state, request, row, name, Provenance(sha=sha, uploaded_by=who.display), digest
    )
    response.status_code = 201 if created else 200
    return artifact_out(stored, team_row.name, row.name)


@router.get("")
async def list_artifacts(
    team: str,
    project: str,
    state: State,
    who: Caller,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> list[ArtifactOut]:
    """The project's artifacts, newest first."""
    async with state.db.transaction() as session:
        row, team_row = await project_named(session, who, team, project, Role.VIEWER)
        rows = await artifacts.listing(session, row.id, limit)
    return [artifact_out(r, team_row.name, row.name) for r in rows]


async def find(state: Coordinator, who: Caller, team: str, project: str, digest: str) -> Artifact:
    try:
        check_digest(digest)
    except BlobError as exc:
        raise ApiError(422, "invalid_request", f"digest: {exc}") from exc
    async with state.db.transaction() as session:
        row, _ = await project_named(session, who, team, project, Role.VIEWER)
        found = await artifacts.by_digest(session, row.id, digest)
    if found is None:
        raise ApiError(404, "not_found", f"no artifact {digest} in {team}/{project}")
    return found


@router.get("/{digest}")
async def show(team: str, project: str, digest: Digest, state: State, who: Caller) -> ArtifactOut:
    """One artifact and its provenance."""
    return artifact_out(await find(state, who, team, project, digest), team, project)


@router.get(
    "/{digest}/content",
    response_model=None,
    response_class=Response,
    responses={
        200: {
            "description": "The artifact's bytes, with the media type it was uploaded with "
            "(a service artifact: application/x-tar)",
            "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}},
        }
    },
)
async def download(
    team: str, project: str, digest: Digest, state: State, who: Caller
) -> FileResponse | StreamingResponse:
    """The artifact's bytes, streamed; the `Digest` header lets the client verify them."""
    row = await find(state, who, team, project, digest)
    return blob_response(state, row, team)


def blob_response(state: Coordinator, row: Artifact, team: str) -> FileResponse | StreamingResponse:
    """The artifact's bytes (counted as downloaded by `team`)."""
    metrics.artifact_bytes.labels(team, "download").inc(row.size)
    headers = {"X-Conveyor-Digest": row.digest, "ETag": f'"{row.digest}"'}
    path = state.blobs.local_path(row.digest)
    if path is not None:
        return FileResponse(path, media_type=row.media_type, headers=headers)
    return StreamingResponse(
        state.blobs.read(row.digest), media_type=row.media_type, headers=headers
    )
