"""Artifact bytes over HTTP: an upload streamed into the blob store and recorded, and a
download streamed back (the API's and the runner protocol's routes share these)."""

from __future__ import annotations

import re

from fastapi import Request
from fastapi.responses import FileResponse, RedirectResponse, StreamingResponse

from conveyor.api.errors import ApiError
from conveyor.api.state import Coordinator
from conveyor.artifacts.tarballs import MEDIA_TYPE
from conveyor.observability import metrics
from conveyor.storage import artifacts, names
from conveyor.storage.artifacts import ArtifactRecord, Provenance
from conveyor.storage.projects import ProjectRecord

MEDIA = r"^[A-Za-z0-9!#$&^_.+-]+/[A-Za-z0-9!#$&^_.+-]+$"


async def store(
    state: Coordinator,
    request: Request,
    project: ProjectRecord,
    name: str,
    provenance: Provenance,
    expected: str | None = None,
) -> tuple[ArtifactRecord, bool]:
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


def blob_response(
    state: Coordinator, row: ArtifactRecord, team: str
) -> FileResponse | StreamingResponse | RedirectResponse:
    """The artifact's bytes (counted as downloaded by `team`), or a redirect to where
    the store serves them itself (a presigned URL)."""
    metrics.artifact_bytes.labels(team, "download").inc(row.size)
    headers = {"X-Conveyor-Digest": row.digest, "ETag": f'"{row.digest}"'}
    elsewhere = state.blobs.presigned(row.digest)
    if elsewhere is not None:
        return RedirectResponse(elsewhere, status_code=307, headers=headers)
    path = state.blobs.local_path(row.digest)
    if path is not None:
        return FileResponse(path, media_type=row.media_type, headers=headers)
    return StreamingResponse(
        state.blobs.read(row.digest), media_type=row.media_type, headers=headers
    )
