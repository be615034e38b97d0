"""`POST /hooks/alertmanager/{team}/{project}`: alerts from Prometheus's Alertmanager
(its webhook receiver, payload version 4), authenticated with a bearer token of the
team (developer or above; Alertmanager sends it with `http_config.authorization`).

Each alert names its environment with a label: `conveyor_environment` (which the
targets Conveyor lists for Prometheus carry), `environment` or `env`; a `service` label,
when present, must be the project's name. Alerts are stored per environment; the `alert`
analysis provider fails a deployment there while one that began during it fires.
Alerts that name no known environment of the project are ignored, and the answer says
which and why.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from conveyor.api.state import Caller, State
from conveyor.domain.roles import Role
from conveyor.policy.access import project_named
from conveyor.storage import alerts, deployments
from conveyor.storage.alerts import Incoming

router = APIRouter(tags=["hooks"])
ENVIRONMENT_LABELS = ("conveyor_environment", "environment", "env")
MAX_ALERTS = 1000


class AlertIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    status: Literal["firing", "resolved"]
    labels: dict[str, str]
    annotations: dict[str, str] = Field(default_factory=dict)
    starts_at: datetime = Field(alias="startsAt")
    ends_at: datetime | None = Field(None, alias="endsAt")
    fingerprint: str | None = Field(None, max_length=64)


class AlertmanagerIn(BaseModel):
    """Alertmanager's webhook body (version 4); fields Conveyor does not read are
    ignored."""

    model_config = ConfigDict(extra="ignore")

    version: str = "4"
    status: Literal["firing", "resolved"]
    alerts: Annotated[list[AlertIn], Field(max_length=MAX_ALERTS)]


class Ignored(BaseModel):
    alertname: str
    reason: str


class AlertsOut(BaseModel):
    recorded: int
    """New alerts."""
    updated: int
    """Alerts seen before (a repeat, or resolved now)."""
    ignored: list[Ignored]


def fingerprint(labels: dict[str, str]) -> str:
    """Alertmanager's own fingerprint when it sent none: a hash of the sorted labels."""
    return hashlib.sha256(json.dumps(labels, sort_keys=True).encode()).hexdigest()[:16]


def _end(moment: datetime | None) -> datetime | None:
    """Alertmanager sends 0001-01-01 for an alert with no end yet."""
    if moment is None or moment.year <= 1:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@router.post("/hooks/alertmanager/{team}/{project}")
async def receive_alerts(
    team: str, project: str, body: AlertmanagerIn, state: State, who: Caller
) -> AlertsOut:
    """Store the alerts of a delivery: 200 with what was recorded and what was ignored,
    401 without a valid token, 404 for an unknown project, 422 for a body that is not
    Alertmanager's."""
    await state.hook_limit.check(f"{team}/{project}", f"project {team}/{project}")
    recorded = updated = 0
    ignored: list[Ignored] = []
    async with state.db.transaction() as session:
        row, _ = await project_named(session, who, team, project, Role.DEVELOPER)
        by_env: dict[str, list[Incoming]] = {}
        for alert in body.alerts:
            name = alert.labels.get("alertname", "")
            service = alert.labels.get("service")
            if service is not None and service != row.name:
                ignored.append(
                    Ignored(alertname=name, reason=f"service {service!r} is not {row.name!r}")
                )
                continue
            named = next((alert.labels[k] for k in ENVIRONMENT_LABELS if k in alert.labels), None)
            if named is None:
                reason = f"no environment label ({', '.join(ENVIRONMENT_LABELS)})"
                ignored.append(Ignored(alertname=name, reason=reason))
                continue
            by_env.setdefault(named, []).append(
                Incoming(
                    fingerprint=alert.fingerprint or fingerprint(alert.labels),
                    name=name,
                    status=alert.status,
                    labels=alert.labels,
                    annotations=alert.annotations,
                    starts_at=_end(alert.starts_at) or alert.starts_at,
                    ends_at=_end(alert.ends_at),
                )
            )
        for env_name, incoming in by_env.items():
            env = await deployments.environment(session, row.id, env_name)
            if env is None:
                ignored += [
                    Ignored(
                        alertname=a.name, reason=f"no environment {env_name!r} in {team}/{project}"
                    )
                    for a in incoming
                ]
                continue
            new = await alerts.record(session, env, incoming)
            recorded += new
            updated += len(incoming) - new
    return AlertsOut(recorded=recorded, updated=updated, ignored=ignored)
