"""Artifacts: streamed uploads verified against their digest, listings with provenance,
and downloads. Runners publish a job's `artifacts: paths` here and fetch the artifacts of
the jobs they need (routes in runners.py)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.responses import FileResponse, RedirectResponse, StreamingResponse

from conveyor.api.state import Caller, State
from conveyor.api.transfer import blob_response, store
from conveyor.artifacts.blobs import check_digest
from conveyor.deploy.artifacts import artifact_out, find, listing
from conveyor.domain.roles import Role
from conveyor.policy.access import project_named
from conveyor.protocol.api import DIGEST, ArtifactOut
from conveyor.protocol.patterns import documented
from conveyor.storage.artifacts import Provenance

router = APIRouter(prefix="/api/v1/projects/{team}/{project}/artifacts", tags=["artifacts"])

Digest = Annotated[str, Path(json_schema_extra=documented(DIGEST))]
"""An artifact's digest in a path: `sha256:` and 64 lowercase hex digits."""
ArtifactName = Annotated[str, Query(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\- ]*$", max_length=200)]
MEDIA = r"^[A-Za-z0-9!#$&^_.+-]+/[A-Za-z0-9!#$&^_.+-]+$"


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
    return await listing(state.db, who, team, project, limit)


@router.get("/{digest}")
async def show(team: str, project: str, digest: Digest, state: State, who: Caller) -> ArtifactOut:
    """One artifact and its provenance."""
    return artifact_out(await find(state.db, who, team, project, digest), team, project)


@router.get(
    "/{digest}/content",
    response_model=None,
    response_class=Response,
    responses={
        200: {
            "description": "The artifact's bytes, with the media type it was uploaded with "
            "(a service artifact: application/x-tar)",
            "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}},
        },
        307: {
            "description": "With artifacts in object storage and `?presign=` set: the "
            "object's presigned URL (Location), which serves the same bytes"
        },
    },
)
async def download(
    team: str, project: str, digest: Digest, state: State, who: Caller
) -> FileResponse | StreamingResponse | RedirectResponse:
    """The artifact's bytes, streamed; the `Digest` header lets the client verify them."""
    row = await find(state.db, who, team, project, digest)
    return blob_response(state, row, team)
