"""GitLab: `X-Gitlab-Token` in clear (or a Standard Webhooks signing token), and
`Idempotency-Key`, kept across retries and "Resend Request" (17.4+)."""

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
    files_of,
    first_header,
    is_zero,
    matches_standard,
    matches_token,
)
from conveyor.pipeline.triggers import EventKind

PUSH_EVENTS = frozenset({"Push Hook", "Tag Push Hook"})
MR_EVENT = "Merge Request Hook"


def _mr_action(payload: Any) -> str:
    """GitLab's MR actions in GitHub's words; an `update` without new commits (a title or
    label edit) is `edited`, unless it takes the MR out of draft."""
    attrs = payload.get("object_attributes") if isinstance(payload, dict) else None
    if not isinstance(attrs, dict):
        return ""
    action = str(attrs.get("action", ""))
    if action == "open":
        return "opened"
    if action == "reopen":
        return "reopened"
    if action == "merge":
        return "merged"
    if action == "update":
        if attrs.get("oldrev"):
            return "synchronize"
        changes = payload.get("changes")
        draft = changes.get("draft") if isinstance(changes, dict) else None
        if (
            isinstance(draft, dict)
            and draft.get("previous") is True
            and draft.get("current") is False
        ):
            return "ready_for_review"
        return "edited"
    return action


class GitLab:
    name = "gitlab"

    def verify(self, secrets: Iterable[str], headers: Headers, body: bytes) -> bool:
        secrets = list(secrets)
        if "webhook-signature" in headers:
            return matches_standard(secrets, headers, body)
        return matches_token(secrets, headers.get("x-gitlab-token"))

    def delivery_key(self, headers: Headers, body: bytes) -> str:
        value = first_header(headers, "idempotency-key")
        if value:
            return bounded_key(value.strip('"'))
        value = first_header(headers, "x-gitlab-event-uuid")
        return bounded_key(value) if value else body_key(body)

    def first_look(self, headers: Headers, payload: Any) -> FirstLook:
        event = headers.get("x-gitlab-event", "")
        if event in PUSH_EVENTS:
            return FirstLook(Look.ACCEPT, event)
        if event == MR_EVENT:
            action = _mr_action(payload)
            if action in {"opened", "reopened", "synchronize", "ready_for_review", "merged"}:
                return FirstLook(Look.ACCEPT, f"merge_request.{action}")
            return FirstLook(
                Look.IGNORE,
                f"merge_request.{action}",
                f"merge request action {action!r} starts nothing",
            )
        return FirstLook(
            Look.IGNORE, event, f"Conveyor does not act on {event or 'unnamed'} events"
        )

    def translate(self, headers: Headers, payload: Any) -> Translation:
        body = Payload(payload)
        project = body.opt_obj("project")
        default = project.opt_text("default_branch") if project else None
        if headers.get("x-gitlab-event") in PUSH_EVENTS:
            return _push(body, default)
        attrs = body.obj("object_attributes")
        action = _mr_action(payload)
        target = attrs.text("target_branch")
        number = attrs.integer("iid")
        if action == "merged":
            sha = attrs.opt_text("merge_commit_sha") or attrs.obj("last_commit").text("id")
            return Translation(
                (
                    Change(
                        kind=EventKind.PULL_REQUEST_MERGED,
                        ref=f"refs/heads/{target}",
                        sha=sha,
                        message=attrs.opt_text("title") or "",
                        target_branch=target,
                        action=action,
                        number=number,
                        default_branch=default,
                    ),
                )
            )
        return Translation(
            (
                Change(
                    kind=EventKind.PULL_REQUEST,
                    ref=f"refs/merge-requests/{number}/head",
                    sha=attrs.obj("last_commit").text("id"),
                    message=attrs.opt_text("title") or "",
                    target_branch=target,
                    action=action,
                    number=number,
                    default_branch=default,
                ),
            )
        )


def _push(body: Payload, default: str | None) -> Translation:
    ref = body.text("ref")
    after = body.text("after")
    if is_zero(after):
        return Translation(skipped=(f"{ref} was deleted",))
    before = body.opt_text("before")
    commits = body.items("commits")
    total = body.opt_integer("total_commits_count")
    complete = not is_zero(before) and bool(commits) and total == len(commits)
    head = next((c.opt_text("message") for c in commits if c.opt_text("id") == after), None)
    return Translation(
        (
            Change(
                kind=EventKind.PUSH,
                ref=ref,
                sha=body.opt_text("checkout_sha") or after,
                before=None if is_zero(before) else before,
                changed=files_of(commits) if complete else None,
                message=head or "",
                default_branch=default,
            ),
        )
    )
