"""Gitea and Forgejo: bare-hex `X-Gitea-Signature`, a new `X-Gitea-Delivery` on replay."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from conveyor.intake.providers.base import (
    FirstLook,
    Headers,
    Look,
    Payload,
    Translation,
    action_ignored,
    body_key,
    bounded_key,
    first_header,
    matches_hex,
)
from conveyor.intake.providers.github import pull_request_change, push_change

ACTIONS = {
    "opened": "opened",
    "reopened": "reopened",
    "synchronized": "synchronize",
    "synchronize": "synchronize",
    "ready_for_review": "ready_for_review",
}


def _event(headers: Headers) -> str:
    return first_header(headers, "x-gitea-event", "x-forgejo-event", "x-gogs-event") or ""


def _action(payload: Any) -> str:
    action = str(payload.get("action", "")) if isinstance(payload, dict) else ""
    if action == "closed":
        pr = payload.get("pull_request")
        return "merged" if isinstance(pr, dict) and pr.get("merged") is True else "closed"
    return ACTIONS.get(action, action)


class Gitea:
    name = "gitea"

    def verify(self, secrets: Iterable[str], headers: Headers, body: bytes) -> bool:
        bare = first_header(headers, "x-gitea-signature", "x-forgejo-signature", "x-gogs-signature")
        if bare:
            return matches_hex(secrets, body, bare, "")
        return matches_hex(secrets, body, headers.get("x-hub-signature-256"), "sha256=")

    def delivery_key(self, headers: Headers, body: bytes) -> str:
        value = first_header(headers, "x-gitea-delivery", "x-forgejo-delivery", "x-gogs-delivery")
        return bounded_key(value) if value else body_key(body)

    def first_look(self, headers: Headers, payload: Any) -> FirstLook:
        event = _event(headers)
        if event == "push":
            return FirstLook(Look.ACCEPT, event)
        if event == "pull_request":
            action = _action(payload)
            if action in set(ACTIONS.values()) | {"merged"}:
                return FirstLook(Look.ACCEPT, f"{event}.{action}")
            return action_ignored(event, action)
        return FirstLook(
            Look.IGNORE, event, f"Conveyor does not act on {event or 'unnamed'} events"
        )

    def translate(self, headers: Headers, payload: Any) -> Translation:
        body = Payload(payload)
        if _event(headers) == "push":
            total = body.opt_integer("total_commits")
            listed = len(body.items("commits"))
            change = push_change(body, commits_complete=total is None or total == listed)
            if change is None:
                return Translation(skipped=(f"{body.text('ref')} was deleted",))
            return Translation((change,))
        number = body.integer("number")
        repo = body.opt_obj("repository")
        pr_change = pull_request_change(
            body.obj("pull_request"),
            number,
            _action(payload),
            f"refs/pull/{number}/head",
            repo.opt_text("default_branch") if repo else None,
        )
        return Translation((pr_change,))
