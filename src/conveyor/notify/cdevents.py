"""Conveyor's lifecycle events as CDEvents (cdevents.dev, spec 0.5.1), for the event bus.

Where CDEvents has a type for what happened it is used: a run is a `pipelinerun`
(queued, finished), a deployment that succeeded is a `service` deployed (the first in
its environment), upgraded, or rolled back. The rest of a deployment's life (started,
paused, resumed, aborted, failed) has no CDEvents type, so it goes out as a custom event,
`dev.cdeventsx.conveyor-deployment.<predicate>.0.1.0`, as the spec provides; so do a
fleet's host events, `dev.cdeventsx.conveyor-host.<predicate>.0.1.0`.

On the bus a CDEvent travels in CloudEvents' binary mode: its JSON is the body and the
CloudEvents attributes are `ce-` headers (`ce-id` is the event's id, the same on every
retry, like `Nats-Msg-Id`)."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

from conveyor.domain import events as types
from conveyor.domain.clock import as_utc
from conveyor.notify.webhooks import link
from conveyor.storage.events import EventRecord

SPEC_VERSION = "0.5.1"
CORE = "0.3.0"
"""The version of every core event type in spec 0.5.1."""
CUSTOM = "0.1.0"
OUTCOMES = {"success": "success", "failed": "failure", "canceled": "cancel", "skipped": "cancel"}
"""A run's status as a pipelinerun's outcome."""


def cdevent_type(event: EventRecord) -> str:
    if event.type == types.RUN_QUEUED:
        return f"dev.cdevents.pipelinerun.queued.{CORE}"
    if event.type == types.RUN_FINISHED:
        return f"dev.cdevents.pipelinerun.finished.{CORE}"
    if event.type == types.DEPLOYMENT_SUCCEEDED:
        predicate = "deployed" if event.data["deployment"].get("first") else "upgraded"
        return f"dev.cdevents.service.{predicate}.{CORE}"
    if event.type == types.DEPLOYMENT_ROLLED_BACK:
        return f"dev.cdevents.service.rolledback.{CORE}"
    if event.type.startswith("host."):
        return f"dev.cdeventsx.conveyor-host.{event.type.removeprefix('host.')}.{CUSTOM}"
    predicate = event.type.removeprefix("deployment.").replace("_", "")
    return f"dev.cdeventsx.conveyor-deployment.{predicate}.{CUSTOM}"


def purl(team: str, project: str, digest: str) -> str:
    """The artifact as a package URL (CDEvents' `artifactId`)."""
    return f"pkg:generic/{quote(team, safe='')}/{quote(project, safe='')}@{quote(digest, safe='')}"


def cdevent(event: EventRecord, public_url: str) -> dict[str, Any]:
    """The event as a CDEvent (its JSON form)."""
    data = event.data
    source = public_url.rstrip("/")
    url = link(public_url, event)
    kind = cdevent_type(event)
    service = f"{data['team']}/{data.get('project', '')}"
    subject: dict[str, Any]
    if event.type.startswith("host."):
        subject = {
            "id": data["host"]["name"],
            "source": source,
            "type": "conveyor-host",
            "content": {**data, "url": url},
        }
    elif event.type.startswith("run."):
        run = data["run"]
        content: dict[str, Any] = {"pipelineName": service, "uri": url}
        if event.type == types.RUN_FINISHED:
            content["outcome"] = OUTCOMES.get(run["status"], "error")
            content["errors"] = "" if run["status"] == "success" else f"run {run['status']}"
        subject = {"id": run["id"], "source": source, "content": content}
    elif kind.startswith("dev.cdevents.service."):
        dep = data["deployment"]
        subject = {
            "id": service,
            "source": source,
            "content": {
                "environment": {"id": f"{service}/{data['environment']}", "source": source},
                "artifactId": purl(data["team"], data["project"], dep["digest"]),
            },
        }
    else:
        subject = {
            "id": data["deployment"]["id"],
            "source": source,
            "type": "conveyor-deployment",
            "content": {**data, "url": url},
        }
    return {
        "context": {
            "specversion": SPEC_VERSION,
            "id": str(event.id),
            "source": source,
            "type": kind,
            "timestamp": as_utc(event.created_at).isoformat(),
        },
        "subject": subject,
    }


def ce_headers(cd: dict[str, Any]) -> dict[str, str]:
    """CloudEvents binary-mode headers for a CDEvent (its CloudEvents binding)."""
    context = cd["context"]
    return {
        "ce-specversion": "1.0",
        "ce-id": context["id"],
        "ce-source": context["source"],
        "ce-type": context["type"],
        "ce-subject": str(cd["subject"]["id"]),
        "ce-time": context["timestamp"],
        "content-type": "application/json",
    }


_TOKEN = re.compile(r"[^A-Za-z0-9_-]")


def bus_subject(prefix: str, event: EventRecord) -> str:
    """`<prefix>.<team>.<project>.<type>`, e.g. `conveyor.payments.api.deployment.succeeded`
    (a dot or other character NATS gives a meaning to becomes `_` in a name); a fleet's
    event has `_hosts` for its project (no project's name starts with `_`)."""
    team = _TOKEN.sub("_", event.data["team"]) or "_"
    if event.type.startswith("host."):
        return f"{prefix}.{team}._hosts.{event.type}"
    project = _TOKEN.sub("_", event.data["project"]) or "_"
    return f"{prefix}.{team}.{project}.{event.type}"
