"""Lifecycle events and their outboxes (docs/events.md).

An event is written in the transaction of the change it tells of (a run created or
finished, a deployment's phase moved), so it exists exactly when the change does. From
there two outboxes serve it, each claimed with SKIP LOCKED on PostgreSQL so replicas
share the work: webhook deliveries, one row per matching subscription (`fan_out`, then
`claim_deliveries`), and the event bus (`claim_unpublished`)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, or_, select, update

from conveyor.domain import events as types
from conveyor.domain.clock import as_utc, iso, utcnow
from conveyor.domain.deploy import Phase
from conveyor.storage import names, outbox
from conveyor.storage.database import Session
from conveyor.storage.deployment_records import DeploymentRecord
from conveyor.storage.tables import Deployment, Environment, Event, EventDelivery, Subscription


@dataclass(frozen=True, slots=True)
class EventRecord:
    """A lifecycle event as the notifiers read it."""

    id: uuid.UUID
    team_id: uuid.UUID
    project_id: uuid.UUID | None
    """None for an event of the team's fleet (`host.*`)."""
    type: str
    subject: str
    data: dict[str, Any]
    created_at: datetime
    published: bool = False
    """Acknowledged by the event bus."""


def _event(row: Event) -> EventRecord:
    return EventRecord(
        id=row.id,
        team_id=row.team_id,
        project_id=row.project_id,
        type=row.type,
        subject=row.subject,
        data=dict(row.data),
        created_at=as_utc(row.created_at),
        published=row.published_at is not None,
    )


@dataclass(frozen=True, slots=True)
class SubscriptionRecord:
    """A project's webhook subscription."""

    id: uuid.UUID
    team_id: uuid.UUID
    project_id: uuid.UUID
    url: str
    events: tuple[str, ...]
    format: str
    secret: bytes
    """Sealed (storage.secrets)."""
    created_by: str
    created_at: datetime


def _subscription(row: Subscription) -> SubscriptionRecord:
    return SubscriptionRecord(
        id=row.id,
        team_id=row.team_id,
        project_id=row.project_id,
        url=row.url,
        events=tuple(row.events),
        format=row.format,
        secret=row.secret,
        created_by=row.created_by,
        created_at=as_utc(row.created_at),
    )


CLAIM_S = 30
"""A claimed delivery or event is left alone by other replicas this long (a send times
out after 10 s): a replica that dies holding claims delays them by at most this."""


def record(
    session: Session,
    event_type: str,
    *,
    team_id: uuid.UUID,
    project_id: uuid.UUID | None,
    subject: str,
    data: dict[str, Any],
) -> None:
    """A new event, written when the session commits (with the change it tells of)."""
    row = Event(team_id=team_id, project_id=project_id, type=event_type, subject=subject, data=data)
    session.add(row)


async def run_event(
    session: Session, event_type: str, run: RunFacts, status: str, finished_at: datetime | None
) -> None:
    data = {
        "team": await names.team(session, run.team_id),
        "project": await names.project(session, run.project_id),
        "run": {
            "id": str(run.id),
            "status": status,
            "event": run.event,
            "ref": run.ref,
            "sha": run.sha,
            "created_at": iso(run.created_at),
            "finished_at": iso(finished_at),
        },
    }
    record(
        session,
        event_type,
        team_id=run.team_id,
        project_id=run.project_id,
        subject=f"runs/{run.id}",
        data=data,
    )


@dataclass(frozen=True, slots=True)
class HostFacts:
    """What a host event tells of its host."""

    id: uuid.UUID
    name: str
    address: str
    pool: str | None
    labels: dict[str, Any]
    fence: int


async def host_event(
    session: Session,
    event_type: str,
    host: HostFacts,
    teams: Sequence[uuid.UUID],
    **more: Any,
) -> None:
    """A `host.*` event for each team the host serves (its own, or those its pool is
    shared with): each team's projects hear of the hosts they run on, and no other's."""
    about = {
        "id": str(host.id),
        "name": host.name,
        "address": host.address,
        "pool": host.pool,
        "labels": host.labels,
        "fence": host.fence,
        **more,
    }
    for team_id in teams:
        record(
            session,
            event_type,
            team_id=team_id,
            project_id=None,
            subject=f"hosts/{host.id}",
            data={"team": await names.team(session, team_id), "host": about},
        )


@dataclass(frozen=True)
class RunFacts:
    """What a run event tells of its run."""

    id: uuid.UUID
    team_id: uuid.UUID
    project_id: uuid.UUID
    event: str
    ref: str
    sha: str
    created_at: datetime


async def deployment_event(
    session: Session, event_type: str, row: Deployment | DeploymentRecord
) -> None:
    env = await session.get(Environment, row.environment_id)
    data: dict[str, Any] = {
        "team": await names.team(session, row.team_id),
        "project": await names.project(session, row.project_id),
        "environment": env.name if env else "",
        "deployment": {
            "id": str(row.id),
            "number": row.number,
            "kind": row.kind,
            "strategy": str(row.strategy.get("kind", "")),
            "phase": row.phase,
            "digest": row.digest,
            "sha": row.sha,
            "message": row.message,
            "started_by": row.started_by,
            "rollback_of": row.rollback_of,
            "run_id": str(row.run_id) if row.run_id else None,
            "started_at": iso(row.started_at),
            "finished_at": iso(row.finished_at),
        },
    }
    if row.policy and row.policy.get("required"):
        data["approval"] = {
            "required": row.policy["required"],
            "approver_role": row.policy.get("approver_role"),
            "risk": row.policy.get("risk"),
            "reasons": row.policy.get("reasons", []),
            "approved_at": iso(row.approved_at),
        }
    if row.emergency is not None:
        data["deployment"]["emergency"] = row.emergency
    if event_type == types.DEPLOYMENT_SUCCEEDED:
        data["deployment"]["first"] = await first_deploy(session, row)
    record(
        session,
        event_type,
        team_id=row.team_id,
        project_id=row.project_id,
        subject=f"deployments/{row.id}",
        data=data,
    )


async def deployment_moved(
    session: Session, deployment_id: uuid.UUID, target: Phase, *, resumed: bool = False
) -> None:
    """The event of a deployment's phase change, if it tells of one."""
    row = await session.get(Deployment, deployment_id, populate_existing=True)
    if row is None:  # pragma: no cover - moved in this transaction, so it exists
        return
    event_type = types.deployment_event(target, row.kind, resumed=resumed)
    if event_type is not None:
        await deployment_event(session, event_type, row)


async def first_deploy(session: Session, row: Deployment | DeploymentRecord) -> bool:
    """Whether no deployment of its environment succeeded before this one (CDEvents
    tells a service `deployed` from one `upgraded`)."""
    earlier = await session.scalar(
        select(Deployment.id)
        .where(
            Deployment.environment_id == row.environment_id,
            Deployment.number < row.number,
            Deployment.phase == Phase.SUCCEEDED.value,
        )
        .limit(1)
    )
    return earlier is None


# -- webhook subscriptions ---------------------------------------------------------------


async def add_subscription(
    session: Session,
    *,
    team_id: uuid.UUID,
    project_id: uuid.UUID,
    url: str,
    events: Sequence[str],
    form: str,
    secret: bytes,
    created_by: str,
    subscription_id: uuid.UUID,
) -> SubscriptionRecord:
    row = Subscription(
        id=subscription_id,
        team_id=team_id,
        project_id=project_id,
        url=url,
        events=list(events),
        format=form,
        secret=secret,
        created_by=created_by,
    )
    session.add(row)
    await session.flush()
    return _subscription(row)


async def subscriptions(session: Session, project_id: uuid.UUID) -> list[SubscriptionRecord]:
    rows = await session.scalars(
        select(Subscription)
        .where(Subscription.project_id == project_id)
        .order_by(Subscription.created_at)
    )
    return [_subscription(row) for row in rows]


async def subscription(
    session: Session, project_id: uuid.UUID, subscription_id: uuid.UUID
) -> SubscriptionRecord | None:
    row = await session.get(Subscription, subscription_id)
    return _subscription(row) if row is not None and row.project_id == project_id else None


async def delete_subscription(session: Session, subscription_id: uuid.UUID) -> None:
    await session.execute(
        delete(EventDelivery).where(EventDelivery.subscription_id == subscription_id)
    )
    await session.execute(delete(Subscription).where(Subscription.id == subscription_id))


@dataclass(frozen=True)
class DeliveryCounts:
    pending: int
    sent: int
    failed: int
    """Given up."""
    last_error: str


async def delivery_counts(session: Session, subscription_id: uuid.UUID) -> DeliveryCounts:
    rows = (
        await session.execute(
            select(EventDelivery.sent_at, EventDelivery.last_error, EventDelivery.attempts)
            .where(EventDelivery.subscription_id == subscription_id)
            .order_by(EventDelivery.created_at)
        )
    ).all()
    pending = sum(1 for sent, _, _ in rows if sent is None)
    failed = sum(1 for sent, error, _ in rows if sent is not None and error)
    errors = [error for _, error, attempts in rows if error and attempts]
    return DeliveryCounts(
        pending, len(rows) - pending - failed, failed, errors[-1] if errors else ""
    )


async def fan_out(session: Session, limit: int, *, skip_locked: bool) -> int:
    """Queue a delivery of each event not fanned out yet to every subscription of its
    project that wants it (a fleet's event: of its team's projects); returns how many
    events were fanned out. Events of projects with no subscription are marked in one
    UPDATE, without being read."""
    subscribed = select(Subscription.project_id)
    unheard = await session.execute(
        update(Event)
        .where(
            Event.fanned_out.is_(False),
            Event.project_id.is_not(None),
            Event.project_id.not_in(subscribed),
        )
        .values(fanned_out=True)
        .execution_options(synchronize_session=False)
    )
    marked = int(getattr(unheard, "rowcount", 0) or 0)
    query = (
        select(Event.id, Event.team_id, Event.project_id, Event.type)
        .where(Event.fanned_out.is_(False))
        .order_by(Event.created_at)
        .limit(limit)
    )
    if skip_locked:
        query = query.with_for_update(skip_locked=True)
    found = (await session.execute(query)).all()
    if not found:
        return marked
    projects = {project_id for _, _, project_id, _ in found if project_id is not None}
    teams = {team_id for _, team_id, project_id, _ in found if project_id is None}
    by_project: dict[uuid.UUID, list[Subscription]] = {p: [] for p in projects}
    by_team: dict[uuid.UUID, list[Subscription]] = {t: [] for t in teams}
    wanted = or_(Subscription.project_id.in_(list(projects)), Subscription.team_id.in_(list(teams)))
    for sub in await session.scalars(select(Subscription).where(wanted)):
        if sub.project_id in by_project:
            by_project[sub.project_id].append(sub)
        if sub.team_id in by_team:
            by_team[sub.team_id].append(sub)
    now = utcnow()
    for event_id, team_id, project_id, event_type in found:
        # A fleet's event goes to every project of its team that asks for it.
        heard = by_project[project_id] if project_id is not None else by_team[team_id]
        for sub in heard:
            if types.matches(sub.events, event_type):
                session.add(
                    EventDelivery(
                        event_id=event_id, subscription_id=sub.id, next_at=now, created_at=now
                    )
                )
    await session.execute(
        update(Event)
        .where(Event.id.in_([event_id for event_id, _, _, _ in found]))
        .values(fanned_out=True)
        .execution_options(synchronize_session=False)
    )
    return marked + len(found)


async def claim_deliveries(session: Session, limit: int, *, skip_locked: bool) -> list[uuid.UUID]:
    """The deliveries due, oldest first, claimed for CLAIM_S."""
    return await outbox.claim_due(
        session, EventDelivery, limit, skip_locked=skip_locked, hold_s=CLAIM_S
    )


async def delivery(
    session: Session, delivery_id: uuid.UUID
) -> tuple[EventRecord, SubscriptionRecord] | None:
    """What a webhook delivery sends, and where."""
    found = (
        await session.execute(
            select(Event, Subscription)
            .join(EventDelivery, Event.id == EventDelivery.event_id)
            .join(Subscription, Subscription.id == EventDelivery.subscription_id)
            .where(EventDelivery.id == delivery_id)
        )
    ).first()
    return (_event(found[0]), _subscription(found[1])) if found else None


async def record_send(
    session: Session,
    delivery_id: uuid.UUID,
    error: str,
    status_code: int | None,
    *,
    give_up_at: datetime,
    delay_for: Callable[[int], float],
) -> None:
    """One more attempt: sent (no `error`), given up (the next try would come after
    `give_up_at`), or due again after `delay_for(attempts)` seconds."""
    row = await session.get(EventDelivery, delivery_id)
    if row is None:
        return
    now = utcnow()
    row.attempts += 1
    row.status_code = status_code
    later = now + timedelta(seconds=delay_for(row.attempts))
    if not error:
        row.sent_at, row.last_error = now, ""
    elif later > give_up_at:
        row.sent_at = now
        row.last_error = f"gave up after {row.attempts} attempts: {error}"
    else:
        row.last_error, row.next_at = error, later


# -- the event bus -----------------------------------------------------------------------


async def claim_unpublished(
    session: Session, limit: int, *, skip_locked: bool, claim_s: float = CLAIM_S
) -> list[EventRecord]:
    """Events not yet on the bus and due, oldest first, claimed for `claim_s`."""
    now = utcnow()
    query = (
        select(Event)
        .where(Event.published_at.is_(None), Event.bus_next_at <= now)
        .order_by(Event.created_at)
        .limit(limit)
    )
    if skip_locked:
        query = query.with_for_update(skip_locked=True)
    found = list(await session.scalars(query))
    if found:
        await session.execute(
            update(Event)
            .where(Event.id.in_([e.id for e in found]))
            .values(bus_next_at=now + timedelta(seconds=claim_s))
            .execution_options(synchronize_session=False)
        )
    return [_event(row) for row in found]


async def mark_published(session: Session, ids: Sequence[uuid.UUID]) -> None:
    if ids:
        await session.execute(
            update(Event).where(Event.id.in_(list(ids))).values(published_at=utcnow())
        )


async def retry_publish(session: Session, ids: Sequence[uuid.UUID], delay_s: float) -> None:
    if ids:
        await session.execute(
            update(Event)
            .where(Event.id.in_(list(ids)))
            .values(
                bus_next_at=utcnow() + timedelta(seconds=delay_s),
                bus_attempts=Event.bus_attempts + 1,
            )
        )


async def prune(session: Session, before: datetime) -> int:
    """Forget the events created before `before`, with their deliveries."""
    old = select(Event.id).where(Event.created_at < before)
    await session.execute(delete(EventDelivery).where(EventDelivery.event_id.in_(old)))
    gone = await session.execute(delete(Event).where(Event.created_at < before))
    return int(gone.rowcount)  # type: ignore[attr-defined]


async def latest(
    session: Session,
    team_id: uuid.UUID,
    project_id: uuid.UUID,
    limit: int,
    event_type: str | None = None,
) -> list[EventRecord]:
    """The project's newest events first, its team's fleet's (`host.*`) among them."""
    fleet = and_(Event.project_id.is_(None), Event.team_id == team_id)
    query = select(Event).where(or_(Event.project_id == project_id, fleet))
    if event_type is not None:
        query = query.where(Event.type == event_type)
    newest = query.order_by(Event.created_at.desc(), Event.id.desc()).limit(limit)
    return [_event(row) for row in await session.scalars(newest)]
