"""A bare git repository's `post-receive` hook (`conveyor project install-hook`): one
delivery per updated ref, signed the Standard Webhooks way, with the changed files that
git computed. The body is GitHub's push shape, cut down:

    {"ref": "refs/heads/main", "before": "<sha>", "after": "<sha>",
     "changed": ["src/app.py"] | null, "message": "...", "default_branch": "main"}
"""

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
    matches_standard,
)
from conveyor.pipeline.triggers import EventKind

EVENT_HEADER = "x-conveyor-event"


class BareGit:
    name = "git"

    def verify(self, secrets: Iterable[str], headers: Headers, body: bytes) -> bool:
        return matches_standard(secrets, headers, body)

    def delivery_key(self, headers: Headers, body: bytes) -> str:
        value = first_header(headers, "webhook-id")
        return bounded_key(value) if value else body_key(body)

    def first_look(self, headers: Headers, payload: Any) -> FirstLook:
        event = headers.get(EVENT_HEADER, "push")
        if event == "ping":
            return FirstLook(Look.PING, event)
        if event == "push":
            return FirstLook(Look.ACCEPT, event)
        return FirstLook(Look.IGNORE, event, f"Conveyor does not act on {event} events")

    def translate(self, headers: Headers, payload: Any) -> Translation:
        body = Payload(payload)
        ref = body.text("ref")
        after = body.text("after")
        if is_zero(after):
            return Translation(skipped=(f"{ref} was deleted",))
        before = body.opt_text("before")
        changed = body.opt_texts("changed")
        return Translation(
            (
                Change(
                    kind=EventKind.PUSH,
                    ref=ref,
                    sha=after,
                    before=None if is_zero(before) else before,
                    changed=tuple(changed) if changed is not None else None,
                    message=body.opt_text("message") or "",
                    default_branch=body.opt_text("default_branch"),
                ),
            )
        )
