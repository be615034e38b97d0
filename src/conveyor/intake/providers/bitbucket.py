"""Bitbucket Cloud and Data Center: `X-Hub-Signature: sha256=<hex>`; the delivery is
`X-Request-UUID` (Cloud) or `X-Request-Id` (Data Center). Neither payload lists changed
files, so they always come from the mirror."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from conveyor.intake.providers.base import (
    Change,
    FirstLook,
    Headers,
    Look,
    Payload,
    Translation,
    body_key,
    bounded_key,
    first_header,
    is_zero,
    matches_hex,
)
from conveyor.pipeline.triggers import EventKind

PINGS = frozenset({"diagnostics:ping"})
PUSHES = frozenset({"repo:push", "repo:refs_changed"})
PULL_REQUESTS = {
    "pullrequest:created": "opened",
    "pullrequest:updated": "synchronize",
    "pullrequest:fulfilled": "merged",
    "pr:opened": "opened",
    "pr:from_ref_updated": "synchronize",
    "pr:merged": "merged",
}


class Bitbucket:
    name = "bitbucket"

    def verify(self, secrets: Iterable[str], headers: Headers, body: bytes) -> bool:
        return matches_hex(secrets, body, headers.get("x-hub-signature"), "sha256=")

    def delivery_key(self, headers: Headers, body: bytes) -> str:
        value = first_header(headers, "x-request-uuid", "x-request-id")
        return bounded_key(value) if value else body_key(body)

    def first_look(self, headers: Headers, payload: Any) -> FirstLook:
        event = headers.get("x-event-key", "")
        if event in PINGS:
            return FirstLook(Look.PING, event)
        if event in PUSHES or event in PULL_REQUESTS:
            return FirstLook(Look.ACCEPT, event)
        return FirstLook(
            Look.IGNORE, event, f"Conveyor does not act on {event or 'unnamed'} events"
        )

    def translate(self, headers: Headers, payload: Any) -> Translation:
        event = headers.get("x-event-key", "")
        body = Payload(payload)
        if event == "repo:push":
            return _cloud_push(body)
        if event == "repo:refs_changed":
            return _server_push(body)
        if event.startswith("pullrequest:"):
            return Translation((_cloud_pr(body.obj("pullrequest"), PULL_REQUESTS[event]),))
        return Translation((_server_pr(body.obj("pullRequest"), PULL_REQUESTS[event]),))


def _cloud_push(body: Payload) -> Translation:
    changes: list[Change] = []
    skipped: list[str] = []
    for item in body.obj("push").items("changes"):
        new = item.opt_obj("new")
        old = item.opt_obj("old")
        if new is None:
            name = old.text("name") if old else "a ref"
            skipped.append(f"{name} was deleted")
            continue
        prefix = "refs/tags/" if new.text("type") == "tag" else "refs/heads/"
        target = new.obj("target")
        changes.append(
            Change(
                kind=EventKind.PUSH,
                ref=prefix + new.text("name"),
                sha=target.text("hash"),
                before=old.obj("target").text("hash") if old else None,
                message=target.opt_text("message") or "",
            )
        )
    return Translation(tuple(changes), tuple(skipped))


def _server_push(body: Payload) -> Translation:
    changes: list[Change] = []
    skipped: list[str] = []
    for item in body.items("changes"):
        ref = item.obj("ref").text("id")
        after = item.text("toHash")
        if item.opt_text("type") == "DELETE" or is_zero(after):
            skipped.append(f"{ref} was deleted")
            continue
        before = item.opt_text("fromHash")
        changes.append(
            Change(
                kind=EventKind.PUSH,
                ref=ref,
                sha=after,
                before=None if is_zero(before) else before,
            )
        )
    return Translation(tuple(changes), tuple(skipped))


def _cloud_pr(pr: Payload, action: str) -> Change:
    target = pr.obj("destination").obj("branch").text("name")
    source = pr.obj("source")
    if action == "merged":
        merge = pr.opt_obj("merge_commit")
        sha = merge.text("hash") if merge else source.obj("commit").text("hash")
        return Change(
            kind=EventKind.PULL_REQUEST_MERGED,
            ref=f"refs/heads/{target}",
            sha=sha,
            message=pr.opt_text("title") or "",
            target_branch=target,
            action=action,
            number=pr.integer("id"),
        )
    return Change(
        kind=EventKind.PULL_REQUEST,
        ref=f"refs/heads/{source.obj('branch').text('name')}",
        sha=source.obj("commit").text("hash"),
        message=pr.opt_text("title") or "",
        target_branch=target,
        action=action,
        number=pr.integer("id"),
    )


def _server_pr(pr: Payload, action: str) -> Change:
    target = pr.obj("toRef").text("id")
    branch = target.removeprefix("refs/heads/")
    source = pr.obj("fromRef")
    if action == "merged":
        props = pr.opt_obj("properties")
        merge = props.opt_obj("mergeCommit") if props else None
        return Change(
            kind=EventKind.PULL_REQUEST_MERGED,
            ref=target,
            sha=merge.text("id") if merge else source.text("latestCommit"),
            message=pr.opt_text("title") or "",
            target_branch=branch,
            action=action,
            number=pr.integer("id"),
        )
    return Change(
        kind=EventKind.PULL_REQUEST,
        ref=source.text("id"),
        sha=source.text("latestCommit"),
        message=pr.opt_text("title") or "",
        target_branch=branch,
        action=action,
        number=pr.integer("id"),
    )
