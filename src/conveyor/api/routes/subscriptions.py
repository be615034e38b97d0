"""A project's webhook subscriptions (maintainers), and its recent lifecycle events
(any member): `/api/v1/projects/{team}/{project}/subscriptions` and `…/events`
(docs/events.md)."""

from __future__ import annotations

import uuid
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import APIRouter, Query, Response

from conveyor.api.errors import ApiError
from conveyor.api.state import Caller, State
from conveyor.domain.audit import Action
from conveyor.domain.clock import as_utc
from conveyor.domain.events import check_patterns
from conveyor.domain.principal import Principal
from conveyor.domain.roles import Role
from conveyor.ids import new_id
from conveyor.notify.webhooks import SECRET_NAME, new_secret
from conveyor.policy.access import project_named
from conveyor.protocol.api import EventOut, SubscriptionIn, SubscriptionOut
from conveyor.storage import audit, events
from conveyor.storage.database import Session
from conveyor.storage.events import DeliveryCounts, SubscriptionRecord

router = APIRouter(prefix="/api/v1/projects", tags=["events"])


def _out(
    row: SubscriptionRecord, counts: DeliveryCounts | None = None, secret: str | None = None
) -> SubscriptionOut:
    return SubscriptionOut(
        id=str(row.id),
        url=row.url,
        events=list(row.events),
        format=row.format,
        created_by=row.created_by,
        created_at=as_utc(row.created_at).isoformat(),
        secret=secret,
        pending=counts.pending if counts else 0,
        sent=counts.sent if counts else 0,
        failed=counts.failed if counts else 0,
        last_error=counts.last_error if counts else "",
    )


@router.post("/{team}/{project}/subscriptions", status_code=201)
async def create_subscription(
    team: str, project: str, body: SubscriptionIn, state: State, who: Caller
) -> SubscriptionOut:
    """Subscribe a URL to the project's events. The answer shows the signing secret
    once (the given one, or a generated one)."""
    try:
        patterns = check_patterns(body.events)
    except ValueError as exc:
        raise ApiError(422, "invalid_request", f"events: {exc}") from exc
    secret = body.secret or new_secret()
    async with state.db.transaction() as session:
        row, _ = await project_named(session, who, team, project, Role.MAINTAINER)
        sub = await events.add_subscription(
            session,
            subscription_id=new_id(),
            team_id=row.team_id,
            project_id=row.id,
            url=body.url,
            events=patterns,
            form=body.format,
            secret=state.secrets.seal_blob(row.id, SECRET_NAME, secret),
            created_by=who.display,
        )
        await _audit(session, who, Action.SUBSCRIPTION_CREATE, f"{team}/{project}", sub)
    return _out(sub, secret=None if body.secret else secret)


async def _audit(
    session: Session, who: Principal, action: Action, target: str, sub: SubscriptionRecord
) -> None:
    """Audited with the URL's host only: the rest of it may hold a token, and the
    audit log keeps what it is given for good."""
    detail = {"id": str(sub.id), "host": urlsplit(sub.url).hostname, "events": sub.events}
    await audit.record(session, sub.team_id, who.display, action, target, detail)


@router.get("/{team}/{project}/subscriptions")
async def list_subscriptions(
    team: str, project: str, state: State, who: Caller
) -> list[SubscriptionOut]:
    """The project's subscriptions, with how their deliveries stand (maintainers: the
    URLs may hold tokens)."""
    async with state.db.transaction() as session:
        row, _ = await project_named(session, who, team, project, Role.MAINTAINER)
        subs = await events.subscriptions(session, row.id)
        return [_out(s, await events.delivery_counts(session, s.id)) for s in subs]


@router.delete("/{team}/{project}/subscriptions/{subscription_id}", status_code=204)
async def delete_subscription(
    team: str, project: str, subscription_id: uuid.UUID, state: State, who: Caller
) -> Response:
    """Stop sending events there (deliveries not sent yet are dropped)."""
    async with state.db.transaction() as session:
        row, _ = await project_named(session, who, team, project, Role.MAINTAINER)
        sub = await events.subscription(session, row.id, subscription_id)
        if sub is None:
            raise ApiError(404, "not_found", f"no subscription {subscription_id} here")
        await events.delete_subscription(session, sub.id)
        await _audit(session, who, Action.SUBSCRIPTION_DELETE, f"{team}/{project}", sub)
    return Response(status_code=204)


@router.get("/{team}/{project}/events")
async def list_events(
    team: str,
    project: str,
    state: State,
    who: Caller,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    type: Annotated[str | None, Query(max_length=60)] = None,
) -> list[EventOut]:
    """The project's latest lifecycle events, newest first."""
    async with state.db.transaction() as session:
        row, _ = await project_named(session, who, team, project, Role.VIEWER)
        found = await events.latest(session, row.team_id, row.id, limit, type)
    return [
        EventOut(
            id=str(e.id),
            type=e.type,
            subject=e.subject,
            created_at=as_utc(e.created_at).isoformat(),
            data=e.data,
            published=e.published,
        )
        for e in found
    ]
