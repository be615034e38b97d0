"""`POST /hooks/{provider}/{team}/{project}`: webhooks from source-control providers.

No bearer token: a delivery authenticates with its signature (or GitLab's token). The
answer comes once the delivery is stored; runs start afterwards (intake.inbox).
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from conveyor.api.state import State

router = APIRouter(tags=["hooks"])


@router.post("/hooks/{provider}/{team}/{project}")
async def receive_hook(
    provider: str, team: str, project: str, request: Request, state: State
) -> JSONResponse:
    """Verify, store and acknowledge a delivery. 202 accepted or ignored, 200 for a ping
    or a duplicate, 401 bad signature, 404 unknown project, 400 not JSON, 413 too large,
    429 over the project's rate, 503 when the database is unavailable."""
    await state.hook_limit.check(f"{team}/{project}", f"project {team}/{project}")
    headers = {k.lower(): v for k, v in request.headers.items()}
    body = await request.body()
    receipt = await state.intake.receive(provider, team, project, headers, body)
    return JSONResponse(receipt.body, status_code=receipt.status)
